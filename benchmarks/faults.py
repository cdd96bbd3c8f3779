"""Fault scenarios on real ``soniq worker`` processes: poison jobs, SIGKILL chaos, SIGSTOP.

    .venv/bin/python benchmarks/faults.py [--url postgresql://postgres@127.0.0.1:5432/postgres]
                                          [--only poison-exit,chaos,...] [--quick] [--seed 1]

Each scenario gets a fresh scratch database named ``soniq_bench_faults_<scenario>`` (created,
migrated with the testproject's settings in a ``python -c`` subprocess through
``_scratch.setup_django``, and dropped at the end), with one extra table, ``fault_runs``: every
job of ``benchmarks/fault_jobs.py`` inserts a ``start`` row when it begins and an ``end`` row
when it is done, each on a connection of its own, so runs are counted from outside the workers.
A run is a ``start`` row paired with the ``end`` row of the same job, process, worker id and
attempt; a ``start`` without an ``end`` is an interrupted run.

Workers are ``.venv/bin/soniq worker --concurrency N`` processes, started as
``benchmarks/worker.py`` does (``SONIQ_JOBS_MODULES=fault_jobs``, ``benchmarks/`` on
``PYTHONPATH``), each in a session of its own (a Ctrl-C reaches only this script) and with
``PR_SET_PDEATHSIG`` set, so that none outlives this script, however it ends. Every worker
process writes its own log file in a temporary directory, printed when a scenario fails. A
*supervised* set of workers is kept at N processes the way systemd's ``Restart=always`` would:
a worker that exits, for whatever reason, is started again 0.2 s later; the restarts are
counted as crashes. At the end every worker gets SIGCONT and SIGTERM, then SIGKILL after 15 s.

Settings for every scenario unless it says otherwise: ``SONIQ_HEARTBEAT_INTERVAL=1``,
``SONIQ_HEARTBEAT_TIMEOUT=30``, ``SONIQ_POLL_INTERVAL=1``, ``SONIQ_ERROR_RETRY_DELAY=0.5``, and
``SONIQ_SHUTDOWN_TIMEOUT=5`` (only so that the final stop is quick: nothing runs by then).
Jobs are enqueued with ``fault_jobs.app`` on a connection of this script (``connection=``);
jobs enqueued "together" are inserted in one transaction, so that they become visible at once.
Waits poll the database every 0.1 s against a deadline; the only fixed sleeps are the chaos
timings (intervals between kills, the length of a SIGSTOP pause). Times are measured on this
process's monotonic clock unless said otherwise. --quick scales the scenarios down for a smoke
run (numbers in brackets below).

1. ``poison-exit``: one supervised worker at concurrency 2. One ``poison_exit`` job (records
   its start, then ``os._exit(1)``) and 20 [6] ``innocent(seconds=2)`` are enqueued together,
   the poison first (same priority, so it is claimed first). Runs until the poison is in
   ``soniq_dead_letter_jobs`` and every innocent is done or dead-lettered (deadline 180 s).
   Reported: the poison's dead-letter reason and the time from the enqueue (commit) to the
   poll that saw it there; crashes (restarts); innocents done, dead-lettered, run more than
   once (from ``fault_runs``), and charged a lost worker (``worker_losses`` > 0, the maximum
   too). Required: the poison dead-lettered with reason ``worker_lost``; no innocent
   dead-lettered; every innocent done.
2. ``chaos``: three supervised workers at concurrency 4; 150 [40] ``innocent`` jobs whose
   durations are drawn from uniform(1, 2) s with the seed. While any job is queued or
   processing, one of the live worker processes, chosen at random, gets SIGKILL, every
   uniform(1.5, 3) s, 10 [3] times at most. Then everything is left to settle (every job done
   or dead-lettered; deadline 300 s). Reported: lost jobs (neither done nor dead-lettered at
   the end), dead-lettered, runs, extra runs (runs beyond one per job), interrupted runs (a
   ``start`` without an ``end`` in a process that was killed, as the brief counts them), and
   runs whose job had returned but whose completion was never written: in a killed process,
   an ``end`` row committed less than 1 s before the SIGKILL (this script's ``time.time()``
   right after ``kill()``), and not the run whose completion the database kept
   (``soniq_jobs.worker_id`` and ``attempts`` of the done row); to the queue such a job was
   still running when its worker died. Unexplained extra runs, for each job: its runs beyond
   1 + its runs in flight at a kill (interrupted + completion never written); the count with
   interrupted runs alone is printed too. Required: 0 lost, 0 dead-lettered, 0 unexplained
   extra runs (a job runs again only because a run of it was in flight in a killed process,
   at most once per such run).
   ``chaos-defaults`` is the same with ``SONIQ_HEARTBEAT_INTERVAL`` and
   ``SONIQ_HEARTBEAT_TIMEOUT`` unset (soniq's defaults, 5 s and 300 s): a killed worker is
   found by its released liveness lock plus a heartbeat older than 10 s.
3. ``spread``: three workers at concurrency 4 (not supervised), all registered before 60 [24]
   ``innocent`` jobs whose durations are drawn from uniform(4, 6) s with the seed are enqueued
   with one ``enqueue_many``. Reported: the wall time from just before the enqueue to the poll
   that sees every job done, ideal = sum(durations) / 12 slots, their ratio, and the jobs each
   worker process ran. Required: wall <= 1.3 x ideal.
4. ``sigstop``: two workers, A and B, at concurrency 16 (not supervised), with
   ``SONIQ_HEARTBEAT_INTERVAL=0.5`` and ``SONIQ_HEARTBEAT_TIMEOUT=2``; 5,000 [1,000] ``short``
   jobs (about 5 ms each, plus their two ``fault_runs`` connections). Once A runs jobs, A is
   paused with SIGSTOP for 2.6 s (just over the heartbeat timeout, so that B's recovery pass
   finds it dead and requeues its jobs) and resumed with SIGCONT, 20 [4] times, with
   uniform(0.5, 1) s of running between pauses. Before each pause, if fewer jobs than a batch
   (2,000 [500]) are queued, a batch is enqueued, so A always has work; the totals are
   reported. Then everything is left to settle (deadline 180 s). Reported: lost jobs,
   dead-lettered, duplicate runs (runs beyond the first of each job), how many pauses ended
   with A's id marked dead (``soniq_workers``) and how often A logged "presumed dead", the
   completions A logged as refused, and the bound: A's runs in flight at each pause, i.e.
   (a) running at the SIGSTOP: the job's first statement ran before it (``fault_runs.t``, the
       job's ``time.time()``, against this script's ``time.time()`` right after ``kill()``
       returned) and its ``end`` row was not in the database yet (``fault_runs.at`` against
       ``clock_timestamp()`` read right after the stop; a job returns only once that row is
       committed). For reference, the count the brief asks for, judged only by the rows in
       the database at that moment (a ``start`` row and no ``end`` row), is printed too; it
       misses the jobs still connecting to write their ``start`` row (under this load a
       connection takes ~100 ms), so duplicates routinely exceed it;
   (b) completion pending: runs under the id marked dead at that pause whose ``end`` row was
       committed within the second before the SIGSTOP and whose completion was then refused:
       the job had returned, but its completion was not written when A stopped, so to the
       queue it was still running;
   (c) started at the resume: runs under the id marked dead at that pause whose first
       statement ran after the SIGSTOP and less than 100 ms after the SIGCONT. The worker
       creates a job's task (after its lease check) and the task's first step runs on the next
       turn of the event loop; a SIGSTOP that lands in between leaves a job the worker
       considers started whose first statement (and recorded start) comes only after the
       SIGCONT. From outside this cannot be told apart from a start the lease should have
       prevented, so the figure also says how many of these jobs A's loop watchdog listed
       among its running jobs in the "event loop blocked" warning it logs after a SIGCONT (it
       does not log one after every pause).
   A duplicate is *explained* by a run of A of that job in flight at some pause (a, b or c)
   that is not the run whose completion the database kept (``soniq_jobs.worker_id`` and
   ``attempts`` of the done row). Required: 0 lost; duplicates <= (a) + (b) + (c); 0
   unexplained duplicates; 0 runs that started under a worker id after that id was marked
   dead (``fault_runs.t`` after ``soniq_workers.stopped_at``) other than those of (c): the
   lease must keep a resumed worker from starting what it lost.
5. ``poison-sigkill`` and ``poison-segfault``: one supervised worker at concurrency 4, idle
   and registered; 3 ``innocent(seconds=2)`` and one poison (``poison_sigkill(delay=0.5)``,
   resp. ``poison_segfault(delay=0.5)``) are enqueued together, the poison last with the same
   priority, so that the worker claims all four in one claim and starts them at once (the
   spread of their first starts is reported). Runs until the poison is dead-lettered and the
   innocents are done or dead-lettered (deadline 120 s). Reported: time to quarantine (from
   the enqueue), its reason, crashes, innocents done and dead-lettered, the most lost workers
   an innocent was charged. Required: 0 innocents dead-lettered, every innocent done, the
   poison dead-lettered within 30 s.

In the other scenarios the runs that started under a worker id after that id was marked dead
are reported too (killed workers cannot start anything: expected 0). After each scenario the
tables ``fault_runs``, ``soniq_workers``, ``soniq_jobs`` and ``soniq_dead_letter_jobs`` are
saved as CSV files next to the worker logs, before the database is dropped.

The script prints each scenario's figures as it ends, then a final table (scenario, measured,
required, PASS/FAIL), and exits 0 when every check passed, 1 otherwise (130 on Ctrl-C).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import os
import random
import re
import signal
import sys
import tempfile
import time
import traceback
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = Path(__file__).resolve().parent
sys.path[:0] = [str(ROOT), str(ROOT / "testproject"), str(BENCH_DIR)]

import _scratch  # noqa: E402

from benchmarks.processes import ChildProcess, run_or_raise, start_logged, tail  # noqa: E402
from benchmarks.report import (  # noqa: E402
    Outcome,
    add_only_option,
    chosen_scenarios,
    print_table,
    run_scenarios,
)

SCRATCH_PREFIX = "soniq_bench_faults"
POLL_EVERY = 0.1
RESTART_DELAY = 0.2
STOP_TIMEOUT = 15.0
REGISTER_TIMEOUT = 60.0
# sigstop: a run of A whose end row was committed at most this long before a SIGSTOP, and whose
# completion was refused afterwards, counts as in flight at that pause.
PENDING_WINDOW = 1.0
# sigstop: a run of A under the id marked dead at a pause whose first statement ran after the
# SIGSTOP but within this long after the SIGCONT counts as started before the pause (see (c)).
RESUME_WINDOW = 0.1

BASE_SETTINGS: dict[str, str | None] = {
    "SONIQ_HEARTBEAT_INTERVAL": "1",
    "SONIQ_HEARTBEAT_TIMEOUT": "30",
    "SONIQ_POLL_INTERVAL": "1",
    "SONIQ_ERROR_RETRY_DELAY": "0.5",
    "SONIQ_SHUTDOWN_TIMEOUT": "5",
}

SCENARIOS = (
    "poison-exit",
    "chaos",
    "chaos-defaults",
    "spread",
    "sigstop",
    "poison-sigkill",
    "poison-segfault",
)

fault_jobs: Any = None  # imported in main(), once SONIQ_DATABASE_URL is set

# Every scratch database created and not dropped yet.
_DATABASES: set[str] = set()

# -- worker processes ---------------------------------------------------------------------------


def worker_env(url: str, overrides: dict[str, str | None]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SONIQ_", "DJANGO_"))}
    env.pop("DATABASE_URL", None)
    env.update(
        SONIQ_DATABASE_URL=url,
        SONIQ_JOBS_MODULES="fault_jobs",
        PYTHONPATH=os.pathsep.join([str(BENCH_DIR), str(ROOT)]),
        PYTHONUNBUFFERED="1",
    )
    for key, value in {**BASE_SETTINGS, **overrides}.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


class Fleet:
    """``count`` worker processes; supervised: any that exits is started again 0.2 s later."""

    def __init__(
        self,
        name: str,
        count: int,
        concurrency: int,
        env: dict[str, str],
        log_dir: Path,
        *,
        supervised: bool,
    ) -> None:
        self.name = name
        self.count = count
        self.concurrency = concurrency
        self.env = env
        self.log_dir = log_dir
        self.supervised = supervised
        self.slots: list[ChildProcess] = []
        self.history: list[ChildProcess] = []
        self.restarts = 0
        self._stopping = False
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.slots = [self._spawn(index) for index in range(self.count)]
        if self.supervised:
            self._task = asyncio.create_task(self._supervise())

    def _spawn(self, index: int) -> ChildProcess:
        label = f"{self.name}{index if self.count > 1 else ''}"
        instance = sum(1 for proc in self.history if proc.label == label)
        log_path = self.log_dir / f"{label}-{instance}.log"
        soniq = Path(sys.executable).parent / "soniq"
        worker = start_logged(
            label,
            [str(soniq), "worker", "--concurrency", str(self.concurrency)],
            env=self.env,
            cwd=BENCH_DIR,
            log_path=log_path,
        )
        self.history.append(worker)
        return worker

    async def _supervise(self) -> None:
        due: dict[int, float] = {}
        while not self._stopping:
            now = time.monotonic()
            for index, worker in enumerate(self.slots):
                if index in due:
                    if now >= due[index]:
                        del due[index]
                        self.slots[index] = self._spawn(index)
                        self.restarts += 1
                elif not worker.alive():
                    due[index] = now + RESTART_DELAY
            await asyncio.sleep(0.05)

    def live(self) -> list[ChildProcess]:
        return [worker for worker in self.slots if worker.alive()]

    def check_alive(self) -> None:
        """For unsupervised workers: raise if one exited."""
        for worker in self.slots:
            if not worker.alive():
                raise RuntimeError(
                    f"worker {worker.label} (pid {worker.pid}) exited with {worker.exit_code}; "
                    f"log {worker.log_path}:\n{tail(worker.log())}"
                )

    def exit_codes(self) -> list[int]:
        return [w.exit_code for w in self.history if w.exit_code is not None]

    async def stop(self, *, graceful: bool = True) -> None:
        self._stopping = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        live = [worker for worker in self.history if worker.alive()]
        for worker in live:
            with contextlib.suppress(ProcessLookupError):
                worker.process.send_signal(signal.SIGCONT)
                worker.process.send_signal(signal.SIGTERM if graceful else signal.SIGKILL)
        for _ in range(int(STOP_TIMEOUT / 0.05)):
            if not any(worker.alive() for worker in live):
                break
            await asyncio.sleep(0.05)
        for worker in live:
            if worker.alive():
                worker.process.kill()
                worker.process.wait(10)
                worker.alive()


# -- the scratch database -----------------------------------------------------------------------


def migrate(url: str) -> None:
    """Apply the testproject's migrations to ``url`` in a subprocess (Django is configured
    once per process, and every scenario has a database of its own)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SONIQ_", "DJANGO_"))}
    env.pop("DATABASE_URL", None)
    run_or_raise(
        f"migrating {url}",
        [sys.executable, "-c", "import sys, _scratch; _scratch.setup_django(sys.argv[1])", url],
        env=env,
        cwd=BENCH_DIR,
        timeout=300,
    )
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(fault_jobs.CREATE_TABLE)


