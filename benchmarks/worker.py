"""Worker throughput, enqueue-to-start latency and memory of one ``soniq worker`` process.

    .venv/bin/python benchmarks/worker.py [--url postgresql://postgres@127.0.0.1/postgres]
                                          [--jobs 20000] [--latency-samples 200]
                                          [--concurrency 10] [--analyze]
                                          [--metrics-port N]

Creates (and at the end drops) a scratch database "soniq_bench_worker", migrates it with the
testproject's settings, then:

(a) enqueues --jobs no-op jobs (``bench.noop``) with one ``await app.enqueue_many(...)``;
(b) starts ONE ``.venv/bin/soniq worker --concurrency 10`` process on them and times from its
    row appearing in ``soniq_workers`` until all of them are ``done`` (a count of the jobs
    left to run, polled every 20 ms). The same span on the PostgreSQL clock (last
    ``finished_at`` minus the worker row's ``started_at``) is printed as a cross-check;
(c) with that worker idle and listening, enqueues ``bench.stamp`` jobs one at a time, each
    after the previous one started and the worker went idle again. The job's first statement
    is ``time.time()``, returned as its result (and sent over UDP so the benchmark need not
    poll); latency = that start time minus ``time.time()`` read in this process right after
    ``await app.enqueue(...)`` returned, i.e. once the commit was acknowledged. Both processes
    read the same machine clock (CLOCK_REALTIME through ``time.time()``). Also printed: the
    latency from before the enqueue() call, and the database-clock view (the claim
    statement's ``now()``, i.e. ``started_at``, minus the insert statement's ``now()``, i.e.
    ``created_at``);
(d) reads the worker's peak resident memory (VmHWM in /proc/<pid>/status) before stopping it.

Then sends SIGTERM, waits for the worker to exit, and drops the scratch database.

The scratch table is never analyzed, as on a fresh install before autovacuum's first pass;
--metrics-port N starts the worker with ``--metrics-port N`` (Prometheus metrics served, and
recorded for every job), to measure what they cost.

--awaited marks every job ``awaited`` (as ``app.wait_for()`` does) after the bulk enqueue, and
LISTENs on ``soniq_job_done`` on a connection of its own while the worker drains: every
completion is then announced, the worst case of the completion announcements; the count of
job ids received is printed.

--with-limits starts the worker with a limited task registered besides the drained ones
(``bench.limited``, ``concurrency_limit=5``, from ``bench_limited_jobs``) and a queue limit
(``QUEUE_LIMITS`` on queue ``partner``), none of whose jobs are queued: the drain of plain
jobs then pays for the limited claims such a worker makes.

--analyze runs ``ANALYZE soniq_jobs`` after the bulk enqueue, before the worker starts. That
changes the claim's plan: without statistics PostgreSQL sorts every queued row on each claim
(cost grows with the backlog); with them it walks the partial claim index.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = Path(__file__).resolve().parent
sys.path[:0] = [str(ROOT), str(ROOT / "testproject"), str(BENCH_DIR)]

import _scratch  # noqa: E402

SCRATCH = "soniq_bench_worker"
SOCKET_TIMEOUT = 10.0
POLL_EVERY = 0.02
# How long to leave the worker alone after a latency job started: enough to write that job's
# completion and return to waiting on LISTEN, so every sample starts from an idle worker.
IDLE_GAP = 0.02
WARMUP_SAMPLES = 3

TARGET_ENQUEUE = 30_000
TARGET_DRAIN = 5_000
TARGET_P50_MS = 3.0


def _percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile of ``values`` (sorted here)."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), math.ceil(fraction * len(ordered))))
    return ordered[rank - 1]


@dataclass
class Results:
    jobs: int = 0
    concurrency: int = 0
    enqueue_seconds: float = 0.0
    drain_seconds: float = 0.0
    drain_cpu_seconds: float = 0.0
    drain_seconds_db: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)  # start - enqueue() returned
    latencies_from_call_ms: list[float] = field(default_factory=list)  # start - before call
    enqueue_call_ms: list[float] = field(default_factory=list)  # the enqueue() round trip
    db_latencies_ms: list[float] = field(default_factory=list)  # started_at - created_at
    vm_hwm_kib: int = 0
    vm_rss_kib: int = 0
    shutdown_seconds: float = 0.0
    exit_code: int | None = None
    statuses: dict[str, int] = field(default_factory=dict)
    dead_letters: int = 0
    server_version: str = ""
    notifications: int | None = None  # --awaited: job ids announced


async def _count_notifications(listener: psycopg.AsyncConnection[Any], expected: int) -> int:
    """Receive completion notifications on ``listener`` (LISTENing already) until
    ``expected`` came."""
    try:
        received = 0  # job ids announced (several per notification)
        async for notify in listener.notifies():
            received += len(notify.payload.split(","))
            if received >= expected:
                break
        return received
    finally:
        await listener.close()


class Worker:
    """``.venv/bin/soniq worker`` in a child process, its output kept in a log file."""

    def __init__(
        self,
        url: str,
        concurrency: int,
        started_addr: str,
        log_path: Path,
        prefetch: int | None = None,
        metrics_port: int | None = None,
        with_limits: bool = False,
    ) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SONIQ_", "DJANGO_"))}
        env.pop("DATABASE_URL", None)
        env.update(
            SONIQ_DATABASE_URL=url,
            SONIQ_JOBS_MODULES="bench_jobs",
            PYTHONPATH=os.pathsep.join([str(BENCH_DIR), str(ROOT)]),
            PYTHONUNBUFFERED="1",
            # LISTEN/NOTIFY wakes the worker; the poll only bounds a lost notification.
            SONIQ_POLL_INTERVAL="1",
            SONIQ_SHUTDOWN_TIMEOUT="10",
            BENCH_STARTED_ADDR=started_addr,
        )
        if prefetch is not None:
            env["SONIQ_PREFETCH"] = str(prefetch)
        if with_limits:
            env["SONIQ_JOBS_MODULES"] = "bench_jobs,bench_limited_jobs"
            env["SONIQ_QUEUE_LIMITS"] = '{"partner": {"concurrency": 3, "rate": "100/s"}}'

        self.log_path = log_path
        self._log = log_path.open("wb")
        soniq = Path(sys.executable).parent / "soniq"
        self.process = subprocess.Popen(
            [
                str(soniq),
                "worker",
                "--concurrency",
                str(concurrency),
                *(["--metrics-port", str(metrics_port)] if metrics_port else []),
            ],
            env=env,
            cwd=BENCH_DIR,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def check_alive(self) -> None:
        if self.process.poll() is not None:
            raise RuntimeError(
                f"the worker exited with {self.process.returncode}:\n{self.output()}"
            )

    def cpu_seconds(self) -> float:
        """User + system CPU time of the worker process so far."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def memory_kib(self) -> tuple[int, int]:
        """(VmHWM, VmRSS) in KiB."""
        values: dict[str, int] = {}
        with open(f"/proc/{self.pid}/status") as status:
            for line in status:
                key, _, rest = line.partition(":")
                if key in ("VmHWM", "VmRSS"):
                    values[key] = int(rest.split()[0])
        return values["VmHWM"], values["VmRSS"]

    def output(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def terminate(self, timeout: float = 60) -> tuple[float, int]:
        """SIGTERM, then wait for the exit: (seconds it took, exit code)."""
        started = time.perf_counter()
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout)
        return time.perf_counter() - started, code

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self._log.close()


