"""Queued jobs that no live worker serves are flagged, on the dashboard and in the job list."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from soniq.admin.serving import NO_QUEUE, NO_WORKER, Serving
from tests.admin.conftest import soniq_on
from tests.rows import Rows

pytestmark = pytest.mark.django_db(databases=["default", "sqlite"])


def test_why_unserved() -> None:
    serving = Serving(
        (
            (frozenset({"mail.send"}), frozenset({"emails"})),
            (frozenset({"report.build"}), None),
        )
    )
    assert serving.why_unserved("mail.send", "emails") is None
    assert serving.why_unserved("mail.send", "default") == NO_QUEUE
    assert serving.why_unserved("report.build", "anything") is None
    assert serving.why_unserved("nobody.knows", "emails") == NO_WORKER
    assert Serving(()).why_unserved("mail.send", "emails") == NO_WORKER


@pytest.fixture(params=["default", "sqlite"])
def seeded(request: Any) -> dict[str, Any]:
    alias = request.param
    rows = Rows(alias)
    with soniq_on(alias):
        rows.worker(task_names=["mail.send"], queues=["emails"])
        # A stale worker (no heartbeat for an hour) serves nothing any more.
        rows.worker(task_names=["nobody.knows"], heartbeat_age=3600)
        served = rows.job(task_name="mail.send", queue="emails")
        wrong_queue = rows.job(task_name="mail.send", queue="default")
        unknown = [rows.job(task_name="nobody.knows", queue="emails") for _ in range(2)]
        rows.job(task_name="nobody.knows", queue="emails", status="done")
    return {
        "alias": alias,
        "served": served,
        "wrong_queue": wrong_queue,
        "unknown": unknown,
    }


def test_the_dashboard_lists_what_no_live_worker_serves(
    seeded: dict[str, Any], superuser: Client
) -> None:
    with soniq_on(seeded["alias"]):
        page = superuser.get(reverse("admin:soniq_dashboard")).content.decode()
    section = page[page.index('id="soniq-unserved"') :]
    section = section[: section.index("</section>")]
    rows = section.split("<tr>")[2:]  # past the header row
    assert len(rows) == 2, section
    assert "nobody.knows" in rows[0] and ">2<" in rows[0] and NO_WORKER in rows[0]
    assert "mail.send" in rows[1] and ">default<" in rows[1] and NO_QUEUE in rows[1]


def test_the_job_list_flags_each_unserved_queued_job(
    seeded: dict[str, Any], superuser: Client
) -> None:
    with soniq_on(seeded["alias"]):
        page = superuser.get(reverse("admin:soniq_job_changelist")).content.decode()
    lines = {
        str(job.pk): next(line for line in page.split("<tr") if str(job.pk)[:8] in line)
        for job in [seeded["served"], seeded["wrong_queue"], *seeded["unknown"]]
    }
    assert "soniq-unserved" not in lines[str(seeded["served"].pk)]
    assert NO_QUEUE in lines[str(seeded["wrong_queue"].pk)]
    for job in seeded["unknown"]:
        assert NO_WORKER in lines[str(job.pk)]


def test_nothing_is_flagged_when_every_queued_job_is_served(superuser: Client) -> None:
    rows = Rows("default")
    with soniq_on("default"):
        rows.worker(task_names=["mail.send"], queues=None)
        rows.job(task_name="mail.send", queue="anything")
        dashboard = superuser.get(reverse("admin:soniq_dashboard")).content.decode()
        jobs = superuser.get(reverse("admin:soniq_job_changelist")).content.decode()
    assert "soniq-unserved" not in dashboard and 'soniq-unserved"' not in jobs
    assert NO_WORKER not in jobs
