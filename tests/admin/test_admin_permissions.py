"""Each admin action is granted by its own permission: without it a staff user sees neither the
action nor the button, and a forged POST changes nothing; with exactly it, the action works.
Rows are never added, edited or deleted through Django's own views."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from soniq.models import DeadLetterJob, Job, Schedule, Worker
from tests.admin.conftest import (
    CUSTOM_PERMISSIONS,
    VIEW_PERMISSIONS,
    Rows,
    action_post,
    change,
    changelist,
    flashes,
    html,
    make_user,
    offered_actions,
    soniq_on,
)

pytestmark = pytest.mark.django_db(databases=["default", "sqlite"])


@dataclass(frozen=True)
class Gate:
    """One action, the permission that grants it, and how to see that it ran."""

    permission: str
    model: str
    action: str
    url_name: str | None  # the per-object button's URL, if the action has one
    label: str | None  # that button's label
    make: Callable[[Rows], Any]
    done: Callable[[Rows, Any], bool]

    def __str__(self) -> str:
        return f"{self.permission}:{self.action}"


def _job_field(rows: Rows, obj: Any, field: str) -> Any:
    return getattr(Job.objects.using(rows.alias).get(pk=obj.pk), field)


def _schedule_status(rows: Rows, obj: Any) -> str:
    return str(Schedule.objects.using(rows.alias).get(pk=obj.pk).status)


GATES = [
    Gate(
        "soniq.retry_job",
        "job",
        "retry_now",
        "admin:soniq_job_retry",
        "Run now",
        lambda rows: rows.scheduled(),
        lambda rows, job: _job_field(rows, job, "scheduled_at") <= datetime.now(UTC),
    ),
    Gate(
        "soniq.cancel_job",
        "job",
        "cancel",
        "admin:soniq_job_cancel",
        "Cancel",
        lambda rows: rows.job(),
        lambda rows, job: _job_field(rows, job, "status") == "cancelled",
    ),
    Gate(
        "soniq.abort_job",
        "job",
        "abort",
        "admin:soniq_job_abort",
        "Abort",
        lambda rows: rows.running(rows.worker()),
        lambda rows, job: _job_field(rows, job, "abort_requested_at") is not None,
    ),
    Gate(
        "soniq.requeue_deadletterjob",
        "deadletterjob",
        "requeue",
        "admin:soniq_deadletterjob_requeue",
        "Requeue",
        lambda rows: rows.dead_letter(),
        lambda rows, dead: Job.objects.using(rows.alias).filter(pk=dead.pk).exists(),
    ),
    Gate(
        "soniq.delete_deadletterjob",
        "deadletterjob",
        "delete_dead_letters",
        None,
        None,
        lambda rows: rows.dead_letter(),
        lambda rows, dead: not DeadLetterJob.objects.using(rows.alias).filter(pk=dead.pk).exists(),
    ),
    Gate(
        "soniq.pause_schedule",
        "schedule",
        "pause",
        "admin:soniq_schedule_pause",
        "Pause",
        lambda rows: rows.schedule(),
        lambda rows, schedule: _schedule_status(rows, schedule) == "paused",
    ),
    Gate(
        "soniq.pause_schedule",
        "schedule",
        "resume",
        "admin:soniq_schedule_resume",
        "Resume",
        lambda rows: rows.schedule(status="paused"),
        lambda rows, schedule: _schedule_status(rows, schedule) == "active",
    ),
    Gate(
        "soniq.run_schedule",
        "schedule",
        "run_now",
        "admin:soniq_schedule_run",
        "Run now",
        lambda rows: rows.schedule(),
        lambda rows, schedule: (
            Job.objects.using(rows.alias).filter(task_name=schedule.task_name).exists()
        ),
    ),
]

# What a user holding only this permission is offered on its model's page.
ACTIONS_GRANTED = {
    "soniq.retry_job": ["retry_now"],
    "soniq.cancel_job": ["cancel"],
    "soniq.abort_job": ["abort"],
    "soniq.requeue_deadletterjob": ["requeue"],
    "soniq.delete_deadletterjob": ["delete_dead_letters"],
    "soniq.pause_schedule": ["pause", "resume"],
    "soniq.run_schedule": ["run_now"],
}

# Jobs and dead letters on both databases; schedules live on PostgreSQL only.
CASES = [
    pytest.param((gate, alias), id=f"{gate}-{alias}")
    for gate in GATES
    for alias in (["default"] if gate.model == "schedule" else ["default", "sqlite"])
]

WITH_BUTTON = [case for case in CASES if case.values[0][0].url_name]  # type: ignore[index]


@pytest.fixture
def case(request: pytest.FixtureRequest) -> Any:
    gate, alias = request.param
    with soniq_on(alias):
        yield gate, Rows(alias)


def _post_action(client: Client, gate: Gate, obj: Any) -> Any:
    # post=yes: a confirmed requeue or delete, as the confirmation page would send it.
    return client.post(changelist(gate.model), action_post(gate.action, obj.pk, post="yes"))


def _button_urls(client: Client, gate: Gate, obj: Any) -> list[str]:
    response = client.get(change(gate.model, obj.pk))
    assert response.status_code == 200
    urls = [button["url"] for button in response.context["soniq_buttons"]]
    for url in urls:
        assert f'action="{url}"' in html(response)
    return urls


@pytest.mark.parametrize("case", CASES, indirect=True)
def test_view_only_staff_see_no_action_and_no_button(case: Any, client_with: Any) -> None:
    gate, rows = case
    obj = gate.make(rows)
    client = client_with(*VIEW_PERMISSIONS)
    response = client.get(changelist(gate.model))
    assert response.status_code == 200
    assert offered_actions(response) == []
    assert 'name="action"' not in html(response)
    assert f'value="{gate.action}"' not in html(response)
    assert _button_urls(client, gate, obj) == []
    if gate.url_name:
        assert reverse(gate.url_name, args=[obj.pk]) not in html(
            client.get(change(gate.model, obj.pk))
        )


@pytest.mark.parametrize("case", CASES, indirect=True)
def test_a_forged_post_without_the_permission_changes_nothing(case: Any, client_with: Any) -> None:
    gate, rows = case
    obj = gate.make(rows)
    others = [p for p in CUSTOM_PERMISSIONS if p != gate.permission]
    for client in (client_with(*VIEW_PERMISSIONS), client_with(*VIEW_PERMISSIONS, *others)):
        # Django ignores an action the user is not offered.
        response = _post_action(client, gate, obj)
        assert response.status_code in (200, 302)
        assert not any(
            message.startswith(
                ("Retried", "Cancelled", "Requeued", "Deleted", "Paused", "Resumed", "Enqueued")
            )
            for message in flashes(response)
        )
        assert not gate.done(rows, obj)
        if gate.url_name:
            url = reverse(gate.url_name, args=[obj.pk])
            assert client.post(url).status_code == 403
            assert not gate.done(rows, obj)


@pytest.mark.parametrize("case", CASES, indirect=True)
def test_the_permission_alone_grants_the_action(case: Any, client_with: Any) -> None:
    gate, rows = case
    obj = gate.make(rows)
    client = client_with(*VIEW_PERMISSIONS, gate.permission)
    response = client.get(changelist(gate.model))
    assert offered_actions(response) == ACTIONS_GRANTED[gate.permission]
    if gate.url_name:
        assert _button_urls(client, gate, obj) == [reverse(gate.url_name, args=[obj.pk])]
    assert _post_action(client, gate, obj).status_code == 302
    assert gate.done(rows, obj)


@pytest.mark.parametrize("case", WITH_BUTTON, indirect=True)
def test_the_permission_alone_grants_the_button(case: Any, client_with: Any) -> None:
    gate, rows = case
    obj = gate.make(rows)
    client = client_with(*VIEW_PERMISSIONS, gate.permission)
    response = client.post(reverse(gate.url_name, args=[obj.pk]))
    assert response.status_code == 302
    assert gate.done(rows, obj)


@pytest.mark.parametrize("case", WITH_BUTTON, indirect=True)
def test_per_object_urls_refuse_users_who_are_not_staff(case: Any) -> None:
    gate, rows = case
    obj = gate.make(rows)
    url = reverse(gate.url_name, args=[obj.pk])
    anonymous = Client()
    response = anonymous.post(url)
    assert response.status_code == 302 and "/login/" in response["Location"]
    user = make_user(*CUSTOM_PERMISSIONS)
    user.is_staff = False
    user.save()
    not_staff = Client()
    not_staff.force_login(user)
    response = not_staff.post(url)
    assert response.status_code == 302 and "/login/" in response["Location"]
    assert not gate.done(rows, obj)


@pytest.mark.parametrize("case", WITH_BUTTON, indirect=True)
def test_per_object_urls_need_the_view_permission_too(case: Any, client_with: Any) -> None:
    gate, rows = case
    obj = gate.make(rows)
    blind = client_with(*CUSTOM_PERMISSIONS)  # may act, may not see
    assert blind.post(reverse(gate.url_name, args=[obj.pk])).status_code == 403
    assert not gate.done(rows, obj)


# -- requeue every matching dead letter -------------------------------------------------------


def test_requeue_matching_needs_the_requeue_permission(rows: Rows, client_with: Any) -> None:
    dead = rows.dead_letter()
    matching = reverse("admin:soniq_deadletterjob_requeue_matching")
    others = [p for p in CUSTOM_PERMISSIONS if p != "soniq.requeue_deadletterjob"]
    client = client_with(*VIEW_PERMISSIONS, *others)
    assert 'id="requeue-matching"' not in html(client.get(changelist("deadletterjob")))
    assert client.get(matching).status_code == 403
    assert client.post(matching).status_code == 403
    assert DeadLetterJob.objects.using(rows.alias).filter(pk=dead.pk).exists()

    allowed = client_with("soniq.view_deadletterjob", "soniq.requeue_deadletterjob")
    assert 'id="requeue-matching"' in html(allowed.get(changelist("deadletterjob")))
    assert allowed.get(matching).status_code == 200
    assert allowed.post(matching).status_code == 302
    assert not DeadLetterJob.objects.using(rows.alias).filter(pk=dead.pk).exists()


def test_delete_needs_its_own_permission_not_requeue(rows: Rows, client_with: Any) -> None:
    dead = rows.dead_letter()
    client = client_with("soniq.view_deadletterjob", "soniq.requeue_deadletterjob")
    response = client.post(
        changelist("deadletterjob"), action_post("delete_dead_letters", dead.pk, post="yes")
    )
    assert "No action selected." in flashes(response)
    assert DeadLetterJob.objects.using(rows.alias).filter(pk=dead.pk).exists()


def test_the_superuser_is_offered_every_action(rows: Rows, superuser: Client) -> None:
    assert offered_actions(superuser.get(changelist("job"))) == ["retry_now", "cancel", "abort"]
    assert offered_actions(superuser.get(changelist("deadletterjob"))) == [
        "requeue",
        "delete_dead_letters",
    ]
    assert offered_actions(superuser.get(changelist("schedule"))) == [
        "pause",
        "resume",
        "run_now",
    ]
    assert offered_actions(superuser.get(changelist("worker"))) == []


# -- who sees the pages -----------------------------------------------------------------------


MODELS = ["job", "deadletterjob", "worker", "schedule"]


@pytest.mark.parametrize("model", MODELS)
def test_staff_without_the_view_permission_get_403(model: str, client_with: Any) -> None:
    client = client_with(*(p for p in VIEW_PERMISSIONS if not p.endswith(f"_{model}")))
    assert client.get(changelist(model)).status_code == 403
    assert client_with(*CUSTOM_PERMISSIONS).get(changelist(model)).status_code == 403


def test_staff_without_soniq_permissions_do_not_see_soniq(client_with: Any) -> None:
    client = client_with()
    page = html(client.get(reverse("admin:index")))
    assert "/admin/soniq/" not in page
    assert client.get(reverse("admin:app_list", args=["soniq"])).status_code == 404


def test_view_only_staff_see_every_page(rows: Rows, client_with: Any) -> None:
    client = client_with(*VIEW_PERMISSIONS)
    objects = {
        "job": rows.job(),
        "deadletterjob": rows.dead_letter(),
        "worker": rows.worker(),
    }
    for model, obj in objects.items():
        assert client.get(changelist(model)).status_code == 200
        assert client.get(change(model, obj.pk)).status_code == 200
    with soniq_on("default"):
        schedule = Rows("default").schedule()
        assert client.get(changelist("schedule")).status_code == 200
        assert client.get(change("schedule", schedule.pk)).status_code == 200


# -- no add, change or delete through Django's own views --------------------------------------


def _rows_for(model: str, rows: Rows) -> Any:
    return {
        "job": rows.job,
        "deadletterjob": rows.dead_letter,
        "worker": rows.worker,
        "schedule": rows.schedule,
    }[model]()


ROW_CASES = [
    pytest.param(model, alias, id=f"{model}-{alias}")
    for model in MODELS
    for alias in (["default"] if model == "schedule" else ["default", "sqlite"])
]


@pytest.mark.parametrize(("model", "alias"), ROW_CASES)
def test_no_add_change_or_delete_even_for_the_superuser(
    model: str, alias: str, superuser: Client
) -> None:
    with soniq_on(alias):
        _no_add_change_or_delete(model, Rows(alias), superuser)


def _no_add_change_or_delete(model: str, rows: Rows, superuser: Client) -> None:
    obj = _rows_for(model, rows)
    model_class = type(obj)
    before = model_class.objects.using(rows.alias).count()
    add = reverse(f"admin:soniq_{model}_add")
    response = superuser.get(changelist(model))
    assert response.context["has_add_permission"] is False
    assert f'href="{add}"' not in html(response)
    assert superuser.get(add).status_code == 403
    assert superuser.post(add, {"task_name": "x"}).status_code == 403

    delete = reverse(f"admin:soniq_{model}_delete", args=[obj.pk])
    assert superuser.get(delete).status_code == 403
    assert superuser.post(delete, {"post": "yes"}).status_code == 403
    page = html(superuser.get(change(model, obj.pk)))
    assert f'href="{delete}"' not in page
    assert 'name="_save"' not in page  # read-only: no save button

    field = "hostname" if model == "worker" else ("name" if model == "schedule" else "task_name")
    assert superuser.post(change(model, obj.pk), {field: "changed"}).status_code == 403
    assert getattr(model_class.objects.using(rows.alias).get(pk=obj.pk), field) != "changed"
    assert model_class.objects.using(rows.alias).count() == before


def test_workers_have_no_actions_for_anyone(rows: Rows, superuser: Client) -> None:
    worker = rows.worker()
    response = superuser.post(
        changelist("worker"), action_post("delete_selected", worker.pk, post="yes")
    )
    assert response.status_code in (200, 302)
    assert Worker.objects.using(rows.alias).filter(pk=worker.pk).exists()


def test_djangos_bulk_delete_is_not_offered(rows: Rows, superuser: Client) -> None:
    job = rows.job()
    dead = rows.dead_letter()
    for model, obj in (("job", job), ("deadletterjob", dead)):
        response = superuser.post(
            changelist(model), action_post("delete_selected", obj.pk, post="yes")
        )
        assert "No action selected." in flashes(response)
    assert Job.objects.using(rows.alias).filter(pk=job.pk).exists()
    assert DeadLetterJob.objects.using(rows.alias).filter(pk=dead.pk).exists()
