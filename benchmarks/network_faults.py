"""Network and server faults on real ``soniq`` processes, each scenario on a throwaway cluster.

    .venv/bin/python -m benchmarks.network_faults [--only partition,restart-load,...]

Every scenario starts a PostgreSQL cluster of its own (``tests/pg_server.ThrowawayCluster``,
``soniq setup`` applied), never the shared server; partitions go through the TCP proxy of
``tests/tcp_proxy.py``. Workers are ``python -m soniq.cli worker`` processes
(``SONIQ_JOBS_MODULES=benchmarks.network_fault_jobs``), schedulers ``python -m soniq.cli
scheduler``, each in a session of its own and killed if this script dies
(``benchmarks/processes.py``, shared with ``benchmarks/faults.py``); every job run appends its
start, cancellation and end, with ``time.time()``, to a tally file, so runs are lined up across
processes on one clock. At the end of a scenario, whatever happened: proxies forward again,
every process gets SIGTERM (then SIGKILL after 15 s), proxies and clusters are stopped. Worker
logs and tallies stay in a temporary directory, printed when a scenario fails.

1. ``partition``: heartbeat 1 s, timeout 5 s (lease 0.75 x min(5, 2 x 1) = 1.5 s). Worker A
   (concurrency 10) reaches the database through the proxy and runs 10 ``netbench.long(20)``
   async jobs; worker B (concurrency 10, direct) is started once A has started all 10. A is cut
   off (``proxy.drop()``) for 10 s, then the proxy forwards again; once every job is done and A
   is registered again, B is stopped and a second round runs the same with 10 fresh jobs and a
   30 s cut (with a new B). Per round: from the cut to A's last cancellation, to B's first
   start of one of the jobs, and per job A's cancellation (or end) minus B's first start of it
   (negative: a gap; the max over jobs); whether A's log has the WARNING "no contact with the
   database" during the cut and "reaches the database again" after it; A's completions after
   the cut and whether the database kept any (each job must be ``done`` once, with B's pid as
   result); A's row of before the cut ``dead`` with ``last_heartbeat_at <= stopped_at`` and a
   new ``running`` row of A. The jobs recovered from a dead worker run one at a time on B, so
   B runs them for 0.5 s instead of 20 s (``NETBENCH_RERUN_SECONDS``; the overlap is measured
   at B's start, which the duration does not change). Required: A cancels every job within its
   lease + 1 s of the cut, and before B starts it (overlap < 0); nothing of A accepted late.
2. ``restart-load``: one worker (concurrency 10; heartbeat 1 s, timeout 5 s, every other
   setting default); a thread of this script enqueues ``netbench.quick`` with ``enqueue_sync``
   at 200 a second from 3 s before a ``restart("fast")`` to 10 s after a following
   ``restart("immediate")`` 10 s later. Per restart: from ``restart()`` returning (``pg_ctl -w``:
   the server accepts connections) to the first job start after it; pickup latency (first start
   minus the moment ``enqueue_sync`` returned) p50/p99 of the jobs enqueued in the 10 s after
   it, with the 3 s before the first restart for reference; failed enqueues. Overall, after the
   stream stops and the queue drains: jobs enqueued (the call returned an id) that are not
   ``done``, jobs started twice, starts of jobs whose enqueue raised. Required: first start
   <= 1 s after the server accepts connections; 0 lost; 0 run twice (the worker is never
   presumed dead here, so the fence allows none).
3. ``enqueue-restart``: ``Soniq(database_url=...)`` in this process, its pools warmed by 3
   ``enqueue_sync`` and 3 ``await enqueue``; ``restart(mode)``, 2 s, then 8 ``enqueue_sync``
   and 8 ``await enqueue`` (one event loop throughout, an ``asyncio.Runner``), for fast then
   immediate: failures and their types. Then the server is stopped (``pg_ctl stop -m fast``)
   and one of each is tried: the exception type and how long the call took. Required: 0
   failures; ``soniq.DatabaseUnavailableError`` when the server is down.
4. ``hung-scheduler``: three ``soniq scheduler --tick 0.2`` processes with the schedule of
   ``tests/acceptance/scheduler_fault_jobs.py`` (every second, ``catch_up="all"``), the default
   ``SCHEDULER_LEASE`` (5 s) and ``ERROR_RETRY_DELAY=0.5``; one of them connects through the
   proxy as its own role with prepared statements off (so that ``FOR UPDATE`` is visible on the
   wire at every tick). Four times, just before a slot the two others are paused (SIGSTOP) for
   a moment so that the third wins the slot's tick, and its replies are cut after it sends
   ``FOR UPDATE`` (it holds the schedule's row lock, idle in its transaction) for 8 s; as
   in ``tests/acceptance/test_scheduler_faults.py``. From ``soniq_schedule_fires`` and
   ``soniq_jobs``: slots fired, missed (between the first and the last), doubled (more than one
   job per slot), the worst gap between consecutive fires (``fired_at``), from each cut to the
   next fire. Required: 0 missed, 0 doubled, worst gap <= lease + tick + 1 s (the slot period).
5. ``setup-race``: 5 rounds of two ``soniq setup`` started at once on a new, empty database.
   Required: both exit 0 in every round (each migration recorded once is reported).
6. ``fired-at``: one scheduler (tick 0.2); three times, this script takes ``LOCK TABLE
   soniq_schedule_fires IN EXCLUSIVE MODE``, waits for the scheduler's tick to block on it
   (it has locked the due schedule and waits to record the fire), and releases the lock 1.5 s
   after that tick's transaction began (``pg_stat_activity.xact_start``): the tick fires and
   commits late. For the fires of that transaction (``xmin``): ``fired_at`` minus the
   transaction start, and minus the moment of the release (``clock_timestamp()`` just before
   this script's COMMIT); the job's ``created_at`` (``now()``, the transaction start) for
   comparison. ``fired_at - fire_time`` p50/max over the other fires, and over the fires of
   ``hung-scheduler`` when it ran before. Required: ``fired_at`` after the release, and at
   least the hold after the transaction start (``clock_timestamp()``, not ``now()``).

Prints progress lines, each scenario's figures as it ends, then one markdown table (scenario,
measured, required, PASS/FAIL); exits 0 when every check passed, 1 otherwise (130 on Ctrl-C).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import logging
import math
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg

from benchmarks.network_fault_jobs import LONG, QUICK, RERUN_ENV, TALLY_ENV, Event, read_tally
from benchmarks.processes import ChildProcess, run_or_raise, start_logged, tail
from benchmarks.report import (
    Outcome,
    add_only_option,
    chosen_scenarios,
    print_markdown,
    run_scenarios,
)
from soniq import DatabaseUnavailableError, Soniq
from soniq.core.settings import SoniqSettings
from tests.pg_server import ThrowawayCluster
from tests.tcp_proxy import TcpProxy

ROOT = Path(__file__).resolve().parent.parent
JOBS_MODULE = "benchmarks.network_fault_jobs"
SCHEDULE_MODULE = "tests.acceptance.scheduler_fault_jobs"
STOP_TIMEOUT = 15.0
REGISTER_TIMEOUT = 30.0
POLL_EVERY = 0.1

# 1. partition
PARTITION_SETTINGS = {
    "SONIQ_HEARTBEAT_INTERVAL": "1",
    "SONIQ_HEARTBEAT_TIMEOUT": "5",
    "SONIQ_POLL_INTERVAL": "1",
    "SONIQ_SHUTDOWN_TIMEOUT": "2",
}
LEASE = 0.75 * min(5.0, 2 * 1.0)  # soniq.core.settings.worker_lease, with a session
PARTITION_JOBS = 10
LONG_SECONDS = 20.0
RERUN_SECONDS = 0.5
CUTS = (10.0, 30.0)
# 2. restart-load
RESTART_SETTINGS = {"SONIQ_HEARTBEAT_INTERVAL": "1", "SONIQ_HEARTBEAT_TIMEOUT": "5"}
RATE = 200.0
POOLED_RATE = 20.0
BEFORE = 3.0
AFTER = 10.0
MODES = ("fast", "immediate")
# 3. enqueue-restart
WARM = 3
BURST = 8
# 4. hung-scheduler and 6. fired-at
SCHEDULE = "fault.second"
TICK = 0.2
SCHEDULER_CUTS = 4
SCHEDULER_CUT_FOR = 8.0
CUT_ROLE = "cut_scheduler"
SCHEDULER_LEASE = float(SoniqSettings.model_fields["scheduler_lease"].default)
HOLD = 1.5
HOLDS = 3
# 5. setup-race
SETUP_ROUNDS = 5

SCENARIOS = (
    "partition",
    "restart-load",
    "enqueue-restart",
    "hung-scheduler",
    "setup-race",
    "fired-at",
)

# fired_at - fire_time of hung-scheduler's fires, for fired-at's report.
_SCHEDULER_LATENESS: list[float] = []
_BEGAN = time.monotonic()


# -- processes, clusters, proxies -----------------------------------------------------------------


def soniq_env(url: str, **extra: str) -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("SONIQ_", "DJANGO_", "NETBENCH_"))
    }
    env.pop("DATABASE_URL", None)
    env.update(SONIQ_DATABASE_URL=url, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
    env.update(extra)
    return env


def stop_all(procs: Sequence[ChildProcess]) -> None:
    """SIGTERM to every live one at once, SIGKILL to those still alive after 15 s."""
    live = [proc for proc in procs if proc.alive()]
    for proc in live:
        with contextlib.suppress(ProcessLookupError):
            proc.process.send_signal(signal.SIGCONT)
            proc.process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT
    for proc in live:
        try:
            proc.process.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.process.kill()
            proc.process.wait(10)


class Scope:
    """What one scenario started: stopped in close(), whatever happened."""

    def __init__(self, name: str, log_dir: Path) -> None:
        self.name = name
        self.log_dir = log_dir
        self.procs: list[ChildProcess] = []
        self.proxies: list[TcpProxy] = []
        self.clusters: list[ThrowawayCluster] = []
        self.cleanups: list[Callable[[], object]] = []

    def say(self, message: str) -> None:
        print(f"[{time.monotonic() - _BEGAN:6.1f}s] {self.name}: {message}", flush=True)

    def cluster(self, *, setup: bool = True) -> ThrowawayCluster:
        cluster = ThrowawayCluster()
        self.clusters.append(cluster)
        cluster.start()
        if setup:
            run_setup(cluster.url)
        self.say(f"cluster on port {cluster.port} up{' and set up' if setup else ''}")
        return cluster

    def proxy(self, port: int) -> TcpProxy:
        proxy = TcpProxy("127.0.0.1", port)
        self.proxies.append(proxy)
        return proxy.start()

    def spawn(self, label: str, args: Sequence[str], env: dict[str, str]) -> ChildProcess:
        proc = start_logged(
            label,
            [sys.executable, "-m", "soniq.cli", *args],
            env=env,
            cwd=ROOT,
            log_path=self.log_dir / f"{label}.log",
        )
        self.procs.append(proc)
        return proc

    def worker(
        self, label: str, url: str, tally: Path, concurrency: int, settings: dict[str, str]
    ) -> ChildProcess:
        env = soniq_env(url, SONIQ_JOBS_MODULES=JOBS_MODULE, **{TALLY_ENV: str(tally)})
        env.update(settings)
        return self.spawn(label, ["worker", "--concurrency", str(concurrency)], env)

    def close(self) -> None:
        for proxy in self.proxies:  # let cut-off processes reach the server to stop cleanly
            with contextlib.suppress(Exception):
                proxy.forward()
        for cleanup in reversed(self.cleanups):
            with contextlib.suppress(Exception):
                cleanup()
        stop_all(self.procs)
        for proxy in self.proxies:
            with contextlib.suppress(Exception):
                proxy.stop()
        for cluster in self.clusters:
            with contextlib.suppress(Exception):
                cluster.stop()


def run_setup(url: str) -> None:
    run_or_raise(
        "soniq setup",
        [sys.executable, "-m", "soniq.cli", "setup"],
        env=soniq_env(url),
        cwd=ROOT,
        timeout=180,
    )


def stop_server(cluster: ThrowawayCluster) -> None:
    """Stop the server but keep its files (``cluster.stop()`` removes them)."""
    subprocess.run(
        [*cluster.run_as, cluster.pg_ctl, "-D", str(cluster.data), "-m", "fast", "-w", "stop"],
        capture_output=True,
        check=True,
    )


# -- small helpers --------------------------------------------------------------------------------


def query(url: str, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
        cursor = conn.execute(sql, params)
        return cursor.fetchall() if cursor.description else []


def wait_until(predicate: Callable[[], Any], timeout: float, every: float = POLL_EVERY) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(every)


def wait_registered(url: str, proc: ChildProcess) -> str:
    """The worker's id once it has its ``running`` row."""
    found: list[str] = []

    def registered() -> bool:
        if not proc.alive():
            raise RuntimeError(f"{proc.label} exited with {proc.process.returncode}:\n{proc.log()}")
        found[:] = [row[0] for row in running_rows(url, proc.pid)]
        return bool(found)

    if not wait_until(registered, REGISTER_TIMEOUT):
        raise RuntimeError(f"{proc.label} did not register:\n{tail(proc.log())}")
    return found[0]


