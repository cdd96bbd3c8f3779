"""Shared fixtures of the admin tests: soniq's database alias, row factories, staff users with
chosen permissions, and what a response tells (flash messages, actions offered, buttons shown).

Nothing here is autouse: the dashboard tests in this folder bring their own fixtures.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth.models import Permission, User
from django.contrib.messages import get_messages
from django.test import Client, override_settings
from django.urls import reverse

from tests.rows import Rows

__all__ = ["Rows"]  # the admin tests import it from here

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
