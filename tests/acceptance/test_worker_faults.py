"""Real worker processes under faults: jobs that kill their worker, SIGKILL chaos, a worker
paused past its heartbeat timeout, long jobs shared between workers, a blocked event loop.

Every run of a job is recorded from inside the job (``soniq_test_runs``: a "start" row, and an
"end" row when it finished), so executions are counted from outside the workers.
"""

from __future__ import annotations

import random
import re
import signal
import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.acceptance import jobs
from tests.acceptance.processes import Supervisor, WorkerProcess
from tests.helpers import query_elsewhere, wait_until

pytestmark = [pytest.mark.acceptance, pytest.mark.django_db(transaction=True)]

StartWorker = Callable[..., WorkerProcess]
Supervise = Callable[..., Supervisor]


def _scalar(sql: str, params: Any = None) -> Any:
    [[value]] = query_elsewhere("default", sql, params)
    return value


def _dead_letters() -> dict[str, str]:
    rows = query_elsewhere("default", "SELECT id::text, reason FROM soniq_dead_letter_jobs")
    return {job_id: reason for job_id, reason in rows}


def _done(ids: list[str]) -> int:
    return int(
        _scalar(
            "SELECT count(*) FROM soniq_jobs WHERE status = 'done' AND id::text = ANY(%s)",
            (ids,),
        )
    )


def _losses(ids: list[str]) -> dict[str, int]:
    rows = query_elsewhere(
        "default", "SELECT id::text, worker_losses FROM soniq_jobs WHERE id::text = ANY(%s)", (ids,)
    )
    return {job_id: losses for job_id, losses in rows}


def _runs() -> list[tuple[str, str, int, int, datetime]]:
    """(label, job id, attempt, pid, at) of every recorded event, oldest first."""
    return query_elsewhere(
        "default", "SELECT label, job_id, attempt, pid, at FROM soniq_test_runs ORDER BY seq"
    )


def _assert_quarantined_alone(poison: str, innocents: list[str], supervisor: Supervisor) -> None:
    """The poison ends in the dead letters as worker_lost; every innocent runs to the end, none
    is dead-lettered, and none is charged more than one lost worker (it may have been running
    beside the poison once, before the poison ran alone)."""
    wait_until(lambda: poison in _dead_letters(), timeout=90)
    wait_until(lambda: _done(innocents) == len(innocents), timeout=60)
    assert _dead_letters() == {poison: "worker_lost"}, supervisor.output()
    assert max(_losses(innocents).values()) <= 1
    ends = Counter(job_id for label, job_id, *_ in _runs() if label == "end")
    assert {job_id: ends[job_id] for job_id in innocents} == dict.fromkeys(innocents, 1)
    assert supervisor.restarts >= 3, "one crash per lost worker"
    info = jobs.app.get_job_sync(poison)
    assert info is not None
    assert [error["error_type"] for error in info.errors] == ["soniq.WorkerLost"] * 3


def test_a_job_that_exits_its_worker_at_once_is_quarantined_alone(supervise: Supervise) -> None:
    """os._exit at once: the first crash comes before the worker could record the start, so
    that crash charges nobody; from then on the poison's start is written before it runs."""
    supervisor = supervise("--concurrency", "2")
    supervisor.current.wait_registered()
    poison = jobs.poison_exit.enqueue()
    innocents = jobs.app.enqueue_many_sync(jobs.innocent, [{"seconds": 0.3}] * 6)
    _assert_quarantined_alone(poison, innocents, supervisor)


@pytest.mark.parametrize("poison_job", ["poison_sigkill", "poison_segfault"])
def test_a_job_that_kills_its_worker_beside_innocents_is_quarantined_alone(
    supervise: Supervise, poison_job: str
) -> None:
    """The poison dies while three innocents run beside it: they are charged that one loss,
    then the poison runs alone until it is quarantined, and the innocents finish."""
    supervisor = supervise("--concurrency", "4")
    supervisor.current.wait_registered()
    innocents = jobs.app.enqueue_many_sync(jobs.innocent, [{"seconds": 1.0}] * 3)
    poison = getattr(jobs, poison_job).enqueue(delay=0.3)
    _assert_quarantined_alone(poison, innocents, supervisor)