async def _scalar(conn: psycopg.AsyncConnection[Any], sql: str, params: Any = None) -> Any:
    cursor = await conn.execute(sql, params)
    row = await cursor.fetchone()
    return None if row is None else row[0]


async def _wait_registered(conn: psycopg.AsyncConnection[Any], worker: Worker) -> float:
    """Poll soniq_workers every 20 ms; perf_counter() when the worker's row is there."""
    deadline = time.perf_counter() + 60
    while time.perf_counter() < deadline:
        worker.check_alive()
        found = await _scalar(
            conn,
            "SELECT count(*) FROM soniq_workers WHERE pid = %s AND status = 'running'",
            (worker.pid,),
        )
        if found:
            return time.perf_counter()
        await asyncio.sleep(POLL_EVERY)
    raise RuntimeError(f"the worker did not register within 60 s:\n{worker.output()}")


async def _wait_done(
    conn: psycopg.AsyncConnection[Any], worker: Worker, task_name: str, count: int
) -> float:
    """Poll every 20 ms until no job is queued or processing; perf_counter() at that poll.

    Counting the jobs still to run is the cheaper query (about 1.5 ms at 20,000 rows, against
    4 ms for counting the done ones), so the poll disturbs the drain less; that every one of
    ``count`` ``task_name`` jobs ended ``done`` is checked afterwards.
    """
    last, last_change = -1, time.perf_counter()
    while True:
        remaining = await _scalar(
            conn, "SELECT count(*) FROM soniq_jobs WHERE status IN ('queued', 'processing')"
        )
        now = time.perf_counter()
        if remaining == 0:
            break
        if remaining != last:
            last, last_change = remaining, now
        elif now - last_change > 60:
            raise RuntimeError(
                f"no progress for 60 s with {remaining} job(s) left:\n{worker.output()}"
            )
        worker.check_alive()
        await asyncio.sleep(POLL_EVERY)
    done = await _scalar(
        conn,
        "SELECT count(*) FROM soniq_jobs WHERE task_name = %s AND status = 'done'",
        (task_name,),
    )
    if done != count:
        raise RuntimeError(f"{done} {task_name} job(s) done, expected {count}:\n{worker.output()}")
    return now