def running_rows(url: str, pid: int) -> list[tuple[Any, ...]]:
    return query(
        url, "SELECT id::text FROM soniq_workers WHERE pid = %s AND status = 'running'", (pid,)
    )


def enqueue_many(url: str, task: str, args: list[dict[str, Any]]) -> list[str]:
    app = Soniq(database_url=url)
    try:
        return app.enqueue_many_sync(task, args)
    finally:
        asyncio.run(app.close())


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return math.nan
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def type_name(exc: BaseException) -> str:
    kind = type(exc)
    return f"{kind.__module__}.{kind.__qualname__}".removeprefix("builtins.")


_LOG_LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) (\w+) (.*)$")


def log_lines(text: str) -> list[tuple[float, str, str]]:
    """(wall-clock time, level, message) of each line of a soniq log (asctime: local time,
    milliseconds)."""
    found = []
    for line in text.splitlines():
        match = _LOG_LINE.match(line)
        if match:
            at = datetime.strptime(match[1], "%Y-%m-%d %H:%M:%S,%f").timestamp()
            found.append((at, match[2], match[3]))
    return found


def require(ok: bool, message: str) -> None:
    if not ok:
        raise RuntimeError(message)


# -- 1. partition ---------------------------------------------------------------------------------


def scenario_partition(s: Scope, out: Outcome) -> None:
    cluster = s.cluster()
    url = cluster.url
    tally = s.log_dir / "tally"
    proxy = s.proxy(cluster.port)
    a = s.worker("A", proxy.url_for(url), tally, 10, PARTITION_SETTINGS)
    wait_registered(url, a)
    out.figure("B's runs of the recovered 20 s jobs", f"{RERUN_SECONDS:g} s each ({RERUN_ENV})")
    for number, cut_for in enumerate(CUTS, 1):
        ids = enqueue_many(url, LONG, [{"seconds": LONG_SECONDS}] * PARTITION_JOBS)
        wanted = set(ids)

        def a_started(wanted: set[str] = wanted) -> bool:
            started = {e.job_id for e in read_tally(tally) if e.what == "start" and e.pid == a.pid}
            return wanted <= started

        require(wait_until(a_started, 30), f"A did not start the 10 jobs:\n{tail(a.log())}")
        [a_id] = [row[0] for row in running_rows(url, a.pid)]
        b = s.worker(
            f"B{number}", url, tally, 10, {**PARTITION_SETTINGS, RERUN_ENV: str(RERUN_SECONDS)}
        )
        wait_registered(url, b)
        s.say(f"round {number}: A runs 10 x {LONG_SECONDS:g} s jobs; cutting it off {cut_for:g} s")
        cut_at = time.time()
        proxy.drop()
        time.sleep(max(0.0, cut_at + cut_for - time.time()))
        heal_at = time.time()
        proxy.forward()
        s.say(f"round {number}: healed; settling")

        def settled(wanted: set[str] = wanted, a_id: str = a_id, heal_at: float = heal_at) -> bool:
            done = query(
                url,
                "SELECT count(*) FROM soniq_jobs WHERE id = ANY(%s::uuid[]) AND status = 'done'",
                (list(wanted),),
            )[0][0]
            again = any(id_ != a_id for (id_,) in running_rows(url, a.pid))
            back = any(
                "reaches the database again" in m and t >= heal_at - 1
                for t, _, m in log_lines(a.log())
            )
            return done == len(wanted) and again and back

        settled_ok = wait_until(settled, 90)
        stop_all([b])
        report_round(out, number, cut_for, url, tally, a, b, ids, a_id, cut_at, heal_at)
        out.figure(f"round {number}: settled within 90 s of the heal", settled_ok)


