"""What every storage backend offers, and the SQL-statement vocabulary they share."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any, NamedTuple, Protocol, runtime_checkable

from soniq.core.operations import ActionResult
from soniq.core.periodic import Schedule, ScheduleDefinition
from soniq.core.records import ClaimedJob, JobInfo, NewJob, RecoveryReport, WorkerInfo


class Statement(NamedTuple):
    """One SQL statement with ``%s`` placeholders and its parameters."""

    sql: str
    params: Sequence[Any]


Row = tuple[Any, ...]


class OperatorStatements(Protocol):
    """Operator actions by id (see ``soniq.backends.operator_plans``). Statements that change
    jobs return the changed ids (and, for jobs back in the queue, their queues)."""

    def retry_jobs(self, job_ids: Sequence[str]) -> Statement: ...

    def cancel_jobs(self, job_ids: Sequence[str]) -> Statement: ...

    def request_aborts(self, job_ids: Sequence[str], by: str) -> Statement:
        """Running jobs: their abort requested on behalf of ``by``."""
        ...

    def requeue_dead_letters(self, job_ids: Sequence[str]) -> list[Statement]:
        """The first statement returns the requeued ids; the others complete the move."""
        ...

    def delete_dead_letters(self, job_ids: Sequence[str]) -> Statement: ...

    def job_states(self, job_ids: Sequence[str]) -> Statement:
        """Rows of :class:`soniq.core.operations.JobState` fields, for jobs and dead letters."""
        ...


class Dialect(Protocol):
    """Builds the named statements for one SQL database. Pure: no I/O, no state."""

    name: str

    @property
    def operator(self) -> OperatorStatements: ...

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


@runtime_checkable
class BatchInserter(Protocol):
    """A backend that writes a large ``enqueue_many`` while it is still being built."""

    async def insert_job_batches(
        self, batches: Iterable[Sequence[NewJob]], *, connection: Any = None
    ) -> list[str]:
        """Insert every batch in one transaction, each while the next is built (taking it
        from ``batches`` builds it); ids in order. An error from ``batches`` (a bad row) rolls
        the whole back: nothing is inserted."""
        ...


@runtime_checkable
class OperatorBackend(Protocol):
    """Actions an operator takes by hand (the admin, a shell). Each takes job ids, changes only
    jobs in the state the action starts from, and explains every id it left alone."""

    async def retry_jobs(self, job_ids: Sequence[str]) -> ActionResult: ...

    def retry_jobs_sync(self, job_ids: Sequence[str]) -> ActionResult: ...

    async def cancel_jobs(self, job_ids: Sequence[str]) -> ActionResult: ...

    def cancel_jobs_sync(self, job_ids: Sequence[str]) -> ActionResult: ...

    async def abort_jobs(self, job_ids: Sequence[str], by: str) -> ActionResult:
        """Cancel queued jobs and request the abort of running ones (``by``: who asks)."""
        ...

    def abort_jobs_sync(self, job_ids: Sequence[str], by: str) -> ActionResult: ...

    async def requeue_dead_letters(self, job_ids: Sequence[str]) -> ActionResult: ...

    def requeue_dead_letters_sync(self, job_ids: Sequence[str]) -> ActionResult: ...

    async def delete_dead_letters(self, job_ids: Sequence[str]) -> ActionResult: ...

    def delete_dead_letters_sync(self, job_ids: Sequence[str]) -> ActionResult: ...


class WorkerSessionProtocol(Protocol):
    """The worker's long-lived connection: wake-ups and the liveness lock."""

    lock_key: int | None

    def notifications(self, within: float) -> Any:
        """An async iterator of payloads (queue names) arriving ``within`` seconds."""
        ...

    @property
    def broken(self) -> bool: ...

    async def ping(self) -> None: ...

    async def close(self) -> None: ...