async def _measure_latency(
    app: Any,
    stamp: Any,
    conn: psycopg.AsyncConnection[Any],
    worker: Worker,
    sock: socket.socket,
    samples: int,
    results: Results,
) -> None:
    loop = asyncio.get_running_loop()
    await asyncio.sleep(0.5)  # the drain's last completions are written; the worker idles
    measured: list[tuple[str, float, float, float]] = []
    for seq in range(-WARMUP_SAMPLES, samples):
        before = time.time()
        job_id = await app.enqueue(stamp, seq=seq)
        returned = time.time()
        try:
            message = await asyncio.wait_for(loop.sock_recv(sock, 256), SOCKET_TIMEOUT)
        except TimeoutError:
            worker.check_alive()
            raise RuntimeError(
                f"job {seq} did not start within {SOCKET_TIMEOUT} s:\n{worker.output()}"
            ) from None
        got_seq, started_text = message.decode().split()
        if int(got_seq) != seq:
            raise RuntimeError(f"expected job {seq} to start, got {got_seq}")
        if seq >= 0:
            measured.append((job_id, before, returned, float(started_text)))
        await asyncio.sleep(IDLE_GAP)
    await _wait_done(conn, worker, "bench.stamp", samples + WARMUP_SAMPLES)
    cursor = await conn.execute(
        """
        SELECT id::text, result::text,
               extract(epoch FROM started_at - created_at)::float8 * 1000
        FROM soniq_jobs WHERE task_name = 'bench.stamp'
        """
    )
    rows = {job_id: (result, db_ms) for job_id, result, db_ms in await cursor.fetchall()}
    for job_id, before, returned, started_udp in measured:
        result, db_ms = rows[job_id]
        started = json.loads(result)  # the start time the job stored, on the machine clock
        if started != started_udp:
            raise RuntimeError(f"job {job_id}: stored start {started} != reported {started_udp}")
        results.latencies_ms.append((started - returned) * 1000)
        results.latencies_from_call_ms.append((started - before) * 1000)
        results.enqueue_call_ms.append((returned - before) * 1000)
        results.db_latencies_ms.append(db_ms)


async def _run(url: str, options: argparse.Namespace, log_path: Path, results: Results) -> None:
    import bench_jobs

    app = bench_jobs.app
    results.jobs = options.jobs
    results.concurrency = options.concurrency
    await app.ensure_initialized()
    worker: Worker | None = None
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    host, port = sock.getsockname()
    conn = await psycopg.AsyncConnection.connect(url, autocommit=True)
    try:
        results.server_version = str(await _scalar(conn, "SHOW server_version"))

        # (a) bulk enqueue
        rows = [{"n": n} for n in range(options.jobs)]
        started = time.perf_counter()
        ids = await app.enqueue_many(bench_jobs.noop, rows)
        results.enqueue_seconds = time.perf_counter() - started
        assert len(ids) == options.jobs, len(ids)
        if options.analyze:
            await conn.execute("ANALYZE soniq_jobs")
        listening = None
        if options.awaited:
            await conn.execute("UPDATE soniq_jobs SET awaited = true")
            listener = await psycopg.AsyncConnection.connect(url, autocommit=True)
            await listener.execute("LISTEN soniq_job_done")
            listening = asyncio.create_task(_count_notifications(listener, options.jobs))

        # (b) one worker drains them
        worker = Worker(
            url,
            options.concurrency,
            f"{host}:{port}",
            log_path,
            metrics_port=options.metrics_port,
            with_limits=options.with_limits,
        )
        registered = await _wait_registered(conn, worker)
        cpu_before = worker.cpu_seconds()
        finished = await _wait_done(conn, worker, "bench.noop", options.jobs)
        results.drain_seconds = finished - registered
        if listening is not None:
            results.notifications = await asyncio.wait_for(listening, 30)
        results.drain_cpu_seconds = worker.cpu_seconds() - cpu_before
        results.drain_seconds_db = await _scalar(
            conn,
            """
            SELECT extract(epoch FROM
                (SELECT max(finished_at) FROM soniq_jobs WHERE task_name = 'bench.noop')
                - (SELECT started_at FROM soniq_workers WHERE pid = %s))::float8
            """,
            (worker.pid,),
        )

        # (c) enqueue-to-start latency, idle worker
        await _measure_latency(
            app, bench_jobs.stamp, conn, worker, sock, options.latency_samples, results
        )

        # (d) peak memory, then stop
        worker.check_alive()
        results.vm_hwm_kib, results.vm_rss_kib = worker.memory_kib()
        results.shutdown_seconds, results.exit_code = worker.terminate()
        cursor = await conn.execute("SELECT status, count(*) FROM soniq_jobs GROUP BY 1")
        results.statuses = {status: count for status, count in await cursor.fetchall()}
        results.dead_letters = await _scalar(conn, "SELECT count(*) FROM soniq_dead_letter_jobs")
    finally:
        if worker is not None:
            worker.kill()
        sock.close()
        await conn.close()
        await app.close()