def report_round(
    out: Outcome,
    number: int,
    cut_for: float,
    url: str,
    tally: Path,
    a: ChildProcess,
    b: ChildProcess,
    ids: list[str],
    a_id: str,
    cut_at: float,
    heal_at: float,
) -> None:
    wanted = set(ids)
    events = [e for e in read_tally(tally) if e.job_id in wanted]
    a_gave_up: dict[str, Event] = {}
    b_start: dict[str, float] = {}
    for e in events:
        if e.pid == a.pid and e.what in ("cancelled", "end") and e.at >= cut_at:
            a_gave_up.setdefault(e.job_id, e)
        if e.pid == b.pid and e.what == "start":
            b_start.setdefault(e.job_id, e.at)
    cancelled = [e.at - cut_at for e in a_gave_up.values() if e.what == "cancelled"]
    overlaps = [
        (a_gave_up[job].at if job in a_gave_up else math.inf) - b_start[job]
        for job in ids
        if job in b_start
    ]
    max_cancel = max(cancelled, default=math.inf)
    first_b = min(b_start.values(), default=math.inf) - cut_at
    max_overlap = max(overlaps, default=-math.inf)
    label = f"round {number} (cut {cut_for:g} s)"
    out.check(
        f"{label}: A gives up before B takes over",
        f"A cancelled {len(cancelled)}/{len(ids)} by +{max_cancel:.2f} s; B's first start "
        f"+{first_b:.2f} s ({len(b_start)}/{len(ids)} taken); max overlap "
        f"{max_overlap:+.2f} s",
        f"all cancelled <= lease {LEASE:g} s + 1 s; overlap < 0",
        len(cancelled) == len(ids) and max_cancel <= LEASE + 1 and max_overlap < 0,
    )

    a_ends = sum(1 for e in events if e.pid == a.pid and e.what == "end" and e.at >= cut_at)
    ends = Counter(e.job_id for e in events if e.what == "end")
    b_ends = {e.job_id for e in events if e.what == "end" and e.pid == b.pid}
    rows = query(
        url,
        "SELECT id::text, status, result->>'pid' FROM soniq_jobs WHERE id = ANY(%s::uuid[])",
        (ids,),
    )
    accepted_late = sum(1 for _, _, pid in rows if pid == str(a.pid))
    once = sum(
        1
        for job, status, pid in rows
        if status == "done" and pid == str(b.pid) and ends[job] == 1 and job in b_ends
    )
    out.check(
        f"{label}: late completions accepted",
        f"{accepted_late} (A's completions after the cut: {a_ends}); "
        f"{once}/{len(ids)} done exactly once with B's result",
        f"0; {len(ids)}/{len(ids)}",
        accepted_late == 0 and once == len(ids),
    )

    lines = [(t, level, m) for t, level, m in log_lines(a.log()) if t >= cut_at - 0.01]
    fence = [
        t
        for t, level, m in lines
        if level == "WARNING" and "no contact with the database" in m and t <= heal_at
    ]
    back = [t for t, _, m in lines if "reaches the database again" in m]
    presumed = sum(1 for _, _, m in lines if "presumed dead" in m)
    out.check(
        f"{label}: A's log",
        ("'no contact with the database' at " + f"+{fence[0] - cut_at:.2f} s" if fence else "no")
        + "; 'reaches the database again' "
        + (f"{back[0] - heal_at:+.2f} s after the heal" if back else "missing")
        + f"; 'presumed dead' lines: {presumed}",
        "the cut logged during it, the return after it",
        bool(fence) and bool(back),
    )

    workers = query(
        url,
        "SELECT id::text, status, last_heartbeat_at <= stopped_at FROM soniq_workers "
        "WHERE pid = %s",
        (a.pid,),
    )
    old = [(status, fenced) for id_, status, fenced in workers if id_ == a_id]
    new = [id_ for id_, status, _ in workers if id_ != a_id and status == "running"]
    old_text = f"old row {old[0][0]}, last_heartbeat_at <= stopped_at: {old[0][1]}" if old else "?"
    out.check(
        f"{label}: A's rows after the heal",
        f"{old_text}; new running row: {'yes' if new else 'no'}",
        "old row dead with last_heartbeat_at <= stopped_at; a new row",
        bool(old) and old[0] == ("dead", True) and bool(new),
    )


