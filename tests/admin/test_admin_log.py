"""Every admin action leaves a trace in Django's admin log, under the user who took it, shown
on the object's History page."""

from __future__ import annotations

import pytest
from django.contrib.admin.models import CHANGE, DELETION, LogEntry
from django.contrib.contenttypes.models import ContentType
from django.test import Client

from soniq.models import DeadLetterJob, Job, Schedule
from tests.admin.conftest import Rows, action_post, change, changelist, html

pytestmark = pytest.mark.django_db(databases=["default", "sqlite"])


def _entries(model: type, pk: object) -> list[LogEntry]:
    kind = ContentType.objects.get_for_model(model)
    return list(LogEntry.objects.filter(content_type=kind, object_id=str(pk)))


def test_retry_and_cancel_are_logged_for_the_jobs_they_changed(
    rows: Rows, superuser: Client
) -> None:
    queued = rows.job()
    running = rows.running(rows.worker())
    superuser.post(changelist("job"), action_post("cancel", queued.pk, running.pk))
    [entry] = _entries(Job, queued.pk)
    assert entry.action_flag == CHANGE and entry.change_message == "Cancelled"
    assert entry.user.is_superuser
    assert _entries(Job, running.pk) == []  # refused: nothing to log
    superuser.post(f"{change('job', queued.pk).removesuffix('change/')}retry/")
    assert [e.change_message for e in _entries(Job, queued.pk)] == ["Retried", "Cancelled"]
    history = html(superuser.get(f"{change('job', queued.pk).removesuffix('change/')}history/"))
    assert "Retried" in history and "Cancelled" in history


def test_a_requeue_is_logged_on_the_job_and_a_delete_on_the_dead_letter(
    rows: Rows, superuser: Client
) -> None:
    requeued, deleted = rows.dead_letter(), rows.dead_letter()
    superuser.post(changelist("deadletterjob"), action_post("requeue", requeued.pk, post="yes"))
    superuser.post(
        changelist("deadletterjob"),
        action_post("delete_dead_letters", deleted.pk, post="yes"),
    )
    [entry] = _entries(Job, requeued.pk)
    assert entry.change_message == "Requeued from the dead letters"
    [gone] = _entries(DeadLetterJob, deleted.pk)
    assert gone.action_flag == DELETION and deleted.task_name in gone.object_repr


def test_schedule_actions_are_logged(pg_rows: Rows, superuser: Client) -> None:
    schedule = pg_rows.schedule()
    superuser.post(changelist("schedule"), action_post("pause", schedule.pk))
    superuser.post(changelist("schedule"), action_post("run_now", schedule.pk))
    messages = [e.change_message for e in _entries(Schedule, schedule.pk)]
    assert messages[1] == "Paused"
    assert messages[0].startswith("Ran now: enqueued job ")
