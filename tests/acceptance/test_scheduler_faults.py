"""Three ``soniq scheduler`` processes, one of them behind a TCP proxy that swallows its
replies once it has locked a due schedule: the others take over within the lease, and every
slot fires exactly once."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.acceptance.processes import FAST_SETTINGS, ROOT
from tests.pg_server import ThrowawayCluster
from tests.tcp_proxy import TcpProxy

pytestmark = pytest.mark.acceptance

SCHEDULE = "fault.second"
LEASE = 2.0
TICK = 0.2
MARGIN = 0.5
CUTS = 4
CUT_FOR = 8.0
# The scheduler behind the proxy connects as this role, so its session is easy to find.
CUT_ROLE = "cut_scheduler"


@pytest.fixture
def cluster() -> Iterator[ThrowawayCluster]:
    own = ThrowawayCluster().start()
    yield own
    own.stop()


def _env(url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SONIQ_", "DJANGO_"))}
    env.update(
        SONIQ_DATABASE_URL=url,
        SONIQ_JOBS_MODULES="tests.acceptance.scheduler_fault_jobs",
        PYTHONPATH=str(ROOT),
        PYTHONUNBUFFERED="1",
        **FAST_SETTINGS,
    )
    env.update(SONIQ_SCHEDULER_LEASE=str(LEASE), SONIQ_ERROR_RETRY_DELAY="0.5")
    env.update(extra)
    return env


class Schedulers:
    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.processes: list[tuple[subprocess.Popen[bytes], Path]] = []

    def start(self, url: str, **env: str) -> subprocess.Popen[bytes]:
        log = self.log_dir / f"scheduler-{len(self.processes)}.log"
        with log.open("wb") as handle:
            process = subprocess.Popen(
                [sys.executable, "-m", "soniq.cli", "scheduler", "--tick", str(TICK)],
                env=_env(url, **env),
                cwd=ROOT,
                stdout=handle,
                stderr=subprocess.STDOUT,
            )
        self.processes.append((process, log))
        return process

    def output(self, index: int) -> str:
        return self.processes[index][1].read_text(errors="replace")

    def stop(self) -> list[int]:
        for process, _ in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        codes = []
        for process, _ in self.processes:
            try:
                codes.append(process.wait(20))
            except subprocess.TimeoutExpired:
                process.kill()
                codes.append(process.wait(10))
        return codes


def _query(url: str, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with psycopg.connect(url, autocommit=True) as conn:
        cursor = conn.execute(sql, params)
        return cursor.fetchall() if cursor.description else []


def _fires(url: str) -> list[tuple[datetime, datetime]]:
    rows = _query(
        url,
        "SELECT fire_time, fired_at FROM soniq_schedule_fires WHERE schedule_name = %s "
        "ORDER BY fire_time",
        (SCHEDULE,),
    )
    return [(fire_time, fired_at) for fire_time, fired_at in rows]


def _wait(predicate: Any, timeout: float, interval: float = 0.02) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    return predicate()


def _stuck_tick(url: str) -> tuple[bool, datetime] | None:
    """The cut-off scheduler's session, left idle in its tick's transaction for a while (its
    replies are held): whether it holds a row lock (it has a transaction id once it locked
    the schedule) and since when it waits."""
    rows = _query(
        url,
        "SELECT backend_xid IS NOT NULL, state_change FROM pg_stat_activity "
        "WHERE usename = %s AND state = 'idle in transaction' "
        "AND clock_timestamp() - state_change > interval '200 milliseconds'",
        (CUT_ROLE,),
    )
    return (bool(rows[0][0]), rows[0][1]) if rows else None


def test_a_scheduler_cut_off_mid_tick_loses_its_lock_within_the_lease(
    cluster: ThrowawayCluster, tmp_path: Path
) -> None:
    url = cluster.url
    setup = subprocess.run(
        [sys.executable, "-m", "soniq.cli", "setup"],
        env=_env(url),
        cwd=ROOT,
        capture_output=True,
        check=False,
    )
    assert setup.returncode == 0, setup.stdout + setup.stderr
    _query(url, f"CREATE ROLE {CUT_ROLE} LOGIN SUPERUSER")

    schedulers = Schedulers(tmp_path)
    with TcpProxy("127.0.0.1", cluster.port) as proxy:
        try:
            direct = [schedulers.start(url), schedulers.start(url)]
            # Statements are sent as text (not prepared), so that the proxy sees FOR UPDATE
            # at every tick, as behind PgBouncer in transaction mode.
            cut_url = proxy.url_for(url.replace("postgres@", f"{CUT_ROLE}@", 1))
            schedulers.start(cut_url, SONIQ_PREPARED_STATEMENTS="false")
            _wait(lambda: len(_fires(url)) >= 3, 30)
            assert len(_fires(url)) >= 3, schedulers.output(2)

            cut_at: list[datetime] = []
            attempts = 0
            while len(cut_at) < CUTS:
                attempts += 1
                assert attempts <= 30, "the cut-off scheduler never won a tick"
                # Just before the next slot, the other two are paused for a moment, so that
                # the one behind the proxy wins that slot's tick and locks the schedule.
                next_slot = max(fire_time for fire_time, _ in _fires(url)) + timedelta(seconds=1)
                time.sleep(max(0.0, (next_slot - datetime.now(UTC)).total_seconds() - 0.15))
                for process in direct:
                    process.send_signal(signal.SIGSTOP)
                try:
                    proxy.cut_replies_after(b"FOR UPDATE")
                    stuck = _wait(lambda: _stuck_tick(url), 1.0)
                finally:
                    for process in direct:
                        process.send_signal(signal.SIGCONT)
                if not stuck or not stuck[0]:
                    proxy.forward()  # it ticked before the slot was due: try the next one
                    time.sleep(1.0)
                    continue
                cut_at.append(stuck[1])
                # The replies stay held for CUT_FOR seconds: the scheduler looks hung (and
                # its new connections are cut off as well once they send FOR UPDATE).
                time.sleep(max(0.0, CUT_FOR - (datetime.now(UTC) - stuck[1]).total_seconds()))
                proxy.forward()
                time.sleep(2.0)
            time.sleep(2.0)
        finally:
            codes = schedulers.stop()
    assert codes == [0, 0, 0], "\n".join(schedulers.output(i) for i in range(3))

    fires = _fires(url)
    slots = [fire_time for fire_time, _ in fires]
    gaps = {round((b - a).total_seconds(), 3) for a, b in itertools.pairwise(slots)}
    expected = round((slots[-1] - slots[0]).total_seconds()) + 1
    # Lateness: how long after its time each slot fired.
    late = [(fired_at - fire_time).total_seconds() for fire_time, fired_at in fires]
    takeover = []
    for moment in cut_at:
        [(first_after,)] = _query(
            url,
            "SELECT min(fired_at) FROM soniq_schedule_fires WHERE fired_at > %s",
            (moment,),
        )
        takeover.append((first_after - moment).total_seconds())
    jobs = _query(
        url,
        "SELECT scheduled_at, count(*) FROM soniq_jobs WHERE task_name = %s GROUP BY 1 ORDER BY 1",
        (SCHEDULE,),
    )
    cut_log = schedulers.output(2)
    print(
        f"\n{len(slots)} slots fired over {expected} s ({attempts} attempts for {CUTS} cuts); "
        f"from each cut to the next fire: {', '.join(f'{t:.3f}s' for t in takeover)}; "
        f"worst {max(takeover):.3f}s; latest slot fired {max(late):.3f}s after its time "
        f"(bound {LEASE + TICK + MARGIN:.1f}s); "
        f"{cut_log.count('scheduler tick abandoned')} abandoned tick(s) behind the proxy"
    )
    assert gaps == {1.0}, f"slots must be consecutive seconds, got gaps {gaps}"
    assert len(slots) == expected, "every slot of the period fired"
    assert [count for _, count in jobs] == [1] * len(slots), "one job per slot"
    assert [at for at, _ in jobs] == slots
    assert max(takeover) <= LEASE + TICK + MARGIN, takeover
    assert max(late) <= LEASE + TICK + MARGIN, max(late)
    # The cut-off scheduler gave up each hung tick itself, and said so.
    assert cut_log.count("scheduler tick abandoned") >= CUTS, cut_log