# -- 2. restart-load ------------------------------------------------------------------------------


class Enqueuer(threading.Thread):
    """``enqueue_sync(QUICK)`` at ``rate`` a second (no catch-up burst after a stall): through
    the app's pool (``pooled``), or on a connection of this thread, opened again at once after
    an error, so that the stream goes on as soon as the server accepts connections."""

    def __init__(self, url: str, rate: float, *, pooled: bool) -> None:
        super().__init__(name=f"enqueuer-{'pooled' if pooled else 'direct'}", daemon=True)
        self.url = url
        self.rate = rate
        self.pooled = pooled
        self.enqueued: list[tuple[str, float]] = []  # (id, time.time() when the call returned)
        self.errors: list[tuple[float, str]] = []
        self._stopping = threading.Event()

    def run(self) -> None:
        app = Soniq(database_url=self.url)
        conn: psycopg.Connection[Any] | None = None
        try:
            next_at = time.monotonic()
            while not self._stopping.is_set():
                next_at += 1 / self.rate
                delay = next_at - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                else:
                    next_at = time.monotonic()
                try:
                    if self.pooled:
                        job_id = app.enqueue_sync(QUICK)
                    else:
                        if conn is None:
                            conn = psycopg.connect(self.url, autocommit=True, connect_timeout=2)
                        job_id = app.enqueue_sync(QUICK, connection=conn)
                except Exception as exc:
                    self.errors.append((time.time(), type_name(exc)))
                    if conn is not None:
                        conn.close()
                        conn = None
                else:
                    self.enqueued.append((job_id, time.time()))
        finally:
            if conn is not None:
                conn.close()
            with contextlib.suppress(Exception):
                asyncio.run(app.close())

    def stop(self) -> None:
        self._stopping.set()
        if self.is_alive():
            self.join(30)

    def first_after(self, moment: float) -> float:
        return min((at for _, at in self.enqueued if at > moment), default=math.inf) - moment

    def longest_pause(self, since: float, until: float) -> float:
        times = [since, *(at for _, at in self.enqueued if since < at <= until), until]
        return max(b - a for a, b in itertools.pairwise(times))


