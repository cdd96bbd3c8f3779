"""A real worker process given a job that fails with a 50 MB message on every attempt: each
error entry, the log and the worker's memory stay bounded, and the job ends in the dead letters
after exactly its attempts, next to healthy jobs."""

from __future__ import annotations

import signal
from collections.abc import Callable
from pathlib import Path

import pytest

from soniq import JobStatus
from tests.acceptance import jobs
from tests.acceptance.processes import WorkerProcess
from tests.helpers import query_elsewhere, wait_until

pytestmark = [pytest.mark.acceptance, pytest.mark.django_db(transaction=True)]

# Seen: 168 MiB at the peak (68 MiB before the job: the job's own 50 MB message, one copy of it
# while the traceback is formatted). Without the caps and the freed exceptions: ~918 MiB.
PEAK_RSS_LIMIT_MIB = 250
LOG_LIMIT_BYTES = 256 * 1024


def _peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


def test_a_50_mb_error_on_every_attempt_stays_bounded(
    start_worker: Callable[..., WorkerProcess],
) -> None:
    worker = start_worker("--concurrency", "4")
    job_id = jobs.huge_error.enqueue()
    healthy = [jobs.count.enqueue(n=n) for n in range(20)]

    def settled() -> bool:
        info = jobs.app.get_job_sync(job_id)
        return info is not None and info.status is JobStatus.DEAD_LETTER

    wait_until(settled, timeout=60)
    for n, healthy_id in enumerate(healthy):
        wait_until(lambda healthy_id=healthy_id: _done(healthy_id), timeout=30)
        assert jobs.app.get_job_sync(healthy_id).result == n  # type: ignore[union-attr]
    peak = _peak_rss_mib(worker.pid)
    worker.send(signal.SIGTERM)
    assert worker.wait(30) == 0, worker.output()

    attempts = query_elsewhere(
        "default",
        "SELECT attempt FROM soniq_test_runs WHERE label = 'huge_error' ORDER BY seq",
    )
    assert [attempt for (attempt,) in attempts] == [1, 2, 3, 4], "each attempt ran once"
    info = jobs.app.get_job_sync(job_id)
    assert info is not None and info.dead_letter_reason == "max_attempts"
    assert len(info.errors) == 4
    for error in info.errors:
        assert len(error["message"]) <= 4000 + 40
        assert len(error["traceback"]) <= 20000 + 40
        assert error["message"].startswith("XXXX") and "more characters cut" in error["message"]
        assert "huge_error" in error["traceback"], "the failing frame is kept"
    log_size = worker.log_path.stat().st_size
    print(f"peak RSS {peak:.0f} MiB, log {log_size} bytes")
    assert peak < PEAK_RSS_LIMIT_MIB, peak
    assert log_size < LOG_LIMIT_BYTES, log_size


def _done(job_id: str) -> bool:
    info = jobs.app.get_job_sync(job_id)
    return info is not None and info.status is JobStatus.DONE
