"""``django.tasks`` tasks run by real ``manage.py soniq_worker`` processes (Django 6.0+)."""

from __future__ import annotations

import signal
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

pytest.importorskip("django.tasks", reason="django.tasks is Django 6.0 and newer")

from django.db import transaction
from django.tasks import TaskResultStatus

from shop import tasks as shop_tasks
from shop.models import Order
from tests.acceptance import task_jobs
from tests.acceptance.processes import Supervisor, WorkerProcess
from tests.helpers import query_elsewhere, wait_until

pytestmark = [pytest.mark.acceptance, pytest.mark.django_db(transaction=True)]

StartWorker = Callable[..., WorkerProcess]
TASKS_MODULE = {"SONIQ_JOBS_MODULES": "tests.acceptance.task_jobs"}


def _runs(label: str) -> Counter[tuple[str, int]]:
    rows = query_elsewhere(
        "default", "SELECT job_id, attempt FROM soniq_test_runs WHERE label = %s", (label,)
    )
    return Counter((str(job_id), int(attempt)) for job_id, attempt in rows)


def _finished(task: Any, result_id: str) -> Any:
    def read() -> Any:
        result = task.get_result(result_id)
        return result if result.is_finished else None

    return wait_until(read, timeout=60)


def test_a_worker_runs_every_kind_of_task_once(start_worker: StartWorker) -> None:
    worker = start_worker("--concurrency", "4", **TASKS_MODULE)
    worker_id = worker.wait_registered()
    with transaction.atomic():
        order = Order.objects.create(customer_email="ada@example.com", total_cents=100)
        fulfil = task_jobs.fulfil.enqueue(order.pk)
    with transaction.atomic():
        rolled_back = task_jobs.fulfil.enqueue(order.pk)
        transaction.set_rollback(True)
    greet = task_jobs.greet.enqueue("grace")
    flaky = task_jobs.flaky.enqueue()
    doomed = task_jobs.doomed.enqueue()
    sleepy = task_jobs.sleepy.enqueue()

    done = _finished(task_jobs.fulfil, fulfil.id)
    assert done.status == TaskResultStatus.SUCCESSFUL
    assert done.return_value == "ada@example.com"
    assert done.worker_ids == [worker_id]
    greeted = _finished(task_jobs.greet, greet.id)
    assert greeted.return_value == "hello grace"
    retried = _finished(task_jobs.flaky, flaky.id)
    assert (retried.status, retried.return_value, retried.attempts) == (
        TaskResultStatus.SUCCESSFUL,
        3,
        3,
    )
    assert [error.exception_class_path for error in retried.errors] == [
        "builtins.ConnectionError"
    ] * 2
    assert retried.worker_ids == [worker_id] * 3
    failed = _finished(task_jobs.doomed, doomed.id)
    assert failed.status == TaskResultStatus.FAILED
    assert [error.exception_class_path for error in failed.errors] == ["builtins.ValueError"] * 2
    assert "never works" in failed.errors[-1].traceback
    # The failed task is a dead letter, as a soniq job's would be.
    assert query_elsewhere(
        "default", "SELECT count(*) FROM soniq_dead_letter_jobs WHERE id = %s", (doomed.id,)
    ) == [(1,)]

    timed_out = _finished(task_jobs.sleepy, sleepy.id)
    assert timed_out.status == TaskResultStatus.FAILED
    assert [error.exception_class_path for error in timed_out.errors] == [
        "soniq.worker.execution.JobTimeoutError"
    ]

    # Exactly once per attempt, counted from outside the worker; the rolled-back one never ran.
    assert _runs("task.fulfil") == Counter({(fulfil.id, 1): 1})
    assert _runs("task.greet") == Counter({(greet.id, 1): 1})
    assert _runs("task.flaky") == Counter({(flaky.id, 1): 1, (flaky.id, 2): 1, (flaky.id, 3): 1})
    assert _runs("task.doomed") == Counter({(doomed.id, 1): 1, (doomed.id, 2): 1})
    assert not any(job_id == rolled_back.id for job_id, _ in _runs("task.fulfil"))
    worker.send(signal.SIGTERM)
    assert worker.wait() == 0, worker.output()


def test_the_worker_serves_installed_apps_tasks_modules(start_worker: StartWorker) -> None:
    """No JOBS_MODULES: shop/tasks.py is found as Django's convention has it."""
    worker = start_worker("--concurrency", "2")
    worker.wait_registered()
    order = Order.objects.create(customer_email="bob@example.com", total_cents=5)
    result = shop_tasks.fulfill_order_task.enqueue(order.pk)
    thanked = shop_tasks.thank_customer.enqueue("bob@example.com")
    assert _finished(shop_tasks.fulfill_order_task, result.id).return_value == {
        "order_id": order.pk
    }
    assert _finished(shop_tasks.thank_customer, thanked.id).return_value == (
        "thanked bob@example.com"
    )
    order.refresh_from_db()
    assert order.fulfilled_at is not None


def test_queues_limit_which_tasks_a_worker_takes(start_worker: StartWorker) -> None:
    worker = start_worker("--queues", "default", **TASKS_MODULE)
    worker.wait_registered()
    greet = task_jobs.greet.enqueue("on emails")
    order = Order.objects.create(customer_email="c@example.com", total_cents=5)
    fulfil = task_jobs.fulfil.enqueue(order.pk)
    _finished(task_jobs.fulfil, fulfil.id)
    assert task_jobs.greet.get_result(greet.id).status == TaskResultStatus.READY
    assert _runs("task.greet") == Counter()


def test_a_task_whose_worker_is_killed_runs_again_after_recovery(
    supervise: Callable[..., Supervisor],
) -> None:
    supervisor = supervise("--concurrency", "2", **TASKS_MODULE)
    supervisor.current.wait_registered()
    result = task_jobs.slow.enqueue(1.5)
    wait_until(lambda: _runs("task.slow.start"), timeout=30)
    supervisor.current.send(signal.SIGKILL)
    finished = _finished(task_jobs.slow, result.id)
    assert finished.status == TaskResultStatus.SUCCESSFUL, supervisor.output()
    assert finished.return_value == "slept"
    assert finished.attempts == 2
    assert [error.exception_class_path for error in finished.errors] == ["soniq.WorkerLost"]
    assert supervisor.restarts >= 1
    assert _runs("task.slow.end") == Counter({(result.id, 2): 1})
