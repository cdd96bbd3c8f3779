"""``django.tasks`` tasks in the admin (Django 6.0+): listed with the jobs, filtered by their
task path, and requeued from the dead letters like any job."""

from __future__ import annotations

import pytest

pytest.importorskip("django.tasks", reason="django.tasks is Django 6.0 and newer")

from django.tasks import TaskResultStatus
from django.test import Client

from soniq.testing import drain
from tests import task_functions as tf
from tests.admin.conftest import action_post, change, changelist, html

pytestmark = pytest.mark.django_db


def test_tasks_are_listed_filtered_and_shown(superuser: Client) -> None:
    added = tf.add.enqueue(1, b=2)
    other = tf.greet.enqueue("ada")
    response = superuser.get(changelist("job"), {"task": "tests.task_functions.add"})
    assert response.status_code == 200
    listed = {str(job.pk) for job in response.context["cl"].result_list}
    assert listed == {added.id}
    assert other.id not in listed
    # The task filter offers the tasks this process knows.
    assert "tests.task_functions.greet" in html(response)
    page = superuser.get(change("job", added.id))
    assert page.status_code == 200
    assert "tests.task_functions.add" in html(page)


def test_a_failed_task_is_requeued_from_the_dead_letters(superuser: Client) -> None:
    doomed = tf.doomed.enqueue("no luck")
    drain(run_scheduled=True)
    assert tf.doomed.get_result(doomed.id).status == TaskResultStatus.FAILED
    response = superuser.post(
        changelist("deadletterjob"), action_post("requeue", doomed.id, post="yes")
    )
    assert response.status_code == 302
    again = tf.doomed.get_result(doomed.id)
    assert again.status == TaskResultStatus.READY
    assert len(again.errors) == 2  # the history is kept