def test_sigkill_chaos_loses_nothing_and_reruns_only_interrupted_jobs(
    supervise: Supervise,
) -> None:
    # Five kills: a job unlucky enough to run in three of the killed workers would be
    # quarantined (MAX_WORKER_LOSSES, 3 by default), a feature tested on its own; here every
    # job must end done.
    supervisors = [supervise("--concurrency", "4", SONIQ_MAX_WORKER_LOSSES="6") for _ in range(3)]
    for supervisor in supervisors:
        supervisor.current.wait_registered()
    chance = random.Random(7)
    ids = jobs.app.enqueue_many_sync(
        jobs.innocent, [{"seconds": chance.uniform(0.2, 0.6)} for _ in range(60)]
    )
    killed: set[int] = set()
    for _ in range(5):
        time.sleep(chance.uniform(0.4, 0.8))  # chaos timing, not synchronisation
        victim = chance.choice(supervisors).current
        killed.add(victim.pid)
        victim.send(signal.SIGKILL)
    wait_until(lambda: _done(ids) == len(ids), timeout=120)
    assert _dead_letters() == {}
    # A job runs again only after a run in a worker that was killed before its completion
    # was recorded (recovery then records a soniq.WorkerLost error naming that worker).
    starts = Counter(job_id for label, job_id, *_ in _runs() if label == "start")
    in_killed = Counter(
        job_id for label, job_id, _, pid, _ in _runs() if label == "start" and pid in killed
    )
    unexplained = {
        job_id: starts[job_id] - 1 for job_id in ids if starts[job_id] - 1 > in_killed[job_id]
    }
    assert unexplained == {}, "every extra run follows a run in a killed worker"
    lost = _lost_while_running(ids)
    assert {pid for pid in _lost_by_pids(ids)} <= killed
    assert sum(lost.values()) <= 4 * len(killed), "at most the running jobs of each kill"


def _lost_by_pids(ids: list[str]) -> set[int]:
    """The pids of the workers named by the soniq.WorkerLost errors of ``ids``."""
    rows = query_elsewhere(
        "default",
        """SELECT DISTINCT worker.pid FROM soniq_jobs AS job,
               jsonb_array_elements(job.errors) AS error, soniq_workers AS worker
           WHERE job.id::text = ANY(%s) AND error->>'error_type' = 'soniq.WorkerLost'
             AND worker.id::text = error->>'worker_id'""",
        (ids,),
    )
    return {pid for (pid,) in rows}


