"""Flow control across real worker processes: four ``manage.py soniq_worker`` processes at
concurrency 8 share locks, a concurrency limit and a rate limit, enforced by PostgreSQL."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest

from tests.acceptance import jobs
from tests.acceptance.processes import WorkerProcess
from tests.helpers import query_elsewhere, wait_until

pytestmark = [pytest.mark.acceptance, pytest.mark.django_db(transaction=True)]

StartWorker = Callable[..., WorkerProcess]
WORKERS = 4
CONCURRENCY = 8


def _fleet(start_worker: StartWorker) -> list[WorkerProcess]:
    fleet = [start_worker("--concurrency", str(CONCURRENCY)) for _ in range(WORKERS)]
    for worker in fleet:
        worker.wait_registered()
    return fleet


def _stop(fleet: list[WorkerProcess]) -> None:
    for worker in fleet:
        worker.send(signal.SIGTERM)
    for worker in fleet:
        assert worker.wait(timeout=30) == 0, worker.output()


def _runs(*labels: str) -> list[tuple[Any, ...]]:
    """``(label, job_id, data, at)`` of the runs recorded under ``labels``, in time order."""
    return query_elsewhere(
        "default",
        "SELECT label, job_id, data, at FROM soniq_test_runs WHERE label = ANY(%s) "
        "ORDER BY at, seq",
        (list(labels),),
    )


def _count(label: str) -> int:
    rows = query_elsewhere(
        "default", "SELECT count(*) FROM soniq_test_runs WHERE label = %s", (label,)
    )
    return int(rows[0][0])


def _most_at_once(starts: str, ends: str) -> int:
    """The most executions that overlapped, from their recorded starts and ends."""
    running = most = 0
    for label, *_ in _runs(starts, ends):
        running += 1 if label == starts else -1
        most = max(most, running)
    return most


def test_jobs_sharing_a_lock_never_overlap_and_run_in_order(start_worker: StartWorker) -> None:
    fleet = _fleet(start_worker)
    locks = [f"customer:{n}" for n in range(4)]
    steps = 12
    began = time.monotonic()
    for step in range(steps):  # interleaved: each lock's steps are enqueued in order
        for lock in locks:
            jobs.locked_step.using(lock=lock).enqueue(lock=lock, step=step)
    wait_until(lambda: _count("locked_end") == steps * len(locks), timeout=60)
    elapsed = time.monotonic() - began
    _stop(fleet)
    overlaps = 0
    for lock in locks:
        runs = [row for row in _runs("locked_start", "locked_end") if row[2]["lock"] == lock]
        assert [row[2]["step"] for row in runs if row[0] == "locked_start"] == list(range(steps))
        running = 0
        for label, *_ in runs:
            running += 1 if label == "locked_start" else -1
            overlaps = max(overlaps, running - 1)
        assert running == 0
    assert overlaps == 0, f"{overlaps} execution(s) of one lock overlapped"
    # The locks ran side by side: four chains, not one.
    assert _most_at_once("locked_start", "locked_end") >= 2
    print(
        f"locks: {len(locks)} x {steps} jobs on {WORKERS} workers, never two of a lock at once, "
        f"in order; {elapsed:.2f} s"
    )


def test_a_concurrency_limit_holds_across_workers(start_worker: StartWorker) -> None:
    fleet = _fleet(start_worker)
    total = 45
    jobs.app.enqueue_many_sync(jobs.capped, [{"seconds": 0.2} for _ in range(total)])
    began = time.monotonic()
    samples: list[int] = []
    while _count("capped_end") < total:
        assert time.monotonic() - began < 60, "the capped jobs did not finish"
        rows = query_elsewhere(
            "default",
            "SELECT count(*) FROM soniq_jobs WHERE task_name = 'acc.capped' "
            "AND status = 'processing'",
        )
        samples.append(int(rows[0][0]))
        time.sleep(0.05)
    elapsed = time.monotonic() - began
    _stop(fleet)
    executing = _most_at_once("capped_start", "capped_end")
    assert max(samples) <= 3, f"{max(samples)} running at once in the database"
    assert executing <= 3, f"{executing} executing at once"
    assert executing == 3, "the limit was never reached: the jobs were held back too much"
    ideal = total * 0.2 / 3
    print(
        f"concurrency_limit=3: {len(samples)} samples every 50 ms, at most {max(samples)} "
        f"processing, at most {executing} executing at once; {total} jobs of 0.2 s in "
        f"{elapsed:.2f} s (at the limit: {ideal:.2f} s)"
    )


def _per_second(times: list[datetime], seconds: int) -> tuple[list[int], int]:
    """Starts in each second from the first one, and the most within any one second."""
    offsets = [(at - times[0]).total_seconds() for at in times]
    buckets = [sum(1 for s in offsets if k <= s < k + 1) for k in range(seconds)]
    busiest = max(sum(1 for other in offsets if s <= other < s + 1) for s in offsets)
    return buckets, busiest


def test_a_rate_limit_holds_across_workers(start_worker: StartWorker) -> None:
    fleet = _fleet(start_worker)
    # Every job thread of the fleet opens its database connection first, so that the first
    # lines of the rated jobs run as soon as they start.
    warm_up = WORKERS * CONCURRENCY
    jobs.app.enqueue_many_sync(jobs.abortable_sync, [{"seconds": 0.3} for _ in range(warm_up)])
    wait_until(lambda: _count("abortable_start") == warm_up, timeout=30)
    jobs.app.enqueue_many_sync(jobs.rated, [{} for _ in range(300)])
    wait_until(lambda: _count("rated") >= 221, timeout=60)
    _stop(fleet)
    # A start is counted when the claim decides it, at the job's claimed_at: in any window of
    # one second, at most 20.
    claimed = [
        row[0]
        for row in query_elsewhere(
            "default",
            "SELECT claimed_at FROM soniq_jobs WHERE task_name = 'acc.rated' "
            "AND claimed_at IS NOT NULL ORDER BY claimed_at",
        )
    ]
    per_second, busiest = _per_second(claimed, 10)
    average = sum(per_second) / len(per_second)
    assert busiest <= 20, f"{busiest} starts within one second"
    assert max(per_second) <= 20, per_second
    assert average >= 18, per_second
    # The jobs' own first lines, a few milliseconds after their start.
    lines, lines_busiest = _per_second([row[3] for row in _runs("rated")], 10)
    print(
        f"rate_limit=20/s: starts per second over 10 s {per_second}, average {average:.1f}, "
        f"busiest one-second window {busiest}; the jobs' first lines per second {lines}, "
        f"busiest window {lines_busiest}"
    )


def test_unlimited_jobs_flow_past_held_back_ones(start_worker: StartWorker) -> None:
    fleet = _fleet(start_worker)
    hogs = 6
    jobs.app.enqueue_many_sync(jobs.hog, [{"seconds": 1.0} for _ in range(hogs)])
    quick = 200
    began = time.monotonic()
    jobs.app.enqueue_many_sync(jobs.quick, [{} for _ in range(quick)])
    wait_until(lambda: _count("quick") == quick, timeout=30)
    elapsed = time.monotonic() - began
    hogs_started = _count("hog_start")
    wait_until(lambda: _count("hog_end") == hogs, timeout=30)
    _stop(fleet)
    assert hogs_started <= 2, "the quick jobs waited for the held-back ones"
    assert elapsed < 3, f"{quick} quick jobs took {elapsed:.2f} s behind the held-back ones"
    assert _most_at_once("hog_start", "hog_end") == 1
    print(
        f"mixed queue: {quick} unlimited jobs done in {elapsed:.2f} s while {hogs_started} of "
        f"{hogs} jobs limited to one at a time had started"
    )


def test_a_killed_worker_s_lock_and_limit_are_freed_by_recovery(
    start_worker: StartWorker,
) -> None:
    first = start_worker("--concurrency", "4")
    first.wait_registered()
    held = jobs.guarded.using(lock="ledger").enqueue(seconds=60)
    wait_until(lambda: _count("guarded_start") == 1, timeout=20)
    behind = jobs.guarded.using(lock="ledger").enqueue(seconds=0.1)  # its lock and the limit
    beside = jobs.guarded.enqueue(seconds=0.1)  # the limit of one
    second = start_worker("--concurrency", "4")
    second.wait_registered()
    killed_at = time.monotonic()
    first.send(signal.SIGKILL)
    first.wait(timeout=10)
    wait_until(lambda: _count("guarded_end") == 3, timeout=60)
    freed_after = time.monotonic() - killed_at
    _stop([second])
    runs = query_elsewhere(
        "default",
        "SELECT label, job_id, attempt, pid FROM soniq_test_runs "
        "WHERE label LIKE 'guarded%%' ORDER BY at, seq",
    )
    starts = [
        (job_id, attempt, pid) for label, job_id, attempt, pid in runs if label == "guarded_start"
    ]
    # Every execution counted: the killed one, its rerun, then the two that waited.
    # The rerun goes first (due earliest; its lock holds back `behind`, the limit `beside`),
    # then the other two in claim order.
    assert [(job_id, attempt) for job_id, attempt, _ in starts] == [
        (held, 1),
        (held, 2),
        (behind, 1),
        (beside, 1),
    ]
    assert starts[0][2] == first.pid and all(pid == second.pid for _, _, pid in starts[1:])
    # On the survivor, one at a time (the limit), the killed run's rerun first (its lock).
    survivor = [label for label, *_ in runs[1:]]
    assert survivor == ["guarded_start", "guarded_end"] * 3, survivor
    print(
        f"SIGKILL of the worker holding a lock and a limit of one: the job ran again on the "
        f"survivor, then the two held back, one at a time; all done {freed_after:.2f} s after "
        "the kill"
    )