def scenario_restart_load(s: Scope, out: Outcome) -> None:
    cluster = s.cluster()
    url = cluster.url
    tally = s.log_dir / "tally"
    worker = s.worker("W", url, tally, 10, RESTART_SETTINGS)
    wait_registered(url, worker)
    direct = Enqueuer(url, RATE, pooled=False)
    pooled = Enqueuer(url, POOLED_RATE, pooled=True)
    for enqueuer in (direct, pooled):
        s.cleanups.append(enqueuer.stop)
        enqueuer.start()
    s.say(f"enqueueing {RATE:g} jobs/s on a connection, {POOLED_RATE:g}/s through the pool")
    time.sleep(BEFORE)
    marks: list[tuple[str, float, float]] = []
    for mode in MODES:
        s.say(f"restart({mode!r})")
        began = time.time()
        cluster.restart(mode)
        marks.append((mode, began, time.time()))
        time.sleep(AFTER)
    for enqueuer in (direct, pooled):
        enqueuer.stop()
    ids = [job_id for job_id, _ in direct.enqueued + pooled.enqueued]
    s.say(f"{len(ids)} enqueued; draining")

    def drained() -> bool:
        done = query(
            url,
            "SELECT count(*) FROM soniq_jobs WHERE id = ANY(%s::uuid[]) AND status = 'done'",
            (ids,),
        )[0][0]
        return bool(done == len(ids))

    drained_ok = wait_until(drained, 60, every=0.5)
    starts = [e for e in read_tally(tally) if e.what == "start"]
    first_start: dict[str, float] = {}
    for e in starts:
        first_start.setdefault(e.job_id, e.at)
    start_times = sorted(e.at for e in starts)

    def pickups(since: float, until: float) -> list[float]:
        return [
            (first_start[job] - at) * 1000
            for job, at in direct.enqueued
            if since <= at <= until and job in first_start
        ]

    base = pickups(marks[0][1] - BEFORE, marks[0][1])
    out.figure(
        f"pickup in the {BEFORE:g} s before the first restart, p50/p99",
        f"{percentile(base, 0.5):.1f} / {percentile(base, 0.99):.1f} ms ({len(base)} jobs)",
    )
    for mode, began, back in marks:
        after = [t for t in start_times if t > back]
        first = after[0] - back if after else math.inf
        window = pickups(back, back + AFTER)
        errors = [kind for at, kind in direct.errors if began - 1 <= at <= back + AFTER]
        pooled_errors = [kind for at, kind in pooled.errors if began - 1 <= at <= back + AFTER]
        out.figure(
            f"{mode}: failed enqueues on the connection (each reconnects)",
            f"{len(errors)} {dict(Counter(errors))}; first success "
            f"{direct.first_after(back):.3f} s after the server was back",
        )
        out.figure(
            f"{mode}: enqueue_sync through the app's pool",
            f"{len(pooled_errors)} failed {dict(Counter(pooled_errors))}; first success "
            f"{pooled.first_after(back):.3f} s after the server was back; longest pause "
            f"between successes {pooled.longest_pause(began - 1, back + AFTER):.2f} s",
        )
        out.check(
            f"{mode} restart: first start after the server accepts connections",
            f"{first:.3f} s (restart() took {back - began:.2f} s); pickup p50/p99 over the next "
            f"{AFTER:g} s {percentile(window, 0.5):.1f} / {percentile(window, 0.99):.1f} ms "
            f"({len(window)} jobs; before the restarts {percentile(base, 0.5):.1f} / "
            f"{percentile(base, 0.99):.1f} ms); pooled enqueue_sync: {len(pooled_errors)} "
            f"failed, first success {pooled.first_after(back):.2f} s after",
            "<= 1 s",
            first <= 1.0,
        )
    done = {
        row[0]
        for row in query(
            url,
            "SELECT id::text FROM soniq_jobs WHERE id = ANY(%s::uuid[]) AND status = 'done'",
            (ids,),
        )
    }
    lost = [job for job in ids if job not in done or job not in first_start]
    twice = sum(1 for count in Counter(e.job_id for e in starts).values() if count > 1)
    unknown = len(set(first_start) - set(ids))
    raised = len(direct.errors) + len(pooled.errors)
    presumed = worker.log().count("presumed dead")
    out.figure("drained within 60 s", drained_ok)
    out.check(
        "jobs lost",
        f"{len(lost)} of {len(ids)} enqueued ({raised} enqueues raised; {unknown} of those "
        "ran anyway)",
        "0",
        not lost,
    )
    out.check(
        "jobs run twice",
        f"{twice}; worker presumed dead {presumed} time(s)",
        "0 (the fence allows none: the worker is never presumed dead)",
        twice == 0 or (presumed > 0 and twice <= 10),
    )


