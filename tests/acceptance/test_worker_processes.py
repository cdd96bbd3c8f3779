"""Real ``manage.py soniq_worker`` processes: exactly-once runs, signals, crashes, faults."""

from __future__ import annotations

import itertools
import signal
import time
from collections.abc import Callable
from typing import Any

import psycopg
import pytest

from shop.models import Order
from soniq import JobStatus
from tests.acceptance import jobs
from tests.acceptance.processes import WorkerProcess
from tests.helpers import conninfo, query_elsewhere, wait_until

pytestmark = [pytest.mark.acceptance, pytest.mark.django_db(transaction=True)]

StartWorker = Callable[..., WorkerProcess]


def _status_counts() -> dict[str, int]:
    rows = query_elsewhere("default", "SELECT status, count(*) FROM soniq_jobs GROUP BY status")
    return {status: count for status, count in rows}


def _runs(label: str) -> list[tuple[Any, ...]]:
    return query_elsewhere(
        "default",
        "SELECT job_id, attempt, pid, at FROM soniq_test_runs WHERE label = %s ORDER BY seq",
        (label,),
    )


def _job(job_id: str) -> Any:
    info = jobs.app.get_job_sync(job_id)
    assert info is not None
    return info


def test_two_workers_run_every_job_exactly_once(start_worker: StartWorker) -> None:
    total = 600
    first = start_worker("--concurrency", "4")
    second = start_worker("--concurrency", "4")
    # Both ready before any job exists, so that both get a share.
    first.wait_registered()
    second.wait_registered()
    ids = jobs.app.enqueue_many_sync(jobs.count, [{"n": n} for n in range(total)])
    wait_until(lambda: _status_counts().get("done") == total, timeout=60)
    runs = query_elsewhere(
        "default", "SELECT job_id, count(*), count(DISTINCT pid) FROM soniq_test_runs GROUP BY 1"
    )
    assert len(runs) == total
    assert {count for _, count, _ in runs} == {1}
    assert {row[0] for row in runs} == set(ids)
    pids = {
        row[0] for row in query_elsewhere("default", "SELECT DISTINCT pid FROM soniq_test_runs")
    }
    assert pids == {first.pid, second.pid}, "both workers took a share"
    for worker in (first, second):
        worker.send(signal.SIGTERM)
        assert worker.wait() == 0, worker.output()
    statuses = query_elsewhere("default", "SELECT DISTINCT status FROM soniq_workers")
    assert statuses == [("stopped",)]


def test_sigterm_lets_the_running_job_finish(start_worker: StartWorker) -> None:
    worker = start_worker()
    worker.wait_registered()
    job_id = jobs.slow.enqueue(seconds=1.5)
    wait_until(lambda: _runs("start"), timeout=20)
    worker.send(signal.SIGTERM)
    assert worker.wait(timeout=20) == 0, worker.output()
    assert len(_runs("end")) == 1
    info = _job(job_id)
    assert info.status is JobStatus.DONE
    assert info.result == "slept"


def test_a_job_over_the_shutdown_timeout_is_requeued_uncharged(start_worker: StartWorker) -> None:
    worker = start_worker(SONIQ_SHUTDOWN_TIMEOUT="0.5")
    worker.wait_registered()
    job_id = jobs.slow.enqueue(seconds=60)
    wait_until(lambda: _runs("start"), timeout=20)
    started = time.monotonic()
    worker.send(signal.SIGTERM)
    assert worker.wait(timeout=20) == 0, worker.output()
    assert time.monotonic() - started < 10
    info = _job(job_id)
    assert info.status is JobStatus.QUEUED
    assert info.attempts == 0  # the interrupted attempt is not charged
    assert info.worker_id is None


def test_a_second_signal_stops_at_once(start_worker: StartWorker) -> None:
    worker = start_worker(SONIQ_SHUTDOWN_TIMEOUT="60")
    worker.wait_registered()
    job_id = jobs.slow.enqueue(seconds=60)
    wait_until(lambda: _runs("start"), timeout=20)
    worker.send(signal.SIGTERM)
    wait_until(lambda: "send it again" in worker.output(), timeout=10)
    started = time.monotonic()
    worker.send(signal.SIGTERM)
    assert worker.wait(timeout=20) == 0, worker.output()
    assert time.monotonic() - started < 10
    assert _job(job_id).status is JobStatus.QUEUED


def test_sigkill_mid_job_is_recovered_by_another_worker(start_worker: StartWorker) -> None:
    victim = start_worker()
    victim_id = victim.wait_registered()
    job_id = jobs.innocent.enqueue(seconds=2)
    wait_until(lambda: _runs("start"), timeout=20)
    survivor = start_worker()
    survivor.wait_registered()
    killed_at = time.monotonic()
    victim.send(signal.SIGKILL)
    victim.wait()
    # Back in the queue (and picked up by the survivor) well before the heartbeat timeout.
    wait_until(lambda: len(_runs("start")) == 2, timeout=20)
    recovered_after = time.monotonic() - killed_at
    wait_until(lambda: _job(job_id).status is JobStatus.DONE, timeout=20)
    print(f"SIGKILL -> job running again on the other worker after {recovered_after:.2f}s")
    assert recovered_after < 10
    info = _job(job_id)
    assert info.attempts == 2  # the lost run counted as attempt 1
    assert [error["error_type"] for error in info.errors] == ["soniq.WorkerLost"]
    assert query_elsewhere(
        "default", "SELECT status FROM soniq_workers WHERE id = %s", (victim_id,)
    ) == [("dead",)]


