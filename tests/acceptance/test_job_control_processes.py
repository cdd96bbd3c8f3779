"""Job control across processes: ``manage.py soniq_worker`` runs the jobs, this process aborts
them, waits for them, and reads what became of them."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from typing import Any

import pytest

from soniq import JobCancelledError, JobFailedError, JobStatus
from tests.acceptance import jobs
from tests.acceptance.processes import WorkerProcess
from tests.helpers import query_elsewhere, wait_until

pytestmark = [pytest.mark.acceptance, pytest.mark.django_db(transaction=True)]

StartWorker = Callable[..., WorkerProcess]

# The bar for stopping an async job after its abort is requested.
ABORT_LATENCY = 1.5


def _runs(label: str) -> list[tuple[Any, ...]]:
    return query_elsewhere(
        "default",
        "SELECT job_id, attempt, pid, at FROM soniq_test_runs WHERE label = %s ORDER BY seq",
        (label,),
    )


def _status(job_id: str) -> JobStatus:
    info = jobs.app.get_job_sync(job_id)
    assert info is not None
    return info.status


def _abort_and_time(job_id: str) -> float:
    """Request the abort; seconds until the job is recorded cancelled."""
    asked = time.monotonic()
    result = jobs.app.cancel_jobs_sync([job_id], abort=True, by="ops@test")
    assert result.applied == (job_id,), result.refused
    wait_until(lambda: _status(job_id) is JobStatus.CANCELLED, timeout=10)
    return time.monotonic() - asked


@pytest.mark.parametrize("listen", ["1", "0"], ids=["notify", "poll"])
def test_abort_stops_a_long_async_job_quickly(start_worker: StartWorker, listen: str) -> None:
    worker = start_worker("--concurrency", "4", SONIQ_LISTEN_NOTIFY=listen)
    worker.wait_registered()
    job_id = jobs.abortable_async.enqueue(seconds=600)
    wait_until(lambda: _runs("abortable_start"), timeout=20)
    latency = _abort_and_time(job_id)
    assert latency <= ABORT_LATENCY, f"stopped {latency:.2f} s after the request"
    assert [row[0] for row in _runs("abortable_cancelled")] == [job_id]
    info = jobs.app.get_job_sync(job_id)
    assert info is not None
    assert (info.attempts, info.abort_requested_by) == (1, "ops@test")
    assert info.errors[-1]["error_type"] == "soniq.core.control.Aborted"
    # The worker goes on: the next job runs, and nothing was left to recover.
    after = jobs.count.enqueue(n=3)
    assert jobs.app.wait_for_sync(after, timeout=20).result == 3
    assert "abort requested by ops@test" in worker.output()
    worker.send(signal.SIGTERM)
    assert worker.wait(timeout=20) == 0, worker.output()
    print(f"abort latency ({'NOTIFY' if listen == '1' else 'poll'}): {latency * 1000:.0f} ms")


def test_abort_reaches_a_cooperative_sync_job(start_worker: StartWorker) -> None:
    worker = start_worker()
    worker.wait_registered()
    job_id = jobs.abortable_sync.enqueue(seconds=600)
    wait_until(lambda: _runs("abortable_start"), timeout=20)
    latency = _abort_and_time(job_id)
    assert latency <= ABORT_LATENCY, f"stopped {latency:.2f} s after the request"
    assert [row[0] for row in _runs("abortable_noticed")] == [job_id]
    info = jobs.app.get_job_sync(job_id)
    assert info is not None
    assert info.result == "stopped early"
    with pytest.raises(JobCancelledError, match="abort requested by ops@test"):
        jobs.app.wait_for_sync(job_id, timeout=5)
    # Aborting it again is refused: it has ended.
    again = jobs.app.cancel_jobs_sync([job_id], abort=True)
    assert "it is cancelled" in again.refused[job_id]
    worker.send(signal.SIGTERM)
    assert worker.wait(timeout=20) == 0, worker.output()
    print(f"cooperative sync abort latency: {latency * 1000:.0f} ms")


def test_wait_for_across_processes(start_worker: StartWorker) -> None:
    worker = start_worker("--concurrency", "4")
    worker.wait_registered()
    good = jobs.count.enqueue(n=42)
    bad = jobs.backoff.enqueue()  # fails every attempt: 4 attempts, then a dead letter
    slow = jobs.slow.enqueue(seconds=30)
    info = jobs.app.wait_for_sync(good, timeout=20)
    assert (info.status, info.result) == (JobStatus.DONE, 42)
    with pytest.raises(JobFailedError, match="always") as failed:
        jobs.app.wait_for_sync(bad, timeout=30)
    assert failed.value.reason == "max_attempts"
    assert [entry["attempt"] for entry in failed.value.errors] == [1, 2, 3, 4]
    began = time.monotonic()
    with pytest.raises(TimeoutError):
        jobs.app.wait_for_sync(slow, timeout=0.5)
    assert 0.5 <= time.monotonic() - began < 3
    assert _status(slow) is JobStatus.PROCESSING  # a timeout leaves the job alone
    # Woken by the completion NOTIFY: a job of one second is seen done well before the
    # fallback read (every 5 s).
    second = jobs.slow.enqueue(seconds=1)
    began = time.monotonic()
    jobs.app.wait_for_sync(second, timeout=20)
    waited = time.monotonic() - began
    assert waited < 2.5, f"wait_for took {waited:.2f} s for a job of one second"
    jobs.app.cancel_jobs_sync([slow], abort=True)
    worker.send(signal.SIGTERM)
    assert worker.wait(timeout=20) == 0, worker.output()
    print(f"wait_for of a one-second job: {waited * 1000:.0f} ms")


def test_each_control_exception_and_retry_choice(start_worker: StartWorker) -> None:
    worker = start_worker("--concurrency", "4")
    worker.wait_registered()
    snoozed = jobs.snoozer.enqueue()
    retried = jobs.retrier.enqueue()
    cancelled = jobs.canceller.enqueue()
    discarded = jobs.discarder.enqueue()
    picky = jobs.picky.enqueue()
    never = jobs.never_retried.enqueue()

    info = jobs.app.wait_for_sync(snoozed, timeout=20)
    assert (info.result, info.attempts, info.snoozes) == ("ready", 1, 1)
    info = jobs.app.wait_for_sync(retried, timeout=20)
    assert (info.result, info.attempts) == (2, 2)  # retried in 0.3 s, not its retry_delay
    with pytest.raises(JobCancelledError, match="order withdrawn"):
        jobs.app.wait_for_sync(cancelled, timeout=20)
    with pytest.raises(JobFailedError) as discard:
        jobs.app.wait_for_sync(discarded, timeout=20)
    assert (discard.value.reason, discard.value.job.attempts) == ("discarded", 1)
    with pytest.raises(JobFailedError) as not_listed:
        jobs.app.wait_for_sync(picky, timeout=20)
    assert (not_listed.value.reason, not_listed.value.job.attempts) == ("not_retryable", 2)
    assert [e["error_type"] for e in not_listed.value.errors] == [
        "builtins.ConnectionError",
        "builtins.ValueError",
    ]
    with pytest.raises(JobFailedError) as excluded:
        jobs.app.wait_for_sync(never, timeout=20)
    assert (excluded.value.reason, excluded.value.job.attempts) == ("not_retryable", 1)
    counts = dict(
        query_elsewhere(
            "default", "SELECT label, count(*) FROM soniq_test_runs GROUP BY label ORDER BY 1"
        )
    )
    assert counts == {
        "canceller": 1,
        "discarder": 1,
        "never_retried": 1,
        "picky": 2,
        "retrier": 2,
        "snoozer": 2,
    }
    worker.send(signal.SIGTERM)
    assert worker.wait(timeout=20) == 0, worker.output()