# -- 3. enqueue-restart ---------------------------------------------------------------------------


def scenario_enqueue_restart(s: Scope, out: Outcome) -> None:
    cluster = s.cluster()
    app = Soniq(database_url=cluster.url)
    runner = asyncio.Runner()
    s.cleanups.append(runner.close)
    s.cleanups.append(lambda: runner.run(app.close()))
    for _ in range(WARM):
        app.enqueue_sync(QUICK)
        runner.run(app.enqueue(QUICK))

    async def many_async(count: int) -> list[str]:
        failures = []
        for _ in range(count):
            try:
                await app.enqueue(QUICK)
            except Exception as exc:
                failures.append(type_name(exc))
        return failures

    for mode in MODES:
        cluster.restart(mode)
        s.say(f"restart({mode!r}); enqueueing 2 s later")
        time.sleep(2.0)
        failures: list[str] = []
        for _ in range(BURST):
            try:
                app.enqueue_sync(QUICK)
            except Exception as exc:
                failures.append(f"sync {type_name(exc)}")
        failures += [f"async {kind}" for kind in runner.run(many_async(BURST))]
        out.check(
            f"{BURST} enqueue_sync + {BURST} await enqueue 2 s after a {mode} restart",
            f"{len(failures)} failed" + (f": {dict(Counter(failures))}" if failures else ""),
            "0 failures",
            not failures,
        )

    stop_server(cluster)
    s.say("server stopped; enqueueing")
    outcomes: list[tuple[str, str, float, bool]] = []
    for kind in ("sync", "async"):
        began = time.monotonic()
        try:
            if kind == "sync":
                app.enqueue_sync(QUICK)
            else:
                runner.run(app.enqueue(QUICK))
        except Exception as exc:
            ok = isinstance(exc, DatabaseUnavailableError)
            outcomes.append((kind, type_name(exc), time.monotonic() - began, ok))
        else:
            outcomes.append((kind, "no error", time.monotonic() - began, False))
    out.check(
        "enqueue with the server stopped",
        "; ".join(f"{kind}: {name} after {took:.2f} s" for kind, name, took, _ in outcomes),
        "soniq.DatabaseUnavailableError",
        all(ok for *_, ok in outcomes),
    )


# -- 4. hung-scheduler ----------------------------------------------------------------------------


def scheduler_env(url: str, **extra: str) -> dict[str, str]:
    return soniq_env(
        url, SONIQ_JOBS_MODULES=SCHEDULE_MODULE, SONIQ_ERROR_RETRY_DELAY="0.5", **extra
    )


def fires(url: str) -> list[tuple[datetime, datetime, str]]:
    """(fire_time, fired_at, xmin) of the schedule's fires, by fire_time."""
    rows = query(
        url,
        "SELECT fire_time, fired_at, xmin::text FROM soniq_schedule_fires "
        "WHERE schedule_name = %s ORDER BY fire_time",
        (SCHEDULE,),
    )
    return [(row[0], row[1], row[2]) for row in rows]


def stuck_tick(url: str) -> tuple[bool, datetime] | None:
    """The cut-off scheduler's session, idle in its tick's transaction (its replies held):
    whether it holds a row lock (a transaction id) and since when."""
    rows = query(
        url,
        "SELECT backend_xid IS NOT NULL, state_change FROM pg_stat_activity "
        "WHERE usename = %s AND state = 'idle in transaction' "
        "AND clock_timestamp() - state_change > interval '200 milliseconds'",
        (CUT_ROLE,),
    )
    return (bool(rows[0][0]), rows[0][1]) if rows else None


