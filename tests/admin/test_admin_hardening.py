"""What a curious or careless operator must not get out of the admin: masked values through
URL filters or free text, and what the lists do to stay cheap."""

from __future__ import annotations

import uuid

import pytest
from django.test import Client

from soniq.models import Job
from tests.admin.conftest import Rows, change, changelist, html

pytestmark = pytest.mark.django_db(databases=["default", "sqlite"])

SECRET = "hunter2-very-secret"


@pytest.mark.parametrize(
    "query",
    [
        "args__password__startswith=h",
        "args__password__regex=^h",
        "result__token=x",
        "errors__0__message__contains=x",
        "dedup_key__startswith=a",
    ],
)
@pytest.mark.parametrize("model", ["job", "deadletterjob"])
def test_job_data_cannot_be_filtered_on_from_the_url(
    rows: Rows, superuser: Client, model: str, query: str
) -> None:
    rows.job(args={"password": SECRET})
    response = superuser.get(f"{changelist(model)}?{query}")
    assert response.status_code == 400


def test_other_url_filters_still_work(rows: Rows, superuser: Client) -> None:
    job = rows.job(worker_id=uuid.uuid4(), status="processing")
    rows.job()
    page = html(superuser.get(f"{changelist('job')}?worker_id={job.worker_id}"))
    assert str(job.pk)[:8] in page and "1 job" in page


def test_masked_values_are_hidden_in_messages_tracebacks_and_the_last_error(
    rows: Rows, superuser: Client
) -> None:
    error = {
        "attempt": 1,
        "error_type": "pydantic.ValidationError",
        "message": f"input_value='{SECRET}' is not valid",
        "traceback": f"Traceback ...\n  login(password='{SECRET}')\nValueError",
    }
    job = rows.job(args={"user": "ada", "password": SECRET}, errors=[error])
    dead = rows.dead_letter(args={"api_key": SECRET}, errors=[error])
    for url in (change("job", job.pk), change("deadletterjob", dead.pk)):
        page = html(superuser.get(url))
        assert SECRET not in page
        assert "input_value=&#x27;********&#x27;" in page
    assert SECRET not in html(superuser.get(changelist("deadletterjob")))


def test_a_dedup_key_is_hidden_when_the_arguments_hold_masked_values(
    rows: Rows, superuser: Client
) -> None:
    hashed = rows.job(args={"token": SECRET}, dedup_key="a1b2c3d4")
    plain = rows.job(args={"order": 7}, dedup_key="order:7")
    assert "a1b2c3d4" not in html(superuser.get(change("job", hashed.pk)))
    assert "hidden: the arguments hold masked values" in html(
        superuser.get(change("job", hashed.pk))
    )
    assert "order:7" in html(superuser.get(change("job", plain.pk)))


def test_the_start_of_an_id_finds_its_job(rows: Rows, superuser: Client) -> None:
    wanted = rows.job(id=uuid.UUID("2571a949-3371-457e-a243-09f41613660b"))
    rows.job(id=uuid.UUID("2571a950-0000-4000-8000-000000000000"))
    for term in ("2571a949", "2571A949-3371", "2571a9493371457e"):
        page = html(superuser.get(f"{changelist('job')}?q={term}"))
        assert "1 job" in page, term
        assert str(wanted.pk)[:8] in page


def test_finished_date_filter_reads_finished_jobs_only(rows: Rows, superuser: Client) -> None:
    from django.db import connections
    from django.test.utils import CaptureQueriesContext

    from tests.admin.conftest import date_choice

    response = superuser.get(changelist("job"))
    url = date_choice(response, "finished_at", "Today")
    with CaptureQueriesContext(connections[rows.alias]) as captured:
        assert superuser.get(changelist("job") + url).status_code == 200
    listing = [q["sql"] for q in captured if "soniq_jobs" in q["sql"] and "LIMIT" in q["sql"]]
    assert listing and all("'done'" in sql and "'cancelled'" in sql for sql in listing)


def test_the_list_sorts_only_by_indexed_columns(rows: Rows, superuser: Client) -> None:
    rows.job()
    page = html(superuser.get(changelist("job")))
    assert page.count('class="sortable') == 2  # id and created
    assert Job.objects.using(rows.alias).count() == 1


def test_resuming_an_active_schedule_keeps_its_due_slot(pg_rows: Rows, superuser: Client) -> None:
    from datetime import UTC, datetime, timedelta

    from soniq.models import Schedule
    from tests.admin.conftest import action_post

    due = datetime.now(UTC) - timedelta(minutes=3)
    schedule = pg_rows.schedule(next_fire_at=due)
    superuser.post(changelist("schedule"), action_post("resume", schedule.pk))
    assert Schedule.objects.get(pk=schedule.pk).next_fire_at == due
