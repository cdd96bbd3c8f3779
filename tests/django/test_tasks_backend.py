"""soniq as the backend of Django's task framework, in process: enqueue, results, the drain.

Real worker processes run the same tasks in tests/acceptance/test_django_tasks_worker.py.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

pytest.importorskip("django.tasks", reason="django.tasks is Django 6.0 and newer")

from django.db import connections, transaction
from django.tasks import TaskResultStatus, task, task_backends
from django.tasks.exceptions import (
    InvalidTask,
    InvalidTaskBackend,
    TaskResultDoesNotExist,
    TaskResultMismatch,
)
from django.tasks.signals import task_enqueued, task_finished, task_started
from django.test import override_settings

from config.tasks import app
from shop.jobs import remind
from soniq import ArgumentsNotSerializableError, JobStatus
from soniq.tasks import SoniqBackend, django_priority, soniq_priority
from soniq.testing import drain
from tests import task_functions as tf

pytestmark = [pytest.mark.django_db]

PATH = "tests.task_functions"


def _rows() -> int:
    with connections["default"].cursor() as cursor:
        cursor.execute("SELECT count(*) FROM soniq_jobs")
        return int(cursor.fetchone()[0])


def test_priorities_map_strictly_monotonically_both_ways() -> None:
    mapped = [soniq_priority(p) for p in range(-100, 101)]
    assert all(1 <= value <= 1000 for value in mapped)
    # Larger Django priorities run first: smaller soniq numbers, strictly.
    assert all(a > b for a, b in itertools.pairwise(mapped))
    assert (soniq_priority(100), soniq_priority(0), soniq_priority(-1)) == (1, 101, 110)
    assert soniq_priority(-100) == 1000
    assert [django_priority(value) for value in mapped] == list(range(-100, 101))
    # Any stored soniq priority reads back inside Django's range, in the same order.
    back = [django_priority(value) for value in range(1, 1001)]
    assert all(-100 <= value <= 100 for value in back)
    assert all(a >= b for a, b in itertools.pairwise(back))


def test_the_backend_supports_every_feature() -> None:
    soniq_backend = task_backends["default"]
    assert isinstance(soniq_backend, SoniqBackend)
    assert soniq_backend.supports_defer
    assert soniq_backend.supports_async_task
    assert soniq_backend.supports_get_result
    assert soniq_backend.supports_priority


def test_enqueue_stores_a_soniq_job_whose_id_is_the_result_id() -> None:
    result = tf.add.enqueue(2, b=3)
    assert result.status == TaskResultStatus.READY
    assert (result.args, result.kwargs, result.backend) == ([2], {"b": 3}, "default")
    assert result.enqueued_at is not None
    info = app.get_job_sync(result.id)
    assert info is not None
    assert info.task_name == f"{PATH}.add"
    assert info.args == {"args": [2], "kwargs": {"b": 3}}
    assert (info.queue, info.priority, info.max_attempts) == ("default", 101, 1)
    assert info.status is JobStatus.QUEUED


def test_using_sets_queue_priority_and_run_after() -> None:
    later = datetime.now(UTC) + timedelta(hours=1)
    result = tf.add.using(priority=100, queue_name="emails", run_after=later).enqueue(1)
    info = app.get_job_sync(result.id)
    assert info is not None
    assert (info.queue, info.priority) == ("emails", 1)
    assert info.scheduled_at == later
    read = tf.add.get_result(result.id)
    assert (read.task.priority, read.task.queue_name) == (100, "emails")
    # Not due yet: the drain leaves it alone.
    assert drain() == 0


def test_per_task_options_become_the_jobs_retry_settings() -> None:
    result = tf.flaky.enqueue(succeed_on=1)
    info = app.get_job_sync(result.id)
    assert info is not None and info.max_attempts == 3
    # The async task on its own queue, priority 10.
    greeting = tf.greet.enqueue("ada")
    info = app.get_job_sync(greeting.id)
    assert info is not None and (info.queue, info.priority) == ("emails", 91)


def test_bad_inputs_are_refused_before_anything_is_written() -> None:
    with pytest.raises(ArgumentsNotSerializableError, match=r"args\[0\]: object is not JSON"):
        tf.add.enqueue(object())
    with pytest.raises(ArgumentsNotSerializableError, match=r"kwargs\['b'\]: nan"):
        tf.add.enqueue(1, b=float("nan"))
    with pytest.raises(InvalidTask, match="Queue 'nope' is not valid"):
        tf.add.using(queue_name="nope")
    with pytest.raises(InvalidTask, match="priority must be a whole number"):
        tf.add.using(priority=101)
    with pytest.raises(InvalidTask, match="aware datetime"):
        tf.add.using(run_after=datetime(2030, 1, 1))

    def nested() -> None:
        return None

    with pytest.raises(InvalidTask, match="module level"):
        task()(nested)
    with pytest.raises(InvalidTask, match="max_attempts"):
        task(max_attempts=0)(tf.add.func)
    with pytest.raises(InvalidTask, match="timeout"):
        task(timeout=-1)(tf.add.func)
    with pytest.raises(InvalidTask, match="retry_delay"):
        task(retry_delay="soon")(tf.add.func)
    assert _rows() == 0


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"OPTIONS": {"RETRIES": 3}}, "unknown key"),
        ({"OPTIONS": {"MAX_ATTEMPTS": 0}}, "max_attempts"),
        ({"OPTIONS": {"TIMEOUT": "soon"}}, "timeout"),
        ({"OPTIONS": ["MAX_ATTEMPTS"]}, "must be a dict"),
        ({"QUEUES": ["no spaces allowed"]}, "not a valid soniq queue name"),
    ],
)
def test_bad_backend_configuration_fails_at_start_up(params: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidTaskBackend, match=message):
        SoniqBackend("broken", params)


def test_backend_options_are_the_defaults_of_its_tasks() -> None:
    tasks_setting = {
        "default": {
            "BACKEND": "soniq.tasks.SoniqBackend",
            "QUEUES": ["default", "emails"],
            "OPTIONS": {"MAX_ATTEMPTS": 4, "RETRY_DELAY": [1, 2], "TIMEOUT": 30},
        }
    }
    with override_settings(TASKS=tasks_setting):
        result = tf.add.enqueue(1)
        own = tf.flaky.enqueue(succeed_on=1)  # its own max_attempts=3 wins
    assert app.get_job_sync(result.id).max_attempts == 4  # type: ignore[union-attr]
    assert app.get_job_sync(own.id).max_attempts == 3  # type: ignore[union-attr]


def test_the_task_commits_or_rolls_back_with_the_callers_transaction() -> None:
    with transaction.atomic():
        kept = tf.add.enqueue(1)
    with transaction.atomic():
        dropped = tf.add.enqueue(2)
        transaction.set_rollback(True)
    assert tf.add.get_result(kept.id).status == TaskResultStatus.READY
    with pytest.raises(TaskResultDoesNotExist):
        tf.add.get_result(dropped.id)
    assert _rows() == 1


def test_results_through_the_life_of_each_task() -> None:
    added = tf.add.enqueue(2, b=3)
    greeted = tf.greet.enqueue("ada")
    flaky = tf.flaky.enqueue(succeed_on=3)
    doomed = tf.doomed.enqueue("no luck")
    once = tf.once.enqueue("gone")
    pair = tf.returns_tuple.enqueue()
    assert drain(run_scheduled=True) == 1 + 1 + 3 + 2 + 1 + 1

    done = tf.add.get_result(added.id)
    assert done.status == TaskResultStatus.SUCCESSFUL and done.return_value == 5
    assert done.attempts == 1 and done.errors == [] and all(done.worker_ids)
    assert done.enqueued_at and done.started_at and done.finished_at and done.last_attempted_at
    assert done.enqueued_at <= done.started_at <= done.finished_at
    assert tf.greet.get_result(greeted.id).return_value == "hello ada"
    assert tf.returns_tuple.get_result(pair.id).return_value == [1, 2]

    retried = tf.flaky.get_result(flaky.id)
    assert retried.status == TaskResultStatus.SUCCESSFUL
    # On its third attempt the task saw the two errors before it, and one worker throughout.
    assert retried.return_value == {
        "attempt": 3,
        "result_id": flaky.id,
        "errors": ["builtins.ConnectionError", "builtins.ConnectionError"],
        "workers": 1,
    }
    assert retried.attempts == 3 and len(retried.worker_ids) == 3
    assert [error.exception_class_path for error in retried.errors] == [
        "builtins.ConnectionError",
        "builtins.ConnectionError",
    ]
    assert "attempt 1 failed" in retried.errors[0].traceback
    assert retried.errors[0].exception_class is ConnectionError

    failed = tf.doomed.get_result(doomed.id)
    assert failed.status == TaskResultStatus.FAILED and failed.attempts == 2
    assert [error.exception_class_path for error in failed.errors] == ["builtins.ValueError"] * 2
    assert failed.finished_at is not None
    with pytest.raises(ValueError, match="Task failed"):
        _ = failed.return_value

    single = tf.once.get_result(once.id)  # Django's semantics: one attempt unless told
    assert single.status == TaskResultStatus.FAILED and single.attempts == 1
    assert single.errors[0].exception_class_path == "builtins.KeyError"


def test_refresh_reads_the_stored_state() -> None:
    result = tf.add.enqueue(4, b=4)
    assert not result.is_finished
    drain()
    result.refresh()
    assert result.status == TaskResultStatus.SUCCESSFUL and result.return_value == 8


def test_get_result_refuses_unknown_ids_and_soniq_jobs() -> None:
    backend = task_backends["default"]
    with pytest.raises(TaskResultDoesNotExist):
        backend.get_result("00000000-0000-4000-8000-000000000000")
    with pytest.raises(TaskResultDoesNotExist, match="not a task result id"):
        backend.get_result("not-a-uuid")
    job_id = remind.enqueue(customer_email="a@example.com")
    with pytest.raises(TaskResultDoesNotExist, match="soniq job"):
        backend.get_result(job_id)
    greeting = tf.greet.enqueue("ada")
    with pytest.raises(TaskResultMismatch):
        tf.add.get_result(greeting.id)


def test_a_cancelled_task_reads_as_failed() -> None:
    result = tf.add.enqueue(1)
    assert app.cancel_jobs_sync([result.id]).applied == (result.id,)
    assert tf.add.get_result(result.id).status == TaskResultStatus.FAILED


def test_django_signals_are_sent() -> None:
    seen: list[tuple[str, str, list[str]]] = []

    def on_signal(name: str) -> Any:
        def receiver(sender: Any, task_result: Any, **kwargs: Any) -> None:
            assert sender is SoniqBackend
            errors = [error.exception_class_path for error in task_result.errors]
            seen.append((name, str(task_result.status), errors))

        return receiver

    receivers = {
        task_enqueued: on_signal("enqueued"),
        task_started: on_signal("started"),
        task_finished: on_signal("finished"),
    }
    for signal, receiver in receivers.items():
        signal.connect(receiver)
    try:
        tf.add.enqueue(1)
        tf.doomed.enqueue("x")
        drain(run_scheduled=True)
    finally:
        for signal, receiver in receivers.items():
            signal.disconnect(receiver)
    assert [(name, status) for name, status, _ in seen] == [
        ("enqueued", "READY"),
        ("enqueued", "READY"),
        ("started", "RUNNING"),
        ("finished", "SUCCESSFUL"),
        ("started", "RUNNING"),  # doomed: its first attempt fails and is retried
        ("started", "RUNNING"),
        ("finished", "FAILED"),
    ]
    # Each result carries the errors so far: the retry's start the first one, the final
    # failure both, the one that ended it last.
    assert [errors for _, _, errors in seen[-2:]] == [
        ["builtins.ValueError"],
        ["builtins.ValueError", "builtins.ValueError"],
    ]


def test_a_task_that_discards_itself_finishes_failed_at_once() -> None:
    finished: list[str] = []

    def receiver(sender: Any, task_result: Any, **kwargs: Any) -> None:
        finished.append(str(task_result.status))

    task_finished.connect(receiver)
    try:
        result = tf.gives_up.enqueue("unknown customer")
        assert drain(run_scheduled=True) == 1  # one attempt of three: the last one
    finally:
        task_finished.disconnect(receiver)
    assert finished == ["FAILED"]
    assert str(tf.gives_up.get_result(result.id).status) == "FAILED"


@pytest.mark.django_db(databases=["default", "sqlite"], transaction=True)
@pytest.mark.asyncio
async def test_aenqueue_and_aget_result(async_db: None) -> None:
    result = await tf.greet.aenqueue("grace")
    read = await tf.greet.aget_result(result.id)
    assert read.status == TaskResultStatus.READY and read.args == ["grace"]
    with pytest.raises(TaskResultDoesNotExist):
        await tf.greet.aget_result("00000000-0000-4000-8000-000000000000")


@pytest.mark.django_db(databases=["default", "sqlite"])
def test_tasks_on_the_sqlite_alias() -> None:
    with override_settings(SONIQ={"DATABASE": "sqlite", "APP": "config.tasks:app"}):
        result = tf.add.enqueue(20, b=22)
        assert drain() == 1
        assert tf.add.get_result(result.id).return_value == 42
    with pytest.raises(TaskResultDoesNotExist):
        tf.add.get_result(result.id)  # it lives in the other database


@pytest.mark.parametrize(
    "name",
    [
        f"{PATH}.not_a_task",
        "os.getcwd",
        f"{PATH}.CALLS",
        "no.such.module.thing",
        "tests.never_import_me.thing",  # raises if imported
    ],
)
def test_a_row_naming_anything_but_a_task_is_never_imported_as_one(name: str) -> None:
    import sys
    import uuid

    from soniq.core.records import NewJob

    job = NewJob(
        id=uuid.uuid4(),
        task_name=name,
        args={"args": [], "kwargs": {}},
        args_json='{"args": [], "kwargs": {}}',
        queue="default",
        priority=101,
        max_attempts=1,
    )
    [job_id] = app.backend.insert_jobs_sync([job])
    with pytest.raises(TaskResultDoesNotExist, match=r"not of a django\.tasks task"):
        task_backends["default"].get_result(job_id)
    assert drain(run_scheduled=True) == 0  # no worker serves it either
    assert tf.CALLS == []
    assert "tests.never_import_me" not in sys.modules


def test_the_admin_filters_know_the_tasks() -> None:
    from soniq.admin.known import task_names

    assert {f"{PATH}.add", "shop.tasks.fulfill_order_task"} <= set(task_names())


def test_the_backend_checks_that_soniq_is_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    from django.apps import apps

    backend = task_backends["default"]
    assert backend.check() == []
    monkeypatch.setattr(apps, "is_installed", lambda name: name != "soniq")
    [error] = backend.check()
    assert error.id == "soniq.E005"
    assert "INSTALLED_APPS" in error.msg


def test_which_app_a_worker_serves_tasks_on(monkeypatch: pytest.MonkeyPatch) -> None:
    import weakref

    import soniq.app
    from soniq import ConfigurationError, Soniq
    from soniq.tasks import default_app, worker_app

    def with_a_job(name: str) -> Soniq:
        own = Soniq()
        own.job(name=name)(tf.not_a_task)
        return own

    mine = with_a_job("mine.job")
    monkeypatch.setattr(soniq.app, "instances", weakref.WeakSet([mine]))
    assert worker_app(None) is mine
    assert f"{PATH}.add" in mine.registry and "mine.job" in mine.registry
    assert worker_app("config.tasks:app") is app  # --app or SONIQ["APP"] first
    assert f"{PATH}.add" in app.registry

    # A project with tasks only: soniq's own app, which keeps them on later calls too.
    monkeypatch.setattr(soniq.app, "instances", weakref.WeakSet())
    assert worker_app(None) is default_app()
    monkeypatch.setattr(soniq.app, "instances", weakref.WeakSet([default_app(), mine]))
    assert worker_app(None) is mine  # soniq's own app with tasks installed is no rival

    second = with_a_job("second.job")
    monkeypatch.setattr(soniq.app, "instances", weakref.WeakSet([mine, second]))
    with pytest.raises(ConfigurationError, match="2 Soniq apps have jobs"):
        worker_app(None)


def test_a_requeued_task_starts_a_new_life_and_keeps_its_errors() -> None:
    doomed = tf.doomed.enqueue("twice")
    drain(run_scheduled=True)
    assert app.retry_jobs_sync([doomed.id]).applied == (doomed.id,)
    assert tf.doomed.get_result(doomed.id).status == TaskResultStatus.READY
    drain(run_scheduled=True)
    again = tf.doomed.get_result(doomed.id)
    assert again.status == TaskResultStatus.FAILED
    assert len(again.errors) == 4  # every failed attempt, both lives
    assert again.attempts == 2 and all(again.worker_ids)  # the attempts of this life


def test_return_values_are_stored_as_json_round_trips_them() -> None:
    keyed = tf.returns_int_keys.enqueue()
    dated = tf.returns_a_datetime.enqueue()
    drain()
    assert tf.returns_int_keys.get_result(keyed.id).return_value == {"1": "one"}
    failed = tf.returns_a_datetime.get_result(dated.id)
    assert failed.status == TaskResultStatus.FAILED  # as on Django's own backends
    assert failed.errors[0].exception_class_path == "builtins.TypeError"


def test_a_whole_float_priority_is_accepted_as_django_accepts_it() -> None:
    result = tf.add.using(priority=5.0).enqueue(1)
    assert app.get_job_sync(result.id).priority == 96  # type: ignore[union-attr]


def test_queue_names_follow_soniqs_rule_even_when_queues_are_open() -> None:
    open_queues = {"default": {"BACKEND": "soniq.tasks.SoniqBackend", "QUEUES": []}}
    with override_settings(TASKS=open_queues):
        assert tf.add.using(queue_name="any-queue").enqueue(1).task.queue_name == "any-queue"
        with pytest.raises(InvalidTask, match="not a valid soniq queue name"):
            tf.add.using(queue_name="has space")
    assert _rows() == 1


def test_non_json_arguments_are_also_a_type_error() -> None:
    with pytest.raises(TypeError):
        tf.add.enqueue({1, 2})


@pytest.mark.django_db(databases=["default", "sqlite"], transaction=True)
@pytest.mark.asyncio
async def test_aenqueue_runs_signal_receivers_off_the_event_loop(async_db: None) -> None:
    from shop.models import Order

    counted: list[int] = []

    def receiver(sender: Any, task_result: Any, **kwargs: Any) -> None:
        counted.append(Order.objects.count())  # the ORM: only from sync code

    task_enqueued.connect(receiver)
    try:
        await tf.greet.aenqueue("grace")
    finally:
        task_enqueued.disconnect(receiver)
    assert counted == [0]
