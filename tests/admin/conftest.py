"""Shared fixtures of the admin tests: soniq's database alias, row factories, staff users with
chosen permissions, and what a response tells (flash messages, actions offered, buttons shown).

Nothing here is autouse: the dashboard tests in this folder bring their own fixtures.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth.models import Permission, User
from django.contrib.messages import get_messages
from django.test import Client, override_settings
from django.urls import reverse

from soniq.models import DeadLetterJob, Job, Schedule, Worker

# Both databases hold jobs and dead letters; "default" is PostgreSQL, "sqlite" is SQLite.
ADMIN_DATABASES = ["default", "sqlite"]

# Every permission a soniq admin action needs, by the action it gates.
CUSTOM_PERMISSIONS = (
    "soniq.retry_job",
    "soniq.cancel_job",
    "soniq.requeue_deadletterjob",
    "soniq.delete_deadletterjob",
    "soniq.pause_schedule",
    "soniq.run_schedule",
)
VIEW_PERMISSIONS = (
    "soniq.view_job",
    "soniq.view_deadletterjob",
    "soniq.view_worker",
    "soniq.view_schedule",
)

_numbers = itertools.count(1)


def soniq_on(alias: str, **extra: Any) -> override_settings:
    """The admin reads soniq's rows from ``SONIQ["DATABASE"]``; ``extra``: other SONIQ keys."""
    current = getattr(settings, "SONIQ", {})
    return override_settings(SONIQ={**current, "DATABASE": alias, **extra})


@pytest.fixture(params=ADMIN_DATABASES, ids=["postgres", "sqlite"])
def soniq_alias(request: pytest.FixtureRequest) -> Iterator[str]:
    """Each test twice: soniq (and so the admin) on PostgreSQL, then on SQLite."""
    alias = str(request.param)
    with soniq_on(alias):
        yield alias


@dataclass
class Rows:
    """Rows written straight into soniq's tables on one alias, as a worker would leave them."""

    alias: str

    def job(self, **fields: Any) -> Job:
        now = datetime.now(UTC)
        values: dict[str, Any] = {
            "id": uuid.uuid4(),
            "task_name": "tests.send_email",
            "args": {"to": "a@example.com", "subject": "hi"},
            "queue": "default",
            "priority": 100,
            "status": "queued",
            "attempts": 0,
            "max_attempts": 4,
            "scheduled_at": now,
            "created_at": now,
        }
        values.update(fields)
        return Job.objects.using(self.alias).create(**values)

    def scheduled(self, **fields: Any) -> Job:
        """A queued job due in an hour."""
        later = datetime.now(UTC) + timedelta(hours=1)
        return self.job(scheduled_at=later, **fields)

    def dead_letter(self, **fields: Any) -> DeadLetterJob:
        now = datetime.now(UTC)
        values: dict[str, Any] = {
            "id": uuid.uuid4(),
            "task_name": "tests.send_email",
            "args": {"to": "a@example.com", "subject": "hi"},
            "queue": "default",
            "priority": 100,
            "attempts": 4,
            "max_attempts": 4,
            "scheduled_at": now,
            "created_at": now,
            "dead_lettered_at": now,
            "errors": [{"attempt": 4, "error_type": "ValueError", "message": "boom"}],
            "reason": "max_attempts",
        }
        values.update(fields)
        return DeadLetterJob.objects.using(self.alias).create(**values)

    def worker(self, status: str = "running", heartbeat_age: float = 0, **fields: Any) -> Worker:
        now = datetime.now(UTC)
        values: dict[str, Any] = {
            "id": uuid.uuid4(),
            "hostname": "host-a",
            "pid": 4000 + next(_numbers),
            "queues": None,
            "concurrency": 4,
            "status": status,
            "started_at": now - timedelta(hours=1),
            "last_heartbeat_at": now - timedelta(seconds=heartbeat_age),
            "version": "1.0",
        }
        values.update(fields)
        return Worker.objects.using(self.alias).create(**values)

    def running(self, worker: Worker, **fields: Any) -> Job:
        """A job ``worker`` holds."""
        values: dict[str, Any] = {
            "status": "processing",
            "attempts": 1,
            "worker_id": worker.id,
            "started_at": datetime.now(UTC),
        }
        return self.job(**{**values, **fields})

    def schedule(self, **fields: Any) -> Schedule:
        now = datetime.now(UTC)
        values: dict[str, Any] = {
            "name": f"schedule-{next(_numbers)}",
            "task_name": "shop.jobs.remind",
            "cron": "*/5 * * * *",
            "timezone": "UTC",
            "args": {"customer_email": "a@example.com"},
            "status": "active",
            "source": "api",
            "next_fire_at": now + timedelta(minutes=5),
            "created_at": now,
            "updated_at": now,
        }
        values.update(fields)
        return Schedule.objects.using(self.alias).create(**values)