def _verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


def _report(results: Results, log_path: Path) -> None:
    n = results.jobs
    enqueue_rate = n / results.enqueue_seconds
    drain_rate = n / results.drain_seconds
    lat = results.latencies_ms
    p50, p95, p99 = (_percentile(lat, f) for f in (0.50, 0.95, 0.99))

    def triple(values: list[float]) -> str:
        return " / ".join(f"{_percentile(values, f):.2f}" for f in (0.50, 0.95, 0.99))

    print(
        f"soniq worker benchmark: PostgreSQL {results.server_version}, "
        f"Python {sys.version.split()[0]}, {os.cpu_count()} CPU(s)"
    )
    rows = [
        (
            f"(a) await app.enqueue_many(), {n:,} no-op jobs",
            f"{enqueue_rate:,.0f} jobs/s ({results.enqueue_seconds:.3f} s)",
            f">= {TARGET_ENQUEUE:,}",
            _verdict(enqueue_rate >= TARGET_ENQUEUE),
        ),
        (
            f"(b) drain, 1 worker process, concurrency {results.concurrency}",
            f"{drain_rate:,.0f} jobs/s ({results.drain_seconds:.3f} s)",
            f">= {TARGET_DRAIN:,}",
            _verdict(drain_rate >= TARGET_DRAIN),
        ),
        *(
            [
                (
                    "    completions announced (--awaited)",
                    f"{results.notifications:,} job ids received",
                    "",
                    "",
                )
            ]
            if results.notifications is not None
            else []
        ),
        (
            "    worker CPU over the drain",
            f"{results.drain_cpu_seconds / n * 1e6:.1f} µs per job "
            f"({results.drain_cpu_seconds:.2f} s)",
            "",
            "",
        ),
        (
            "    same span on the PostgreSQL clock",
            f"{n / results.drain_seconds_db:,.0f} jobs/s ({results.drain_seconds_db:.3f} s)",
            "",
            "",
        ),
        (
            f"(c) enqueue->start p50/p95/p99 ms, n={len(lat)}",
            f"{p50:.2f} / {p95:.2f} / {p99:.2f}",
            f"p50 <= {TARGET_P50_MS:g}",
            _verdict(p50 <= TARGET_P50_MS),
        ),
        ("    max ms", f"{max(lat):.2f}", "", ""),
        ("    from before the enqueue() call, ms", triple(results.latencies_from_call_ms), "", ""),
        ("    the enqueue() call itself, ms", triple(results.enqueue_call_ms), "", ""),
        ("    claim now() - insert now() (DB clock), ms", triple(results.db_latencies_ms), "", ""),
        (
            "(d) worker peak memory (VmHWM)",
            f"{results.vm_hwm_kib / 1024:.1f} MiB (RSS {results.vm_rss_kib / 1024:.1f})",
            "",
            "",
        ),
        (
            "    SIGTERM -> exit",
            f"{results.shutdown_seconds:.3f} s, exit code {results.exit_code}",
            "",
            "",
        ),
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    header = ("measurement", "value", "target", "")
    print("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip())
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    statuses = ", ".join(f"{k} {v}" for k, v in sorted(results.statuses.items()))
    print(f"jobs by status at the end: {statuses}; dead letters: {results.dead_letters}")
    print(f"worker log: {log_path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    _scratch.add_url_argument(parser)
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--latency-samples", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--metrics-port", type=int, default=None)
    parser.add_argument(
        "--awaited",
        action="store_true",
        help="mark every job awaited and LISTEN: each completion sends a NOTIFY",
    )
    parser.add_argument(
        "--with-limits",
        action="store_true",
        help="register a limited task and a queue limit in the worker (no job of them queued)",
    )
    parser.add_argument(
        "--analyze",
        action="store_true",
        help="ANALYZE soniq_jobs after the bulk enqueue, before the worker starts",
    )
    options = parser.parse_args()
    if options.jobs < 1 or options.latency_samples < 1:
        parser.error("--jobs and --latency-samples must be at least 1")
    url = _scratch.database_url(options.url, SCRATCH)
    log_path = Path(tempfile.mkdtemp(prefix="soniq-bench-worker-")) / "worker.log"
    results = Results()
    _scratch.recreate(options.url, SCRATCH)
    try:
        _scratch.setup_django(url)
        # bench_jobs builds its app from this variable, in this process and in the worker.
        os.environ["SONIQ_DATABASE_URL"] = url
        asyncio.run(_run(url, options, log_path, results))
    finally:
        _scratch.drop(options.url, SCRATCH)
    _report(results, log_path)


if __name__ == "__main__":
    main()
