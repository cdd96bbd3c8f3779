"""The exceptions soniq raises.

Every error derives from :class:`SoniqError`; each leaf also derives from the built-in
exception a caller would naturally catch (``ValueError``, ``LookupError``, ``TypeError``), so
``except ValueError`` keeps working for code that does not know soniq.
"""

from __future__ import annotations

from typing import Any


class SoniqError(Exception):
    """Base class of every soniq error."""


class SoniqWarning(UserWarning):
    """Base class of every soniq warning."""


class ConfigurationError(SoniqError, ValueError):
    """A setting is missing or has a bad value. The message names the setting."""


class JobDefinitionError(SoniqError, ValueError):
    """``@app.job()`` (or a ``TaskRef``) was given bad parameters."""


class DuplicateJobError(SoniqError, ValueError):
    """Two different functions were registered under one task name."""


class JobNotRegisteredError(SoniqError, LookupError):
    """A task name is not registered and strict enqueue validation is on."""


class EnqueueError(SoniqError, ValueError):
    """An enqueue call was refused before anything was written.

    ``job_name`` names the job and ``argument`` the option or job argument at fault
    (``None`` when the problem is not tied to one argument).
    """

    def __init__(self, message: str, *, job_name: str, argument: str | None = None) -> None:
        super().__init__(message)
        self.job_name = job_name
        self.argument = argument


class InvalidOptionError(EnqueueError):
    """An enqueue option (priority, queue, scheduled_at, dedup_key, ...) is out of range."""


class InvalidArgumentsError(EnqueueError):
    """The job's arguments do not fit its signature or its pydantic model."""


class ArgumentsNotSerializableError(InvalidArgumentsError, TypeError):
    """An argument cannot be stored as JSON (a set, bytes, NaN, an object, ...). Also a
    ``TypeError``, what ``json.dumps`` and Django's task backends raise for such a value."""


class ArgumentsTooLargeError(InvalidArgumentsError):
    """The JSON-encoded arguments exceed the ``MAX_ARGS_BYTES`` setting."""


class EnqueueContentionError(SoniqError, RuntimeError):
    """A deduplicated enqueue kept racing with jobs finishing and could not settle."""


class TransactionWarning(SoniqWarning, RuntimeWarning):
    """The enqueue will not take part in the transaction the caller seems to expect."""


class InvalidJobIdError(SoniqError, ValueError):
    """A job id that is not a UUID."""


class InvalidConnectionError(SoniqError, TypeError):
    """``connection=`` got an object soniq cannot run its statements on in that context."""


class DatabaseUnavailableError(SoniqError, ConnectionError):
    """The database could not be reached, or the connection broke during the call.

    The psycopg error is chained as ``__cause__``. A write that fails this way may or may not
    have been committed: soniq never retries it on its own (a duplicate job is worse than an
    error), so check before enqueueing again when that matters.
    """


class SchemaMissingError(SoniqError, RuntimeError):
    """soniq's tables are not in the database: its migrations have not been applied.

    Raised by enqueue, the worker and the scheduler alike. The message names the database
    (the Django alias, or the URL without its password) and the command that creates the
    tables: ``python manage.py migrate`` in a Django project, ``soniq setup`` standalone.
    ``database`` (a URL without password), ``alias`` (the Django database alias, or ``None``)
    and ``table`` (the first missing table met) hold the same facts; the database error is
    chained as ``__cause__``.
    """

    def __init__(
        self, message: str, *, database: str, table: str, alias: str | None = None
    ) -> None:
        super().__init__(message)
        self.database = database
        self.table = table
        self.alias = alias


class JobFailedError(SoniqError, RuntimeError):
    """:meth:`Soniq.wait_for` waited for a job that ended in the dead letters. ``job`` is its
    :class:`~soniq.JobInfo`; ``errors`` its error history (oldest first) and ``reason`` why
    it is a dead letter (``max_attempts``, ``discarded``, ...)."""

    def __init__(self, message: str, *, job: Any) -> None:
        super().__init__(message)
        self.job = job
        self.errors: list[dict[str, Any]] = list(job.errors)
        self.reason: str | None = job.dead_letter_reason


class JobCancelledError(SoniqError, RuntimeError):
    """:meth:`Soniq.wait_for` waited for a job that ended ``cancelled``: by an operator, by
    an abort, or by ``raise soniq.Cancel(reason)``. ``job`` is its :class:`~soniq.JobInfo`,
    ``reason`` the message of its last history entry (empty when cancelled while queued)."""

    def __init__(self, message: str, *, job: Any, reason: str = "") -> None:
        super().__init__(message)
        self.job = job
        self.reason = reason


class JobNotFoundError(SoniqError, LookupError):
    """:meth:`Soniq.wait_for` was given an id of no job nor dead letter (never enqueued, or
    pruned, or deleted meanwhile)."""


class ResultValidationError(SoniqError, ValueError):
    """``result_model=`` did not accept the job's stored result. The pydantic
    ``ValidationError`` is chained as ``__cause__``."""
