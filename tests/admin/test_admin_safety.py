"""What the admin shows of job data it cannot trust: credentials masked at any depth, hostile
text escaped, big values truncated in lists; and list pages that never count a whole table."""

from __future__ import annotations

import re
from html import escape
from typing import Any

import pytest
from django.db import connections
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from soniq.admin import common
from soniq.admin.display import MASK, PREVIEW_CHARS
from soniq.models import DeadLetterJob
from tests.admin.conftest import (
    Rows,
    action_post,
    change,
    changelist,
    date_choice,
    html,
    soniq_on,
)

pytestmark = pytest.mark.django_db(databases=["default", "sqlite"])

JOBS = changelist("job")
DEAD = changelist("deadletterjob")

# -- masking ----------------------------------------------------------------------------------

# Every value below under a key that names a credential; none may reach the page.
SECRETS = {
    "password": "SECRET-password-1",
    "User_Password": "SECRET-password-2",
    "token": "SECRET-token-1",
    "refresh_token": "SECRET-token-2",
    "client_secret": "SECRET-secret-1",
    "API_KEY": "SECRET-apikey-1",
    "authorization": "SECRET-auth-1",
}
MASKED_ARGS = {
    **SECRETS,
    "to": "visible@example.com",
    "nested": {
        "headers": {"Authorization": "Bearer SECRET-nested-auth", "Accept": "visible/json"},
        "accounts": [
            {"login": "visible-login", "password": "SECRET-list-password"},
            [{"api_key": "SECRET-deep-list-key"}],
        ],
    },
    "tokens": ["SECRET-token-in-list-a", "SECRET-token-in-list-b"],
}
MASKED_RESULT = {"token": "SECRET-result-token", "sent": "visible-result"}
MASKED_ERRORS = [
    {
        "attempt": 1,
        "error_type": "AuthError",
        "message": {"password": "SECRET-error-message-password", "user": "visible-error-user"},
        "password": "SECRET-error-entry-password",
        "context": {"secret": "SECRET-error-context"},
        "traceback": "Traceback (most recent call last):\nAuthError",
    },
    {
        "attempt": 2,
        "error_type": "AuthError",
        "message": {"api_key": "SECRET-last-error-key", "hint": "visible-last-error"},
    },
]


def secrets_in(page: str) -> list[str]:
    return sorted(set(re.findall(r"SECRET-[a-z-]+\d*", page)))


def _masked_rows(rows: Rows) -> tuple[Any, Any]:
    job = rows.job(status="done", args=MASKED_ARGS, result=MASKED_RESULT, errors=MASKED_ERRORS)
    dead = rows.dead_letter(args=MASKED_ARGS, errors=MASKED_ERRORS)
    return job, dead


def test_credentials_are_masked_on_the_job_pages(rows: Rows, superuser: Client) -> None:
    job, _ = _masked_rows(rows)
    listing = html(superuser.get(JOBS))
    assert secrets_in(listing) == []
    assert MASK in listing
    detail = html(superuser.get(change("job", job.pk)))
    assert secrets_in(detail) == []
    for visible in (
        "visible@example.com",
        "visible/json",
        "visible-login",
        "visible-result",
        "visible-error-user",
        "AuthError",
    ):
        assert visible in detail, visible
    # Every credential key is still listed, its value replaced.
    for key in (*SECRETS, "Authorization", "api_key", "tokens"):
        assert f"&quot;{key}&quot;: &quot;{MASK}&quot;" in detail, key
    assert f"&#x27;password&#x27;: &#x27;{MASK}&#x27;" in detail  # in the error's message


def test_credentials_are_masked_on_the_dead_letter_pages(rows: Rows, superuser: Client) -> None:
    _, dead = _masked_rows(rows)
    listing = html(superuser.get(DEAD))
    assert secrets_in(listing) == []
    assert "visible-last-error" in listing  # the last error column, masked
    detail = html(superuser.get(change("deadletterjob", dead.pk)))
    assert secrets_in(detail) == []
    assert "visible-login" in detail and "visible-error-user" in detail


def test_credentials_are_masked_on_pages_that_ask_first(rows: Rows, superuser: Client) -> None:
    _, dead = _masked_rows(rows)
    confirm = superuser.post(DEAD, action_post("requeue", dead.pk))
    assert confirm.status_code == 200
    assert secrets_in(html(confirm)) == []
    matching = superuser.get(reverse("admin:soniq_deadletterjob_requeue_matching"))
    assert secrets_in(html(matching)) == []


def test_credentials_are_masked_in_schedule_args(pg_rows: Rows, superuser: Client) -> None:
    schedule = pg_rows.schedule(
        task_name="tests.flexible", args={"to": "visible", "password": "SECRET-schedule-pw"}
    )
    assert secrets_in(html(superuser.get(changelist("schedule")))) == []
    detail = html(superuser.get(change("schedule", schedule.pk)))
    assert secrets_in(detail) == []
    assert f"&quot;password&quot;: &quot;{MASK}&quot;" in detail


