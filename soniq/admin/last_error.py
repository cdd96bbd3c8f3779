"""The newest failed attempt of a row, read by the database and already cut there.

A list shows one line of a row's last error. Its error history holds a traceback per attempt
and can weigh megabytes: the list must not load it to show 80 characters. :class:`LastError`
picks one field of the last entry of ``errors`` and its first characters in SQL, so at most
that much crosses the wire per row:

- PostgreSQL: ``left(errors -> -1 ->> 'message', 1000)``
- SQLite: ``substr(json_extract(errors, '$[#-1].message'), 1, 1000)``

Either gives NULL when the history is empty or its last entry is not an object with that
field. A structured message comes as JSON text. soniq's tables live on those two databases
only, so there is no generic SQL.
"""

from __future__ import annotations

from typing import Any

from django.db.models import F, Func, TextField

SQL = tuple[str, tuple[Any, ...]]


class LastError(Func):
    """The first ``chars`` characters of field ``key`` of the last entry of ``errors``."""

    output_field = TextField()

    def __init__(self, key: str, chars: int, column: str = "errors") -> None:
        if not key.isidentifier() or chars < 1:
            raise ValueError(f"LastError needs a field name and a positive length: {key!r}")
        super().__init__(F(column))
        self.key = key
        self.chars = chars

    def _column(self, compiler: Any, connection: Any) -> SQL:
        sql, params = compiler.compile(self.get_source_expressions()[0])
        return sql, tuple(params)

    def as_postgresql(self, compiler: Any, connection: Any, **extra: Any) -> SQL:
        column, params = self._column(compiler, connection)
        # `->>` reads a text field as its text, a structure as its JSON.
        return f"left(({column} -> -1 ->> %s), %s)", (*params, self.key, self.chars)

    def as_sqlite(self, compiler: Any, connection: Any, **extra: Any) -> SQL:
        column, params = self._column(compiler, connection)
        # '#-1': the last element of the array (SQLite 3.31 and later).
        path = f"$[#-1].{self.key}"
        return f"substr(json_extract({column}, %s), 1, %s)", (*params, path, self.chars)