def test_a_worker_paused_past_its_heartbeat_timeout_starts_nothing_it_lost(
    start_worker: StartWorker, tmp_path: Path
) -> None:
    """While a worker is stopped (SIGSTOP) longer than HEARTBEAT_TIMEOUT, another recovers
    its jobs. Resumed, it must not start the jobs it had claimed ahead under its old identity
    (at this pace it holds a few dozen): after each pause it runs at most its concurrency (4) of
    jobs under the old id, those it had started before the pause. The only jobs that run twice
    are those it was running when it was presumed dead: those recovery charged (a
    soniq.WorkerLost error each: running, or finished with the completion not yet written),
    plus at most four per pause whose start it had not written yet (put back uncharged)."""
    settings = {"SONIQ_HEARTBEAT_INTERVAL": "0.2", "SONIQ_HEARTBEAT_TIMEOUT": "1"}
    paused = start_worker("--concurrency", "4", **settings)
    other = start_worker("--concurrency", "4", **settings)
    paused.wait_registered()
    other.wait_registered()
    tally = tmp_path / "runs.txt"
    tally.touch()
    ids = jobs.app.enqueue_many_sync(jobs.tally, [{"path": str(tally), "seconds": 0.001}] * 20_000)
    resumed: list[float] = []
    for pause in range(1, 4):
        seen = len(_tally(tally, paused.pid))
        wait_until(lambda seen=seen: len(_tally(tally, paused.pid)) > seen + 100, timeout=20)
        paused.send(signal.SIGSTOP)
        time.sleep(1.6)  # longer than HEARTBEAT_TIMEOUT: the other worker takes over
        paused.send(signal.SIGCONT)
        resumed.append(time.time())
        wait_until(lambda n=pause: paused.output().count("was presumed dead") >= n, timeout=20)
    # Enough: the rest is cancelled, and the jobs in hand are left to finish.
    jobs.app.cancel_jobs_sync(ids)
    wait_until(lambda: _scalar("SELECT count(*) FROM soniq_jobs WHERE status = 'processing'") == 0)
    assert _dead_letters() == {}

    presumed_dead = re.findall(r"worker (\S+) was presumed dead", paused.output())
    runs = _tally(tally, paused.pid)
    for old_id, after in zip(presumed_dead, resumed, strict=True):
        late = [run for run in runs if run[2] == old_id and float(run[3]) > after]
        assert len(late) <= 4, f"started under {old_id} after it resumed: {late}"
    all_runs = _tally(tally)
    starts = Counter(run[0] for run in all_runs)
    twice = {job_id for job_id, n in starts.items() if n > 1}
    assert twice <= {run[0] for run in runs}, "only the paused worker's jobs run twice"
    duplicates = sum(starts[job_id] - 1 for job_id in twice)
    charged = sum(_lost_while_running(ids).values())
    assert duplicates <= charged + 4 * 3, (duplicates, charged)


def _tally(path: Path, pid: int | None = None) -> list[list[str]]:
    """(job id, pid, worker id, start time) of every run recorded by ``acc.tally``."""
    runs = [line.split() for line in path.read_text().splitlines()]
    return [run for run in runs if pid is None or run[1] == str(pid)]


def _lost_while_running(ids: list[str]) -> dict[str, int]:
    """Per job, the soniq.WorkerLost errors recovery recorded: runs it found running."""
    rows = query_elsewhere(
        "default",
        "SELECT id::text, errors FROM soniq_jobs WHERE id::text = ANY(%s)",
        (ids,),
    )
    lost = {
        job_id: sum(1 for error in errors if error["error_type"] == "soniq.WorkerLost")
        for job_id, errors in rows
    }
    return {job_id: n for job_id, n in lost.items() if n}


def test_long_jobs_are_shared_by_every_idle_worker(start_worker: StartWorker) -> None:
    """A worker claims only for its free slots (and, with short jobs, what it will start
    soon): with long jobs, none hoards while another sits idle."""
    workers = [start_worker("--concurrency", "4") for _ in range(3)]
    for worker in workers:
        worker.wait_registered()
    ids = jobs.app.enqueue_many_sync(jobs.innocent, [{"seconds": 0.5}] * 24)
    wait_until(lambda: _done(ids) == len(ids), timeout=60)
    per_worker = Counter(pid for label, _, _, pid, _ in _runs() if label == "start")
    assert set(per_worker) == {worker.pid for worker in workers}
    assert max(per_worker.values()) <= 10, per_worker  # 8 each when shared evenly


def test_a_blocked_event_loop_is_reported_with_the_async_job_blocking_it(
    start_worker: StartWorker,
) -> None:
    worker = start_worker(SONIQ_LOOP_STALL_WARNING="0.5")
    worker.wait_registered()
    job_id = jobs.blocks_the_loop.enqueue(seconds=1.5)
    wait_until(lambda: "responsive again" in worker.output(), timeout=30)
    log = worker.output()
    assert "event loop blocked" in log
    assert f"acc.blocks_the_loop ({job_id})" in log
    assert "blocks_the_loop" in log.split("event loop blocked", 1)[1]
