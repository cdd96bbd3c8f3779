"""An in-memory storage backend: jobs live in plain dicts of one process, no database.

Meant for tests and for trying soniq out. It reproduces the semantics of the PostgreSQL backend
(``soniq/backends/postgres/worker_statements.py``): the claim order, deduplication on
``(task_name, dedup_key)`` while the holder is queued or processing, the fencing of every
finishing write by ``(worker_id, attempt, status 'processing')``, the recovery of the jobs of
dead or stopped workers, stray release and pruning. What it cannot have:

- no connections: ``connection=`` is refused, and there is no transactional enqueue;
- no LISTEN/NOTIFY and no liveness lock (``supports_listen`` is False): a worker polls, and a
  dead worker is found by its heartbeat alone (``lock_grace`` is ignored);
- nothing is shared between processes: the application and its worker must use the *same*
  instance (run the worker in the process that enqueues).

Values are stored as JSON text, as a database would: what a caller gets back is always a fresh
copy, and mutating it changes nothing stored. Every operation runs under one
``threading.Lock``, so asyncio tasks and threads of the process may share an instance; no
operation waits on anything while holding it.

Time comes from ``clock`` (``MemoryBackend(clock=...)``), which plays the part of the
database clock: "due", retry delays, heartbeat ages and retention all use it, so a test can
move time instead of sleeping. It should return aware datetimes (naive ones are taken as UTC).

In-process wake-up: ``on_insert`` is a list of callables taking a queue name. After each insert
that stored at least one job, each callback is called once per distinct queue of the stored jobs
(not for a deduplicated enqueue that returned an existing id), like PostgreSQL's NOTIFY; and
likewise after each batch of an operator action that put jobs back in the queue (a retry, a
requeued dead letter). They run synchronously in the calling thread, after the lock is
released; an exception in one is logged and fails neither the insert nor the action. A callback
that wakes an asyncio worker from another thread must hop onto its loop
(``loop.call_soon_threadsafe(event.set)``).

Operator actions (retry, cancel, requeue and delete by id) follow the SQL statements of
``soniq/backends/postgres/operator_statements.py``: one lock hold per batch of ids (a
transaction there), and every id left alone explained from its state after the batch.

``close()`` keeps the data: a worker run by ``Soniq.run_worker`` closes its backend when it
returns, and with this backend that is the application's own instance. ``clear()`` empties it.
"""

from __future__ import annotations

import dataclasses
import functools
import heapq
import json
import logging
import threading
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from soniq.backends.base import WorkerSessionProtocol
from soniq.backends.error_history import append_capped
from soniq.backends.operator_plans import Explain, batches
from soniq.core import operations
from soniq.core.errors import ConfigurationError, InvalidConnectionError
from soniq.core.limits import (
    ClaimLimits,
    LimitedClaim,
    Usage,
    pick,
    rate_frees_at,
    room,
    started_per_key,
)
from soniq.core.operations import ActionResult, JobState
from soniq.core.records import ClaimedJob, JobInfo, NewJob, RecoveryReport, WorkerInfo
from soniq.core.retry import lost_job_fate
from soniq.core.settings import SoniqSettings
from soniq.core.status import JobStatus, Suspicion

logger = logging.getLogger("soniq.backends.memory")

# The PostgreSQL backend deletes in batches of this size; here everything goes at once.
PRUNE_BATCH = 5000

# The statuses a worker row can hold (soniq_workers.status).
RUNNING = "running"
STOPPING = "stopping"
STOPPED = "stopped"
DEAD = "dead"

Clock = Callable[[], datetime]
InsertCallback = Callable[[str], None]