def test_the_masked_names_come_from_the_setting(rows: Rows, superuser: Client) -> None:
    job = rows.job(
        args={"ssn": "SECRET-ssn", "Pin_Code": "SECRET-pin", "password": "now-visible-password"}
    )
    with soniq_on(rows.alias, ADMIN_MASKED_ARGS=["ssn", "pin"]):
        listing = html(superuser.get(JOBS))
        detail = html(superuser.get(change("job", job.pk)))
    for page in (listing, detail):
        assert secrets_in(page) == []
        assert "now-visible-password" in page  # the setting replaces the default list
    assert f"&quot;ssn&quot;: &quot;{MASK}&quot;" in detail
    assert f"&quot;Pin_Code&quot;: &quot;{MASK}&quot;" in detail


# -- escaping ---------------------------------------------------------------------------------

SCRIPT = "<script>alert(1)</script>"
IMG = "<img src=x onerror=alert(1)>"


def assert_only_escaped(page: str, *payloads: str) -> None:
    for payload in payloads:
        assert payload not in page, payload
        assert escape(payload) in page, payload


def _hostile_job(rows: Rows, **fields: Any) -> Any:
    values: dict[str, Any] = {
        "task_name": SCRIPT,
        "args": {"note": SCRIPT, IMG: [IMG]},
        "errors": [
            {
                "attempt": 1,
                "error_type": SCRIPT,
                "message": IMG,
                "traceback": f"Traceback:\n{SCRIPT}",
                "failed_at": IMG,
            },
            f"not a dict {SCRIPT}",
        ],
        "dedup_key": SCRIPT,
    }
    values.update(fields)
    return values


def test_hostile_job_data_is_escaped(rows: Rows, superuser: Client) -> None:
    job = rows.job(status="done", result={"html": IMG}, **_hostile_job(rows))
    listing = html(superuser.get(JOBS))
    assert_only_escaped(listing, SCRIPT)
    assert "<img src=x" not in listing
    detail = html(superuser.get(change("job", job.pk)))
    assert_only_escaped(detail, SCRIPT, IMG)
    assert "<img src=x" not in detail


def test_hostile_dead_letter_data_is_escaped(rows: Rows, superuser: Client) -> None:
    dead = rows.dead_letter(reason=SCRIPT[:32], **_hostile_job(rows))
    listing = html(superuser.get(DEAD))
    assert_only_escaped(listing, SCRIPT)
    detail = html(superuser.get(change("deadletterjob", dead.pk)))
    assert_only_escaped(detail, SCRIPT, IMG)
    confirm = html(superuser.post(DEAD, action_post("requeue", dead.pk)))
    assert SCRIPT not in confirm


def test_hostile_filter_and_search_values_are_escaped(rows: Rows, superuser: Client) -> None:
    rows.job(task_name=SCRIPT)
    for url in (JOBS, DEAD):
        for query in ({"task": SCRIPT}, {"queue": SCRIPT}, {"q": SCRIPT}):
            response = superuser.get(url, query)
            assert response.status_code == 200
            assert SCRIPT not in html(response)
    matching = superuser.get(
        reverse("admin:soniq_deadletterjob_requeue_matching"), {"task": SCRIPT, "q": IMG}
    )
    page = html(matching)
    assert SCRIPT not in page and "<img src=x" not in page
    assert f"<li>task = {escape(SCRIPT)}</li>" in page


def test_hostile_worker_data_is_escaped(rows: Rows, superuser: Client) -> None:
    worker = rows.worker(hostname=SCRIPT, version=IMG[:32], queues=[SCRIPT])
    rows.running(worker, task_name=SCRIPT)
    listing = html(superuser.get(changelist("worker")))
    assert_only_escaped(listing, SCRIPT)
    detail = html(superuser.get(change("worker", worker.pk)))
    assert_only_escaped(detail, SCRIPT)
    assert "<img src=x" not in detail


def test_hostile_text_in_a_refusal_message_is_escaped(rows: Rows, superuser: Client) -> None:
    worker = rows.worker(hostname=SCRIPT)
    job = rows.running(worker)
    response = superuser.post(reverse("admin:soniq_job_retry", args=[job.pk]), follow=True)
    page = html(response)
    assert "running on live worker" in page
    assert_only_escaped(page, SCRIPT)


def test_hostile_schedule_data_is_escaped(pg_rows: Rows, superuser: Client) -> None:
    schedule = pg_rows.schedule(
        name=SCRIPT, task_name=SCRIPT, args={"x": IMG}, timezone="UTC", queue=None
    )
    assert_only_escaped(html(superuser.get(changelist("schedule"))), SCRIPT)
    assert_only_escaped(html(superuser.get(change("schedule", schedule.pk))), SCRIPT, IMG)
    # Run now fails (nobody registered that task with those args); the error names it, escaped.
    response = superuser.post(
        changelist("schedule"), action_post("run_now", schedule.pk), follow=True
    )
    assert SCRIPT not in html(response)


# -- truncation -------------------------------------------------------------------------------

BIG = "A" * 50_000


