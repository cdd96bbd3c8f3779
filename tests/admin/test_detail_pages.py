"""What every object's page shares, through Django's test client on PostgreSQL and SQLite:
times to the second with their zone, a traceback shown once however often it repeats, and the
page of a job that has since moved to the dead letters (or back) following it there."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.admin.models import CHANGE, LogEntry
from django.test import Client, override_settings
from django.urls import reverse

from soniq.models import DeadLetterJob, Job
from tests.admin.conftest import Rows, change, flashes, html

pytestmark = pytest.mark.django_db(databases=["default", "sqlite"])

AT = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)


def readonly_fields(page: str) -> dict[str, str]:
    """What each read-only field of an object's page shows (tags stripped), by field name."""
    found = re.findall(
        r'<div class="[^"]*field-(\w+)[^"]*">.*?<div class="readonly">(.*?)</div>', page, re.S
    )
    return {name: re.sub(r"<[^>]+>", "", value).strip() for name, value in found}


# -- times to the second ----------------------------------------------------------------------


def test_a_jobs_page_shows_its_times_to_the_second(rows: Rows, superuser: Client) -> None:
    job = rows.job(scheduled_at=AT, created_at=AT - timedelta(seconds=3), finished_at=None)
    fields = readonly_fields(html(superuser.get(change("job", job.pk))))
    assert fields["scheduled_at"] == "2030-01-02 03:04:05 UTC"
    assert fields["created_at"] == "2030-01-02 03:04:02 UTC"
    assert fields["finished_at"] == "-"


def test_the_labels_and_help_texts_stay_the_fields_own(rows: Rows, superuser: Client) -> None:
    job = rows.job(scheduled_at=AT)
    page = html(superuser.get(change("job", job.pk)))
    assert re.search(r"<label>Scheduled at:</label>", page)
    assert "Not run before this time." in page


@override_settings(TIME_ZONE="Europe/Paris")
def test_times_are_in_the_current_time_zone_as_django_shows_them(
    rows: Rows, superuser: Client
) -> None:
    dead = rows.dead_letter(dead_lettered_at=AT, created_at=AT)
    fields = readonly_fields(html(superuser.get(change("deadletterjob", dead.pk))))
    assert fields["dead_lettered_at"] == "2030-01-02 04:04:05 CET"
    assert fields["created_at"] == "2030-01-02 04:04:05 CET"


def test_a_workers_page_shows_its_times_to_the_second(rows: Rows, superuser: Client) -> None:
    worker = rows.worker(started_at=AT, last_heartbeat_at=AT + timedelta(seconds=1))
    fields = readonly_fields(html(superuser.get(change("worker", worker.pk))))
    assert fields["started_at"] == "2030-01-02 03:04:05 UTC"
    assert fields["last_heartbeat"].endswith("ago (2030-01-02 03:04:06 UTC)")
    assert fields["stopped_at"] == "-"


# -- tracebacks once --------------------------------------------------------------------------

TRACEBACK = 'Traceback (most recent call last):\n  File "jobs.py", line 3\nValueError: boom'


def _attempt(number: int, traceback: str) -> dict[str, object]:
    return {
        "attempt": number,
        "error_type": "ValueError",
        "message": "boom",
        "failed_at": (AT + timedelta(minutes=number)).isoformat(),
        "traceback": traceback,
    }


def test_a_repeated_traceback_is_shown_in_full_once(rows: Rows, superuser: Client) -> None:
    other = TRACEBACK.replace("line 3", "line 9")
    errors = [_attempt(1, TRACEBACK), _attempt(2, TRACEBACK), _attempt(3, other)]
    errors.append(_attempt(4, TRACEBACK))
    job = rows.job(status="queued", attempts=4, max_attempts=5, errors=errors)
    dead = rows.dead_letter(errors=errors)
    for page in (
        html(superuser.get(change("job", job.pk))),
        html(superuser.get(change("deadletterjob", dead.pk))),
    ):
        assert page.count('<pre class="soniq-traceback">') == 4  # the repeats folded away
        assert page.count("Same traceback as attempt 1") == 2
        assert "Same traceback as attempt 3" not in page
        folded = re.findall(r'<details class="soniq-traceback-same">', page)
        assert len(folded) == 2
        # Each attempt's time, to the second.
        assert "at 2030-01-02 03:05:05 UTC" in page


# -- a job that moved -------------------------------------------------------------------------


def _move_to_dead_letters(rows: Rows, job: Job) -> DeadLetterJob:
    Job.objects.using(rows.alias).filter(pk=job.pk).delete()
    return rows.dead_letter(id=job.pk, task_name=job.task_name)


def test_a_log_entry_of_a_job_now_dead_lettered_links_to_the_dead_letter(
    rows: Rows, superuser: Client
) -> None:
    job = rows.job()
    LogEntry.objects.log_actions(int(superuser.session["_auth_user_id"]), [job], CHANGE, "Retried")
    dead = _move_to_dead_letters(rows, job)
    entry = LogEntry.objects.get(object_id=str(job.pk))
    url = entry.get_admin_url()
    assert url == change("job", job.pk)
    response = superuser.get(url)
    assert response.status_code == 302
    assert response["Location"] == change("deadletterjob", dead.pk)
    assert flashes(response) == ["This job has since moved to the dead letters."]
    assert superuser.get(response["Location"]).status_code == 200


def test_a_requeued_dead_letters_page_follows_it_to_the_jobs(rows: Rows, superuser: Client) -> None:
    dead = rows.dead_letter()
    DeadLetterJob.objects.using(rows.alias).filter(pk=dead.pk).delete()
    job = rows.job(id=dead.pk)
    response = superuser.get(change("deadletterjob", dead.pk))
    assert response.status_code == 302
    assert response["Location"] == change("job", job.pk)


def test_a_missing_row_is_still_missing(rows: Rows, superuser: Client) -> None:
    job = rows.job()
    Job.objects.using(rows.alias).filter(pk=job.pk).delete()
    response = superuser.get(change("job", job.pk))
    assert response.status_code == 302  # Django's own "doesn't exist" redirect
    assert response["Location"] == reverse("admin:index")
    assert superuser.get(change("job", "not-a-uuid")).status_code == 302


def test_no_redirect_to_a_page_the_user_may_not_see(
    rows: Rows, client_with: Callable[..., Client]
) -> None:
    client = client_with("soniq.view_job")
    job = rows.job()
    _move_to_dead_letters(rows, job)
    response = client.get(change("job", job.pk))
    assert response.status_code == 302
    assert response["Location"] == reverse("admin:index")