def _claim_order(job: _Job) -> tuple[int, datetime, int]:
    """Most urgent first: lowest priority number, then earliest due, then enqueued first."""
    return (job.priority, job.scheduled_at, job.seq)


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _as_utc(value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def _canonical(identifier: str) -> str:
    """A UUID's canonical text (as PostgreSQL's ``::uuid`` would compare it); anything that is
    not a UUID is returned unchanged and simply matches nothing."""
    try:
        return str(uuid.UUID(str(identifier)))
    except ValueError:
        return str(identifier)


def _shifted(moment: datetime, seconds: float) -> datetime:
    """``moment + seconds``, pinned to the calendar's ends instead of overflowing."""
    try:
        return moment + timedelta(seconds=seconds)
    except OverflowError:
        return datetime.max.replace(tzinfo=UTC) if seconds > 0 else datetime.min.replace(tzinfo=UTC)


def _loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


@dataclass(slots=True)
class _Job:
    """A row of ``soniq_jobs``."""

    id: str
    seq: int
    task_name: str
    status: JobStatus
    args_json: str
    queue: str
    priority: int
    attempts: int
    max_attempts: int
    scheduled_at: datetime
    created_at: datetime
    dedup_key: str | None
    claimed_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    worker_id: str | None = None
    result_json: str | None = None
    errors: list[str] = field(default_factory=list)  # one JSON text per entry
    errors_dropped: int = 0
    worker_losses: int = 0
    suspicion: Suspicion = Suspicion.NONE
    snoozes: int = 0
    abort_requested_at: datetime | None = None
    abort_requested_by: str | None = None
    lock: str | None = None
    lock_order: int = 0

    @property
    def lock_place(self) -> tuple[int, int, str]:
        """Its place among the jobs of its lock: priority, then enqueue order."""
        return (self.priority, self.lock_order, self.id)

    def info(self) -> JobInfo:
        return JobInfo(
            id=self.id,
            task_name=self.task_name,
            status=self.status,
            args=_loads(self.args_json) or {},
            queue=self.queue,
            priority=self.priority,
            attempts=self.attempts,
            max_attempts=self.max_attempts,
            scheduled_at=self.scheduled_at,
            created_at=self.created_at,
            started_at=self.started_at,
            finished_at=self.finished_at,
            worker_id=self.worker_id,
            result=_loads(self.result_json),
            errors=[json.loads(entry) for entry in self.errors],
            errors_dropped=self.errors_dropped,
            dedup_key=self.dedup_key,
            snoozes=self.snoozes,
            abort_requested_at=self.abort_requested_at,
            abort_requested_by=self.abort_requested_by,
            lock=self.lock,
        )

    def claimed(self, worker_id: str) -> ClaimedJob:
        return ClaimedJob(
            id=self.id,
            task_name=self.task_name,
            args=_loads(self.args_json) or {},
            queue=self.queue,
            priority=self.priority,
            attempt=self.attempts,
            max_attempts=self.max_attempts,
            scheduled_at=self.scheduled_at,
            created_at=self.created_at,
            claimed_by=worker_id,
            suspicion=self.suspicion,
            snoozes=self.snoozes,
            lock=self.lock,
        )


@dataclass(slots=True)
class _DeadLetter:
    """A row of ``soniq_dead_letter_jobs``."""

    job: _Job
    dead_lettered_at: datetime
    reason: str

    def info(self) -> JobInfo:
        # The job as it was, seen from the dead letters: its time of death and reason.
        return dataclasses.replace(
            self.job.info(),
            status=JobStatus.DEAD_LETTER,
            finished_at=self.dead_lettered_at,
            result=None,
            dead_letter_reason=self.reason,
            snoozes=0,
            abort_requested_at=None,
            abort_requested_by=None,
        )


@dataclass(slots=True)
class _Worker:
    """A row of ``soniq_workers``."""

    info: WorkerInfo
    status: str
    started_at: datetime
    last_heartbeat_at: datetime
    stopped_at: datetime | None
    lock_key: int | None


class MemoryBackend:
    """Storage and worker operations on dicts of this process (see the module docstring).

    ``clock`` stands for the database clock; ``on_insert`` holds the in-process wake-up
    callbacks, each called with a queue name after jobs were stored in that queue. Of
    ``settings``, the error history's limit applies (``ERROR_HISTORY_LIMIT``).
    """

    supports_listen = False
    supports_transactional_enqueue = False
    survives_close = True  # Soniq.close() keeps this instance and its jobs

    def __init__(self, clock: Clock = _utc_now, *, settings: SoniqSettings | None = None) -> None:
        self.clock = clock
        self.settings = settings if settings is not None else SoniqSettings()
        self.on_insert: list[InsertCallback] = []
        self._lock = threading.Lock()
        self._jobs: dict[str, _Job] = {}
        self._dead: dict[str, _DeadLetter] = {}
        self._workers: dict[str, _Worker] = {}
        # Ids of queued jobs (the claim looks at these only), and the live holder of each
        # (task_name, dedup_key): the partial unique index of the real table.
        self._queued: set[str] = set()
        self._holders: dict[tuple[str, str], str] = {}
        self._seq = 0
        # The ids of the queued and processing jobs of each lock (soniq_jobs_lock_idx).
        self._locks: dict[str, set[str]] = {}
        # Starts counted against each rate limit: (when, how many), oldest first.
        self._starts: dict[str, list[tuple[datetime, int]]] = {}

    # -- helpers (called with the lock held) -------------------------------------------------

    def _now(self) -> datetime:
        return _as_utc(self.clock())

    def _set_status(self, job: _Job, status: JobStatus) -> None:
        """The status, with the claim set and the dedup key's holder kept in step (callers
        check that the key is free before making a job live again)."""
        job.status = status
        if status is JobStatus.QUEUED:
            self._queued.add(job.id)
        else:
            self._queued.discard(job.id)
        if status not in JobStatus.active():
            self._release_key(job)
        elif job.dedup_key is not None:
            self._holders[(job.task_name, job.dedup_key)] = job.id
        if job.lock is not None:
            if status in JobStatus.active():
                self._locks.setdefault(job.lock, set()).add(job.id)
            else:
                self._release_lock(job)

    def _release_lock(self, job: _Job) -> None:
        if job.lock is not None:
            holders = self._locks.get(job.lock)
            if holders is not None:
                holders.discard(job.id)
                if not holders:
                    del self._locks[job.lock]

    def _lock_free(self, job: _Job) -> bool:
        """Whether ``job``'s lock lets it run: no job of its lock runs, and none is queued
        ahead of it."""
        if job.lock is None:
            return True
        for other_id in self._locks.get(job.lock, ()):
            other = self._jobs[other_id]
            if other.status is JobStatus.PROCESSING:
                return False
            if other.lock_place < job.lock_place:
                return False
        return True

    def _release_key(self, job: _Job) -> None:
        if job.dedup_key is not None:
            key = (job.task_name, job.dedup_key)
            if self._holders.get(key) == job.id:
                del self._holders[key]

    def _delete(self, job: _Job) -> None:
        del self._jobs[job.id]
        self._queued.discard(job.id)
        self._release_key(job)
        self._release_lock(job)

    def _live_holder(self, task_name: str, dedup_key: str) -> str | None:
        holder = self._holders.get((task_name, dedup_key))
        if holder is None:
            return None
        job = self._jobs.get(holder)
        if job is None or job.status not in JobStatus.active():
            del self._holders[(task_name, dedup_key)]
            return None
        return holder

    def _key_taken(self, job: _Job) -> bool:
        """Another queued or processing job holds ``job``'s dedup key."""
        if job.dedup_key is None:
            return False
        return self._live_holder(job.task_name, job.dedup_key) not in (None, job.id)

    def _fenced(self, worker_id: str, job_id: str, attempt: int) -> _Job | None:
        """The job, if it is still ``processing`` for this worker and this attempt."""
        job = self._jobs.get(_canonical(job_id))
        if (
            job is None
            or job.status is not JobStatus.PROCESSING
            or job.worker_id != _canonical(worker_id)
            or job.attempts != attempt
        ):
            return None
        return job

    def _back_or_aborted(self, job: _Job) -> None:
        """Back to the queue; cancelled instead if its abort was requested meanwhile."""
        if job.abort_requested_at is None:
            self._set_status(job, JobStatus.QUEUED)
        else:
            self._set_status(job, JobStatus.CANCELLED)
            job.finished_at = self._now()

    def _requeue_uncharged(self, job: _Job) -> None:
        """Back to the queue without charging the attempt (release, strays, recovery)."""
        self._back_or_aborted(job)
        job.worker_id = None
        job.claimed_at = None
        job.started_at = None
        job.attempts = max(job.attempts - 1, 0)

    def _append_error(self, job: _Job, error: str) -> None:
        """``error`` appended to the job's history, which keeps its newest entries."""
        job.errors_dropped += append_capped(job.errors, error, self.settings.error_history_limit)

    def _dead_letter(self, job: _Job, now: datetime, error: str, reason: str) -> None:
        self._delete(job)
        self._append_error(job, error)
        self._dead[job.id] = _DeadLetter(job, now, reason)

    # -- StorageBackend ---------------------------------------------------------------------

    def insert_jobs_sync(self, jobs: Sequence[NewJob], *, connection: Any = None) -> list[str]:
        """Insert ``jobs``; their ids in input order (a live duplicate's id for a job whose
        ``(task_name, dedup_key)`` is held by a queued or processing job)."""
        if connection is not None:
            raise InvalidConnectionError(
                "the memory backend has no connections: enqueue without connection= "
                f"(got {type(connection).__name__})"
            )
        ids: list[str] = []
        woken: dict[str, None] = {}
        with self._lock:
            self._check_new_ids(jobs)
            now = self._now()
            for new in jobs:
                if new.dedup_key is not None:
                    holder = self._live_holder(new.task_name, new.dedup_key)
                    if holder is not None:
                        ids.append(holder)
                        continue
                ids.append(self._store(new, now))
                woken[new.queue] = None
            callbacks = list(self.on_insert) if woken else []
        self._announce(woken, callbacks)
        return ids

    async def insert_jobs(self, jobs: Sequence[NewJob], *, connection: Any = None) -> list[str]:
        return self.insert_jobs_sync(jobs, connection=connection)

    @staticmethod
    def _announce(queues: Iterable[str], callbacks: Sequence[InsertCallback]) -> None:
        """Call the ``on_insert`` callbacks (copied under the lock) once per queue."""
        for queue in queues:
            for callback in callbacks:
                try:
                    callback(queue)
                except Exception:
                    logger.exception("on_insert callback %r failed", callback)

    def _check_new_ids(self, jobs: Sequence[NewJob]) -> None:
        """Refuse the whole batch before storing any of it if an id is taken (the primary key)."""
        seen: set[str] = set()
        for new in jobs:
            job_id = str(new.id)
            if job_id in self._jobs or job_id in seen:
                raise ValueError(f"a job with id {job_id} already exists")
            seen.add(job_id)

    def _store(self, new: NewJob, now: datetime) -> str:
        json.loads(new.args_json)  # what a jsonb column would check
        self._seq += 1
        job = _Job(
            id=str(new.id),
            seq=self._seq,
            task_name=new.task_name,
            status=JobStatus.QUEUED,
            args_json=new.args_json,
            queue=new.queue,
            priority=new.priority,
            attempts=0,
            max_attempts=new.max_attempts,
            scheduled_at=now if new.scheduled_at is None else _as_utc(new.scheduled_at),
            created_at=now,
            dedup_key=new.dedup_key,
            lock=new.lock,
            lock_order=self._seq,
        )
        self._jobs[job.id] = job
        self._set_status(job, JobStatus.QUEUED)
        return job.id

    def get_job_sync(self, job_id: str) -> JobInfo | None:
        """A job by id, from the jobs or (with status ``DEAD_LETTER``) the dead letters."""
        key = _canonical(job_id)
        with self._lock:
            job = self._jobs.get(key)
            if job is not None:
                return job.info()
            dead = self._dead.get(key)
            return dead.info() if dead is not None else None

    async def get_job(self, job_id: str) -> JobInfo | None:
        return self.get_job_sync(job_id)

    async def close(self) -> None:
        """Nothing to release; the data stays (see the module docstring)."""

    # -- inspection, for tests and the testing kit ------------------------------------------

    def jobs(self) -> list[JobInfo]:
        """Every row of the jobs table (queued, processing, done, cancelled), oldest first;
        dead letters are in :meth:`dead_letters`."""
        with self._lock:
            return [job.info() for job in sorted(self._jobs.values(), key=lambda j: j.seq)]

    def dead_letters(self) -> list[JobInfo]:
        """Every dead-lettered job, in the order they were moved."""
        with self._lock:
            return [dead.info() for dead in self._dead.values()]

    def worker_status(self, worker_id: str) -> str | None:
        """A registered worker's status (``running``, ``stopped``, ``dead``), or ``None``."""
        with self._lock:
            worker = self._workers.get(_canonical(worker_id))
            return worker.status if worker is not None else None

    def clear(self) -> None:
        """Forget every job, dead letter and worker (``on_insert`` callbacks stay)."""
        with self._lock:
            self._jobs.clear()
            self._dead.clear()
            self._workers.clear()
            self._queued.clear()
            self._holders.clear()
            self._locks.clear()
            self._starts.clear()

    # -- WorkerBackend: claiming and finishing ----------------------------------------------

    async def claim_jobs(
        self,
        worker_id: str,
        task_names: Sequence[str],
        queues: Sequence[str] | None,
        limit: int,
        *,
        skip_queues: Sequence[str] = (),
    ) -> list[ClaimedJob]:
        """Take up to ``limit`` due, queued jobs of ``task_names`` (in ``queues`` if given,
        none in ``skip_queues``) that their lock lets run, most urgent first: lowest priority
        number, then earliest ``scheduled_at``."""
        owner = _canonical(worker_id)
        names = set(task_names)
        scope = None if queues is None else set(queues)
        skipped = set(skip_queues)
        with self._lock:
            if limit <= 0 or not self._may_claim(owner):
                return []
            now = self._now()
            due = [
                job
                for job in self._due(now, scope)
                if job.task_name in names and job.queue not in skipped
            ]
            chosen = heapq.nsmallest(limit, due, key=_claim_order)
            return self._take(chosen, owner, now)

    def _may_claim(self, owner: str) -> bool:
        # Marked dead or stopped: nothing until it re-registers under a new id.
        registered = self._workers.get(owner)
        return registered is None or registered.status not in ("dead", "stopped")

    def _due(self, now: datetime, scope: set[str] | None) -> list[_Job]:
        """Queued jobs due by ``now`` (in ``scope``'s queues) that their lock lets run."""
        return [
            job
            for job in map(self._jobs.__getitem__, self._queued)
            if job.scheduled_at <= now
            and (scope is None or job.queue in scope)
            and self._lock_free(job)
        ]

    def _take(self, chosen: Sequence[_Job], owner: str, now: datetime) -> list[ClaimedJob]:
        for job in chosen:
            self._set_status(job, JobStatus.PROCESSING)
            job.attempts += 1
            job.claimed_at = now
            job.started_at = None
            job.finished_at = None
            job.worker_id = owner
        return [job.claimed(owner) for job in chosen]

    async def claim_limited_jobs(
        self, worker_id: str, limits: ClaimLimits, wanted: int
    ) -> LimitedClaim:
        """Take up to ``wanted`` due jobs of limited tasks and queues, within their limits."""
        owner = _canonical(worker_id)
        with self._lock:
            if wanted <= 0 or not limits or not self._may_claim(owner):
                return LimitedClaim([])
            now = self._now()
            usage = self._usage(limits, now)
            free = room(limits, usage, wanted)
            scope = None if limits.scope is None else set(limits.scope)
            served = set(limits.served)
            due = sorted(
                (
                    job
                    for job in self._due(now, scope)
                    if job.task_name in served and limits.limits_job(job.task_name, job.queue)
                ),
                key=_claim_order,
            )
            ids, _ = pick(limits, [(job.id, job.task_name, job.queue) for job in due], free, wanted)
            chosen = [self._jobs[job_id] for job_id in ids]
            counts = started_per_key(limits, [(job.task_name, job.queue) for job in chosen])
            for key, count in counts.items():
                self._starts.setdefault(key, []).append((now, count))
            claimed = self._take(chosen, owner, now)
            moment = rate_frees_at(limits, self._usage(limits, now), free)
            retry_after = None if moment is None else max((moment - now).total_seconds(), 0.001)
            return LimitedClaim(claimed, retry_after)

    def _usage(self, limits: ClaimLimits, now: datetime) -> dict[str, Usage]:
        """How full each limit is at ``now`` (starts out of their window forgotten)."""
        usage: dict[str, Usage] = {}
        for keyed in limits.keyed:
            running = 0
            if keyed.limit.concurrency is not None:
                running = sum(
                    1
                    for job in self._jobs.values()
                    if job.status is JobStatus.PROCESSING
                    and (job.task_name if keyed.kind == "task" else job.queue) == keyed.name
                )
            starts: list[tuple[datetime, int]] = []
            if keyed.limit.rate is not None:
                since = now - timedelta(seconds=keyed.limit.rate.period)
                starts = [entry for entry in self._starts.get(keyed.key, []) if entry[0] > since]
                self._starts[keyed.key] = starts
            usage[keyed.key] = Usage(
                running, sum(count for _, count in starts), starts[0][0] if starts else None
            )
        return usage

    async def complete_jobs(
        self,
        worker_id: str,
        done: Sequence[tuple[str, int, str | None]],
        started: Sequence[tuple[str, int]] = (),
    ) -> int:
        """Mark jobs done: ``done`` holds ``(id, attempt, result_json)``; returns how many
        passed the fence. ``started`` jobs get their start recorded (see ``start_jobs``)."""
        for _, _, result in done:
            _loads(result)  # an invalid result fails the whole batch, as the UPDATE would
        applied = 0
        with self._lock:
            now = self._now()
            self._start(worker_id, started, now)
            for job_id, attempt, result in done:
                job = self._fenced(worker_id, job_id, attempt)
                if job is None:
                    continue
                self._set_status(job, JobStatus.DONE)
                job.started_at = job.started_at or now
                job.suspicion = Suspicion.NONE
                job.finished_at = now
                job.result_json = result
                applied += 1
        return applied

    async def start_jobs(self, worker_id: str, jobs: Sequence[tuple[str, int]]) -> int:
        """Record that claimed jobs started (a start already recorded is kept); returns how
        many passed the fence."""
        with self._lock:
            return self._start(worker_id, jobs, self._now())

    def _start(self, worker_id: str, jobs: Sequence[tuple[str, int]], now: datetime) -> int:
        applied = 0
        for job_id, attempt in jobs:
            job = self._fenced(worker_id, job_id, attempt)
            if job is not None:
                job.started_at = job.started_at or now
                job.suspicion = Suspicion.NONE
                applied += 1
        return applied

    async def retry_job(
        self, worker_id: str, job_id: str, attempt: int, delay: float, error: dict[str, Any]
    ) -> bool:
        """Back to the queue ``delay`` seconds from the clock's now, ``error`` appended."""
        entry = json.dumps(error)
        with self._lock:
            job = self._fenced(worker_id, job_id, attempt)
            if job is None:
                return False
            self._back_or_aborted(job)
            job.scheduled_at = _shifted(self._now(), delay)
            job.worker_id = None
            self._append_error(job, entry)
            return True

    async def dead_letter_job(
        self, worker_id: str, job_id: str, attempt: int, error: dict[str, Any], reason: str
    ) -> bool:
        """Move the job to the dead letters with ``error`` appended to its history."""
        entry = json.dumps(error)
        with self._lock:
            job = self._fenced(worker_id, job_id, attempt)
            if job is None:
                return False
            self._dead_letter(job, self._now(), entry, reason)
            return True

    async def snooze_job(
        self, worker_id: str, job_id: str, attempt: int, delay: float, entry: dict[str, Any]
    ) -> bool:
        """Back to the queue ``delay`` seconds from now, the attempt given back, the snooze
        counted, ``entry`` appended to the history."""
        text = json.dumps(entry)
        with self._lock:
            job = self._fenced(worker_id, job_id, attempt)
            if job is None:
                return False
            self._requeue_uncharged(job)
            job.scheduled_at = _shifted(self._now(), delay)
            job.snoozes += 1
            self._append_error(job, text)
            return True

    async def cancel_running_job(
        self,
        worker_id: str,
        job_id: str,
        attempt: int,
        entry: dict[str, Any],
        result_json: str | None = None,
    ) -> bool:
        """End a running job ``cancelled`` (soniq.Cancel, or an abort), ``entry`` appended."""
        text = json.dumps(entry)
        _loads(result_json)
        with self._lock:
            job = self._fenced(worker_id, job_id, attempt)
            if job is None:
                return False
            now = self._now()
            self._set_status(job, JobStatus.CANCELLED)
            job.started_at = job.started_at or now
            job.finished_at = now
            job.suspicion = Suspicion.NONE
            job.result_json = result_json
            self._append_error(job, text)
            return True

    async def aborts_requested(self, worker_id: str) -> list[tuple[str, str, datetime | None]]:
        """The running jobs of ``worker_id`` whose abort was requested: (id, by, when)."""
        owner = _canonical(worker_id)
        with self._lock:
            return [
                (job.id, job.abort_requested_by or "", job.abort_requested_at)
                for job in self._jobs.values()
                if job.status is JobStatus.PROCESSING
                and job.worker_id == owner
                and job.abort_requested_at is not None
            ]

    async def release_jobs(self, worker_id: str, jobs: Sequence[tuple[str, int]]) -> int:
        """Put interrupted jobs back without charging their attempt; returns how many."""
        applied = 0
        with self._lock:
            for job_id, attempt in jobs:
                job = self._fenced(worker_id, job_id, attempt)
                if job is not None:
                    self._requeue_uncharged(job)
                    applied += 1
        return applied

    async def release_strays(
        self, worker_id: str, running: Sequence[str], older_than: float
    ) -> int:
        """Requeue (uncharged) jobs ``worker_id`` holds but is not running, claimed more than
        ``older_than`` seconds ago."""
        owner = _canonical(worker_id)
        keep = {_canonical(job_id) for job_id in running}
        released = 0
        with self._lock:
            cutoff = _shifted(self._now(), -older_than)
            for job in list(self._jobs.values()):
                if (
                    job.status is JobStatus.PROCESSING
                    and job.worker_id == owner
                    and job.id not in keep
                    and job.claimed_at is not None
                    and job.claimed_at < cutoff
                ):
                    self._requeue_uncharged(job)
                    released += 1
        return released

    # -- WorkerBackend: presence ------------------------------------------------------------

    async def register_worker(self, info: WorkerInfo, lock_key: int | None) -> None:
        """Record the worker as running; registering an id again revives it (as the
        ``ON CONFLICT`` update does: status, heartbeat and lock key only), unless it was
        found dead: a dead row stays dead."""
        key = _canonical(info.id)
        with self._lock:
            now = self._now()
            worker = self._workers.get(key)
            if worker is None:
                self._workers[key] = _Worker(info, RUNNING, now, now, None, lock_key)
            elif worker.status != DEAD:
                worker.status = RUNNING
                worker.last_heartbeat_at = now
                worker.lock_key = lock_key

    async def heartbeat(self, worker_id: str) -> str | None:
        """Refresh the heartbeat of a live worker; its status after it (``None`` if unknown).
        A worker found dead (or stopped) is left as it is: a dead row stays dead."""
        with self._lock:
            worker = self._workers.get(_canonical(worker_id))
            if worker is None:
                return None
            if worker.status in (RUNNING, STOPPING):
                worker.last_heartbeat_at = self._now()
            return worker.status

    async def deregister_worker(self, worker_id: str) -> None:
        """Mark the worker stopped (a worker found dead stays dead)."""
        with self._lock:
            worker = self._workers.get(_canonical(worker_id))
            if worker is not None and worker.status != DEAD:
                worker.status = STOPPED
                worker.stopped_at = self._now()

    async def open_session(
        self, *, listen: bool, lock_key: int | None = None
    ) -> WorkerSessionProtocol:
        """Refused: this backend has no session (``supports_listen`` is False, so the worker
        never asks for one)."""
        raise ConfigurationError(
            "the memory backend has no worker session (no LISTEN/NOTIFY, no liveness lock): "
            "its supports_listen is False, so a worker polls every POLL_INTERVAL instead; to "
            "wake one in the same process, add a callback to MemoryBackend.on_insert"
        )

    async def prepare_for_work(self) -> None:
        """Nothing to prepare."""

    # -- WorkerBackend: recovery and cleanup ------------------------------------------------

    async def recover_stale_workers(
        self, *, heartbeat_timeout: float, lock_grace: float, max_losses: int
    ) -> RecoveryReport:
        """Mark workers silent for over ``heartbeat_timeout`` seconds dead, and put back the
        jobs of every worker that is not running. A job only claimed goes back uncharged
        (suspicion UNCONFIRMED_START). A running one is charged its attempt and a lost worker,
        with a ``soniq.WorkerLost`` error, and runs alone next time (LOST_WHILE_RUNNING); or
        is dead-lettered as :func:`~soniq.core.retry.lost_job_fate` says. ``lock_grace`` is
        unused: there are no liveness locks here."""
        del lock_grace
        requeued = dead_lettered = released = 0
        with self._lock:
            now = self._now()
            cutoff = _shifted(now, -heartbeat_timeout)
            dead = tuple(
                worker_id
                for worker_id, worker in self._workers.items()
                if worker.status in (RUNNING, STOPPING) and worker.last_heartbeat_at < cutoff
            )
            for worker_id in dead:
                self._workers[worker_id].status = DEAD
                self._workers[worker_id].stopped_at = now
            # Also with no dead worker: jobs of workers that stopped (or were pruned) while
            # holding them are put back too.
            running = {wid for wid, worker in self._workers.items() if worker.status == RUNNING}
            lost = [
                job
                for job in self._jobs.values()
                if job.status is JobStatus.PROCESSING and job.worker_id not in running
            ]
            for job in lost:
                if job.started_at is None:
                    # Only claimed (see the PostgreSQL statement): back uncharged, in place.
                    self._requeue_uncharged(job)
                    job.suspicion = max(job.suspicion, Suspicion.UNCONFIRMED_START)
                    released += 1
                    continue
                error = json.dumps(
                    {
                        "attempt": job.attempts,
                        "error_type": "soniq.WorkerLost",
                        "message": "the worker running this job stopped responding",
                        "traceback": "",
                        "worker_id": job.worker_id,
                        "failed_at": now.isoformat(),
                    }
                )
                reason = lost_job_fate(
                    job.attempts, job.max_attempts, job.worker_losses, max_losses
                )
                if reason is not None:
                    self._dead_letter(job, now, error, reason)
                    dead_lettered += 1
                else:
                    self._back_or_aborted(job)
                    job.worker_id = None
                    job.claimed_at = None
                    job.started_at = None
                    job.worker_losses += 1
                    job.suspicion = Suspicion.LOST_WHILE_RUNNING
                    self._append_error(job, error)
                    requeued += 1
        return RecoveryReport(dead, requeued, dead_lettered, released)

    async def prune(self, *, retention: float, batch: int = PRUNE_BATCH) -> int:
        """Delete done and cancelled jobs finished more than ``retention`` seconds ago (and
        workers stopped or dead that long); returns how many jobs went. ``batch`` is accepted
        for the protocol's sake: there is no long lock to avoid here."""
        del batch
        with self._lock:
            cutoff = _shifted(self._now(), -retention)
            finished = [
                job
                for job in self._jobs.values()
                if job.status in (JobStatus.DONE, JobStatus.CANCELLED)
                and job.finished_at is not None
                and job.finished_at < cutoff
            ]
            for job in finished:
                self._delete(job)
            gone = [
                worker_id
                for worker_id, worker in self._workers.items()
                if worker.status in (STOPPED, DEAD)
                and worker.stopped_at is not None
                and worker.stopped_at < cutoff
            ]
            for worker_id in gone:
                del self._workers[worker_id]
        return len(finished)

    # -- OperatorBackend --------------------------------------------------------------------

    def _make_due(self, job_id: str, now: datetime) -> _Job | None:
        """Retry's first step: a queued job becomes due now, a cancelled one goes back to the
        queue unless another live job holds its dedup key."""
        job = self._jobs.get(job_id)
        if job is None or job.status not in (JobStatus.QUEUED, JobStatus.CANCELLED):
            return None
        if job.status is JobStatus.CANCELLED and self._key_taken(job):
            return None
        self._set_status(job, JobStatus.QUEUED)
        job.scheduled_at = now
        job.finished_at = None
        job.abort_requested_at = job.abort_requested_by = None
        return job

    def _cancel(self, job_id: str, now: datetime) -> _Job | None:
        job = self._jobs.get(job_id)
        if job is None or job.status is not JobStatus.QUEUED:
            return None
        self._set_status(job, JobStatus.CANCELLED)
        job.finished_at = now
        return job

    def _request_abort(self, by: str, job_id: str, now: datetime) -> _Job | None:
        """A running job: its abort is requested (the first request's time and author kept);
        its worker stops it."""
        job = self._jobs.get(job_id)
        if job is None or job.status is not JobStatus.PROCESSING:
            return None
        if job.abort_requested_at is None:
            job.abort_requested_at = now
            job.abort_requested_by = by
        return job

    def _requeue(self, job_id: str, now: datetime) -> _Job | None:
        """A dead letter back in the jobs, the same id: its error history (and the count of
        entries dropped from it) kept, its attempts and worker losses reset, due now. Left
        alone while a live job holds its dedup key."""
        dead = self._dead.get(job_id)
        if dead is None or self._key_taken(dead.job):
            return None
        del self._dead[job_id]
        job = dataclasses.replace(
            dead.job,
            attempts=0,
            scheduled_at=now,
            started_at=None,
            finished_at=None,
            worker_id=None,
            result_json=None,
            errors=list(dead.job.errors),
            worker_losses=0,
            suspicion=Suspicion.NONE,
            claimed_at=None,
        )
        self._jobs[job.id] = job
        self._set_status(job, JobStatus.QUEUED)
        return job

    def _forget(self, job_id: str, now: datetime) -> _Job | None:
        dead = self._dead.pop(job_id, None)
        return None if dead is None else dead.job

    def _state(self, job_id: str) -> JobState | None:
        """What ``job_states`` reads to explain a refusal."""
        job = self._jobs.get(job_id)
        if job is not None:
            worker = self._workers.get(job.worker_id) if job.worker_id is not None else None
            return JobState(
                job.id,
                job.status.value,
                None if worker is None else worker.status,
                None if worker is None else f"{worker.info.hostname}:{worker.info.pid}",
                job.status is JobStatus.CANCELLED and self._key_taken(job),
            )
        dead = self._dead.get(job_id)
        if dead is None:
            return None
        return JobState(job_id, JobStatus.DEAD_LETTER.value, None, None, self._key_taken(dead.job))

    def _act(
        self,
        job_ids: Sequence[str],
        steps: Sequence[Callable[[str, datetime], _Job | None]],
        explain: Explain,
        wakes: bool,
    ) -> ActionResult:
        """Each step over the ids the earlier ones left (as the SQL plans run one statement
        after another), one lock hold per batch; then the ids left alone, explained. Within a
        step, ids go in sorted order: of two jobs with the same dedup key, the smaller id is
        the one made live, as in SQL."""
        results: list[ActionResult] = []
        for batch in batches([_canonical(job_id) for job_id in job_ids]):
            with self._lock:
                now = self._now()
                applied: dict[str, str] = {}  # id -> queue
                for step in steps:
                    for job_id in sorted(set(batch) - applied.keys()):
                        job = step(job_id, now)
                        if job is not None:
                            applied[job.id] = job.queue
                refused = {
                    job_id: explain(self._state(job_id))
                    for job_id in batch
                    if job_id not in applied
                }
                queues = frozenset(applied.values()) if wakes else frozenset()
                callbacks = list(self.on_insert) if queues else []
            self._announce(sorted(queues), callbacks)
            results.append(ActionResult(tuple(applied), refused, queues))
        return ActionResult.combine(results)

    def retry_jobs_sync(self, job_ids: Sequence[str]) -> ActionResult:
        """Run now: queued jobs become due, cancelled jobs and dead letters go back to the
        queue; running and done jobs are refused."""
        return self._act(
            job_ids, (self._make_due, self._requeue), operations.why_not_retried, wakes=True
        )

    async def retry_jobs(self, job_ids: Sequence[str]) -> ActionResult:
        return self.retry_jobs_sync(job_ids)

    def cancel_jobs_sync(self, job_ids: Sequence[str]) -> ActionResult:
        """Queued jobs become cancelled."""
        return self._act(job_ids, (self._cancel,), operations.why_not_cancelled, wakes=False)

    async def cancel_jobs(self, job_ids: Sequence[str]) -> ActionResult:
        return self.cancel_jobs_sync(job_ids)

    def abort_jobs_sync(self, job_ids: Sequence[str], by: str) -> ActionResult:
        """Queued jobs become cancelled; running ones get their abort requested."""
        steps = (self._cancel, functools.partial(self._request_abort, by))
        return self._act(job_ids, steps, operations.why_not_aborted, wakes=False)

    async def abort_jobs(self, job_ids: Sequence[str], by: str) -> ActionResult:
        return self.abort_jobs_sync(job_ids, by)

    def requeue_dead_letters_sync(self, job_ids: Sequence[str]) -> ActionResult:
        """Dead letters back to the queue (see ``_requeue``)."""
        return self._act(job_ids, (self._requeue,), operations.why_not_requeued, wakes=True)

    async def requeue_dead_letters(self, job_ids: Sequence[str]) -> ActionResult:
        return self.requeue_dead_letters_sync(job_ids)

    def delete_dead_letters_sync(self, job_ids: Sequence[str]) -> ActionResult:
        return self._act(job_ids, (self._forget,), operations.why_not_deleted, wakes=False)

    async def delete_dead_letters(self, job_ids: Sequence[str]) -> ActionResult:
        return self.delete_dead_letters_sync(job_ids)