def scenario_hung_scheduler(s: Scope, out: Outcome) -> None:
    cluster = s.cluster()
    url = cluster.url
    query(url, f"CREATE ROLE {CUT_ROLE} LOGIN SUPERUSER")
    proxy = s.proxy(cluster.port)
    args = ["scheduler", "--tick", str(TICK)]
    direct = [s.spawn(f"scheduler-{n}", args, scheduler_env(url)) for n in range(2)]
    cut_url = proxy.url_for(url.replace("postgres@", f"{CUT_ROLE}@", 1))
    cut = s.spawn("scheduler-cut", args, scheduler_env(cut_url, SONIQ_PREPARED_STATEMENTS="false"))
    require(wait_until(lambda: len(fires(url)) >= 3, 30), f"no fires:\n{tail(cut.log())}")

    cut_at: list[datetime] = []
    attempts = 0
    while len(cut_at) < SCHEDULER_CUTS:
        attempts += 1
        require(attempts <= 30, "the scheduler behind the proxy never won a tick")
        # Just before the next slot the other two pause for a moment, so that the one behind
        # the proxy wins that slot's tick and locks the schedule.
        next_slot = max(fire_time for fire_time, _, _ in fires(url)) + timedelta(seconds=1)
        time.sleep(max(0.0, (next_slot - datetime.now(UTC)).total_seconds() - 0.15))
        for proc in direct:
            proc.process.send_signal(signal.SIGSTOP)
        stuck: tuple[bool, datetime] | None = None
        try:
            proxy.cut_replies_after(b"FOR UPDATE")
            deadline = time.monotonic() + 1.0
            while stuck is None and time.monotonic() < deadline:
                stuck = stuck_tick(url)
                time.sleep(0.02)
        finally:
            for proc in direct:
                proc.process.send_signal(signal.SIGCONT)
        if stuck is None or not stuck[0]:
            proxy.forward()  # it ticked before the slot was due: try the next one
            time.sleep(1.0)
            continue
        cut_at.append(stuck[1])
        s.say(f"cut {len(cut_at)}: the proxied scheduler holds the schedule's lock")
        time.sleep(max(0.0, SCHEDULER_CUT_FOR - (datetime.now(UTC) - stuck[1]).total_seconds()))
        proxy.forward()
        time.sleep(2.0)
    time.sleep(2.0)
    stop_all([*direct, cut])
    codes = [proc.process.returncode for proc in [*direct, cut]]

    found = fires(url)
    slots = [fire_time for fire_time, _, _ in found]
    expected = round((slots[-1] - slots[0]).total_seconds()) + 1
    missed = expected - len(set(slots))
    jobs = query(
        url,
        "SELECT scheduled_at, count(*) FROM soniq_jobs WHERE task_name = %s GROUP BY 1",
        (SCHEDULE,),
    )
    doubled = sum(1 for _, count in jobs if count > 1) + (len(slots) - len(set(slots)))
    fired_at = sorted(at for _, at, _ in found)
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(fired_at)]
    takeover = [
        min((at - moment).total_seconds() for at in fired_at if at > moment) for moment in cut_at
    ]
    lateness = [(at - slot).total_seconds() for slot, at, _ in found]
    _SCHEDULER_LATENESS[:] = lateness
    groups: dict[str, list[tuple[datetime, datetime]]] = {}
    for slot, at, xmin in found:
        groups.setdefault(xmin, []).append((slot, at))
    multi = [group for group in groups.values() if len(group) > 1]
    distinct = all(
        all(a[1] < b[1] for a, b in itertools.pairwise(sorted(group))) for group in multi
    )
    abandoned = cut.log().count("scheduler tick abandoned")
    bound = SCHEDULER_LEASE + TICK + 1.0
    out.figure("cuts / attempts", f"{len(cut_at)} / {attempts}")
    out.figure("from each cut to the next fire, s", ", ".join(f"{t:.2f}" for t in takeover))
    out.figure("abandoned ticks logged behind the proxy", abandoned)
    out.figure("exit codes", codes)
    out.figure(
        "fired_at - fire_time, p50 / max",
        f"{percentile(lateness, 0.5) * 1000:.0f} / {max(lateness) * 1000:.0f} ms",
    )
    out.figure(
        "catch-up ticks (several slots in one transaction)",
        f"{len(multi)}; fired_at increasing within each: {distinct}",
    )
    out.check(
        "slots",
        f"{len(slots)} fired over {expected} s; {missed} missed; {doubled} doubled",
        "0 missed, 0 doubled",
        missed == 0 and doubled == 0,
    )
    out.check(
        "worst gap between consecutive fires",
        f"{max(gaps):.2f} s (from each cut to the next fire "
        f"{', '.join(f'{t:.2f}' for t in takeover)} s)",
        f"<= lease {SCHEDULER_LEASE:g} + tick {TICK:g} + 1 = {bound:.1f} s",
        max(gaps) <= bound,
    )


# -- 5. setup-race --------------------------------------------------------------------------------


def scenario_setup_race(s: Scope, out: Outcome) -> None:
    from soniq.management.commands.migrate import WAITING

    cluster = s.cluster(setup=False)
    results: list[list[int | None]] = []
    waited = 0
    recorded_once = True
    for number in range(1, SETUP_ROUNDS + 1):
        name = f"race{number}"
        query(cluster.url, f'CREATE DATABASE "{name}"')
        url = cluster.url.rsplit("/", 1)[0] + f"/{name}"
        procs = [s.spawn(f"setup-{number}-{n}", ["setup"], soniq_env(url)) for n in range(2)]
        for proc in procs:
            try:
                proc.process.wait(180)
            except subprocess.TimeoutExpired:
                stop_all([proc])
        codes = [proc.process.returncode for proc in procs]
        results.append(codes)
        waited += sum(1 for proc in procs if WAITING in proc.log()) > 0
        [(total, distinct)] = query(
            url, "SELECT count(*), count(DISTINCT (app, name)) FROM django_migrations"
        )
        recorded_once = recorded_once and total == distinct
        s.say(f"round {number}: exit codes {codes}")
    ok_rounds = sum(1 for codes in results if codes == [0, 0])
    out.check(
        "two `soniq setup` at once on a fresh database",
        f"{ok_rounds}/{SETUP_ROUNDS} rounds both exit 0 ({results}); one waited for the "
        f"other in {waited}; each migration recorded once: {recorded_once}",
        "both exit 0 in every round",
        ok_rounds == SETUP_ROUNDS and recorded_once,
    )