@pytest.fixture
def rows(soniq_alias: str) -> Rows:
    """Row factories on the alias soniq uses in this test (both databases, one at a time)."""
    return Rows(soniq_alias)


@pytest.fixture
def pg_rows() -> Iterator[Rows]:
    """Row factories on PostgreSQL, soniq's alias for the test (schedules live there only)."""
    with soniq_on("default"):
        yield Rows("default")


def make_user(*perms: str, superuser: bool = False) -> User:
    user = User.objects.create_user(
        username=f"user-{next(_numbers)}",
        password="unused",
        is_staff=True,
        is_superuser=superuser,
    )
    for perm in perms:
        app_label, codename = perm.split(".")
        user.user_permissions.add(
            Permission.objects.get(content_type__app_label=app_label, codename=codename)
        )
    return user


@pytest.fixture
def client_with() -> Callable[..., Client]:
    """``client_with("soniq.view_job", "soniq.retry_job")``: a client logged in as a staff user
    holding exactly these permissions."""

    def make(*perms: str) -> Client:
        client = Client()
        client.force_login(make_user(*perms))
        return client

    return make


@pytest.fixture
def superuser() -> Client:
    client = Client()
    client.force_login(make_user(superuser=True))
    return client


# -- reading responses ------------------------------------------------------------------------


def flashes(response: Any) -> list[str]:
    """The flash messages the request left (shown on the next page)."""
    return [str(message) for message in get_messages(response.wsgi_request)]


def flash_levels(response: Any) -> list[tuple[str, str]]:
    return [(m.level_tag, str(m)) for m in get_messages(response.wsgi_request)]


def offered_actions(response: Any) -> list[str]:
    """The actions in a changelist's dropdown (none: no dropdown at all)."""
    form = response.context["action_form"]
    if form is None:
        return []
    return [name for name, _ in form.fields["action"].choices if name]


def date_choice(response: Any, field: str, label: str = "Past 7 days") -> str:
    """The query string a changelist's date filter links for ``label`` (aware datetimes)."""
    changelist = response.context["cl"]
    spec = next(s for s in changelist.filter_specs if getattr(s, "field_path", None) == field)
    return str(next(c["query_string"] for c in spec.choices(changelist) if c["display"] == label))


def html(response: Any) -> str:
    return str(response.content.decode())


def changelist(model: str) -> str:
    return reverse(f"admin:soniq_{model}_changelist")


def change(model: str, pk: Any) -> str:
    return reverse(f"admin:soniq_{model}_change", args=[pk])


def action_post(
    action: str, *pks: Any, select_across: bool = False, **extra: str
) -> dict[str, Any]:
    """The form Django's changelist posts for ``action`` on the ticked rows."""
    data: dict[str, Any] = {
        "action": action,
        "_selected_action": [str(pk) for pk in pks],
        "index": "0",
        "select_across": "1" if select_across else "0",
    }
    data.update(extra)
    return data
