"""Errors that mean the database will never take a value, however often it is sent.

A data error (SQLSTATE class 22: an invalid encoding, a number out of range, a string too long),
a program limit (class 54: a jsonb value or an array too large, nesting too deep), text Python
cannot encode, or any DB-API ``DataError`` (psycopg's for a NUL in text, SQLite's "string or
blob too big") is a fact about the data, not about the connection: retrying the same write fails
the same way for ever. The worker writes something smaller in its place instead (see
``soniq.worker.progress``). Told apart by the DB-API's names and SQLSTATE codes, so that the
worker needs no driver of its own.
"""

from __future__ import annotations

# SQLSTATE classes: data exception, program limit exceeded (psycopg gives some class-54 errors,
# such as statement_too_complex, no common base class).
_CLASSES = ("22", "54")


def is_unstorable(error: BaseException) -> bool:
    """Whether ``error``, raised by a write, says that its data can never be stored."""
    if isinstance(error, (UnicodeEncodeError, OverflowError)):
        # Text with no UTF-8 form; a number or a time out of range (a time past year 9999).
        return True
    sqlstate = getattr(error, "sqlstate", None)
    if isinstance(sqlstate, str) and sqlstate[:2] in _CLASSES:
        return True
    # PEP 249's DataError, whichever driver raised it (some raise it before sending).
    return any(kind.__name__ == "DataError" for kind in type(error).__mro__)