def test_a_big_argument_is_cut_in_the_list_and_whole_on_the_detail(
    rows: Rows, superuser: Client
) -> None:
    job = rows.job(args={"blob": BIG, "to": "x@example.com"})
    dead = rows.dead_letter(
        args={"blob": BIG},
        errors=[{"attempt": 1, "error_type": "ValueError", "message": BIG}],
    )
    # The dead-letter list shows no arguments (its columns fit a 1400 px screen): only the
    # last error, cut as the job list cuts its arguments.
    for url, model, obj, shown in (
        (JOBS, "job", job, 1),
        (DEAD, "deadletterjob", dead, 0),
    ):
        listing = html(superuser.get(url))
        assert "A" * PREVIEW_CHARS not in listing
        previews = re.findall(r'<td class="field-args_preview">([^<]*)</td>', listing)
        assert len(previews) == shown
        for preview in previews:
            assert preview.endswith("…")
            assert len(preview.replace("&quot;", '"')) == PREVIEW_CHARS
        assert len(listing) < 40_000
        detail = html(superuser.get(change(model, obj.pk)))
        assert BIG in detail
    last_error = re.findall(r'<td class="field-last_error">([^<]*)</td>', html(superuser.get(DEAD)))
    assert len(last_error) == 1
    assert last_error[0].replace("&quot;", '"').lstrip('"').startswith("ValueError: AAA")
    assert len(last_error[0].replace("&quot;", '"')) == PREVIEW_CHARS


# -- counting: capped, never the whole table --------------------------------------------------

TABLES = {"job": "soniq_jobs", "deadletterjob": "soniq_dead_letter_jobs"}


def _changelist_queries(client: Client, alias: str, url: str) -> list[str]:
    with CaptureQueriesContext(connections[alias]) as captured:
        response = client.get(url)
    assert response.status_code == 200, url
    return [query["sql"] for query in captured.captured_queries]


def _queries_to_check(client: Client, model: str) -> list[str]:
    url = changelist(model)
    urls = [
        url,
        f"{url}?q=send",
        f"{url}?queue=default&task=tests.send_email",
        f"{url}?o=-1",  # newest id first: a sortable column
        f"{url}?p=2",
        f"{url}?_facets=True",
    ]
    if model == "job":
        urls += [f"{url}?status__exact=queued", f"{url}?finished_at__isnull=True"]
        urls.append(url + date_choice(client.get(url), "created_at"))
    else:
        urls += [f"{url}?reason=max_attempts", f"{url}?reason__exact=max_attempts"]
        urls.append(url + date_choice(client.get(url), "dead_lettered_at"))
    return urls


@pytest.mark.parametrize("model", ["job", "deadletterjob"])
def test_list_pages_count_with_a_limit_and_read_no_distinct_values(
    model: str, rows: Rows, superuser: Client
) -> None:
    make = rows.job if model == "job" else rows.dead_letter
    for _ in range(3):
        make()
    table = TABLES[model]
    for url in _queries_to_check(superuser, model):
        queries = _changelist_queries(superuser, rows.alias, url)
        on_table = [sql for sql in queries if table in sql]
        assert on_table, url
        counts = [sql for sql in on_table if "COUNT(" in sql.upper()]
        assert counts, url  # the paginator counts
        for sql in counts:
            assert "LIMIT" in sql.upper(), f"{url}: uncapped count: {sql}"
        for sql in on_table:
            assert "DISTINCT" not in sql.upper(), f"{url}: distinct values read: {sql}"


@pytest.mark.parametrize("model", ["job", "deadletterjob"])
def test_a_capped_list_says_there_are_more(
    model: str, rows: Rows, superuser: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(common, "COUNT_LIMIT", 3)
    make = rows.job if model == "job" else rows.dead_letter
    made = [make() for _ in range(5)]
    response = superuser.get(changelist(model))
    assert response.context["cl"].result_count == 3
    plural = "jobs" if model == "job" else "dead letters"
    assert f"more than 3 {plural} (filter to narrow the list)" in html(response)
    # Under the cap the count is exact.
    filtered = superuser.get(changelist(model), {"q": str(made[0].pk)})
    assert filtered.context["cl"].result_count == 1
    assert "more than" not in html(filtered)


def test_no_facet_counts_are_offered(rows: Rows, superuser: Client) -> None:
    for model in ("job", "deadletterjob", "worker"):
        page = html(superuser.get(changelist(model)))
        assert "_facets" not in page, model  # no "Show counts" link


def test_select_all_acts_on_every_match_past_the_cap(
    rows: Rows, superuser: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(common, "COUNT_LIMIT", 2)
    dead = [rows.dead_letter() for _ in range(4)]
    response = superuser.post(DEAD, action_post("requeue", dead[0].pk, select_across=True))
    assert response.context["count"] == 4  # the confirmation counts them all
    response = superuser.post(
        DEAD, action_post("requeue", dead[0].pk, select_across=True, post="yes")
    )
    assert response.status_code == 302
    assert not DeadLetterJob.objects.using(rows.alias).exists()


def test_schedules_on_sqlite_list_without_error(superuser: Client) -> None:
    with soniq_on("sqlite"):
        Rows("sqlite").schedule(name="s")
        assert superuser.get(changelist("schedule")).status_code == 200
