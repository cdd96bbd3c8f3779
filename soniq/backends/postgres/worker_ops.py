"""The worker's storage operations on PostgreSQL, mixed into :class:`PostgresBackend`."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

import psycopg

from soniq.backends.base import Row, Statement
from soniq.backends.limit_plans import claim_limited
from soniq.backends.plans import run_async
from soniq.backends.postgres import worker_statements as ws
from soniq.backends.postgres.conninfo import server_keepalives
from soniq.backends.postgres.limit_statements import PostgresLimitStatements
from soniq.backends.postgres.session import WorkerSession
from soniq.backends.rows import decode_claimed_rows, to_uuid_text
from soniq.core.limits import ClaimLimits, LimitedClaim
from soniq.core.records import ClaimedJob, RecoveryReport, WorkerInfo
from soniq.core.settings import SoniqSettings

PRUNE_BATCH = 5000
# A claim can lose a race for a lock (the unique index soniq_jobs_one_running_per_lock):
# another claim took a job of the same lock that this one's snapshot did not show running
# (a job queued ahead of it committed in between). The claim fails as a whole; made again, it
# sees that job running and passes the lock over.
LOCK_RACE_ROUNDS = 3


class PostgresWorkerOps:
    """Needs ``_fetch`` (run one statement on a pooled connection) and ``conninfo``."""

    conninfo: str
    connection_options: dict[str, Any]
    settings: SoniqSettings

    async def _fetch(self, statement: Statement) -> list[Row]:
        raise NotImplementedError  # provided by PostgresBackend

    async def _in_transaction(self, body: Any) -> Any:
        raise NotImplementedError  # provided by PostgresBackend

    async def claim_jobs(
        self,
        worker_id: str,
        task_names: Sequence[str],
        queues: Sequence[str] | None,
        limit: int,
        now: datetime | None = None,
        *,
        skip_queues: Sequence[str] = (),
    ) -> list[ClaimedJob]:
        statement = ws.claim_jobs(
            worker_id=worker_id,
            task_names=task_names,
            queues=queues,
            limit=limit,
            now=now,
            skip_queues=skip_queues,
        )
        for round_ in range(LOCK_RACE_ROUNDS):
            try:
                rows = await self._fetch(statement)
                break
            except psycopg.errors.UniqueViolation:
                if round_ == LOCK_RACE_ROUNDS - 1:
                    raise
        # Most urgent first: the statement orders them.
        return decode_claimed_rows(rows, worker_id)

    async def claim_limited_jobs(
        self, worker_id: str, limits: ClaimLimits, wanted: int, now: datetime | None = None
    ) -> LimitedClaim:
        """Claim up to ``wanted`` jobs of limited tasks and queues, within their limits, in
        one transaction serialised with every other limited claim on those limits."""
        if wanted <= 0 or not limits:
            return LimitedClaim([])
        for round_ in range(LOCK_RACE_ROUNDS):
            plan = claim_limited(PostgresLimitStatements(), limits, worker_id, wanted, now)
            try:
                claimed: LimitedClaim = await self._in_transaction(
                    lambda fetch, plan=plan: run_async(plan, fetch)
                )
                break
            except psycopg.errors.UniqueViolation:
                if round_ == LOCK_RACE_ROUNDS - 1:
                    raise
        return replace(claimed, jobs=decode_claimed_rows(claimed.jobs, worker_id))

    async def complete_jobs(
        self,
        worker_id: str,
        done: Sequence[tuple[str, int, str | None]],
        started: Sequence[tuple[str, int]] = (),
    ) -> int:
        [[_, completed, _]] = await self._fetch(
            ws.record_progress(worker_id, started=started, done=done)
        )
        return int(completed)

    async def start_jobs(self, worker_id: str, jobs: Sequence[tuple[str, int]]) -> int:
        [[began, _, _]] = await self._fetch(ws.record_progress(worker_id, started=jobs))
        return int(began)

    async def retry_job(
        self, worker_id: str, job_id: str, attempt: int, delay: float, error: dict[str, Any]
    ) -> bool:
        rows = await self._fetch(
            ws.retry_job(
                worker_id,
                job_id,
                attempt,
                delay,
                json.dumps(error),
                history_limit=self.settings.error_history_limit,
            )
        )
        return bool(rows)

    async def dead_letter_job(
        self, worker_id: str, job_id: str, attempt: int, error: dict[str, Any], reason: str
    ) -> bool:
        rows = await self._fetch(
            ws.dead_letter_job(
                worker_id,
                job_id,
                attempt,
                json.dumps(error),
                reason,
                history_limit=self.settings.error_history_limit,
            )
        )
        return bool(rows)

    async def snooze_job(
        self, worker_id: str, job_id: str, attempt: int, delay: float, entry: dict[str, Any]
    ) -> bool:
        rows = await self._fetch(
            ws.snooze_job(
                worker_id,
                job_id,
                attempt,
                delay,
                json.dumps(entry),
                history_limit=self.settings.error_history_limit,
            )
        )
        return bool(rows)

    async def cancel_running_job(
        self,
        worker_id: str,
        job_id: str,
        attempt: int,
        entry: dict[str, Any],
        result_json: str | None = None,
    ) -> bool:
        rows = await self._fetch(
            ws.cancel_running_job(
                worker_id,
                job_id,
                attempt,
                json.dumps(entry),
                result_json,
                history_limit=self.settings.error_history_limit,
            )
        )
        return bool(rows)

    async def aborts_requested(self, worker_id: str) -> list[tuple[str, str, datetime | None]]:
        rows = await self._fetch(ws.aborts_requested(worker_id))
        return [(to_uuid_text(row[0]) or "", row[1] or "", row[2]) for row in rows]

    async def release_jobs(self, worker_id: str, jobs: Sequence[tuple[str, int]]) -> int:
        if not jobs:
            return 0
        return len(await self._fetch(ws.release_jobs(worker_id, jobs)))

    async def register_worker(self, info: WorkerInfo, lock_key: int | None) -> None:
        await self._fetch(
            ws.register_worker(
                worker_id=info.id,
                hostname=info.hostname,
                pid=info.pid,
                queues_json=json.dumps(None if info.queues is None else list(info.queues)),
                task_names_json=json.dumps(list(info.task_names)),
                concurrency=info.concurrency,
                version=info.version,
                lock_key=lock_key,
            )
        )

    async def heartbeat(self, worker_id: str) -> str | None:
        """The worker row's status after the heartbeat (``None`` if the row is gone)."""
        rows = await self._fetch(ws.heartbeat(worker_id))
        return str(rows[0][0]) if rows else None

    async def deregister_worker(self, worker_id: str) -> None:
        await self._fetch(ws.deregister_worker(worker_id))

    async def open_session(self, *, listen: bool, lock_key: int | None = None) -> WorkerSession:
        # The server drops this session (and the liveness lock it holds) within seconds of
        # losing the worker, not after the system's two-hour keepalive default.
        return await WorkerSession.open(
            self.conninfo,
            listen=listen,
            lock_key=lock_key,
            options=self.connection_options,
            setup=server_keepalives(self.settings, local=False),
        )

    async def recover_stale_workers(
        self, *, heartbeat_timeout: float, lock_grace: float, max_losses: int
    ) -> RecoveryReport:
        """Find dead workers and put their jobs back, in one statement; one process at a
        time (the others skip the pass rather than wait)."""
        [[led, dead, dead_lettered, requeued, released]] = await self._fetch(
            ws.recovery_pass(
                heartbeat_timeout=heartbeat_timeout,
                lock_grace=lock_grace,
                max_losses=max_losses,
                history_limit=self.settings.error_history_limit,
            )
        )
        if not led:
            return RecoveryReport()
        return RecoveryReport(
            tuple(to_uuid_text(worker) or "" for worker in dead),
            int(requeued),
            int(dead_lettered),
            int(released),
        )

    async def prune(self, *, retention: float, batch: int = PRUNE_BATCH) -> int:
        """Delete finished jobs older than ``retention`` seconds, ``batch`` rows at a time
        (short transactions, no long lock on a big table)."""
        if batch < 1:
            raise ValueError(f"batch must be at least 1, got {batch}")
        removed = 0
        while True:
            count = await self._execute_count(ws.prune_finished(retention, batch))
            removed += count
            if count < batch:
                break
        await self._execute_count(ws.prune_workers(retention))
        await self._execute_count(ws.prune_schedule_fires(retention))
        return removed

    async def release_strays(
        self, worker_id: str, running: Sequence[str], older_than: float
    ) -> int:
        return len(await self._fetch(ws.release_strays(worker_id, running, older_than)))

    async def prepare_for_work(self) -> None:
        """Once per worker start: give a never-analyzed jobs table statistics."""
        await self._execute_count(ws.analyze_if_never_analyzed())

    async def _execute_count(self, statement: Statement) -> int:
        raise NotImplementedError  # provided by PostgresBackend
