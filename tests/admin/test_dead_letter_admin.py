"""The dead letters admin through Django's test client, on PostgreSQL and SQLite: the list, its
filters and search, a dead letter's page, requeue (one, the selected ones, every one matching
the filter, each after a confirmation showing the count) and delete."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urlencode

import pytest
from django.http import QueryDict
from django.test import Client
from django.urls import reverse

from soniq.models import DeadLetterJob, Job
from tests.admin.conftest import (
    Rows,
    action_post,
    change,
    changelist,
    date_choice,
    flash_levels,
    flashes,
    html,
    offered_actions,
)

pytestmark = pytest.mark.django_db(databases=["default", "sqlite"])

DEAD = changelist("deadletterjob")
MATCHING = reverse("admin:soniq_deadletterjob_requeue_matching")


def listed(response: Any) -> set[str]:
    return {str(dead.pk) for dead in response.context["cl"].result_list}


def dead_ids(rows: Rows) -> set[str]:
    return {str(pk) for pk in DeadLetterJob.objects.using(rows.alias).values_list("pk", flat=True)}


def job_ids(rows: Rows) -> set[str]:
    return {str(pk) for pk in Job.objects.using(rows.alias).values_list("pk", flat=True)}


def ids(*rows_: Any) -> set[str]:
    return {str(row.pk) for row in rows_}


class FormFields(HTMLParser):
    """The fields of the form with id ``form_id``, as a browser would submit them."""

    def __init__(self, form_id: str) -> None:
        super().__init__()
        self.form_id = form_id
        self.inside = False
        self.found = False
        self.action: str | None = None
        self.fields: list[tuple[str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag == "form" and attributes.get("id") == self.form_id:
            self.inside = self.found = True
            self.action = attributes.get("action")
        elif tag == "input" and self.inside and attributes.get("type") == "hidden":
            self.fields.append((attributes["name"] or "", attributes.get("value") or ""))

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self.inside = False


def confirmation_form(response: Any) -> dict[str, list[str]]:
    parser = FormFields("soniq-confirm")
    parser.feed(html(response))
    assert parser.found, "no confirmation form"
    assert parser.action is None  # posts back to the same URL, filters included
    data: dict[str, list[str]] = {}
    for name, value in parser.fields:
        if name != "csrfmiddlewaretoken":
            data.setdefault(name, []).append(value)
    return data


# -- pages ------------------------------------------------------------------------------------


def test_the_list_shows_each_dead_letter_with_its_last_error(rows: Rows, superuser: Client) -> None:
    worker = rows.worker()
    dead = rows.dead_letter(
        task_name="tests.process_payment",
        queue="urgent",
        worker_id=worker.id,
        errors=[
            {"attempt": 1, "error_type": "TimeoutError", "message": "first"},
            {"attempt": 2, "error_type": "builtins.KeyError", "message": "'order'"},
        ],
        attempts=2,
        max_attempts=2,
    )
    lost = rows.dead_letter(reason="worker_lost", errors=[])
    response = superuser.get(DEAD)
    assert response.status_code == 200
    assert listed(response) == ids(dead, lost)
    page = html(response)
    assert str(dead.pk)[:8] in page and str(lost.pk)[:8] in page
    # The last error, not the first; its class without the module.
    assert "KeyError: &#x27;order&#x27;" in page and "builtins." not in page
    assert "TimeoutError" not in page
    assert "worker_lost" in page and "max_attempts" in page
    assert "2/2" in page
    # Narrow enough for a 1400 px screen: worker, priority, arguments and creation time are
    # on each dead letter's page only.
    columns = re.findall(r'<th scope="col" class="([^"]*)"', page)
    assert [c.split()[0] for c in columns] == [
        "action-checkbox-column",
        "sortable",  # id
        "column-task_name",
        "column-reason",
        "column-last_error",
        "column-queue",
        "column-attempts_display",
        "sortable",  # dead lettered
    ]
    assert reverse("admin:soniq_worker_change", args=[worker.id]) not in page
    assert offered_actions(response) == ["requeue", "delete_dead_letters"]
    assert 'value="delete_selected"' not in page


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"reason": "worker_lost"}, {"lost"}),
        ({"reason": "max_attempts"}, {"email", "payment", "old"}),
        ({"queue": "urgent"}, {"payment", "lost"}),
        ({"task": "tests.process_payment"}, {"payment", "lost"}),
        ({"task": "tests.process_payment", "reason": "max_attempts"}, {"payment"}),
        ({"q": "payment"}, {"payment", "lost"}),
        ({"q": "EMAIL"}, {"email", "old"}),
    ],
)
def test_filters_and_search(
    rows: Rows, superuser: Client, query: dict[str, str], expected: set[str]
) -> None:
    made = _assorted(rows)
    response = superuser.get(DEAD, query)
    assert response.status_code == 200
    assert listed(response) == ids(*(made[name] for name in expected))


def test_search_by_full_id(rows: Rows, superuser: Client) -> None:
    made = _assorted(rows)
    assert listed(superuser.get(DEAD, {"q": str(made["lost"].pk)})) == ids(made["lost"])
    assert listed(superuser.get(DEAD, {"q": str(uuid.uuid4())})) == set()


def test_date_filter_on_dead_lettered_at(rows: Rows, superuser: Client) -> None:
    made = _assorted(rows)
    response = superuser.get(DEAD + date_choice(superuser.get(DEAD), "dead_lettered_at"))
    assert response.status_code == 200
    assert listed(response) == ids(made["email"], made["payment"], made["lost"])


def test_a_dead_letters_page_shows_why_and_offers_requeue(rows: Rows, superuser: Client) -> None:
    dead = rows.dead_letter(
        args={"to": "z@example.com", "subject": "hello"},
        dedup_key="welcome-z",
        errors=[
            {
                "attempt": 4,
                "error_type": "SMTPError",
                "message": "mailbox full",
                "traceback": "Traceback (most recent call last):\nSMTPError: mailbox full",
            }
        ],
    )
    response = superuser.get(change("deadletterjob", dead.pk))
    assert response.status_code == 200
    page = html(response)
    for text in (
        str(dead.pk),
        "max_attempts",
        "4/4",
        "welcome-z",
        "&quot;to&quot;: &quot;z@example.com&quot;",
        "Attempt 4",
        "SMTPError",
        "mailbox full",
        "Traceback (most recent call last):",
    ):
        assert text in page, text
    url = reverse("admin:soniq_deadletterjob_requeue", args=[dead.pk])
    assert response.context["soniq_buttons"] == [{"url": url, "label": "Requeue"}]
    assert f'action="{url}"' in page


# -- requeue the selected ones, after a confirmation ------------------------------------------


def test_requeue_asks_first_with_the_count_and_does_nothing_until_confirmed(
    rows: Rows, superuser: Client
) -> None:
    chosen = [rows.dead_letter(), rows.dead_letter()]
    other = rows.dead_letter()
    response = superuser.post(DEAD, action_post("requeue", *(d.pk for d in chosen)))
    assert response.status_code == 200
    assert response.templates[0].name == "admin/soniq/confirm_action.html"
    assert response.context["count"] == 2
    page = html(response)
    assert "Requeue 2 dead letter(s)?" in page
    assert 'id="soniq-confirm-button"' in page and "Yes, requeue them" in page
    assert dead_ids(rows) == ids(*chosen, other)
    assert not Job.objects.using(rows.alias).exists()
    # The form posts the same selection back, confirmed.
    form = confirmation_form(response)
    assert sorted(form["_selected_action"]) == sorted(ids(*chosen))
    assert form["action"] == ["requeue"]
    assert form["post"] == ["yes"]
    assert form["index"] == ["0"]
    assert form["select_across"] == ["0"]

    confirmed = superuser.post(DEAD, form)
    assert confirmed.status_code == 302
    assert flash_levels(confirmed) == [("success", "Requeued 2 dead letters.")]
    assert dead_ids(rows) == ids(other)
    for dead in chosen:
        job = Job.objects.using(rows.alias).get(pk=dead.pk)
        assert job.status == "queued"
        assert job.attempts == 0 and job.max_attempts == 4
        assert [error["message"] for error in job.errors] == ["boom"]


def test_requeue_every_dead_letter_matching_the_filter_via_select_across(
    rows: Rows, superuser: Client
) -> None:
    lost = [rows.dead_letter(reason="worker_lost") for _ in range(3)]
    kept = [rows.dead_letter(reason="max_attempts") for _ in range(2)]
    url = f"{DEAD}?reason=worker_lost"
    response = superuser.post(url, action_post("requeue", lost[0].pk, select_across=True))
    assert response.status_code == 200
    assert response.context["count"] == 3
    assert "Requeue 3 dead letter(s)?" in html(response)
    assert dead_ids(rows) == ids(*lost, *kept)
    form = confirmation_form(response)
    assert form["select_across"] == ["1"]

    confirmed = superuser.post(url, form)
    assert flashes(confirmed) == ["Requeued 3 dead letters."]
    assert confirmed["Location"] == url
    assert dead_ids(rows) == ids(*kept)
    assert job_ids(rows) == ids(*lost)


def test_requeue_refused_while_another_job_holds_the_dedup_key(
    rows: Rows, superuser: Client
) -> None:
    holder = rows.job(task_name="tests.refresh_cache", dedup_key="cache-k")
    dead = rows.dead_letter(task_name="tests.refresh_cache", dedup_key="cache-k")
    free = rows.dead_letter()
    response = superuser.post(DEAD, action_post("requeue", dead.pk, free.pk, post="yes"))
    assert flash_levels(response) == [
        ("success", "Requeued 1 dead letter."),
        (
            "warning",
            "1 dead letter left alone: another queued or running job holds its dedup key "
            "(1 dead letter).",
        ),
    ]
    assert dead_ids(rows) == ids(dead)
    assert job_ids(rows) == ids(holder, free)


# -- delete, after a confirmation -------------------------------------------------------------


def test_delete_asks_first_then_deletes_for_good(rows: Rows, superuser: Client) -> None:
    chosen = [rows.dead_letter(), rows.dead_letter(), rows.dead_letter()]
    other = rows.dead_letter()
    response = superuser.post(DEAD, action_post("delete_dead_letters", *(d.pk for d in chosen)))
    assert response.status_code == 200
    assert response.context["count"] == 3
    assert "Delete 3 dead letter(s) for good? This cannot be undone." in html(response)
    assert dead_ids(rows) == ids(*chosen, other)
    form = confirmation_form(response)
    assert form["action"] == ["delete_dead_letters"]

    confirmed = superuser.post(DEAD, form)
    assert flash_levels(confirmed) == [("success", "Deleted 3 dead letters.")]
    assert dead_ids(rows) == ids(other)
    assert not Job.objects.using(rows.alias).exists()


def test_delete_every_dead_letter_matching_a_search(rows: Rows, superuser: Client) -> None:
    made = _assorted(rows)
    url = f"{DEAD}?q=payment"
    response = superuser.post(
        url, action_post("delete_dead_letters", made["payment"].pk, select_across=True)
    )
    assert response.context["count"] == 2
    confirmed = superuser.post(url, confirmation_form(response))
    assert flashes(confirmed) == ["Deleted 2 dead letters."]
    assert dead_ids(rows) == ids(made["email"], made["old"])


# -- requeue every dead letter the filter matches ---------------------------------------------


def test_the_list_links_to_requeue_matching_with_its_filters(rows: Rows, superuser: Client) -> None:
    rows.dead_letter()
    page = html(superuser.get(DEAD, {"reason": "worker_lost", "q": "pay", "p": "1", "o": "-7"}))
    link = f"{MATCHING}?{urlencode({'reason': 'worker_lost', 'q': 'pay'})}"
    assert f'href="{link.replace("&", "&amp;")}" id="requeue-matching"' in page
    assert f'href="{MATCHING}" id="requeue-matching"' in html(superuser.get(DEAD))


def test_requeue_matching_shows_the_count_and_the_filters(rows: Rows, superuser: Client) -> None:
    made = _assorted(rows)
    response = superuser.get(MATCHING, {"task": "tests.process_payment"})
    assert response.status_code == 200
    assert response.context["count"] == 2
    page = html(response)
    assert "Requeue all 2 dead letter(s) that match the current filter?" in page
    assert "<li>task = tests.process_payment</li>" in page
    assert 'id="soniq-confirm-button"' in page
    assert f'href="{DEAD}?task=tests.process_payment"' in page  # "No, take me back"
    assert dead_ids(rows) == ids(*made.values())  # a GET changes nothing


def test_requeue_matching_requeues_exactly_the_filtered_set(rows: Rows, superuser: Client) -> None:
    made = _assorted(rows)
    response = superuser.post(f"{MATCHING}?reason=worker_lost")
    assert response.status_code == 302
    assert response["Location"] == f"{DEAD}?reason=worker_lost"
    assert flashes(response) == ["Requeued 1 dead letter."]
    assert dead_ids(rows) == ids(made["email"], made["payment"], made["old"])
    assert job_ids(rows) == ids(made["lost"])

    by_task = superuser.post(f"{MATCHING}?task=tests.send_email")
    assert flashes(by_task)[-1] == "Requeued 2 dead letters."
    assert dead_ids(rows) == ids(made["payment"])
    assert job_ids(rows) == ids(made["lost"], made["email"], made["old"])


def test_requeue_matching_a_search_and_a_date(rows: Rows, superuser: Client) -> None:
    made = _assorted(rows)
    week = date_choice(superuser.get(DEAD), "dead_lettered_at")  # "?dead_lettered_at__gte=..."
    query = f"{week.lstrip('?')}&q=email"
    since = QueryDict(week.lstrip("?"))["dead_lettered_at__gte"]
    page = html(superuser.get(f"{MATCHING}?{query}"))
    assert "<li>search = email</li>" in page
    assert f"<li>dead_lettered_at__gte = {since}</li>" in page
    assert "Requeue all 1 dead letter(s)" in page
    superuser.post(f"{MATCHING}?{query}")
    assert job_ids(rows) == ids(made["email"])


def test_requeue_matching_without_a_filter_is_every_dead_letter(
    rows: Rows, superuser: Client
) -> None:
    made = _assorted(rows)
    page = html(superuser.get(MATCHING))
    assert "No filter: this is every dead letter." in page
    assert "Requeue all 4 dead letter(s)" in page
    response = superuser.post(MATCHING)
    assert response["Location"] == DEAD
    assert flashes(response) == ["Requeued 4 dead letters."]
    assert dead_ids(rows) == set()
    assert job_ids(rows) == ids(*made.values())


def test_requeue_matching_nothing_offers_no_button(rows: Rows, superuser: Client) -> None:
    rows.dead_letter()
    response = superuser.get(MATCHING, {"reason": "no_such_reason"})
    assert response.context["count"] == 0
    page = html(response)
    assert 'id="soniq-confirm-button"' not in page
    assert "Back to the dead letters" in page


def test_requeue_matching_an_invalid_filter_requeues_nothing(rows: Rows, superuser: Client) -> None:
    made = _assorted(rows)
    response = superuser.post(f"{MATCHING}?no_such_field=1")
    assert response.status_code == 302
    assert response["Location"] == DEAD
    assert dead_ids(rows) == ids(*made.values())
    assert superuser.get(f"{MATCHING}?no_such_field=1").status_code == 302


def test_requeue_matching_reports_refusals(rows: Rows, superuser: Client) -> None:
    rows.job(task_name="tests.refresh_cache", dedup_key="k")
    blocked = rows.dead_letter(task_name="tests.refresh_cache", dedup_key="k")
    response = superuser.post(f"{MATCHING}?task=tests.refresh_cache")
    assert flash_levels(response) == [
        (
            "warning",
            "1 dead letter left alone: another queued or running job holds its dedup key "
            "(1 dead letter).",
        )
    ]
    assert dead_ids(rows) == ids(blocked)


# -- requeue one, from its page ---------------------------------------------------------------


def test_requeue_one_from_its_page_leads_to_the_job(rows: Rows, superuser: Client) -> None:
    dead = rows.dead_letter()
    other = rows.dead_letter()
    response = superuser.post(reverse("admin:soniq_deadletterjob_requeue", args=[dead.pk]))
    assert response.status_code == 302
    assert response["Location"] == change("job", dead.pk)
    assert flashes(response) == ["Requeued 1 dead letter."]
    assert dead_ids(rows) == ids(other)
    assert Job.objects.using(rows.alias).get(pk=dead.pk).status == "queued"


def test_requeue_one_refused_stays_on_the_dead_letter(rows: Rows, superuser: Client) -> None:
    rows.job(task_name="tests.refresh_cache", dedup_key="k")
    dead = rows.dead_letter(task_name="tests.refresh_cache", dedup_key="k")
    response = superuser.post(reverse("admin:soniq_deadletterjob_requeue", args=[dead.pk]))
    assert response["Location"] == change("deadletterjob", dead.pk)
    [(level, message)] = flash_levels(response)
    assert level == "warning" and "holds its dedup key" in message
    assert dead_ids(rows) == ids(dead)


def test_requeue_one_takes_only_post(rows: Rows, superuser: Client) -> None:
    dead = rows.dead_letter()
    url = reverse("admin:soniq_deadletterjob_requeue", args=[dead.pk])
    assert superuser.get(url).status_code == 405
    assert dead_ids(rows) == ids(dead)
    unknown = reverse("admin:soniq_deadletterjob_requeue", args=[uuid.uuid4()])
    assert superuser.post(unknown).status_code == 404
    malformed = reverse("admin:soniq_deadletterjob_requeue", args=["not-a-uuid"])
    assert superuser.post(malformed).status_code == 404


def _assorted(rows: Rows) -> dict[str, DeadLetterJob]:
    now = datetime.now(UTC)
    return {
        "email": rows.dead_letter(task_name="tests.send_email"),
        "payment": rows.dead_letter(task_name="tests.process_payment", queue="urgent"),
        "lost": rows.dead_letter(
            task_name="tests.process_payment", queue="urgent", reason="worker_lost"
        ),
        "old": rows.dead_letter(
            task_name="tests.send_email",
            created_at=now - timedelta(days=30),
            dead_lettered_at=now - timedelta(days=30),
        ),
    }