def create_database(base: str, name: str) -> str:
    _DATABASES.add(name)
    _scratch.recreate(base, name)
    url = _scratch.database_url(base, name)
    migrate(url)
    return url


DUMPS = {
    "fault_runs": "SELECT * FROM fault_runs ORDER BY seq",
    "soniq_workers": "SELECT id, pid, status, started_at, last_heartbeat_at, stopped_at "
    "FROM soniq_workers ORDER BY started_at",
    "soniq_jobs": "SELECT id, task_name, status, attempts, max_attempts, worker_losses, "
    "suspicion, worker_id, created_at, claimed_at, started_at, finished_at, errors "
    "FROM soniq_jobs ORDER BY created_at",
    "soniq_dead_letter_jobs": "SELECT id, task_name, reason, attempts, worker_id, "
    "dead_lettered_at, errors FROM soniq_dead_letter_jobs",
}


def dump_tables(url: str, log_dir: Path) -> None:
    """Keep what the scenario left in the database, as CSV next to the worker logs."""
    with psycopg.connect(url, autocommit=True) as conn, conn.cursor() as cursor:
        for name, query in DUMPS.items():
            with (
                (log_dir / f"{name}.csv").open("wb") as out,
                cursor.copy(f"COPY ({query}) TO STDOUT (FORMAT csv, HEADER)") as copy,
            ):
                for data in copy:
                    out.write(data)