# -- 6. fired-at ----------------------------------------------------------------------------------


def hold_a_tick(url: str) -> tuple[float, float, float]:
    """Block the next tick's fire for HOLD s after its transaction began; for its fires:
    (fired_at - transaction start, fired_at - release, job created_at - transaction start),
    the worst of each."""
    with psycopg.connect(url, connect_timeout=5) as locker:
        locker.execute("LOCK TABLE soniq_schedule_fires IN EXCLUSIVE MODE")
        waiting: list[tuple[Any, ...]] = []

        def blocked() -> bool:
            waiting[:] = query(
                url,
                "SELECT backend_xid::text, xact_start, clock_timestamp() FROM pg_stat_activity "
                "WHERE wait_event_type = 'Lock' AND state = 'active' "
                "AND application_name = 'soniq' AND backend_xid IS NOT NULL",
            )
            return bool(waiting)

        require(wait_until(blocked, 5, every=0.02), "no tick blocked on the lock")
        xid, xact_start, now = waiting[0]
        time.sleep(max(0.0, HOLD - (now - xact_start).total_seconds()))
        [(released,)] = locker.execute("SELECT clock_timestamp()").fetchall()
        locker.commit()
    rows: list[tuple[Any, ...]] = []

    def fired() -> bool:
        rows[:] = query(
            url,
            "SELECT f.fired_at, j.created_at FROM soniq_schedule_fires f "
            "JOIN soniq_jobs j ON j.id = f.job_id WHERE f.xmin = %s::xid",
            (xid,),
        )
        return bool(rows)

    require(wait_until(fired, 5), f"the held tick (xid {xid}) recorded no fire")
    after_start = min((at - xact_start).total_seconds() for at, _ in rows)
    after_release = min((at - released).total_seconds() for at, _ in rows)
    created = max(abs((created - xact_start).total_seconds()) for _, created in rows)
    return after_start, after_release, created


def scenario_fired_at(s: Scope, out: Outcome) -> None:
    cluster = s.cluster()
    url = cluster.url
    s.spawn("scheduler", ["scheduler", "--tick", str(TICK)], scheduler_env(url))
    require(wait_until(lambda: len(fires(url)) >= 3, 30), "the scheduler fired nothing")
    held = []
    for number in range(1, HOLDS + 1):
        held.append(hold_a_tick(url))
        s.say(f"held tick {number}: fired_at {held[-1][0]:.3f} s after its transaction began")
        time.sleep(1.0)
    time.sleep(1.0)
    stop_all(s.procs)
    found = fires(url)
    lateness = [(at - slot).total_seconds() for slot, at, _ in found]
    late_text = (
        f"fired_at - fire_time p50/max: here {percentile(lateness, 0.5) * 1000:.0f} / "
        f"{max(lateness) * 1000:.0f} ms ({len(lateness)} fires, the held ones included)"
    )
    if _SCHEDULER_LATENESS:
        late_text += (
            f", hung-scheduler {percentile(_SCHEDULER_LATENESS, 0.5) * 1000:.0f} / "
            f"{max(_SCHEDULER_LATENESS) * 1000:.0f} ms ({len(_SCHEDULER_LATENESS)} fires)"
        )
    out.figure("fired_at - fire_time", late_text)
    out.check(
        f"fired_at of a tick held {HOLD:g} s before its fire",
        "fired_at - transaction start "
        + ", ".join(f"{a:.3f}" for a, _, _ in held)
        + " s; fired_at - lock release "
        + ", ".join(f"{r * 1000:+.1f}" for _, r, _ in held)
        + " ms; job created_at (now()) - transaction start "
        + f"<= {max(c for *_, c in held) * 1000:.1f} ms; {late_text}",
        f"fired_at after the release and >= {HOLD:g} s after the transaction start",
        all(r > 0 and a >= HOLD - 0.05 for a, r, _ in held),
    )


# -- running ---------------------------------------------------------------------------------------

SCENARIO_FUNCTIONS: dict[str, Callable[[Scope, Outcome], None]] = {
    "partition": scenario_partition,
    "restart-load": scenario_restart_load,
    "enqueue-restart": scenario_enqueue_restart,
    "hung-scheduler": scenario_hung_scheduler,
    "setup-race": scenario_setup_race,
    "fired-at": scenario_fired_at,
}


def run_scenario(name: str) -> Outcome:
    log_dir = Path(tempfile.mkdtemp(prefix=f"soniq-netfaults-{name}-"))
    outcome = Outcome(name, log_dir)
    scope = Scope(name, log_dir)
    began = time.monotonic()
    scope.say("starting")
    try:
        SCENARIO_FUNCTIONS[name](scope, outcome)
    except Exception:
        outcome.error = traceback.format_exc()
    finally:
        scope.close()
        outcome.seconds = time.monotonic() - began
    return outcome


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    add_only_option(parser, SCENARIOS)
    names = chosen_scenarios(parser, parser.parse_args().only, SCENARIOS)
    # psycopg_pool warns about every failed connection attempt while a server is down on
    # purpose; the scenarios report what the callers saw.
    logging.getLogger("psycopg.pool").setLevel(logging.CRITICAL)
    print(
        f"soniq network faults: {', '.join(names)}; Python {sys.version.split()[0]}, "
        f"{os.cpu_count()} CPU(s)",
        flush=True,
    )
    return run_scenarios(names, run_scenario, print_results=print_markdown)


if __name__ == "__main__":
    sys.exit(main())