@runtime_checkable
class WorkerBackend(Protocol):
    """The state transitions a worker drives. Every finishing write is fenced by
    ``(worker_id, attempt)`` and reports whether it applied."""

    @property
    def supports_listen(self) -> bool: ...

    async def claim_jobs(
        self,
        worker_id: str,
        task_names: Sequence[str],
        queues: Sequence[str] | None,
        limit: int,
    ) -> list[ClaimedJob]: ...

    async def complete_jobs(
        self,
        worker_id: str,
        done: Sequence[tuple[str, int, str | None]],
        started: Sequence[tuple[str, int]] = (),
    ) -> int:
        """Mark ``done`` (``(id, attempt, result_json)``) finished and record the start of
        ``started`` (``(id, attempt)``, disjoint from ``done``), in one write; returns how
        many of ``done`` passed the fence."""
        ...

    async def start_jobs(self, worker_id: str, jobs: Sequence[tuple[str, int]]) -> int:
        """Record that claimed jobs started (``started_at``, kept if already set; their
        suspicion is cleared); returns how many passed the fence. Idempotent, so a write
        retried after a lost reply counts the same."""
        ...

    async def retry_job(
        self, worker_id: str, job_id: str, attempt: int, delay: float, error: dict[str, Any]
    ) -> bool:
        """Back to the queue ``delay`` seconds from now (the database's clock)."""
        ...

    async def dead_letter_job(
        self, worker_id: str, job_id: str, attempt: int, error: dict[str, Any], reason: str
    ) -> bool: ...

    async def snooze_job(
        self, worker_id: str, job_id: str, attempt: int, delay: float, entry: dict[str, Any]
    ) -> bool:
        """soniq.Snooze: back to the queue ``delay`` seconds from now, the attempt given back
        and the snooze counted, ``entry`` in the history."""
        ...

    async def cancel_running_job(
        self,
        worker_id: str,
        job_id: str,
        attempt: int,
        entry: dict[str, Any],
        result_json: str | None = None,
    ) -> bool:
        """soniq.Cancel or an abort: the job ends ``cancelled``, ``entry`` in the history."""
        ...

    async def aborts_requested(self, worker_id: str) -> list[tuple[str, str, datetime | None]]:
        """The jobs ``worker_id`` runs whose abort was requested: (id, by whom, when)."""
        ...

    async def release_jobs(self, worker_id: str, jobs: Sequence[tuple[str, int]]) -> int: ...

    async def register_worker(self, info: WorkerInfo, lock_key: int | None) -> None: ...

    async def heartbeat(self, worker_id: str) -> str | None: ...

    async def deregister_worker(self, worker_id: str) -> None: ...

    async def open_session(
        self, *, listen: bool, lock_key: int | None = None
    ) -> WorkerSessionProtocol: ...

    async def recover_stale_workers(
        self, *, heartbeat_timeout: float, lock_grace: float, max_losses: int
    ) -> RecoveryReport: ...

    async def prune(self, *, retention: float, batch: int = ...) -> int: ...

    async def release_strays(
        self, worker_id: str, running: Sequence[str], older_than: float
    ) -> int:
        """Requeue jobs held by ``worker_id`` that it is not running (claim replies lost)."""
        ...

    async def prepare_for_work(self) -> None: ...

    async def close(self) -> None: ...


class ScheduleStore(Protocol):
    """Schedules read and changed one at a time (what the admin needs)."""

    async def get_schedule(self, name: str) -> Schedule | None: ...

    async def list_schedules(self, status: str | None = None) -> list[Schedule]: ...

    async def set_schedule_status(
        self, name: str, status: str, next_fire_at: datetime | None = None
    ) -> bool: ...

    async def delete_schedule(self, name: str) -> bool: ...

    async def close(self) -> None: ...


@runtime_checkable
class SchedulerBackend(Protocol):
    """What the scheduler needs: schedules stored by name, and fire-exactly-once."""

    async def upsert_schedule(
        self, definition: ScheduleDefinition, *, source: str, next_fire_at: datetime
    ) -> None: ...

    async def get_schedule(self, name: str) -> Schedule | None: ...

    async def list_schedules(self, status: str | None = None) -> list[Schedule]: ...

    async def set_schedule_status(
        self, name: str, status: str, next_fire_at: datetime | None = None
    ) -> bool: ...

    async def delete_schedule(self, name: str) -> bool: ...

    async def next_due_at(self) -> datetime | None: ...

    async def fire_due_schedules(
        self,
        now: datetime,
        make_job: Callable[[ScheduleDefinition, datetime], NewJob],
        limit: int = ...,
        *,
        lease: float | None = ...,
    ) -> list[tuple[str, datetime, str]]: ...

    async def close(self) -> None: ...
