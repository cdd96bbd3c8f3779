"""What every storage backend offers, and the SQL-statement vocabulary they share."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple, Protocol, runtime_checkable

from soniq.core.records import JobInfo, NewJob


class Statement(NamedTuple):
    """One SQL statement with ``%s`` placeholders and its parameters."""

    sql: str
    params: Sequence[Any]


Row = tuple[Any, ...]


class Dialect(Protocol):
    """Builds the named statements for one SQL database. Pure: no I/O, no state."""

    name: str

    def insert_job(self, job: NewJob) -> Statement:
        """Insert one job; returns its id, or no row when a live duplicate already exists."""
        ...

    def insert_jobs(self, jobs: Sequence[NewJob]) -> list[Statement]:
        """Insert jobs that carry no dedup key (as few statements as the database allows)."""
        ...

    def find_live_duplicate(self, task_name: str, dedup_key: str) -> Statement:
        """The id of the queued or running job holding ``(task_name, dedup_key)``."""
        ...

    def select_job(self, job_id: str) -> Statement:
        """A job by id from ``soniq_jobs`` or ``soniq_dead_letter_jobs`` (JOB_COLUMNS order)."""
        ...


@runtime_checkable
class StorageBackend(Protocol):
    """The storage operations the application facade and (later) the worker rely on.

    Capability flags say what a backend can do, so callers ask instead of catching
    ``NotImplementedError``.
    """

    @property
    def supports_listen(self) -> bool:
        """Whether the worker can be woken by LISTEN/NOTIFY."""
        ...

    @property
    def supports_transactional_enqueue(self) -> bool:
        """Whether an enqueue can join a transaction the caller holds."""
        ...

    async def insert_jobs(self, jobs: Sequence[NewJob], *, connection: Any = None) -> list[str]:
        """Insert jobs; returns one id per job, in order (an existing id for a duplicate)."""
        ...

    def insert_jobs_sync(self, jobs: Sequence[NewJob], *, connection: Any = None) -> list[str]: ...

    async def get_job(self, job_id: str) -> JobInfo | None: ...

    def get_job_sync(self, job_id: str) -> JobInfo | None: ...

    async def close(self) -> None: ...
