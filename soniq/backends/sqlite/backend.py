"""SQLite storage: the embedded default, for a Django project on SQLite or a standalone file.

Every operation runs on one dedicated thread holding one connection (sqlite3 is blocking), and
every write transaction starts with ``BEGIN IMMEDIATE``: it takes SQLite's write lock up front,
so two worker processes claiming at once are serialized by SQLite itself and a job is never
claimed twice. There is no LISTEN: workers poll, and a worker in the enqueuing process is woken
at once through :mod:`soniq.core.wakeup`.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sqlite3
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any, TypeVar

from soniq.backends import plans
from soniq.backends.base import Row, Statement
from soniq.backends.limit_plans import claim_limited
from soniq.backends.operator_plans import Action, SQLOperatorMixin
from soniq.backends.rows import decode_claimed_rows, to_utc, to_uuid_text
from soniq.backends.schema import missing_table, schema_missing, sqlite_url
from soniq.backends.sqlite import worker_statements as ws
from soniq.backends.sqlite.limit_statements import SQLiteLimitStatements
from soniq.backends.sqlite.scheduler_ops import SQLiteSchedulerOps
from soniq.backends.sqlite.statements import SQLiteDialect, format_time, utc_now
from soniq.core import wakeup
from soniq.core.errors import ConfigurationError, InvalidConnectionError, SchemaMissingError
from soniq.core.limits import ClaimLimits, LimitedClaim
from soniq.core.operations import ActionResult
from soniq.core.records import ClaimedJob, JobInfo, NewJob, RecoveryReport, WorkerInfo
from soniq.core.retry import lost_job_fate
from soniq.core.settings import SoniqSettings

T = TypeVar("T")
PRUNE_BATCH = 5000
BUSY_TIMEOUT_MS = 30_000


def path_from_url(url: str) -> str:
    """``sqlite:///relative.db`` or ``sqlite:////absolute/path.db`` -> the file path."""
    prefix = "sqlite:///"
    if not url.startswith(prefix) or len(url) == len(prefix):
        raise ConfigurationError(
            f"a SQLite DATABASE_URL looks like sqlite:///relative.db or sqlite:////abs.db, "
            f"got {url!r}"
        )
    return url[len(prefix) :]


def _fetch(connection: sqlite3.Connection, statement: Statement) -> list[Row]:
    return connection.execute(statement.sql, tuple(statement.params)).fetchall()


def _count(connection: sqlite3.Connection, statement: Statement) -> int:
    return connection.execute(statement.sql, tuple(statement.params)).rowcount


def _most_urgent_first(jobs: list[ClaimedJob]) -> list[ClaimedJob]:
    """The worker starts claimed jobs in this order (SQLite's RETURNING has none)."""
    jobs.sort(key=lambda job: (job.priority, job.scheduled_at or datetime.min))
    return jobs


def _hex(value: str) -> str:
    return uuid.UUID(value).hex


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, it is just not ours
    return True


