"""Past COUNT_LIMIT rows the list says "more than", never a wrong total."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from django.contrib.auth.models import User
from django.test import Client

from soniq.admin import common
from soniq.models import Job

pytestmark = pytest.mark.django_db


@pytest.fixture
def sixty_jobs() -> None:
    now = datetime.now(UTC)
    Job.objects.bulk_create(
        Job(id=uuid.uuid4(), task_name="t", scheduled_at=now, created_at=now) for _ in range(60)
    )


def test_a_capped_list_says_more_than(
    client: Client, sixty_jobs: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(common, "COUNT_LIMIT", 3)
    client.force_login(User.objects.create_superuser("a", "a@example.com", "pw"))
    body = client.get("/admin/soniq/job/").content.decode()
    assert "more than 3 jobs (filter to narrow the list)" in body
    assert "Select every matching jobs (more than 3" in body
    assert 'class="showall"' not in body  # "show all" on one page would load them all


def test_below_the_cap_the_count_is_exact(client: Client, sixty_jobs: None) -> None:
    client.force_login(User.objects.create_superuser("a", "a@example.com", "pw"))
    body = client.get("/admin/soniq/job/").content.decode()
    assert "60 jobs" in body
    assert "more than" not in body
