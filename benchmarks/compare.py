"""soniq side by side with pgqueuer 1.6.0 and procrastinate 3.10.0, on the same workload.

    .venv/bin/python benchmarks/compare.py [--rounds 3] [--jobs 20000] [--singles 2000]
        [--latency-samples 200] [--systems soniq,pgqueuer,procrastinate] [--concurrency 10]
        [--prefilled 1000000] [--high-concurrency 100]
        [--url postgresql://postgres@127.0.0.1:5432/postgres] [--venv-dir DIR]

Each peer runs in a virtualenv of its own, which this script builds on first use under
``--venv-dir`` (default ``$XDG_CACHE_HOME/soniq-compare``, i.e. ``~/.cache/soniq-compare``,
outside the repository) with ``pip install pgqueuer[asyncpg]==1.6.0 'typer<0.29'`` (``pgq
run`` fails at its start with typer 0.29) and ``pip install procrastinate==3.10.0
psycopg[binary,pool]``; soniq runs from the virtualenv of the Python running this script
(``.venv``). Nothing of a peer is imported here: each system's side is a
module executed by that system's own interpreter (``benchmarks/compare_soniq.py``,
``compare_pgqueuer.py``, ``compare_procrastinate.py``, with ``compare_common.py``, standard
library only, shared by all three). This script only creates the databases, starts and stops
the processes, polls the database and takes the times.

Rounds are interleaved (round 1: soniq, soniq's two extra drains, pgqueuer, procrastinate;
round 2: the same; ...), so that a noisy moment of a shared machine does not favour one system.
Every system gets a fresh scratch database in every round (``soniq_bench_compare_<system>``,
dropped at the end of the round, also on errors), its schema installed by its own command:
``soniq setup`` (soniq's migrations), ``pgq install``, ``procrastinate
--app=compare_procrastinate.app schema --apply``. Then, per system and round:

1. **Bulk enqueue.** A client process of the system (``compare_<system>.py client``, connected
   before anything is timed) enqueues ``--jobs`` no-op jobs numbered 0 .. jobs-1 with the
   system's bulk API, no worker running: soniq ``await app.enqueue_many(noop, rows)``,
   pgqueuer ``await queries.enqueue(entrypoints, payloads, priorities)`` (lists), procrastinate
   ``await noop.batch_defer_async(*rows)``. jobs/s = jobs / the duration of that one call.
2. **Drain.** ONE worker process through the system's documented entry point, 10 jobs at once:
   ``soniq worker --concurrency 10`` (the console script, as ``benchmarks/worker.py`` starts
   it), ``pgq run compare_pgqueuer:create --max-concurrent-tasks 10 --batch-size 5`` (pgqueuer
   requires a batch of at most half the cap), ``procrastinate --app=compare_procrastinate.app
   --log-level=warning worker --concurrency 10`` (its CLI logs two INFO lines per job by
   default, about 5 % of its drain here; the other two log none per job). Each otherwise runs
   with its defaults (procrastinate's connector is ``PsycopgConnector(conninfo=...)``: a pool of
   at most 4 connections; 10 made no difference). The drain is timed from
   the moment the worker is ready, taken as the start of its first job (that job sends
   ``time.time()`` over UDP as its first statement; none of the three has started one before
   its start-up is over, and pgqueuer records no worker registration to time from instead), to
   the first poll (every 20 ms, ``time.time()`` after it returns) that finds no job left to
   run: soniq no job ``queued`` nor ``processing`` (two counts, one on each of its partial
   indexes: a poll that scanned the whole table would weigh on the prefilled drain below),
   pgqueuer any row left in ``pgqueuer``
   (it deletes a job when it logs its completion), procrastinate ``status IN ('todo',
   'doing')``. jobs/s = jobs / that span. The worker's CPU time over that span (from
   ``/proc/<pid>/stat``) is printed with each round.
3. **Latency.** After 0.5 s of quiet, with that worker idle and listening, the client enqueues
   3 warm-up jobs and then ``--latency-samples`` jobs one at a time with the single-job API;
   each is sent once the previous one has started and 20 ms more have passed, so every job
   meets an idle worker. The job's first statement reads ``time.time()`` and sends it over UDP;
   latency = that minus ``time.time()`` read in the client just before the enqueue call (same
   machine clock). p50 / p95 / p99 are nearest-rank. Each round's line also gives the median
   duration of the enqueue call itself.
4. **Worker peak memory**: VmHWM from ``/proc/<pid>/status`` of the worker process, read
   before it gets SIGTERM (the three are single processes).
5. **Single enqueue**, after the worker has stopped: the client enqueues ``--singles`` no-op
   jobs one after another with the single-job API (soniq ``await app.enqueue(noop, n=...)``,
   pgqueuer ``await queries.enqueue(entrypoint, payload)``, procrastinate ``await
   noop.defer_async(n=...)``); jobs/s = singles / the whole loop. The database then must hold
   exactly that many jobs still to run. They are measured without a worker so that none of
   the three has a worker taking CPU from the enqueuer on this 2-core machine, on the table
   as each system leaves it after the drain.

**soniq's two extra drains**, in every round right after soniq's own, each in a fresh scratch
database of its own (``soniq_bench_compare_soniq_prefilled``, ``..._soniq_c<N>``) and each
only steps 1 and 2 above (bulk enqueue of the same ``--jobs``, drain timed the same way), then
the worker's peak memory and SIGTERM:

- **With finished jobs stored** (``--prefilled``, default 1,000,000; 0 skips it): after
  ``soniq setup`` and before the bulk enqueue, one ``INSERT ... SELECT FROM generate_series``
  stores that many no-op jobs as soniq's worker leaves them: ``done`` at attempt 1, claimed,
  started and finished a few ms after their enqueue, no result (the no-op returns None,
  stored as NULL), by a worker since gone, finished over the 12 hours before the round (inside
  the 24 h result retention, so that the worker's cleanup prunes none of them during the
  drain); then ``VACUUM ANALYZE soniq_jobs``, as autovacuum would leave a table with that
  history (its statistics taken while no job was queued), and a ``CHECKPOINT``, so that the
  fill's writes do not reach the disk during the timed drain. The worker runs at ``--concurrency``
  as in step 2. How long the fill took is printed with each round; it is outside every timed
  span. This is the table of a deployment that keeps a day of results: the drain must not
  slow down with the finished rows beside the queued ones.
- **At high concurrency** (``--high-concurrency``, default 100; 0 skips it): ``soniq worker
  --concurrency 100`` on an empty table, otherwise as step 2.

Each is reported as jobs/s and as the ratio to the same round's drain of step 2 (the pairing
takes the machine's drift between rounds out of the ratio), and is checked exactly once like
every drain (below; the stored jobs count as no-op jobs done at attempt 1, no latency jobs).

**Exactly once.** Checked after every drain, from two sides that do not trust each other.
A table the jobs insert into would be the plainest record, but it would turn the no-op job
into a database write and change the workload being measured; instead:

- In the worker process, each job's first statement counts its execution in memory by the
  job's number (an increment in a byte array: no database work is added to the no-op job);
  the worker writes these counts to a file when it exits after SIGTERM. With one worker
  process, that is every execution: each of the ``--jobs`` numbers must have run exactly
  once, and each latency job once.
- In the database, through each system's own records: soniq, every job ``done`` with
  ``attempts = 1`` (attempts count the starts) and no dead letter; pgqueuer, no job left in
  its queue table and in ``pgqueuer_log`` exactly one ``queued``, one ``picked`` and one
  ``successful`` row per job id and nothing else (every claim logs a ``picked`` row, so a
  second claim of a job would show); procrastinate, every job ``succeeded`` with
  ``attempts = 1`` and, in ``procrastinate_events``, exactly one ``deferred``, one
  ``started`` and one ``succeeded`` event per job (a second fetch of a job would log a
  second ``started``).

A round whose check fails is still measured and is reported as not exactly-once.

The summary gives, per system and column, the median of the rounds, and soniq's figure
divided by each peer's: above 1 means soniq is faster for the jobs/s columns, and
below 1 means soniq is quicker or smaller for the latency and memory columns. A second table
gives soniq's three drains: the median jobs/s of each, and the median of the rounds' ratios to
the concurrency-10 drain of the same round, with its target. One line then marks each of
soniq's targets met or not met, from these medians (``n/a`` for a ratio to pgqueuer when
pgqueuer is not among ``--systems``, or for a skipped drain). If a peer cannot be installed
or fails a round, the error is printed and the run goes on with the others.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import psycopg

BENCH_DIR = Path(__file__).resolve().parent
sys.path[:0] = [str(BENCH_DIR)]

import _scratch  # noqa: E402
import processes  # noqa: E402  (die_with_parent: children die with this process)

SCRATCH_PREFIX = "soniq_bench_compare"
CONCURRENCY = 10
WARMUP_SAMPLES = 3
IDLE_GAP = 0.02  # after a latency job started, before the next is sent
QUIET_BEFORE_LATENCY = 0.5
POLL_EVERY = 0.02
STALL_TIMEOUT = 60.0  # no job finished for this long: the drain has failed
DRAIN_TIMEOUT = 900.0
FIRST_START_TIMEOUT = 60.0
SAMPLE_TIMEOUT = 10.0
SETUP_TIMEOUT = 180.0
PIP_TIMEOUT = 900.0
STOP_TIMEOUT = 30.0
PREFILL_TIMEOUT = 600.0
ALL_SYSTEMS = ("soniq", "pgqueuer", "procrastinate")
PREFILLED = 1_000_000  # finished jobs stored before soniq's prefilled drain
HIGH_CONCURRENCY = 100
# soniq's targets, marked met or not met under the summary (the ratios to pgqueuer are inline).
TARGET_DRAIN = 20_000  # jobs/s
TARGET_P99_MS = 4.0
TARGET_RSS_MIB = 50.0
TARGET_PREFILLED = 0.95  # the prefilled drain's least ratio to the empty table's
TARGET_HIGH_CONCURRENCY = 0.80  # the high-concurrency drain's least ratio to concurrency 10's

Problems = list[str]
Checker = Callable[[psycopg.AsyncConnection[Any], int, int], Awaitable[Problems]]


async def _rows(conn: psycopg.AsyncConnection[Any], sql: str) -> list[tuple[Any, ...]]:
    cursor = await conn.execute(sql)
    return await cursor.fetchall()


async def _scalar(conn: psycopg.AsyncConnection[Any], sql: str) -> Any:
    rows = await _rows(conn, sql)
    return rows[0][0] if rows else None


def _compare_counts(what: str, found: dict[Any, Any], expected: dict[Any, Any]) -> Problems:
    # GROUP BY returns no row for a group expected to hold none (no latency jobs in soniq's
    # extra drains).
    expected = {key: count for key, count in expected.items() if count not in (0, (0, 0))}
    if found == expected:
        return []
    return [f"{what}: expected {expected}, found {found}"]


async def _check_soniq(conn: psycopg.AsyncConnection[Any], jobs: int, stamps: int) -> Problems:
    rows = await _rows(
        conn, "SELECT task_name, status, attempts, count(*) FROM soniq_jobs GROUP BY 1, 2, 3"
    )
    problems = _compare_counts(
        "soniq_jobs (task, status, attempts)",
        {(task, status, attempts): count for task, status, attempts, count in rows},
        {("compare.noop", "done", 1): jobs, ("compare.stamp", "done", 1): stamps},
    )
    dead = await _scalar(conn, "SELECT count(*) FROM soniq_dead_letter_jobs")
    if dead:
        problems.append(f"{dead} dead letter(s)")
    return problems


async def _check_pgqueuer(conn: psycopg.AsyncConnection[Any], jobs: int, stamps: int) -> Problems:
    problems = []
    left = await _scalar(conn, "SELECT count(*) FROM pgqueuer")
    if left:
        problems.append(f"{left} job(s) left in pgqueuer")
    rows = await _rows(
        conn,
        """
        SELECT entrypoint, status::text, count(*), count(DISTINCT job_id)
        FROM pgqueuer_log GROUP BY 1, 2
        """,
    )
    expected: dict[Any, Any] = {}
    for entrypoint, count in (("compare_noop", jobs), ("compare_stamp", stamps)):
        for status in ("queued", "picked", "successful"):
            expected[(entrypoint, status)] = (count, count)
    problems += _compare_counts(
        "pgqueuer_log (entrypoint, status): (rows, distinct jobs)",
        {(entrypoint, status): (n, distinct) for entrypoint, status, n, distinct in rows},
        expected,
    )
    return problems


async def _check_procrastinate(
    conn: psycopg.AsyncConnection[Any], jobs: int, stamps: int
) -> Problems:
    rows = await _rows(
        conn,
        """
        SELECT task_name, status::text, attempts, count(*) FROM procrastinate_jobs
        GROUP BY 1, 2, 3
        """,
    )
    problems = _compare_counts(
        "procrastinate_jobs (task, status, attempts)",
        {(task, status, attempts): count for task, status, attempts, count in rows},
        {("compare_noop", "succeeded", 1): jobs, ("compare_stamp", "succeeded", 1): stamps},
    )
    rows = await _rows(
        conn,
        """
        SELECT j.task_name, e.type::text, count(*), count(DISTINCT e.job_id)
        FROM procrastinate_events e JOIN procrastinate_jobs j ON j.id = e.job_id
        GROUP BY 1, 2
        """,
    )
    expected: dict[Any, Any] = {}
    for task, count in (("compare_noop", jobs), ("compare_stamp", stamps)):
        for event in ("deferred", "started", "succeeded"):
            expected[(task, event)] = (count, count)
    problems += _compare_counts(
        "procrastinate_events (task, event): (rows, distinct jobs)",
        {(task, event): (n, distinct) for task, event, n, distinct in rows},
        expected,
    )
    return problems


@dataclass(frozen=True)
class System:
    name: str
    requirements: tuple[str, ...]  # what pip installs into its virtualenv; () for soniq's
    distributions: tuple[str, ...]  # whose versions the report prints
    remaining_sql: str  # jobs still to run
    check: Checker

    @property
    def module(self) -> str:
        return f"compare_{self.name}"

    def setup_command(self, bin_dir: Path, url: str) -> list[str]:
        if self.name == "soniq":
            return [str(bin_dir / "soniq"), "setup"]
        if self.name == "pgqueuer":
            return [str(bin_dir / "pgq"), "--pg-dsn", url, "install"]
        return [str(bin_dir / "procrastinate"), f"--app={self.module}.app", "schema", "--apply"]

    def worker_command(self, bin_dir: Path, concurrency: int) -> list[str]:
        if self.name == "soniq":
            return [str(bin_dir / "soniq"), "worker", "--concurrency", str(concurrency)]
        if self.name == "pgqueuer":
            return [
                str(bin_dir / "pgq"),
                "run",
                f"{self.module}:create",
                "--max-concurrent-tasks",
                str(concurrency),
                "--batch-size",
                str(max(1, concurrency // 2)),
            ]
        return [
            str(bin_dir / "procrastinate"),
            f"--app={self.module}.app",
            "--log-level=warning",
            "worker",
            "--concurrency",
            str(concurrency),
        ]


SYSTEMS = {
    "soniq": System(
        "soniq",
        (),
        ("django-soniq", "psycopg"),
        # Two counts, each on its partial index (soniq_jobs_claim_*_idx, soniq_jobs_running_idx):
        # "status IN ('queued', 'processing')" matches neither index and scans the whole table,
        # 110 ms on both cores every 20 ms once it holds the prefilled drain's 1,000,000 rows.
        "SELECT (SELECT count(*) FROM soniq_jobs WHERE status = 'queued')"
        " + (SELECT count(*) FROM soniq_jobs WHERE status = 'processing')",
        _check_soniq,
    ),
    "pgqueuer": System(
        "pgqueuer",
        # `pgq run` fails at its start with typer 0.29 (its --log-level parser returns a str
        # where pgqueuer expects its LogLevel enum: "'str' object has no attribute 'name'").
        ("pgqueuer[asyncpg]==1.6.0", "typer<0.29"),
        ("pgqueuer", "asyncpg"),
        "SELECT count(*) FROM pgqueuer",
        _check_pgqueuer,
    ),
    "procrastinate": System(
        "procrastinate",
        ("procrastinate==3.10.0", "psycopg[binary,pool]>=3.2"),
        ("procrastinate", "psycopg", "psycopg-pool"),
        "SELECT count(*) FROM procrastinate_jobs WHERE status IN ('todo', 'doing')",
        _check_procrastinate,
    ),
}


@dataclass(frozen=True)
class Leg:
    """One system's part of a round: its full measurement, or one of soniq's extra drains
    (bulk enqueue and drain only: the latency and single enqueues are the full leg's)."""

    name: str  # as printed: "soniq", "soniq-prefilled", "soniq-c100", "pgqueuer", ...
    system: System
    concurrency: int
    prefilled: int = 0  # finished jobs stored before the bulk enqueue

    @property
    def full(self) -> bool:
        return self.name == self.system.name

    @property
    def dbname(self) -> str:
        return f"{SCRATCH_PREFIX}_{self.name.replace('-', '_')}"


def _legs(options: argparse.Namespace, names: Sequence[str]) -> list[Leg]:
    """Every leg of a round, in the order they run: soniq's extra drains right after soniq's
    own, so that each is compared with a drain of the same moment of the machine."""
    legs = []
    for name in names:
        system = SYSTEMS[name]
        legs.append(Leg(name, system, options.concurrency))
        if name != "soniq":
            continue
        if options.prefilled:
            legs.append(Leg("soniq-prefilled", system, options.concurrency, options.prefilled))
        if options.high_concurrency:
            n = options.high_concurrency
            legs.append(Leg(f"soniq-c{n}", system, n))
    return legs


# A no-op job as soniq's worker leaves it after one run (the columns the enqueue and the
# finishing write set, worker_statements._RECORD_PROGRESS): done at attempt 1 of its default 4
# (3 retries), claimed, started and finished a few ms after its enqueue (a start and a finish
# written in the same batch get the same time), no result (a job returning None is stored as
# NULL), no errors, by one worker since gone. They finished over the 12 hours before now:
# inside the default 24 h RESULT_RETENTION, so the worker's cleanup, which may run during the
# drain, prunes none of them. Random UUIDs as ids, as soniq's enqueue makes (uuid4).
PREFILL_SQL = """
WITH gone AS (SELECT gen_random_uuid() AS worker_id)
INSERT INTO soniq_jobs (
    id, task_name, args, queue, priority, status, attempts, max_attempts, scheduled_at,
    created_at, claimed_at, started_at, finished_at, worker_id, result, errors,
    errors_dropped, dedup_key, worker_losses, suspicion
)
SELECT gen_random_uuid(), 'compare.noop', jsonb_build_object('n', i), 'default', 100, 'done',
       1, 4, at.t, at.t, at.t + interval '1 ms', at.t + interval '2 ms',
       at.t + interval '2 ms', gone.worker_id, NULL, '[]'::jsonb, 0, NULL, 0, 0
FROM gone, generate_series(1, %(n)s::int) AS i,
     LATERAL (SELECT now() - make_interval(secs => 43200.0 * (%(n)s::int - i) / %(n)s::int))
         AS at(t)
"""


# -- environments ---------------------------------------------------------------------------


def _default_venv_dir() -> Path:
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "soniq-compare"


def _ensure_venv(system: System, root: Path, log: Path) -> Path:
    """The Python of ``system``'s virtualenv, built (or rebuilt) when its requirements changed."""
    if not system.requirements:
        return Path(sys.executable)
    tag = f"py{sys.version_info.major}{sys.version_info.minor}"
    venv = root / f"{system.name}-{tag}"
    python = venv / "bin" / "python"
    marker = venv / "compare-requirements.txt"
    wanted = "\n".join(system.requirements) + "\n"
    if python.exists() and marker.exists() and marker.read_text() == wanted:
        return python
    print(f"building {venv}: pip install {' '.join(system.requirements)}", flush=True)
    if venv.exists():
        shutil.rmtree(venv)
    root.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as out:
        for command in (
            [sys.executable, "-m", "venv", str(venv)],
            [
                str(python),
                "-m",
                "pip",
                "install",
                "--disable-pip-version-check",
                *system.requirements,
            ],
        ):
            result = subprocess.run(
                command, stdout=out, stderr=subprocess.STDOUT, timeout=PIP_TIMEOUT, check=False
            )
            if result.returncode:
                raise RuntimeError(
                    f"`{' '.join(command)}` exited {result.returncode}:\n"
                    + processes.tail(log.read_text(errors="replace"))
                )
    marker.write_text(wanted)
    return python


def _versions(python: Path, distributions: Sequence[str]) -> str:
    code = (
        "import importlib.metadata as m, platform, sys\n"
        "print(' '.join([f'{d} {m.version(d)}' for d in sys.argv[1:]]"
        " + ['Python ' + platform.python_version()]))"
    )
    result = subprocess.run(
        [str(python), "-c", code, *distributions],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return result.stdout.strip() or f"(versions unknown: {result.stderr.strip()[-200:]})"


def _uri(base: str, dbname: str) -> str:
    """A postgresql:// URI for ``dbname`` on ``base``'s server (asyncpg reads only URIs)."""
    params = psycopg.conninfo.conninfo_to_dict(base)
    params.pop("dbname", None)
    user = quote(str(params.pop("user", "")), safe="")
    password = params.pop("password", None)
    host = str(params.pop("host", "") or "")
    port = str(params.pop("port", "") or "")
    query: dict[str, str] = {str(k): str(v) for k, v in params.items()}
    if host.startswith("/"):  # a Unix socket directory
        query["host"] = host
        host = ""
    userinfo = user + (":" + quote(str(password), safe="") if password else "")
    netloc = (userinfo + "@" if userinfo else "") + host + (f":{port}" if port else "")
    suffix = "?" + urlencode(query) if query else ""
    return f"postgresql://{netloc}/{quote(dbname)}{suffix}"


def _base_env() -> dict[str, str]:
    drop = ("SONIQ_", "DJANGO_", "PROCRASTINATE_", "PGQUEUER_", "COMPARE_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    for name in ("DATABASE_URL", "PYTHONPATH", "VIRTUAL_ENV", "PGDSN"):
        env.pop(name, None)
    return env


# -- processes ------------------------------------------------------------------------------


class ClientProcess:
    """``compare_<system>.py client`` in the system's Python, driven by JSON lines."""

    def __init__(self, process: asyncio.subprocess.Process, log_path: Path) -> None:
        self.process = process
        self.log_path = log_path

    @classmethod
    async def start(
        cls, python: Path, script: Path, env: dict[str, str], cwd: Path, log_path: Path
    ) -> ClientProcess:
        with log_path.open("wb") as log:
            process = await asyncio.create_subprocess_exec(
                str(python),
                str(script),
                "client",
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=log,
                env=env,
                cwd=cwd,
                start_new_session=True,
                preexec_fn=processes.die_with_parent(os.getpid()),
            )
        client = cls(process, log_path)
        await client._read(60.0)  # {"ready": true}
        return client

    async def _read(self, limit: float) -> dict[str, Any]:
        assert self.process.stdout is not None
        try:
            line = await asyncio.wait_for(self.process.stdout.readline(), limit)
        except TimeoutError:
            raise RuntimeError(f"the client did not answer within {limit} s") from None
        if not line:
            await asyncio.sleep(0.2)
            raise RuntimeError(
                "the client exited:\n" + processes.tail(self.log_path.read_text(errors="replace"))
            )
        message: dict[str, Any] = json.loads(line)
        if "error" in message:
            raise RuntimeError(f"the client failed:\n{message['error']}")
        return message

    async def request(self, message: dict[str, Any], limit: float) -> dict[str, Any]:
        """Send ``message``; its answer, within ``limit`` seconds."""
        assert self.process.stdin is not None
        self.process.stdin.write((json.dumps(message) + "\n").encode())
        await self.process.stdin.drain()
        return await self._read(limit)

    async def close(self) -> None:
        if self.process.returncode is None:
            with contextlib.suppress(Exception):
                assert self.process.stdin is not None
                self.process.stdin.write(b'{"op": "quit"}\n')
                await self.process.stdin.drain()
                self.process.stdin.close()
            try:
                await asyncio.wait_for(self.process.wait(), 15)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    self.process.kill()
                await self.process.wait()


class WorkerProcess:
    def __init__(self, command: list[str], env: dict[str, str], cwd: Path, log: Path) -> None:
        self.log_path = log
        self.child = processes.start_logged("worker", command, env=env, cwd=cwd, log_path=log)

    @property
    def pid(self) -> int:
        return self.child.pid

    def check_alive(self) -> None:
        if not self.child.alive():
            raise RuntimeError(
                f"the worker exited with {self.child.exit_code}:\n"
                + processes.tail(self.child.log())
            )

    def cpu_seconds(self) -> float:
        """User + system CPU time the worker process has used so far."""
        with open(f"/proc/{self.pid}/stat") as stat:
            fields = stat.read().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def peak_rss_kib(self) -> int:
        with open(f"/proc/{self.pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
        raise RuntimeError("no VmHWM in /proc/<pid>/status")

    async def stop(self) -> int:
        """SIGTERM, and wait (SIGKILL after STOP_TIMEOUT); the exit code."""
        process = self.child.process
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                await asyncio.to_thread(process.wait, STOP_TIMEOUT)
        self.kill()
        return process.returncode

    def kill(self) -> None:
        process = self.child.process
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            process.wait(10)


# -- one system, one round ------------------------------------------------------------------


@dataclass
class RoundResult:
    bulk: float = math.nan  # jobs/s
    drain: float = math.nan  # jobs/s
    singles: float = math.nan  # jobs/s
    p50: float = math.nan  # ms
    p95: float = math.nan
    p99: float = math.nan
    peak_rss_mib: float = math.nan
    enqueue_call_p50: float = math.nan  # ms, the latency enqueue call itself
    drain_cpu: float = math.nan  # s of the worker's CPU time during the drain
    fill_seconds: float = math.nan  # the prefilled drain's INSERT and VACUUM ANALYZE
    base_ratio: float = math.nan  # an extra drain's jobs/s / the full leg's, same round
    problems: Problems = field(default_factory=list)
    exit_code: int | None = None


def _percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), math.ceil(fraction * len(ordered))))
    return ordered[rank - 1]


async def _receive(sock: socket.socket, worker: WorkerProcess, limit: float) -> list[str]:
    """The next UDP message from the worker's jobs (within ``limit`` s), split into words."""
    loop = asyncio.get_running_loop()
    deadline = time.monotonic() + limit
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            worker.check_alive()
            raise RuntimeError(f"no message from the worker's jobs within {limit} s")
        try:
            data = await asyncio.wait_for(loop.sock_recv(sock, 512), min(left, 0.5))
        except TimeoutError:
            worker.check_alive()
            continue
        return data.decode().split()


async def _wait_none_left(
    conn: psycopg.AsyncConnection[Any], system: System, worker: WorkerProcess
) -> float:
    """Poll every 20 ms until no job is left to run; time.time() after that poll."""
    started = time.monotonic()
    last, last_change = -1, started
    while True:
        left = await _scalar(conn, system.remaining_sql)
        now = time.time()
        if left == 0:
            return now
        mono = time.monotonic()
        if left != last:
            last, last_change = left, mono
        elif mono - last_change > STALL_TIMEOUT:
            raise RuntimeError(f"no progress for {STALL_TIMEOUT:.0f} s with {left} job(s) left")
        if mono - started > DRAIN_TIMEOUT:
            raise RuntimeError(f"{left} job(s) still left after {DRAIN_TIMEOUT:.0f} s")
        worker.check_alive()
        await asyncio.sleep(POLL_EVERY)


def _report_problems(path: Path, exit_code: int | None, jobs: int, stamps: int) -> Problems:
    """What is wrong with the execution counts the worker wrote to ``path`` when it exited."""
    if not path.exists():
        return [f"the worker wrote no execution counts (exit code {exit_code})"]
    report = json.loads(path.read_text())
    expected = {
        "noop_runs": jobs,
        "noop_once": jobs,
        "noop_never": 0,
        "noop_more_than_once": 0,
        "noop_out_of_range": 0,
        "stamp_runs": stamps,
        "stamp_jobs": stamps,
    }
    found = {key: report.get(key) for key in expected}
    if found == expected:
        return []
    return [f"executions counted in the worker: expected {expected}, found {found}"]


@dataclass
class Context:
    options: argparse.Namespace
    work_dir: Path
    modules_dir: Path
    pythons: dict[str, Path]
    server_version: str = ""


async def _prefill(conn: psycopg.AsyncConnection[Any], n: int) -> float:
    """Store ``n`` finished no-op jobs in soniq's table; the seconds it took."""
    started = time.perf_counter()
    await asyncio.wait_for(conn.execute(PREFILL_SQL, {"n": n}), PREFILL_TIMEOUT)
    # As autovacuum would leave a table with that history: its visibility map set, and its
    # statistics taken while no job was queued (as they are when a burst of jobs arrives).
    await asyncio.wait_for(conn.execute("VACUUM ANALYZE soniq_jobs"), PREFILL_TIMEOUT)
    # The fill's writes reach the disk now, not in a checkpoint spread over the timed drain.
    await asyncio.wait_for(conn.execute("CHECKPOINT"), PREFILL_TIMEOUT)
    return time.perf_counter() - started


async def _run_round(ctx: Context, leg: Leg, round_no: int) -> RoundResult:
    options = ctx.options
    result = RoundResult()
    jobs = options.jobs
    system = leg.system
    python = ctx.pythons[system.name]
    bin_dir = python.parent
    dbname = leg.dbname
    url = _uri(options.url, dbname)
    prefix = ctx.work_dir / f"r{round_no}-{leg.name}"
    env = _base_env()
    env.update(
        PYTHONPATH=str(ctx.modules_dir),
        PYTHONUNBUFFERED="1",
        COMPARE_DATABASE_URL=url,
        COMPARE_JOBS=str(jobs),
    )
    if system.name == "soniq":
        env.update(SONIQ_DATABASE_URL=url, SONIQ_JOBS_MODULES=system.module)

    _scratch.recreate(options.url, dbname)
    try:
        processes.run_or_raise(
            f"{system.name} schema setup",
            system.setup_command(bin_dir, url),
            env=env,
            cwd=ctx.modules_dir,
            timeout=SETUP_TIMEOUT,
        )
        conn = await psycopg.AsyncConnection.connect(url, autocommit=True)
        client: ClientProcess | None = None
        try:
            if not ctx.server_version:
                ctx.server_version = str(await _scalar(conn, "SHOW server_version"))
            if leg.prefilled:
                result.fill_seconds = await _prefill(conn, leg.prefilled)
            client = await ClientProcess.start(
                python,
                ctx.modules_dir / f"{system.module}.py",
                env,
                ctx.modules_dir,
                Path(f"{prefix}-client.log"),
            )
            # 1. bulk enqueue
            reply = await client.request({"op": "bulk", "n": jobs}, 600)
            result.bulk = jobs / reply["seconds"]
            await _drain_and_latency(ctx, leg, conn, client, env, prefix, result)
            if leg.full:
                # 5. single enqueues, no worker running
                reply = await client.request(
                    {"op": "singles", "first": jobs, "n": options.singles}, 900
                )
                result.singles = options.singles / reply["seconds"]
                left = await _scalar(conn, system.remaining_sql)
                if left != options.singles:
                    result.problems.append(
                        f"{left} job(s) waiting after {options.singles} single enqueues"
                    )
        finally:
            if client is not None:
                await client.close()
            await conn.close()
    finally:
        _scratch.drop(options.url, dbname)
    return result


async def _drain_and_latency(
    ctx: Context,
    leg: Leg,
    conn: psycopg.AsyncConnection[Any],
    client: ClientProcess,
    env: dict[str, str],
    prefix: Path,
    result: RoundResult,
) -> None:
    """Steps 2 to 4 (2 and 4 only for an extra drain), then the exactly-once check."""
    system = leg.system
    jobs, samples = ctx.options.jobs, ctx.options.latency_samples
    stamps = samples + WARMUP_SAMPLES if leg.full else 0
    report_path = Path(f"{prefix}-executions.json")
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    host, port = sock.getsockname()
    worker_env = dict(env, COMPARE_UDP=f"{host}:{port}", COMPARE_REPORT=str(report_path))
    worker: WorkerProcess | None = None
    try:
        # 2. drain, from the first job's start to the poll that finds none left
        worker = WorkerProcess(
            system.worker_command(ctx.pythons[system.name].parent, leg.concurrency),
            worker_env,
            ctx.modules_dir,
            Path(f"{prefix}-worker.log"),
        )
        words = await _receive(sock, worker, FIRST_START_TIMEOUT)
        if words[0] != "first":
            raise RuntimeError(f"expected the first start, got {words}")
        first_start = float(words[1])
        cpu_before = worker.cpu_seconds()
        finished = await _wait_none_left(conn, system, worker)
        result.drain_cpu = worker.cpu_seconds() - cpu_before
        result.drain = jobs / (finished - first_start)

        if leg.full:
            await _latency(samples, conn, system, client, sock, worker, result)

        # 4. peak memory, then stop
        worker.check_alive()
        result.peak_rss_mib = worker.peak_rss_kib() / 1024
        result.exit_code = await worker.stop()
    finally:
        if worker is not None:
            worker.kill()
        sock.close()

    # exactly once: the worker's own counts, then the system's records (where the stored
    # finished jobs are no-op jobs done at attempt 1 like the drained ones)
    result.problems += _report_problems(report_path, result.exit_code, jobs, stamps)
    result.problems += await system.check(conn, jobs + leg.prefilled, stamps)


async def _latency(
    samples: int,
    conn: psycopg.AsyncConnection[Any],
    system: System,
    client: ClientProcess,
    sock: socket.socket,
    worker: WorkerProcess,
    result: RoundResult,
) -> None:
    """3. latency, idle worker."""
    await asyncio.sleep(QUIET_BEFORE_LATENCY)
    latencies: list[float] = []
    calls: list[float] = []
    for seq in range(-WARMUP_SAMPLES, samples):
        reply = await client.request({"op": "stamp", "seq": seq}, SAMPLE_TIMEOUT)
        words = await _receive(sock, worker, SAMPLE_TIMEOUT)
        if words[:2] != ["stamp", str(seq)]:
            raise RuntimeError(f"expected latency job {seq} to start, got {words}")
        if seq >= 0:
            latencies.append((float(words[2]) - reply["before"]) * 1000)
            calls.append((reply["after"] - reply["before"]) * 1000)
        await asyncio.sleep(IDLE_GAP)
    result.p50, result.p95, result.p99 = (_percentile(latencies, f) for f in (0.50, 0.95, 0.99))
    result.enqueue_call_p50 = _percentile(calls, 0.50)
    await _wait_none_left(conn, system, worker)


# -- report ---------------------------------------------------------------------------------

COLUMNS = (
    ("bulk", "bulk enqueue jobs/s", "{:,.0f}"),
    ("drain", "drain jobs/s", "{:,.0f}"),
    ("singles", "single enqueue jobs/s", "{:,.0f}"),
    ("p50", "latency p50 ms", "{:.2f}"),
    ("p95", "p95 ms", "{:.2f}"),
    ("p99", "p99 ms", "{:.2f}"),
    ("peak_rss_mib", "worker peak RSS MiB", "{:.1f}"),
)


def _median(results: Sequence[RoundResult], key: str) -> float:
    values = [getattr(r, key) for r in results if not math.isnan(getattr(r, key))]
    return statistics.median(values) if values else math.nan


def _medians(results: Sequence[RoundResult]) -> dict[str, float]:
    return {key: _median(results, key) for key, _, _ in COLUMNS}


def _ratio(mine: float, theirs: float) -> float:
    return mine / theirs if theirs else math.nan


def _fmt(template: str, value: float) -> str:
    return "n/a" if math.isnan(value) else template.format(value)


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]

    def line(row: list[str]) -> str:
        cells = [
            cell.ljust(width) if i == 0 else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        return "| " + " | ".join(cells) + " |"

    rule = "|" + "|".join("-" * (w + 1) + (":" if i else "-") for i, w in enumerate(widths)) + "|"
    return "\n".join([line(rows[0]), rule, *(line(row) for row in rows[1:])])


def _summary(
    names: Sequence[str],
    results: dict[str, list[RoundResult]],
    failures: dict[str, list[str]],
    rounds: int,
) -> str:
    header = ["system", *(title for _, title, _ in COLUMNS), "exactly once"]
    rows = [header]
    medians = {name: _medians(results[name]) for name in names}
    for name in names:
        done = results[name]
        clean = sum(1 for r in done if not r.problems)
        once = f"{clean}/{rounds} rounds" if done else "failed"
        if failures[name] and done:
            once += f" ({len(failures[name])} failed)"
        rows.append([name, *(_fmt(fmt, medians[name][key]) for key, _, fmt in COLUMNS), once])
    if "soniq" in names:
        for peer in names:
            if peer == "soniq":
                continue
            ratio = [f"soniq / {peer}"]
            for key, _, _ in COLUMNS:
                ratio.append(_fmt("{:.2f}", _ratio(medians["soniq"][key], medians[peer][key])))
            rows.append([*ratio, ""])
    return _table(rows)


def _extra_drains(
    options: argparse.Namespace, legs: Sequence[Leg]
) -> list[tuple[str, Leg | None, float]]:
    """soniq's two extra drains as (title, leg or None when skipped, least ratio to the
    full leg's drain)."""
    extra = [leg for leg in legs if leg.system.name == "soniq" and not leg.full]
    prefilled = next((leg for leg in extra if leg.prefilled), None)
    high = next((leg for leg in extra if not leg.prefilled), None)
    return [
        (
            f"{options.prefilled:,} finished rows" if prefilled else "finished rows (skipped)",
            prefilled,
            TARGET_PREFILLED,
        ),
        (
            f"concurrency {options.high_concurrency}" if high else "concurrency (skipped)",
            high,
            TARGET_HIGH_CONCURRENCY,
        ),
    ]


def _drains_table(
    options: argparse.Namespace, legs: Sequence[Leg], results: dict[str, list[RoundResult]]
) -> str:
    """soniq's drains: its full leg's and the extra ones, each with its ratio to the first."""
    base = f"concurrency {options.concurrency}, empty table"
    rows = [
        ["soniq drain", "jobs/s", f"ratio to {base}", "target"],
        [base, _fmt("{:,.0f}", _median(results["soniq"], "drain")), "1.00", ""],
    ]
    for title, leg, target in _extra_drains(options, legs):
        done = results[leg.name] if leg else []
        rows.append(
            [
                title,
                _fmt("{:,.0f}", _median(done, "drain")),
                _fmt("{:.2f}", _median(done, "base_ratio")),
                f"≥ {target:.2f}",
            ]
        )
    return _table(rows)


def _once(legs: Sequence[Leg], results: dict[str, list[RoundResult]], rounds: int) -> str:
    """How many rounds of each extra drain were exactly once (the main table says it for the
    full legs)."""
    counts = [
        f"{leg.name} {sum(1 for r in results[leg.name] if not r.problems)}/{rounds} rounds"
        for leg in legs
        if not leg.full
    ]
    return "exactly once: " + (", ".join(counts) if counts else "no extra drain run")


def _targets(
    options: argparse.Namespace, legs: Sequence[Leg], results: dict[str, list[RoundResult]]
) -> str:
    """soniq's targets, each met or not met by the medians; n/a where one is not measured."""
    soniq = _medians(results["soniq"])
    peer = _medians(results.get("pgqueuer", []))
    checks = [  # (what, value, bound, whether at least, format of value and bound)
        ("drain jobs/s", soniq["drain"], TARGET_DRAIN, True, "{:,.0f}"),
        ("drain / pgqueuer", _ratio(soniq["drain"], peer["drain"]), 3.5, True, "{:.2f}x"),
        (
            "single enqueue / pgqueuer",
            _ratio(soniq["singles"], peer["singles"]),
            1.2,
            True,
            "{:.2f}x",
        ),
        ("bulk enqueue / pgqueuer", _ratio(soniq["bulk"], peer["bulk"]), 1.3, True, "{:.2f}x"),
        ("latency p50 / pgqueuer's", _ratio(soniq["p50"], peer["p50"]), 0.6, False, "{:.2f}x"),
        ("latency p99 ms", soniq["p99"], TARGET_P99_MS, False, "{:.2f}"),
        ("worker peak RSS MiB", soniq["peak_rss_mib"], TARGET_RSS_MIB, False, "{:.2f}"),
    ]
    for title, leg, target in _extra_drains(options, legs):
        value = _median(results[leg.name], "base_ratio") if leg else math.nan
        what = f"drain, {title} / concurrency {options.concurrency} empty table"
        checks.append((what, value, target, True, "{:.2f}x"))
    parts = []
    for what, value, bound, at_least, fmt in checks:
        met = value >= bound if at_least else value <= bound
        verdict = (
            "n/a" if math.isnan(value) else f"{'met' if met else 'not met'} ({fmt.format(value)})"
        )
        parts.append(f"{what} {'≥' if at_least else '≤'} {fmt.format(bound)}: {verdict}")
    return "targets: " + "; ".join(parts)


def _print_round(leg: Leg, round_no: int, r: RoundResult) -> None:
    once = "yes" if not r.problems else "NO: " + "; ".join(r.problems)
    if not leg.full:
        fill = f"  fill {leg.prefilled:,} rows {r.fill_seconds:.1f} s" if leg.prefilled else ""
        ratio = _fmt("{:.2f}", r.base_ratio)  # n/a when this round's full leg failed
        print(
            f"  round {round_no} {leg.name:<15} bulk {r.bulk:>9,.0f}/s  drain {r.drain:>7,.0f}/s "
            f"(worker CPU {r.drain_cpu:.2f} s) = {ratio}x this round's {leg.system.name}"
            f"{fill}  peak RSS {r.peak_rss_mib:.1f} MiB  worker exit {r.exit_code}"
            f"  exactly once: {once}",
            flush=True,
        )
        return
    print(
        f"  round {round_no} {leg.name:<15} bulk {r.bulk:>9,.0f}/s  drain {r.drain:>7,.0f}/s "
        f"(worker CPU {r.drain_cpu:.2f} s)  "
        f"single {r.singles:>6,.0f}/s  latency p50/p95/p99 {r.p50:.2f}/{r.p95:.2f}/{r.p99:.2f}"
        f" ms (enqueue call p50 {r.enqueue_call_p50:.2f})  peak RSS {r.peak_rss_mib:.1f} MiB"
        f"  worker exit {r.exit_code}  exactly once: {once}",
        flush=True,
    )


# -- main -----------------------------------------------------------------------------------


def _prepare_modules(work_dir: Path, names: Sequence[str]) -> Path:
    """A directory holding only the compare modules, for the children's PYTHONPATH (the
    benchmarks directory itself has modules whose names could shadow a library's)."""
    modules = work_dir / "modules"
    modules.mkdir()
    for name in ["common", *names]:
        source = BENCH_DIR / f"compare_{name}.py"
        (modules / source.name).symlink_to(source)
    return modules


async def _main(options: argparse.Namespace, names: list[str]) -> int:
    load_start = os.getloadavg()
    started_at = datetime.now(UTC)
    work_dir = Path(tempfile.mkdtemp(prefix="soniq-compare-"))
    print(f"logs and execution counts: {work_dir}", flush=True)
    every_leg = _legs(options, names)
    failures: dict[str, list[str]] = {leg.name: [] for leg in every_leg}
    results: dict[str, list[RoundResult]] = {leg.name: [] for leg in every_leg}
    pythons: dict[str, Path] = {}
    versions: dict[str, str] = {}
    for name in names:
        system = SYSTEMS[name]
        try:
            pythons[name] = _ensure_venv(system, options.venv_dir, work_dir / f"pip-{name}.log")
            versions[name] = _versions(pythons[name], system.distributions)
        except Exception as error:
            message = f"{name} could not be installed: {error}"
            print(message, flush=True)
            failures[name].append(message)
    available = [name for name in names if name in pythons]
    ctx = Context(options, work_dir, _prepare_modules(work_dir, available), pythons)
    legs = _legs(options, available)

    for round_no in range(1, options.rounds + 1):
        full: dict[str, RoundResult] = {}  # this round's full legs, by system
        for leg in legs:
            try:
                result = await _run_round(ctx, leg, round_no)
            except Exception as error:
                message = f"round {round_no}: {error}"
                print(f"  round {round_no} {leg.name} FAILED: {error}", flush=True)
                if not isinstance(error, RuntimeError):
                    traceback.print_exc()
                failures[leg.name].append(message)
                continue
            if leg.full:
                full[leg.system.name] = result
            elif leg.system.name in full:
                result.base_ratio = _ratio(result.drain, full[leg.system.name].drain)
            results[leg.name].append(result)
            _print_round(leg, round_no, result)

    load_end = os.getloadavg()
    print()
    print(
        f"{started_at:%Y-%m-%d %H:%M} UTC; {os.cpu_count()} CPU(s), {platform.machine()}, "
        f"PostgreSQL {ctx.server_version or '?'} on the same host; "
        f"load average (1/5/15 min) at the start {_load(load_start)}, at the end {_load(load_end)}"
    )
    for name in names:
        print(f"  {name}: {versions.get(name, 'not installed')}")
    print(
        f"{options.jobs:,} jobs bulk-enqueued and drained by one worker at concurrency "
        f"{options.concurrency}, {options.singles:,} single enqueues, "
        f"{options.latency_samples} latency samples; medians of {options.rounds} round(s):"
    )
    print(_summary(names, results, failures, options.rounds))
    if "soniq" in available:
        print()
        print(
            f"soniq alone, the same {options.jobs:,} jobs in the same rounds, drained in a "
            "table already holding finished jobs and at a higher concurrency; ratio: median of "
            "the rounds' ratios to the same round's drain above:"
        )
        print(_drains_table(options, legs, results))
        print(_once(legs, results, options.rounds))
        print()
        print(_targets(options, legs, results))
    for leg in every_leg:
        for message in failures[leg.name]:
            print(f"{leg.name} failed: {message.splitlines()[0]}")
    incomplete = any(failures.values()) or any(r.problems for rs in results.values() for r in rs)
    return 1 if incomplete else 0


def _load(values: tuple[float, float, float]) -> str:
    return " / ".join(f"{v:.2f}" for v in values)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--singles", type=int, default=2_000)
    parser.add_argument("--latency-samples", type=int, default=200)
    parser.add_argument("--systems", default=",".join(ALL_SYSTEMS))
    parser.add_argument("--concurrency", type=int, default=CONCURRENCY)
    parser.add_argument(
        "--prefilled",
        type=int,
        default=PREFILLED,
        help="finished jobs stored before soniq's extra drain (0 skips that drain)",
    )
    parser.add_argument(
        "--high-concurrency",
        type=int,
        default=HIGH_CONCURRENCY,
        help="the concurrency of soniq's other extra drain (0 skips it)",
    )
    parser.add_argument(
        "--url",
        default=os.environ.get(
            "SONIQ_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
        ),
        help="a database on the server to use (scratch databases are created beside it)",
    )
    parser.add_argument(
        "--venv-dir",
        type=Path,
        default=_default_venv_dir(),
        help="where the peers' virtualenvs are built and kept",
    )
    options = parser.parse_args()
    names = [name.strip() for name in options.systems.split(",") if name.strip()]
    unknown = sorted(set(names) - set(SYSTEMS))
    if unknown or not names:
        parser.error(f"--systems: choose among {', '.join(ALL_SYSTEMS)}")
    if min(options.rounds, options.jobs, options.singles, options.latency_samples) < 1:
        parser.error("--rounds, --jobs, --singles and --latency-samples must be at least 1")
    if options.concurrency < 2:
        parser.error("--concurrency must be at least 2 (pgqueuer's batch is half of it)")
    if min(options.prefilled, options.high_concurrency) < 0:
        parser.error("--prefilled and --high-concurrency must be at least 0 (0 skips)")
    processes.interrupt_on_sigterm()
    try:
        code = asyncio.run(_main(options, names))
    finally:
        processes.kill_leftovers()
        for leg in _legs(options, names):  # a round interrupted between its create and drop
            with contextlib.suppress(Exception):
                _scratch.drop(options.url, leg.dbname)
    sys.exit(code)


if __name__ == "__main__":
    main()