def test_terminated_connections_are_reestablished(start_worker: StartWorker) -> None:
    worker = start_worker("--concurrency", "4")
    worker.wait_registered()
    first = jobs.app.enqueue_many_sync(jobs.count, [{"n": n} for n in range(50)])
    wait_until(lambda: _status_counts().get("done") == 50, timeout=30)
    with psycopg.connect(conninfo(), autocommit=True) as conn:
        killed = conn.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND application_name LIKE 'soniq%%' "
            "AND pid <> pg_backend_pid()"
        ).fetchone()
    assert killed is not None and killed[0] >= 2
    second = jobs.app.enqueue_many_sync(jobs.count, [{"n": n} for n in range(50, 100)])
    wait_until(lambda: _status_counts().get("done") == 100, timeout=30)
    runs = query_elsewhere("default", "SELECT job_id FROM soniq_test_runs")
    assert sorted(row[0] for row in runs) == sorted(first + second)
    assert worker.process.poll() is None, worker.output()
    # The session (LISTEN + liveness lock) came back too: the worker is not presumed dead.
    wait_until(
        lambda: (
            query_elsewhere(
                "default",
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE datname = current_database() AND application_name = 'soniq-worker'",
            )[0][0]
            == 1
        ),
        timeout=20,
    )


def test_retry_delays_are_honoured(start_worker: StartWorker) -> None:
    start_worker()
    job_id = jobs.flaky.enqueue(fail_times=2)
    wait_until(lambda: _job(job_id).status is JobStatus.DONE, timeout=30)
    attempts = _runs("flaky")
    assert [row[1] for row in attempts] == [1, 2, 3]
    gaps = [(b[3] - a[3]).total_seconds() for a, b in itertools.pairwise(attempts)]
    assert gaps[0] >= 0.5
    assert gaps[1] >= 1.0
    info = _job(job_id)
    assert info.result == 3
    assert [error["attempt"] for error in info.errors] == [1, 2]


def test_backoff_grows_and_dead_letters_keep_every_error(start_worker: StartWorker) -> None:
    start_worker()
    job_id = jobs.backoff.enqueue()
    wait_until(lambda: _job(job_id).status is JobStatus.DEAD_LETTER, timeout=30)
    attempts = _runs("backoff")
    gaps = [(b[3] - a[3]).total_seconds() for a, b in itertools.pairwise(attempts)]
    # 0.4 s doubled per retry, with jitter between half and all of it.
    assert gaps[0] >= 0.2
    assert gaps[1] >= 0.4
    assert gaps[2] >= 0.8
    info = _job(job_id)
    assert info.dead_letter_reason == "max_attempts"
    assert len(info.errors) == 4


def test_dead_letter_contents(start_worker: StartWorker) -> None:
    start_worker()
    job_id = jobs.doomed.enqueue(reason="bad data")
    wait_until(lambda: _job(job_id).status is JobStatus.DEAD_LETTER, timeout=30)
    [row] = query_elsewhere(
        "default",
        "SELECT args, attempts, max_attempts, reason, errors FROM soniq_dead_letter_jobs "
        "WHERE id = %s",
        (job_id,),
    )
    args, attempts, max_attempts, reason, errors = row
    assert args == {"reason": "bad data"}
    assert (attempts, max_attempts, reason) == (3, 3, "max_attempts")
    assert [error["attempt"] for error in errors] == [1, 2, 3]
    for number, error in enumerate(errors, start=1):
        assert error["error_type"] == "builtins.ValueError"
        assert error["message"] == f"doomed: bad data (attempt {number})"
        assert "Traceback" in error["traceback"]
        assert "raise ValueError" in error["traceback"]
    assert query_elsewhere(
        "default", "SELECT count(*) FROM soniq_jobs WHERE id = %s", (job_id,)
    ) == [(0,)]


def test_timeouts_count_as_failed_attempts(start_worker: StartWorker) -> None:
    start_worker()
    job_id = jobs.sleepy.enqueue()
    wait_until(lambda: _job(job_id).status is JobStatus.DEAD_LETTER, timeout=30)
    info = _job(job_id)
    assert [error["error_type"] for error in info.errors] == [
        "soniq.worker.execution.JobTimeoutError"
    ] * 2
    assert "timed out after 0.5 s" in info.errors[0]["message"]
    assert len(_runs("sleepy")) == 2


def test_every_jobcontext_field(start_worker: StartWorker) -> None:
    worker = start_worker("--queues", "ctx,other")
    worker_id = worker.wait_registered()
    job_id = jobs.context.enqueue()
    wait_until(lambda: _job(job_id).status is JobStatus.DONE, timeout=30)
    info = _job(job_id)
    assert info.result == {
        "job_id": job_id,
        "job_name": "acc.context",
        "attempt": 1,
        "max_attempts": 5,
        "queue": "ctx",
        "worker_id": worker_id,
        "scheduled_at": info.scheduled_at.isoformat(),
        "created_at": info.created_at.isoformat(),
        "pid": worker.pid,
    }
    assert info.worker_id == worker_id
    assert info.started_at is not None and info.finished_at is not None


def test_sync_job_uses_the_orm(start_worker: StartWorker) -> None:
    order = Order.objects.create(customer_email="orm@example.com", total_cents=100)
    start_worker()
    job_id = jobs.fulfil.enqueue(order_id=order.pk)
    wait_until(lambda: _job(job_id).status is JobStatus.DONE, timeout=30)
    order.refresh_from_db()
    assert order.fulfilled_at is not None
    assert _job(job_id).result == "orm@example.com"


def test_queues_flag_limits_what_a_worker_takes(start_worker: StartWorker) -> None:
    worker = start_worker("--queues", "ctx")
    worker.wait_registered()
    elsewhere = jobs.count.enqueue(n=1)
    mine = jobs.context.enqueue()
    wait_until(lambda: _job(mine).status is JobStatus.DONE, timeout=30)
    assert _job(elsewhere).status is JobStatus.QUEUED