def drop_database(base: str, name: str) -> None:
    _scratch.drop(base, name)
    _DATABASES.discard(name)


# -- reading what happened ----------------------------------------------------------------------


@dataclass
class Run:
    job_id: str
    label: str
    pid: int
    worker_id: str | None
    attempt: int
    start_t: float
    start_at: float
    end_t: float | None = None
    end_at: float | None = None


@dataclass
class JobRow:
    id: str
    task_name: str
    status: str
    attempts: int
    worker_losses: int
    worker_id: str | None
    created_at: float


@dataclass
class DeadRow:
    id: str
    task_name: str
    reason: str
    dead_lettered_at: float
    created_at: float
    worker_losses: int  # soniq.WorkerLost records in its errors


@dataclass
class WorkerRow:
    id: str
    pid: int
    status: str
    stopped_at: float | None


def pair_runs(rows: Iterable[tuple[Any, ...]]) -> list[Run]:
    """``fault_runs`` rows (in seq order) to runs: each end closes the earliest open start of
    the same job, process, worker id and attempt."""
    runs: list[Run] = []
    open_runs: dict[tuple[Any, ...], list[Run]] = defaultdict(list)
    for label, job_id, attempt, pid, event, worker_id, t, at in rows:
        key = (job_id, pid, worker_id, attempt)
        if event == "start":
            run = Run(job_id, label, pid, worker_id, attempt, t, at)
            runs.append(run)
            open_runs[key].append(run)
        elif open_runs[key]:
            run = open_runs[key].pop(0)
            run.end_t, run.end_at = t, at
    return runs