class SQLiteBackend(SQLiteSchedulerOps, SQLOperatorMixin):
    supports_listen = False
    supports_transactional_enqueue = False

    def __init__(
        self,
        path: str,
        *,
        clock: Callable[[], datetime] = utc_now,
        settings: SoniqSettings | None = None,
    ) -> None:
        if not path:
            raise ConfigurationError("SQLiteBackend needs a database file path")
        self.path = path
        self.clock = clock
        self.settings = settings if settings is not None else SoniqSettings()
        self.dialect = SQLiteDialect(clock)
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="soniq-sqlite")
        self._connection: sqlite3.Connection | None = None
        self.hostname = socket.gethostname()

    # -- the connection thread --------------------------------------------------------------

    def _conn(self) -> sqlite3.Connection:
        if self._connection is None:
            # isolation_level=None: no implicit transactions; ours are explicit.
            connection = sqlite3.connect(
                self.path,
                timeout=BUSY_TIMEOUT_MS / 1000,
                isolation_level=None,
                check_same_thread=False,
                # Django's in-memory test databases are shared-cache URIs (file:...?mode=memory).
                uri=self.path.startswith("file:"),
            )
            connection.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            self._connection = connection
        return self._connection

    def _write(self, body: Callable[[sqlite3.Connection], T]) -> T:
        connection = self._conn()
        connection.execute("BEGIN IMMEDIATE")
        try:
            result = body(connection)
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        connection.execute("COMMIT")
        return result

    def _read(self, body: Callable[[sqlite3.Connection], T]) -> T:
        return body(self._conn())

    async def _run(self, function: Callable[..., T], *args: Any) -> T:
        try:
            return await asyncio.get_running_loop().run_in_executor(self._thread, function, *args)
        except sqlite3.OperationalError as error:
            missing = self._schema_error(error)
            if missing is None:
                raise
            raise missing from error

    def _run_sync(self, function: Callable[..., T], *args: Any) -> T:
        try:
            return self._thread.submit(function, *args).result()
        except sqlite3.OperationalError as error:
            missing = self._schema_error(error)
            if missing is None:
                raise
            raise missing from error

    def _schema_error(self, error: sqlite3.OperationalError) -> SchemaMissingError | None:
        """``SchemaMissingError`` for "no such table: soniq_..." (soniq's tables not created)."""
        table = missing_table(error)
        return None if table is None else schema_missing(table, sqlite_url(self.path))

    def _now(self) -> str:
        return format_time(self.clock())

    @staticmethod
    def _executor(connection: sqlite3.Connection) -> plans.SyncExecute:
        def execute(statement: Statement) -> list[Row]:
            # The dialect writes %s placeholders (for Django's cursor); sqlite3 wants ?.
            cursor = connection.execute(statement.sql.replace("%s", "?"), tuple(statement.params))
            return cursor.fetchall()

        return execute

    # -- enqueue and inspect ----------------------------------------------------------------

    def _insert(self, jobs: Sequence[NewJob]) -> list[str]:
        ids = self._write(
            lambda c: plans.run_sync(plans.insert_jobs(self.dialect, jobs), self._executor(c))
        )
        wakeup.notify({job.queue for job in jobs})
        return ids

    @staticmethod
    def _no_connection(connection: Any) -> None:
        if connection is not None:
            raise InvalidConnectionError(
                "connection= is not supported by the standalone SQLite backend; inside Django, "
                "soniq uses Django's connection and joins transaction.atomic()"
            )

    async def insert_jobs(self, jobs: Sequence[NewJob], *, connection: Any = None) -> list[str]:
        self._no_connection(connection)
        return await self._run(self._insert, jobs)

    def insert_jobs_sync(self, jobs: Sequence[NewJob], *, connection: Any = None) -> list[str]:
        self._no_connection(connection)
        return self._run_sync(self._insert, jobs)

    def _get(self, job_id: str) -> JobInfo | None:
        return self._read(
            lambda c: plans.run_sync(plans.get_job(self.dialect, job_id), self._executor(c))
        )

    async def get_job(self, job_id: str) -> JobInfo | None:
        return await self._run(self._get, job_id)

    def get_job_sync(self, job_id: str) -> JobInfo | None:
        return self._run_sync(self._get, job_id)

    def _apply(self, action: Action, job_ids: Sequence[str]) -> ActionResult:
        result = self._write(
            lambda c: plans.run_sync(action(self.dialect, job_ids), self._executor(c))
        )
        if result.queues:
            wakeup.notify(result.queues)
        return result

    async def _operate(self, action: Action, job_ids: Sequence[str]) -> ActionResult:
        return await self._run(self._apply, action, job_ids)

    def _operate_sync(self, action: Action, job_ids: Sequence[str]) -> ActionResult:
        return self._run_sync(self._apply, action, job_ids)

    async def close(self) -> None:
        def close_connection() -> None:
            if self._connection is not None:
                self._connection.close()
                self._connection = None

        await self._run(close_connection)
        self._thread.shutdown(wait=False)

    # -- the worker -------------------------------------------------------------------------

    async def prepare_for_work(self) -> None:
        return None

    async def open_session(self, *, listen: bool, lock_key: int | None = None) -> Any:
        raise ConfigurationError("SQLite has no sessions to LISTEN on; the worker polls")

    async def claim_jobs(
        self,
        worker_id: str,
        task_names: Sequence[str],
        queues: Sequence[str] | None,
        limit: int,
        *,
        skip_queues: Sequence[str] = (),
    ) -> list[ClaimedJob]:
        statement = ws.claim_jobs(
            worker_id=worker_id,
            task_names=task_names,
            queues=queues,
            limit=limit,
            now=self._now(),
            skip_queues=skip_queues,
        )
        rows = await self._run(self._write, lambda c: _fetch(c, statement))
        return _most_urgent_first(decode_claimed_rows(rows, worker_id))

    async def claim_limited_jobs(
        self, worker_id: str, limits: ClaimLimits, wanted: int
    ) -> LimitedClaim:
        """Claim up to ``wanted`` jobs of limited tasks and queues, within their limits (one
        write transaction: SQLite's single writer serialises it with every other claim)."""
        if wanted <= 0 or not limits:
            return LimitedClaim([])

        def body(connection: sqlite3.Connection) -> LimitedClaim:
            # The clock is read once the write lock is held: the starts are counted, and
            # recorded, at the moment the claim decides them.
            statements = SQLiteLimitStatements(self.clock())
            plan = claim_limited(statements, limits, worker_id, wanted)
            return plans.run_sync(plan, self._executor(connection))

        claimed: LimitedClaim = await self._run(self._write, body)
        jobs = _most_urgent_first(decode_claimed_rows(claimed.jobs, worker_id))
        return replace(claimed, jobs=jobs)

    async def complete_jobs(
        self,
        worker_id: str,
        done: Sequence[tuple[str, int, str | None]],
        started: Sequence[tuple[str, int]] = (),
    ) -> int:
        now = self._now()
        statements = [
            ws.complete_job(worker_id, job_id, attempt, result, now)
            for job_id, attempt, result in done
        ]
        starts = [ws.start_job(worker_id, job_id, attempt, now) for job_id, attempt in started]

        def body(connection: sqlite3.Connection) -> int:
            for statement in starts:
                _count(connection, statement)
            return sum(_count(connection, statement) for statement in statements)

        return await self._run(self._write, body)

    async def start_jobs(self, worker_id: str, jobs: Sequence[tuple[str, int]]) -> int:
        now = self._now()
        starts = [ws.start_job(worker_id, job_id, attempt, now) for job_id, attempt in jobs]
        return await self._run(
            self._write, lambda c: sum(_count(c, statement) for statement in starts)
        )

    async def retry_job(
        self, worker_id: str, job_id: str, attempt: int, delay: float, error: dict[str, Any]
    ) -> bool:
        run_at = format_time(self.clock() + timedelta(seconds=delay))
        statement = ws.retry_job(
            worker_id,
            job_id,
            attempt,
            run_at,
            json.dumps(error),
            history_limit=self.settings.error_history_limit,
        )
        count = await self._run(self._write, lambda c: _count(c, statement))
        if count:
            wakeup.notify(())
        return bool(count)

    async def dead_letter_job(
        self, worker_id: str, job_id: str, attempt: int, error: dict[str, Any], reason: str
    ) -> bool:
        copy, delete = ws.dead_letter_job(
            worker_id,
            job_id,
            attempt,
            json.dumps(error),
            reason,
            self._now(),
            history_limit=self.settings.error_history_limit,
        )

        def body(connection: sqlite3.Connection) -> bool:
            if not _count(connection, copy):
                return False
            _count(connection, delete)
            return True

        return await self._run(self._write, body)

    async def snooze_job(
        self, worker_id: str, job_id: str, attempt: int, delay: float, entry: dict[str, Any]
    ) -> bool:
        run_at = format_time(self.clock() + timedelta(seconds=delay))
        statement = ws.snooze_job(
            worker_id,
            job_id,
            attempt,
            run_at,
            json.dumps(entry),
            history_limit=self.settings.error_history_limit,
        )
        count = await self._run(self._write, lambda c: _count(c, statement))
        if count:
            wakeup.notify(())
        return bool(count)

    async def cancel_running_job(
        self,
        worker_id: str,
        job_id: str,
        attempt: int,
        entry: dict[str, Any],
        result_json: str | None = None,
    ) -> bool:
        statement = ws.cancel_running_job(
            worker_id,
            job_id,
            attempt,
            json.dumps(entry),
            result_json,
            self._now(),
            history_limit=self.settings.error_history_limit,
        )
        return bool(await self._run(self._write, lambda c: _count(c, statement)))

    async def aborts_requested(self, worker_id: str) -> list[tuple[str, str, datetime | None]]:
        statement = ws.aborts_requested(worker_id)
        rows = await self._run(self._read, lambda c: _fetch(c, statement))
        return [(to_uuid_text(row[0]) or "", row[1] or "", to_utc(row[2])) for row in rows]

    async def release_jobs(self, worker_id: str, jobs: Sequence[tuple[str, int]]) -> int:
        worker = _hex(worker_id)

        def body(connection: sqlite3.Connection) -> int:
            return sum(
                connection.execute(ws.RELEASE, (worker, attempt, _hex(job_id))).rowcount
                for job_id, attempt in jobs
            )

        return await self._run(self._write, body) if jobs else 0

    async def register_worker(self, info: WorkerInfo, lock_key: int | None) -> None:
        now = self._now()
        params = (
            _hex(info.id),
            info.hostname,
            info.pid,
            json.dumps(None if info.queues is None else list(info.queues)),
            json.dumps(list(info.task_names)),
            info.concurrency,
            now,
            now,
            info.version,
        )
        await self._run(self._write, lambda c: c.execute(ws.REGISTER_WORKER, params))

    async def heartbeat(self, worker_id: str) -> str | None:
        key = _hex(worker_id)

        def beat(connection: sqlite3.Connection) -> list[Any]:
            connection.execute(ws.HEARTBEAT, (self._now(), key))
            return connection.execute(ws.WORKER_STATUS, (key,)).fetchall()

        rows = await self._run(self._write, beat)
        return str(rows[0][0]) if rows else None

    async def deregister_worker(self, worker_id: str) -> None:
        params = (self._now(), _hex(worker_id))
        await self._run(self._write, lambda c: c.execute(ws.DEREGISTER_WORKER, params))

    async def recover_stale_workers(
        self, *, heartbeat_timeout: float, lock_grace: float, max_losses: int
    ) -> RecoveryReport:
        return await self._run(
            self._write, lambda c: self._recover(c, heartbeat_timeout, lock_grace, max_losses)
        )

    def _recover(
        self, connection: sqlite3.Connection, timeout: float, grace: float, max_losses: int
    ) -> RecoveryReport:
        now = self.clock()
        dead: list[str] = []
        for worker_id, hostname, pid, last_heartbeat in connection.execute(ws.LIVE_WORKERS):
            silent_for = (now - (to_utc(last_heartbeat) or now)).total_seconds()
            # All SQLite workers share one machine: a vanished process is dead at once (after
            # the grace period), without waiting for the heartbeat timeout.
            gone = hostname == self.hostname and not _pid_alive(int(pid))
            if silent_for > timeout or (gone and silent_for > grace):
                dead.append(worker_id)
                connection.execute(ws.MARK_WORKER_DEAD, (format_time(now), worker_id))
        requeued = dead_lettered = released = 0
        stamp = format_time(now)
        limit = self.settings.error_history_limit
        lost = connection.execute(ws.LOST_JOBS, (json.dumps(dead),)).fetchall()
        for job_id, attempts, max_attempts, worker_id, losses, ran in lost:
            if not ran:
                connection.execute(ws.RELEASE_LOST, (job_id,))
                released += 1
                continue
            error = json.dumps(
                {
                    "attempt": attempts,
                    "error_type": "soniq.WorkerLost",
                    "message": "the worker running this job stopped responding",
                    "traceback": "",
                    "worker_id": to_uuid_text(worker_id),
                    "failed_at": now.isoformat(),
                }
            )
            reason = lost_job_fate(attempts, max_attempts, losses, max_losses)
            if reason is not None:
                for statement in ws.dead_letter_lost(job_id, error, reason, stamp, limit):
                    _count(connection, statement)
                dead_lettered += 1
            else:
                _count(connection, ws.requeue_lost(job_id, error, limit))
                requeued += 1
        return RecoveryReport(
            tuple(to_uuid_text(worker) or "" for worker in dead), requeued, dead_lettered, released
        )

    async def release_strays(
        self, worker_id: str, running: Sequence[str], older_than: float
    ) -> int:
        before = format_time(self.clock() - timedelta(seconds=older_than))
        params = (_hex(worker_id), json.dumps([_hex(job) for job in running]), before)
        return await self._run(self._write, lambda c: c.execute(ws.RELEASE_STRAYS, params).rowcount)

    async def prune(self, *, retention: float, batch: int = PRUNE_BATCH) -> int:
        before = format_time(self.clock() - timedelta(seconds=retention))
        removed = 0
        while True:
            count: int = await self._run(
                self._write, lambda c: c.execute(ws.PRUNE_FINISHED, (before, batch)).rowcount
            )
            removed += count
            if count < batch:
                break
        await self._run(self._write, lambda c: c.execute(ws.PRUNE_WORKERS, (before,)))
        return removed