class Harness:
    """One scenario's database connection and worker fleets."""

    def __init__(self, url: str, log_dir: Path) -> None:
        self.url = url
        self.log_dir = log_dir
        self.fleets: list[Fleet] = []
        self.conn: psycopg.AsyncConnection[Any] | None = None

    async def __aenter__(self) -> Harness:
        self.conn = await psycopg.AsyncConnection.connect(self.url, autocommit=True)
        return self

    async def __aexit__(self, kind: Any, exc: Any, tb: Any) -> None:
        graceful = kind is None
        for fleet in self.fleets:
            await fleet.stop(graceful=graceful)
        if self.conn is not None:
            await self.conn.close()

    def fleet(
        self,
        name: str,
        count: int,
        concurrency: int,
        *,
        supervised: bool,
        settings: dict[str, str | None] | None = None,
    ) -> Fleet:
        env = worker_env(self.url, settings or {})
        fleet = Fleet(name, count, concurrency, env, self.log_dir, supervised=supervised)
        self.fleets.append(fleet)
        fleet.start()
        return fleet

    async def rows(self, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
        assert self.conn is not None
        cursor = await self.conn.execute(sql, params)
        return await cursor.fetchall()

    async def scalar(self, sql: str, params: Any = None) -> Any:
        rows = await self.rows(sql, params)
        return rows[0][0] if rows else None

    async def wait_until(
        self, predicate: Callable[[], Awaitable[bool]], within: float, every: float = POLL_EVERY
    ) -> bool:
        deadline = time.monotonic() + within
        while True:
            if await predicate():
                return True
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(every)

    async def wait_registered(self, *fleets: Fleet) -> None:
        """Until every current process of ``fleets`` has its ``running`` row."""
        workers = [worker for fleet in fleets for worker in fleet.slots]

        async def registered() -> bool:
            for fleet in fleets:
                if not fleet.supervised:
                    fleet.check_alive()
            pids = [worker.pid for worker in workers]
            found = await self.scalar(
                "SELECT count(DISTINCT pid) FROM soniq_workers "
                "WHERE status = 'running' AND pid = ANY(%s)",
                (pids,),
            )
            return bool(found == len(pids))

        if not await self.wait_until(registered, REGISTER_TIMEOUT):
            logs = "\n".join(f"--- {w.log_path}:\n{tail(w.log())}" for w in workers)
            raise RuntimeError(f"workers did not register within {REGISTER_TIMEOUT:g} s:\n{logs}")

    async def enqueue_together(
        self, groups: Sequence[tuple[Any, list[dict[str, Any]]]]
    ) -> list[str]:
        """Enqueue every group in one transaction (visible to the workers at once), in order."""
        ids: list[str] = []
        conn = await psycopg.AsyncConnection.connect(self.url)
        async with conn, conn.transaction():
            for job, args_list in groups:
                ids += await fault_jobs.app.enqueue_many(job, args_list, connection=conn)
        return ids

    async def jobs(self) -> dict[str, JobRow]:
        rows = await self.rows(
            "SELECT id::text, task_name, status, attempts, worker_losses, worker_id::text, "
            "extract(epoch FROM created_at)::float8 FROM soniq_jobs"
        )
        return {row[0]: JobRow(*row) for row in rows}

    async def dead_letters(self) -> dict[str, DeadRow]:
        rows = await self.rows(
            """
            SELECT id::text, task_name, reason, extract(epoch FROM dead_lettered_at)::float8,
                   extract(epoch FROM created_at)::float8,
                   (SELECT count(*) FROM jsonb_array_elements(errors) AS e
                    WHERE e->>'error_type' = 'soniq.WorkerLost')::int
            FROM soniq_dead_letter_jobs
            """
        )
        return {row[0]: DeadRow(*row) for row in rows}

    async def workers(self) -> dict[str, WorkerRow]:
        rows = await self.rows(
            "SELECT id::text, pid, status, extract(epoch FROM stopped_at)::float8 "
            "FROM soniq_workers"
        )
        return {row[0]: WorkerRow(*row) for row in rows}

    async def runs(self) -> list[Run]:
        rows = await self.rows(
            "SELECT label, job_id, attempt, pid, event, worker_id, t, "
            "extract(epoch FROM at)::float8 FROM fault_runs ORDER BY seq"
        )
        return pair_runs(rows)

    async def unfinished(self, ids: Sequence[str]) -> int:
        """Jobs of ``ids`` still queued or processing (neither done nor dead-lettered)."""
        return int(
            await self.scalar(
                "SELECT count(*) FROM soniq_jobs WHERE id = ANY(%s::uuid[]) "
                "AND status IN ('queued', 'processing')",
                (list(ids),),
            )
        )

    async def settled(self, ids: Sequence[str]) -> int:
        """Jobs of ``ids`` done or dead-lettered."""
        return int(
            await self.scalar(
                "SELECT (SELECT count(*) FROM soniq_jobs WHERE id = ANY(%s::uuid[]) "
                "AND status = 'done') + (SELECT count(*) FROM soniq_dead_letter_jobs "
                "WHERE id = ANY(%s::uuid[]))",
                (list(ids), list(ids)),
            )
        )


def accepted_run(jobs: dict[str, JobRow], run: Run) -> bool:
    """Whether ``run`` is the one whose completion the database kept (the done row's worker
    id and attempt)."""
    job = jobs.get(run.job_id)
    return (
        job is not None
        and job.status == "done"
        and job.worker_id == run.worker_id
        and job.attempts == run.attempt
    )


def untraced_extra_runs(by_job: dict[str, list[Run]], jobs: dict[str, JobRow]) -> int:
    """Extra runs of jobs whose row says no worker was lost while running them (worker_losses
    0): runs the database put back as "claimed, not started", uncharged and unrecorded."""
    return sum(
        len(runs) - 1
        for job_id, runs in by_job.items()
        if len(runs) > 1 and job_id in jobs and jobs[job_id].worker_losses == 0
    )


def describe_run(run: Run) -> str:
    end = "-" if run.end_t is None else f"{run.end_t:.3f}"
    return (
        f"pid {run.pid} worker {str(run.worker_id)[:8]} attempt {run.attempt} "
        f"start {run.start_t:.3f} end {end}"
    )


def late_start_runs(runs: Iterable[Run], workers: dict[str, WorkerRow]) -> list[Run]:
    """Runs that started (the job's first statement) under a worker id after that id was
    marked dead (``stopped_at`` of its ``dead`` row)."""
    late = []
    for run in runs:
        row = workers.get(run.worker_id or "")
        if (
            row is not None
            and row.status == "dead"
            and row.stopped_at is not None
            and run.start_t > row.stopped_at
        ):
            late.append(run)
    return late


def late_starts(runs: Iterable[Run], workers: dict[str, WorkerRow]) -> int:
    return len(late_start_runs(runs, workers))


# -- scenarios ----------------------------------------------------------------------------------


async def _wait_poison(
    h: Harness, poison_id: str, innocent_ids: list[str], started: float, within: float
) -> tuple[bool, float | None]:
    """Until the poison is dead-lettered and every innocent is done or dead-lettered; returns
    (finished in time, seconds from ``started`` to the poll that saw the poison there)."""
    quarantined: float | None = None

    async def finished() -> bool:
        nonlocal quarantined
        if quarantined is None and await h.scalar(
            "SELECT count(*) FROM soniq_dead_letter_jobs WHERE id = %s::uuid", (poison_id,)
        ):
            quarantined = time.monotonic() - started
        return quarantined is not None and await h.settled(innocent_ids) == len(innocent_ids)

    ok = await h.wait_until(finished, within)
    return ok, quarantined


async def _report_poison(
    h: Harness,
    outcome: Outcome,
    fleet: Fleet,
    poison_id: str,
    innocent_ids: list[str],
    finished: bool,
    quarantined: float | None,
) -> tuple[DeadRow | None, int, int, int]:
    """Common figures of the poison scenarios: (poison's dead letter, innocents done,
    innocents dead-lettered, max innocent worker_losses)."""
    jobs, dead, runs = await h.jobs(), await h.dead_letters(), await h.runs()
    workers = await h.workers()
    poison = dead.get(poison_id)
    done = sum(1 for i in innocent_ids if i in jobs and jobs[i].status == "done")
    innocent_dead = sum(1 for i in innocent_ids if i in dead)
    losses = [jobs[i].worker_losses for i in innocent_ids if i in jobs] + [
        dead[i].worker_losses for i in innocent_ids if i in dead
    ]
    starts = Counter(run.job_id for run in runs)
    poison_row = jobs.get(poison_id)
    outcome.figure("finished before the deadline", finished)
    if poison is not None:
        outcome.figure(
            "poison dead-lettered",
            f"reason {poison.reason} after {quarantined:.2f} s "
            f"(DB clock: {poison.dead_lettered_at - poison.created_at:.2f} s after enqueue), "
            f"{poison.worker_losses} lost worker(s) recorded",
        )
    else:
        state = f"{poison_row.status}, {poison_row.worker_losses} loss(es)" if poison_row else "?"
        outcome.figure("poison dead-lettered", f"NO (still {state})")
    outcome.figure("poison runs (start rows)", starts.get(poison_id, 0))
    outcome.figure("crashes (restarts)", fleet.restarts)
    outcome.figure("worker exit codes", fleet.exit_codes() or "-")
    outcome.figure("innocents done", f"{done}/{len(innocent_ids)}")
    outcome.figure("innocents dead-lettered", innocent_dead)
    outcome.figure(
        "innocents run more than once",
        f"{sum(1 for i in innocent_ids if starts.get(i, 0) > 1)} "
        f"(most runs of one: {max((starts.get(i, 0) for i in innocent_ids), default=0)})",
    )
    outcome.figure(
        "innocents charged a lost worker",
        f"{sum(1 for n in losses if n)} (max worker_losses {max(losses, default=0)})",
    )
    outcome.figure("runs started after their worker id was marked dead", late_starts(runs, workers))
    return poison, done, innocent_dead, max(losses, default=0)


async def scenario_poison_exit(h: Harness, outcome: Outcome, quick: bool, seed: int) -> None:
    count = 6 if quick else 20
    fleet = h.fleet("w", 1, 2, supervised=True)
    await h.wait_registered(fleet)
    ids = await h.enqueue_together(
        [
            (fault_jobs.poison_exit, [{}]),
            (fault_jobs.innocent, [{"seconds": 2.0}] * count),
        ]
    )
    started = time.monotonic()
    poison_id, innocent_ids = ids[0], ids[1:]
    finished, quarantined = await _wait_poison(h, poison_id, innocent_ids, started, 180)
    await fleet.stop()
    poison, done, innocent_dead, max_losses = await _report_poison(
        h, outcome, fleet, poison_id, innocent_ids, finished, quarantined
    )
    outcome.check(
        "poison quarantined",
        "not dead-lettered"
        if poison is None
        else f"dead letter, reason {poison.reason}, after {quarantined:.1f} s",
        "dead letter, reason worker_lost",
        poison is not None and poison.reason == "worker_lost",
    )
    outcome.check(
        "innocents dead-lettered",
        f"{innocent_dead} (max innocent worker_losses {max_losses})",
        "0",
        innocent_dead == 0,
    )
    outcome.check("innocents done", f"{done}/{count}", f"{count}/{count}", done == count)


async def _scenario_poison_delayed(
    h: Harness, outcome: Outcome, poison_job: Any, quick: bool
) -> None:
    fleet = h.fleet("w", 1, 4, supervised=True)
    await h.wait_registered(fleet)
    ids = await h.enqueue_together(
        [(fault_jobs.innocent, [{"seconds": 2.0}] * 3), (poison_job, [{"delay": 0.5}])]
    )
    started = time.monotonic()
    innocent_ids, poison_id = ids[:3], ids[3]
    finished, quarantined = await _wait_poison(h, poison_id, innocent_ids, started, 120)
    await fleet.stop()
    poison, done, innocent_dead, max_losses = await _report_poison(
        h, outcome, fleet, poison_id, innocent_ids, finished, quarantined
    )
    runs = await h.runs()
    first: dict[str, float] = {}
    for run in runs:
        first.setdefault(run.job_id, run.start_t)
    if len(first) == 4:
        outcome.figure(
            "first starts of the four jobs spread over",
            f"{max(first.values()) - min(first.values()):.3f} s",
        )
    outcome.check(
        "poison quarantined",
        "not dead-lettered"
        if poison is None or quarantined is None
        else f"reason {poison.reason}, after {quarantined:.1f} s",
        "dead letter within 30 s",
        poison is not None and quarantined is not None and quarantined <= 30,
    )
    outcome.check(
        "innocents dead-lettered",
        f"{innocent_dead} (max innocent worker_losses {max_losses})",
        "0",
        innocent_dead == 0,
    )
    outcome.check("innocents done", f"{done}/3", "3/3", done == 3)


async def scenario_poison_sigkill(h: Harness, outcome: Outcome, quick: bool, seed: int) -> None:
    await _scenario_poison_delayed(h, outcome, fault_jobs.poison_sigkill, quick)


async def scenario_poison_segfault(h: Harness, outcome: Outcome, quick: bool, seed: int) -> None:
    await _scenario_poison_delayed(h, outcome, fault_jobs.poison_segfault, quick)


async def _scenario_chaos(
    h: Harness, outcome: Outcome, quick: bool, seed: int, settings: dict[str, str | None]
) -> None:
    count, kills_planned = (40, 3) if quick else (150, 10)
    rng = random.Random(seed)
    durations = [round(rng.uniform(1.0, 2.0), 3) for _ in range(count)]
    fleet = h.fleet("w", 3, 4, supervised=True, settings=settings)
    await h.wait_registered(fleet)
    ids = await h.enqueue_together([(fault_jobs.innocent, [{"seconds": d} for d in durations])])
    started = time.monotonic()
    killed: dict[int, float] = {}  # pid -> time.time() right after its SIGKILL
    while len(killed) < kills_planned:
        await asyncio.sleep(rng.uniform(1.5, 3.0))  # deliberate: the chaos timing
        if not await h.unfinished(ids):
            break
        live = fleet.live()
        if not live:
            continue
        victim = rng.choice(live)
        with contextlib.suppress(ProcessLookupError):
            os.kill(victim.pid, signal.SIGKILL)
            killed[victim.pid] = time.time()
    kills_done = time.monotonic() - started

    async def all_settled() -> bool:
        return await h.settled(ids) == count

    settled = await h.wait_until(all_settled, 300)
    settle_seconds = time.monotonic() - started
    await fleet.stop()

    jobs, dead, runs = await h.jobs(), await h.dead_letters(), await h.runs()
    workers = await h.workers()
    done = sum(1 for i in ids if i in jobs and jobs[i].status == "done")
    dead_count = sum(1 for i in ids if i in dead)
    lost = count - done - dead_count
    by_job: dict[str, list[Run]] = defaultdict(list)
    for run in runs:
        by_job[run.job_id].append(run)
    extra = sum(max(0, len(by_job[i]) - 1) for i in ids)
    # Interrupted, as the brief counts it: a start row without an end row in a killed process.
    interrupted = {
        i: sum(1 for run in by_job[i] if run.end_t is None and run.pid in killed) for i in ids
    }
    # Also in flight at the kill: the job had returned (its end row was committed less than
    # PENDING_WINDOW before the SIGKILL) but its completion was never written (not the run the
    # database kept), so to the queue it was still running.
    pending: dict[str, int] = {}
    pending_ages: list[float] = []
    for i in ids:
        pending[i] = 0
        for run in by_job[i]:
            if (
                run.pid in killed
                and run.end_at is not None
                and killed[run.pid] - PENDING_WINDOW < run.end_at
                and not accepted_run(jobs, run)
            ):
                pending[i] += 1
                pending_ages.append(killed[run.pid] - run.end_at)
    unexplained_strict = sum(max(0, len(by_job[i]) - 1 - interrupted[i]) for i in ids)
    unexplained = sum(max(0, len(by_job[i]) - 1 - interrupted[i] - pending[i]) for i in ids)
    stray_interrupted = sum(1 for run in runs if run.end_t is None and run.pid not in killed)
    never_ran = sum(1 for i in ids if not by_job[i])
    losses = [jobs[i].worker_losses for i in ids if i in jobs] + [
        dead[i].worker_losses for i in ids if i in dead
    ]
    outcome.figure("jobs (sum of durations)", f"{count} ({sum(durations):.0f} s over 12 slots)")
    outcome.figure(
        "SIGKILLs sent", f"{len(killed)} of {kills_planned} planned, over {kills_done:.1f} s"
    )
    outcome.figure("crashes (restarts)", fleet.restarts)
    outcome.figure(
        "settled", f"{settled} ({settle_seconds:.1f} s from the enqueue to all done/dead-lettered)"
    )
    outcome.figure("done / dead-lettered / lost", f"{done} / {dead_count} / {lost}")
    outcome.figure("runs (start rows)", len(runs))
    outcome.figure("extra runs", extra)
    outcome.figure(
        "interrupted runs (killed)",
        f"{sum(interrupted.values())} in {sum(1 for n in interrupted.values() if n)} job(s)",
    )
    outcome.figure(
        "ended < 1 s before their SIGKILL, completion never written",
        f"{sum(pending.values())}"
        + (
            f" (end row {min(pending_ages) * 1000:.0f}-{max(pending_ages) * 1000:.0f} ms "
            "before the kill)"
            if pending_ages
            else ""
        ),
    )
    outcome.figure("interrupted runs in processes not killed", stray_interrupted)
    outcome.figure(
        "extra runs of jobs whose record shows no lost worker",
        untraced_extra_runs(by_job, jobs),
    )
    outcome.figure("unexplained extra runs (interrupted = no end row)", unexplained_strict)
    outcome.figure("unexplained extra runs (counting completions never written)", unexplained)
    outcome.figure("jobs that never ran", never_ran)
    outcome.figure(
        "jobs charged a lost worker",
        f"{sum(1 for n in losses if n)} (max worker_losses {max(losses, default=0)})",
    )
    outcome.figure("runs started after their worker id was marked dead", late_starts(runs, workers))
    outcome.check("lost", str(lost), "0", lost == 0)
    outcome.check("dead-lettered", str(dead_count), "0", dead_count == 0)
    outcome.check(
        "unexplained extra runs",
        f"{unexplained} ({extra} extra; killed runs: {sum(interrupted.values())} interrupted "
        f"+ {sum(pending.values())} completion unwritten)",
        "0 (<= 1 extra run per run in flight at a kill)",
        unexplained == 0,
    )


async def scenario_chaos(h: Harness, outcome: Outcome, quick: bool, seed: int) -> None:
    await _scenario_chaos(h, outcome, quick, seed, {"SONIQ_HEARTBEAT_INTERVAL": "1"})


async def scenario_chaos_defaults(h: Harness, outcome: Outcome, quick: bool, seed: int) -> None:
    await _scenario_chaos(
        h,
        outcome,
        quick,
        seed,
        {"SONIQ_HEARTBEAT_INTERVAL": None, "SONIQ_HEARTBEAT_TIMEOUT": None},
    )


async def scenario_spread(h: Harness, outcome: Outcome, quick: bool, seed: int) -> None:
    count = 24 if quick else 60
    rng = random.Random(seed)
    durations = [round(rng.uniform(4.0, 6.0), 3) for _ in range(count)]
    fleet = h.fleet("w", 3, 4, supervised=False)
    await h.wait_registered(fleet)
    started = time.monotonic()
    ids = await h.enqueue_together([(fault_jobs.innocent, [{"seconds": d} for d in durations])])
    ideal = sum(durations) / 12

    async def all_done() -> bool:
        fleet.check_alive()
        return bool(
            await h.scalar(
                "SELECT count(*) FROM soniq_jobs WHERE status = 'done' AND id = ANY(%s::uuid[])",
                (ids,),
            )
            == count
        )

    finished = await h.wait_until(all_done, 3 * ideal + 60, every=0.05)
    wall = time.monotonic() - started
    await fleet.stop()
    runs = await h.runs()
    per_pid = Counter(run.pid for run in runs if run.end_t is not None)
    labels = {worker.pid: worker.label for worker in fleet.history}
    ratio = wall / ideal
    outcome.figure("jobs", f"{count}, durations {min(durations):.2f}-{max(durations):.2f} s")
    outcome.figure("all done", finished)
    outcome.figure("wall (enqueue -> all done)", f"{wall:.2f} s")
    outcome.figure("ideal (sum / 12 slots)", f"{ideal:.2f} s")
    outcome.figure("ratio", f"{ratio:.3f}")
    outcome.figure(
        "jobs per worker",
        ", ".join(f"{labels.get(pid, '?')} (pid {pid}): {n}" for pid, n in sorted(per_pid.items())),
    )
    outcome.figure("runs (start rows)", len(runs))
    outcome.check(
        "wall / ideal",
        f"{ratio:.3f} ({wall:.1f} s / {ideal:.1f} s)",
        "<= 1.3",
        finished and ratio <= 1.3,
    )


@dataclass
class Pause:
    stop_t: float  # time.time() right after kill(SIGSTOP) returned
    stop_db: float  # clock_timestamp() read right after the stop
    cont_t: float = 0.0  # time.time() right before kill(SIGCONT)
    running: int = 0  # A's runs started (job's clock) and without an end row at the stop
    running_db: int = 0  # A's runs with a start row and no end row in the database at the stop
    pending: int = 0  # A's runs whose end row came < 1 s before the stop, completion refused
    resumed: int = 0  # A's runs under the dead id whose first statement ran just after SIGCONT
    dead: bool = False  # A's id was marked dead during this pause


async def scenario_sigstop(h: Harness, outcome: Outcome, quick: bool, seed: int) -> None:
    initial, batch, pauses_planned = (1000, 500, 4) if quick else (5000, 2000, 20)
    pause_seconds = 2.6
    rng = random.Random(seed)
    settings: dict[str, str | None] = {
        "SONIQ_HEARTBEAT_INTERVAL": "0.5",
        "SONIQ_HEARTBEAT_TIMEOUT": "2",
    }
    fleet_a = h.fleet("A", 1, 16, supervised=False, settings=settings)
    fleet_b = h.fleet("B", 1, 16, supervised=False, settings=settings)
    await h.wait_registered(fleet_a, fleet_b)
    a = fleet_a.slots[0]
    enqueued = 0

    async def enqueue(n: int) -> None:
        nonlocal enqueued
        await h.enqueue_together([(fault_jobs.short, [{"n": enqueued + i} for i in range(n)])])
        enqueued += n

    started = time.monotonic()
    await enqueue(initial)

    async def a_runs() -> bool:
        fleet_a.check_alive()
        fleet_b.check_alive()
        return bool(await h.scalar("SELECT count(*) FROM fault_runs WHERE pid = %s", (a.pid,)))

    if not await h.wait_until(a_runs, 60, every=0.05):
        raise RuntimeError(f"worker A ran nothing within 60 s; log {a.log_path}")
    pauses: list[Pause] = []
    for _ in range(pauses_planned):
        queued = await h.scalar("SELECT count(*) FROM soniq_jobs WHERE status = 'queued'")
        if queued < batch:
            await enqueue(batch)
        await asyncio.sleep(rng.uniform(0.5, 1.0))  # deliberate: A runs jobs
        fleet_a.check_alive()
        os.kill(a.pid, signal.SIGSTOP)
        pause = Pause(
            stop_t=time.time(),
            stop_db=await h.scalar("SELECT extract(epoch FROM clock_timestamp())::float8"),
        )
        await asyncio.sleep(pause_seconds)  # deliberate: just over HEARTBEAT_TIMEOUT
        pause.cont_t = time.time()
        os.kill(a.pid, signal.SIGCONT)
        pauses.append(pause)
    pauses_done = time.monotonic() - started
    all_ids = [
        row[0]
        for row in await h.rows(
            "SELECT id::text FROM soniq_jobs UNION ALL SELECT id::text FROM soniq_dead_letter_jobs"
        )
    ]

    async def all_settled() -> bool:
        fleet_a.check_alive()
        fleet_b.check_alive()
        return await h.settled(all_ids) == len(all_ids)

    settled = await h.wait_until(all_settled, 180)
    settle_seconds = time.monotonic() - started
    await fleet_a.stop()
    await fleet_b.stop()

    jobs, dead, runs = await h.jobs(), await h.dead_letters(), await h.runs()
    workers = await h.workers()
    log_a = "".join(worker.log() for worker in fleet_a.history)
    _report_sigstop(
        outcome,
        SigstopData(a.pid, pauses, jobs, dead, runs, workers, log_a),
        enqueued=f"{enqueued} (initial {initial}, top-up batches of {batch})",
        timing=(pauses_done, settled, settle_seconds),
    )


@dataclass
class SigstopData:
    pid_a: int
    pauses: list[Pause]
    jobs: dict[str, JobRow]
    dead: dict[str, DeadRow]
    runs: list[Run]
    workers: dict[str, WorkerRow]
    log_a: str

    def accepted(self, run: Run) -> bool:
        return accepted_run(self.jobs, run)

    def dead_ids(self, pause: Pause) -> set[str]:
        """A's worker ids marked dead during this pause (or just after it)."""
        return {
            row.id
            for row in self.workers.values()
            if row.pid == self.pid_a
            and row.status == "dead"
            and row.stopped_at is not None
            and pause.stop_db <= row.stopped_at <= pause.cont_t + 2.0
        }

    def running_at_stall(self) -> set[str]:
        """Jobs A's loop watchdog listed as running when it noticed the SIGSTOP (its snapshot
        of the worker's running jobs, taken by its thread right after the SIGCONT)."""
        found: set[str] = set()
        for line in self.log_a.splitlines():
            if "event loop blocked" in line:
                found.update(re.findall(r"faults\.\w+ \(([0-9a-f-]{36})\)", line))
        return found


def _report_sigstop(
    outcome: Outcome, data: SigstopData, *, enqueued: str, timing: tuple[float, bool, float]
) -> None:
    pauses_done, settled, settle_seconds = timing
    runs, pauses = data.runs, data.pauses
    done = sum(1 for job in data.jobs.values() if job.status == "done")
    lost = sum(1 for job in data.jobs.values() if job.status in ("queued", "processing"))
    by_job: dict[str, list[Run]] = defaultdict(list)
    for run in runs:
        by_job[run.job_id].append(run)
    duplicates = sum(max(0, len(r) - 1) for r in by_job.values())
    a_runs = [run for run in runs if run.pid == data.pid_a]
    at_stall = data.running_at_stall()

    in_flight: set[int] = set()  # id() of A's runs in flight at a pause
    pending_ages: list[float] = []  # seconds from such a run's end row to the SIGSTOP
    resumed: dict[int, Run] = {}  # A's runs under a dead id whose first statement ran after it
    for pause in pauses:
        dead_ids = data.dead_ids(pause)
        pause.dead = bool(dead_ids)
        for run in a_runs:
            # A run has ended once its end row is in the database (the job returns after it).
            ended = run.end_at is not None and run.end_at <= pause.stop_db
            if run.start_t <= pause.stop_t and not ended:
                pause.running += 1
                if not data.accepted(run):
                    in_flight.add(id(run))
            elif (
                ended
                and run.end_at is not None
                and run.worker_id in dead_ids
                and pause.stop_db - PENDING_WINDOW < run.end_at
                and not data.accepted(run)
            ):
                pause.pending += 1
                pending_ages.append(pause.stop_db - run.end_at)
                in_flight.add(id(run))
            elif (
                run.worker_id in dead_ids
                and pause.stop_t < run.start_t <= pause.cont_t + RESUME_WINDOW
            ):
                resumed[id(run)] = run
                pause.resumed += 1
                in_flight.add(id(run))
            if run.start_at <= pause.stop_db and (run.end_at is None or run.end_at > pause.stop_db):
                pause.running_db += 1
    unexplained = 0
    examples: list[str] = []
    for job_id, job_runs in by_job.items():
        extra = len(job_runs) - 1
        explained = sum(1 for run in job_runs if id(run) in in_flight)
        if extra > explained:
            unexplained += extra - explained
            if len(examples) < 5:
                examples.append(f"{job_id}: " + "; ".join(describe_run(r) for r in job_runs))
    running = sum(p.running for p in pauses)
    running_db = sum(p.running_db for p in pauses)
    pending = sum(p.pending for p in pauses)
    resumed_count = sum(p.resumed for p in pauses)
    resumed_listed = sum(1 for run in resumed.values() if run.job_id in at_stall)
    bound = running + pending + resumed_count
    presumed = data.log_a.count("presumed dead")
    refused = sum(
        int(n) for n in re.findall(r"(\d+) finished job\(s\) had been taken back", data.log_a)
    )
    refused += data.log_a.count("was taken back from this worker; its outcome is dropped")
    a_accepted = sum(1 for run in a_runs if data.accepted(run))
    late = [run for run in late_start_runs(runs, data.workers) if id(run) not in resumed]

    def per_pause(values: Iterable[int]) -> str:
        return ", ".join(str(v) for v in values)

    outcome.figure("jobs enqueued (total)", enqueued)
    outcome.figure("pauses (SIGSTOP 2.6 s, SIGCONT)", f"{len(pauses)} over {pauses_done:.1f} s")
    outcome.figure("pauses after which A's id was marked dead", sum(1 for p in pauses if p.dead))
    outcome.figure("'presumed dead' lines in A's log", presumed)
    outcome.figure("settled", f"{settled} ({settle_seconds:.1f} s from the first enqueue)")
    outcome.figure("done / dead-lettered / lost", f"{done} / {len(data.dead)} / {lost}")
    # How soon A works again: its first run under a new id after each SIGCONT.
    restart_delays = []
    for index, pause in enumerate(pauses):
        until = pauses[index + 1].stop_t if index + 1 < len(pauses) else float("inf")
        dead_ids = data.dead_ids(pause)
        firsts = [
            run.start_t
            for run in a_runs
            if pause.cont_t < run.start_t < until and run.worker_id not in dead_ids
        ]
        restart_delays.append(f"{min(firsts) - pause.cont_t:.2f}" if firsts else "none")
    outcome.figure(
        "A's first new run after each SIGCONT, s (before the next pause)",
        ", ".join(restart_delays),
    )
    outcome.figure(
        "runs (start rows)",
        f"{len(runs)}: A {len(a_runs)} ({a_accepted} accepted), B {len(runs) - len(a_runs)}",
    )
    outcome.figure("duplicate runs", duplicates)
    outcome.figure(
        "  of jobs whose record shows no lost worker", untraced_extra_runs(by_job, data.jobs)
    )
    outcome.figure("completions A logged as refused", refused)
    outcome.figure(
        "(a) A's runs running at the SIGSTOP (job clock)",
        f"{running} (per pause: {per_pause(p.running for p in pauses)})",
    )
    outcome.figure(
        "    the same, from the rows already in the database",
        f"{running_db} (per pause: {per_pause(p.running_db for p in pauses)})",
    )
    outcome.figure(
        "(b) ended <1 s before it, completion refused",
        f"{pending} (per pause: {per_pause(p.pending for p in pauses)})"
        + (
            f"; end row {min(pending_ages) * 1000:.0f}-{max(pending_ages) * 1000:.0f} ms "
            "before the SIGSTOP"
            if pending_ages
            else ""
        ),
    )
    outcome.figure(
        f"(c) first statement < {RESUME_WINDOW * 1000:.0f} ms after the SIGCONT",
        f"{resumed_count} (per pause: {per_pause(p.resumed for p in pauses)}); "
        f"{resumed_listed} of them listed running in A's 'event loop blocked' warning",
    )
    outcome.figure("bound (a) + (b) + (c)", bound)
    outcome.figure("unexplained duplicates", unexplained)
    for example in examples:
        outcome.figure("  e.g.", example)
    outcome.figure("runs started under an id after it was marked dead, not in (c)", len(late))
    for run in late[:5]:
        outcome.figure("  e.g.", describe_run(run))
    outcome.figure("duplicates <= row-only bound (a, database rows)", duplicates <= running_db)
    outcome.check("lost", str(lost), "0", lost == 0)
    outcome.check(
        "duplicates",
        f"{duplicates} <= {bound} (running {running} + completion pending {pending} + "
        f"started at resume {resumed_count}), {unexplained} unexplained",
        "<= A's jobs in flight at its pauses, 0 unexplained",
        duplicates <= bound and unexplained == 0,
    )
    outcome.check("runs started under an id already dead", str(len(late)), "0", not late)


SCENARIO_FUNCTIONS: dict[str, Callable[[Harness, Outcome, bool, int], Awaitable[None]]] = {
    "poison-exit": scenario_poison_exit,
    "chaos": scenario_chaos,
    "chaos-defaults": scenario_chaos_defaults,
    "spread": scenario_spread,
    "sigstop": scenario_sigstop,
    "poison-sigkill": scenario_poison_sigkill,
    "poison-segfault": scenario_poison_segfault,
}


async def run_scenario(name: str, base_url: str, quick: bool, seed: int) -> Outcome:
    database = f"{SCRATCH_PREFIX}_{name.replace('-', '_')}"
    log_dir = Path(tempfile.mkdtemp(prefix=f"soniq-faults-{name}-"))
    outcome = Outcome(name, log_dir)
    began = time.monotonic()
    url: str | None = None
    try:
        url = create_database(base_url, database)
        async with Harness(url, log_dir) as harness:
            await SCENARIO_FUNCTIONS[name](harness, outcome, quick, seed)
    except Exception:
        outcome.error = traceback.format_exc()
    finally:
        if url is not None:
            with contextlib.suppress(Exception):
                dump_tables(url, log_dir)
        drop_database(base_url, database)
        outcome.seconds = time.monotonic() - began
    return outcome


def main() -> int:
    global fault_jobs
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--url",
        default=os.environ.get(
            "SONIQ_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
        ),
        help="a database on the server; the scratch databases are created next to it",
    )
    add_only_option(parser, SCENARIOS)
    parser.add_argument("--quick", action="store_true", help="fewer jobs, kills and pauses")
    parser.add_argument("--seed", type=int, default=1, help="seed of durations and chaos timing")
    options = parser.parse_args()
    names = chosen_scenarios(parser, options.only, SCENARIOS)

    # fault_jobs builds its app from this variable at import; the enqueues here pass a
    # connection to the scenario's database, so this URL is never connected to.
    os.environ["SONIQ_DATABASE_URL"] = options.url
    fault_jobs = importlib.import_module("fault_jobs")

    print(
        f"soniq fault scenarios{' (quick)' if options.quick else ''}: {', '.join(names)}; "
        f"seed {options.seed}; Python {sys.version.split()[0]}, {os.cpu_count()} CPU(s)",
        flush=True,
    )

    def run(name: str) -> Outcome:
        return asyncio.run(run_scenario(name, options.url, options.quick, options.seed))

    def drop_databases() -> None:
        for database in list(_DATABASES):
            with contextlib.suppress(Exception):
                drop_database(options.url, database)

    return run_scenarios(names, run, print_results=print_table, cleanup=drop_databases)


if __name__ == "__main__":
    sys.exit(main())
