"""The jobs admin through Django's test client, on PostgreSQL and SQLite: the list, its filters
and search, a job's page, and retry / cancel from the action menu and from a job's buttons."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.admin.models import LogEntry
from django.test import Client
from django.urls import reverse

from soniq import Soniq
from soniq.models import Job
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
from tests.jobs import register_jobs

pytestmark = pytest.mark.django_db(databases=["default", "sqlite"])

JOBS = changelist("job")


def listed(response: object) -> set[str]:
    return {str(job.pk) for job in response.context["cl"].result_list}  # type: ignore[attr-defined]


def status_of(rows: Rows, job: Job) -> str:
    return str(Job.objects.using(rows.alias).get(pk=job.pk).status)


# -- pages ------------------------------------------------------------------------------------


def test_the_list_shows_each_job_with_its_columns(rows: Rows, superuser: Client) -> None:
    worker = rows.worker()
    queued = rows.job(task_name="tests.send_email", queue="default", priority=7)
    running = rows.running(worker, task_name="tests.process_payment", queue="urgent")
    response = superuser.get(JOBS)
    assert response.status_code == 200
    assert listed(response) == {str(queued.pk), str(running.pk)}
    page = html(response)
    for job in (queued, running):
        assert str(job.pk)[:8] in page
        assert reverse("admin:soniq_job_change", args=[job.pk]) in page
    assert "tests.process_payment" in page
    assert 'class="soniq-status soniq-status-processing"' in page
    assert 'class="soniq-status soniq-status-queued"' in page
    assert "0/4" in page  # attempts
    assert reverse("admin:soniq_worker_change", args=[worker.id]) in page
    assert "a@example.com" in page  # the args preview


def test_a_claimed_job_is_told_from_a_running_one(rows: Rows, superuser: Client) -> None:
    """A job its worker holds but has not started shows as claimed: in the list, its filter,
    its page, the worker's page and the dashboard."""
    worker = rows.worker()
    now = datetime.now(UTC)
    claimed = rows.running(worker, started_at=None, claimed_at=now, task_name="tests.held")
    running = rows.running(worker, claimed_at=now)
    page = html(superuser.get(JOBS))
    assert 'class="soniq-status soniq-status-claimed"' in page
    assert page.count('class="soniq-status soniq-status-processing"') == 1
    assert listed(superuser.get(JOBS, {"state": "claimed"})) == {str(claimed.pk)}
    assert listed(superuser.get(JOBS, {"state": "running"})) == {str(running.pk)}
    detail = html(superuser.get(change("job", claimed.pk)))
    assert "soniq-status-claimed" in detail and "not started yet" in detail
    worker_page = html(superuser.get(change("worker", worker.id)))
    assert "not started" in worker_page and "started " in worker_page
    dashboard = superuser.get(reverse("admin:soniq_dashboard"))
    assert dashboard.context["data"].claimed == 1
    assert "?state=claimed" in html(dashboard)


def test_a_job_marked_by_a_worker_s_death_says_so(rows: Rows, superuser: Client) -> None:
    job = rows.job(suspicion=2, worker_losses=1, attempts=1)
    assert "running when its worker died: runs alone" in html(superuser.get(change("job", job.pk)))


def test_the_list_links_to_the_dashboard(rows: Rows, superuser: Client) -> None:
    page = html(superuser.get(JOBS))
    dashboard = reverse("admin:soniq_dashboard")
    assert f'<a href="{dashboard}" id="soniq-dashboard-link">' in page
    # And so does soniq's section of the admin index.
    index = html(superuser.get(reverse("admin:app_list", args=["soniq"])))
    assert f'<a href="{dashboard}" id="soniq-dashboard-link">' in index


def test_the_dashboard_needs_the_permission_to_view_jobs(rows: Rows, client_with: object) -> None:
    client = client_with("soniq.view_deadletterjob")  # type: ignore[operator]
    assert client.get(reverse("admin:soniq_dashboard")).status_code == 403


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"status__exact": "queued"}, {"queued"}),
        ({"status__exact": "processing"}, {"running"}),
        ({"status__exact": "done"}, {"done", "old"}),
        ({"status__exact": "cancelled"}, {"cancelled"}),
        ({"queue": "urgent"}, {"running", "done"}),
        ({"task": "tests.process_payment"}, {"running"}),
        ({"task": "tests.process_payment", "status__exact": "queued"}, set()),
        ({"finished_at__isnull": "True"}, {"queued", "running"}),
        ({"finished_at__isnull": "False"}, {"done", "cancelled", "old"}),
    ],
)
def test_filters(rows: Rows, superuser: Client, query: dict[str, str], expected: set[str]) -> None:
    now = datetime.now(UTC)
    worker = rows.worker()
    made = {
        "queued": rows.job(),
        "running": rows.running(worker, task_name="tests.process_payment", queue="urgent"),
        "done": rows.job(status="done", queue="urgent", finished_at=now),
        "cancelled": rows.job(status="cancelled", finished_at=now),
        "old": rows.job(
            status="done",
            created_at=now - timedelta(days=40),
            finished_at=now - timedelta(days=40),
        ),
    }
    response = superuser.get(JOBS, query)
    assert response.status_code == 200
    assert listed(response) == {str(made[name].pk) for name in expected}


def test_date_filters_on_created_and_finished(rows: Rows, superuser: Client) -> None:
    now = datetime.now(UTC)
    recent = rows.job(status="done", finished_at=now)
    old = rows.job(
        status="done",
        created_at=now - timedelta(days=40),
        finished_at=now - timedelta(days=40),
    )
    response = superuser.get(JOBS)
    for field in ("created_at", "finished_at"):
        filtered = superuser.get(JOBS + date_choice(response, field))
        assert filtered.status_code == 200
        assert listed(filtered) == {str(recent.pk)}, field
        assert listed(superuser.get(JOBS + date_choice(response, field, "Today"))) == {
            str(recent.pk)
        }
    assert str(old.pk)[:8] in html(response)


def test_the_filter_sidebar_offers_registered_tasks_and_known_queues(
    rows: Rows, superuser: Client
) -> None:
    app = register_jobs(Soniq(database=rows.alias)).app
    rows.job(task_name="legacy.unregistered", queue="legacy")
    page = html(superuser.get(JOBS))
    assert "?task=tests.process_payment" in page
    assert "?queue=urgent" in page  # tests.process_payment's queue
    assert "?queue=orders" in page  # the testproject's app registers shop.jobs
    # Names only in the table are not read from it (no scan); typed in the URL, they filter.
    assert "?task=legacy.unregistered" not in page
    response = superuser.get(JOBS, {"task": "legacy.unregistered"})
    assert len(response.context["cl"].result_list) == 1
    assert "?task=legacy.unregistered" in html(response)
    assert app.registry.names()


def test_search_by_full_id_and_by_task_name_fragment(rows: Rows, superuser: Client) -> None:
    email = rows.job(task_name="tests.send_email")
    payment = rows.job(task_name="tests.process_payment")
    refund = rows.job(task_name="billing.refund_payment")
    assert listed(superuser.get(JOBS, {"q": str(email.pk)})) == {str(email.pk)}
    assert listed(superuser.get(JOBS, {"q": f"  {str(payment.pk).upper()} "})) == {str(payment.pk)}
    assert listed(superuser.get(JOBS, {"q": "payment"})) == {str(payment.pk), str(refund.pk)}
    assert listed(superuser.get(JOBS, {"q": "PAYMENT"})) == {str(payment.pk), str(refund.pk)}
    assert listed(superuser.get(JOBS, {"q": "send_em"})) == {str(email.pk)}
    assert listed(superuser.get(JOBS, {"q": str(uuid.uuid4())})) == set()
    assert listed(superuser.get(JOBS, {"q": "nothing-like-this"})) == set()


def test_the_worker_pages_running_link_filters_the_list(rows: Rows, superuser: Client) -> None:
    worker = rows.worker()
    running = rows.running(worker)
    rows.job()
    response = superuser.get(JOBS, {"worker_id": str(worker.id), "status": "processing"})
    assert response.status_code == 200
    assert listed(response) == {str(running.pk)}


def test_a_jobs_page_shows_everything_about_it(rows: Rows, superuser: Client) -> None:
    worker = rows.worker(hostname="box-1")
    job = rows.running(
        worker,
        task_name="tests.process_payment",
        args={"order_id": 42, "amount": 9.5},
        attempts=2,
        max_attempts=6,
        worker_losses=1,
        dedup_key="order-42",
        errors=[
            {
                "attempt": 1,
                "error_type": "ConnectionError",
                "message": "bank unreachable",
                "failed_at": "2026-01-01T00:00:00Z",
                "worker_id": str(worker.id),
                "traceback": "Traceback (most recent call last):\n  File x\nConnectionError",
            }
        ],
    )
    response = superuser.get(change("job", job.pk))
    assert response.status_code == 200
    page = html(response)
    for text in (
        str(job.pk),
        "tests.process_payment",
        "soniq-status-processing",
        "2/6",
        "order-42",
        "&quot;order_id&quot;: 42",
        "Attempt 1",
        "ConnectionError",
        "bank unreachable",
        "Traceback (most recent call last):",
        f"worker {worker.id}",
        reverse("admin:soniq_worker_change", args=[worker.id]),
    ):
        assert text in page, text
    # A running job offers one button: it can be neither run again nor cancelled, only aborted.
    assert [b["label"] for b in response.context["soniq_buttons"]] == ["Abort"]


def test_a_finished_jobs_page_shows_its_result(rows: Rows, superuser: Client) -> None:
    job = rows.job(status="done", result={"sent": True, "to": "a@example.com"})
    page = html(superuser.get(change("job", job.pk)))
    assert "&quot;sent&quot;: true" in page
    assert "No failed attempt." in page


def test_an_unknown_job_redirects_with_a_message(rows: Rows, superuser: Client) -> None:
    response = superuser.get(change("job", uuid.uuid4()))
    assert response.status_code == 302
    assert "doesn\u2019t exist" in flashes(response)[0]


# -- retry ------------------------------------------------------------------------------------


def test_retry_makes_a_scheduled_job_due_now(rows: Rows, superuser: Client) -> None:
    job = rows.scheduled()
    other = rows.scheduled()
    response = superuser.post(JOBS, action_post("retry_now", job.pk))
    assert response.status_code == 302
    assert flash_levels(response) == [("success", "Retried 1 job.")]
    now = datetime.now(UTC)
    assert Job.objects.using(rows.alias).get(pk=job.pk).scheduled_at <= now
    assert Job.objects.using(rows.alias).get(pk=other.pk).scheduled_at > now


def test_retry_puts_a_cancelled_job_back_in_the_queue(rows: Rows, superuser: Client) -> None:
    job = rows.job(status="cancelled", finished_at=datetime.now(UTC))
    response = superuser.post(JOBS, action_post("retry_now", job.pk))
    assert flashes(response) == ["Retried 1 job."]
    after = Job.objects.using(rows.alias).get(pk=job.pk)
    assert after.status == "queued" and after.finished_at is None


def test_retry_refuses_a_job_running_on_a_live_worker(rows: Rows, superuser: Client) -> None:
    worker = rows.worker(hostname="box-7")
    job = rows.running(worker)
    response = superuser.post(JOBS, action_post("retry_now", job.pk))
    assert flash_levels(response) == [
        (
            "warning",
            f"1 job left alone: it is running on live worker box-7:{worker.pid}; wait for it "
            "to finish (1 job).",
        )
    ]
    after = Job.objects.using(rows.alias).get(pk=job.pk)
    assert (after.status, after.worker_id, after.attempts) == ("processing", worker.id, 1)


def test_retry_explains_a_job_held_by_a_dead_worker(rows: Rows, superuser: Client) -> None:
    worker = rows.worker(status="dead", hostname="box-8")
    job = rows.running(worker)
    [message] = flashes(superuser.post(JOBS, action_post("retry_now", job.pk)))
    assert f"held by worker box-8:{worker.pid}, which is not running" in message
    assert "recovery puts it back in the queue" in message
    assert status_of(rows, job) == "processing"


def test_retry_of_a_mixed_selection_reports_each_outcome(rows: Rows, superuser: Client) -> None:
    worker = rows.worker()
    due = [rows.scheduled(), rows.job(status="cancelled")]
    done = rows.job(status="done", finished_at=datetime.now(UTC))
    running = rows.running(worker)
    response = superuser.post(
        JOBS, action_post("retry_now", *(job.pk for job in (*due, done, running)))
    )
    success, warning = flash_levels(response)
    assert success == ("success", "Retried 2 jobs.")
    assert warning[0] == "warning"
    assert warning[1].startswith("2 jobs left alone: ")
    assert "it already finished successfully (1 job)" in warning[1]
    assert "running on live worker" in warning[1]
    assert [status_of(rows, job) for job in (*due, done, running)] == [
        "queued",
        "queued",
        "done",
        "processing",
    ]


def test_retry_every_job_matching_the_filter(rows: Rows, superuser: Client) -> None:
    urgent = [rows.scheduled(queue="urgent") for _ in range(3)]
    other = rows.scheduled(queue="default")
    # The page ticked one row, then "select all N": the action gets every matching job.
    response = superuser.post(
        f"{JOBS}?queue=urgent", action_post("retry_now", urgent[0].pk, select_across=True)
    )
    assert flashes(response) == ["Retried 3 jobs."]
    now = datetime.now(UTC)
    for job in urgent:
        assert Job.objects.using(rows.alias).get(pk=job.pk).scheduled_at <= now
    assert Job.objects.using(rows.alias).get(pk=other.pk).scheduled_at > now


def test_retry_one_job_from_its_page(rows: Rows, superuser: Client) -> None:
    job = rows.scheduled()
    url = reverse("admin:soniq_job_retry", args=[job.pk])
    response = superuser.post(url)
    assert response.status_code == 302
    assert response["Location"] == change("job", job.pk)
    assert flashes(response) == ["Retried 1 job."]
    assert Job.objects.using(rows.alias).get(pk=job.pk).scheduled_at <= datetime.now(UTC)


def test_retry_one_job_running_on_a_live_worker_is_refused_with_its_reason(
    rows: Rows, superuser: Client
) -> None:
    worker = rows.worker(hostname="box-9")
    job = rows.running(worker)
    response = superuser.post(reverse("admin:soniq_job_retry", args=[job.pk]))
    assert response.status_code == 302
    [(level, message)] = flash_levels(response)
    assert level == "warning"
    assert f"it is running on live worker box-9:{worker.pid}; wait for it to finish" in message
    assert status_of(rows, job) == "processing"


# -- cancel -----------------------------------------------------------------------------------


def test_cancel_a_queued_job(rows: Rows, superuser: Client) -> None:
    job = rows.job()
    other = rows.job()
    response = superuser.post(JOBS, action_post("cancel", job.pk))
    assert response.status_code == 302
    assert flash_levels(response) == [("success", "Cancelled 1 job.")]
    after = Job.objects.using(rows.alias).get(pk=job.pk)
    assert after.status == "cancelled" and after.finished_at is not None
    assert status_of(rows, other) == "queued"


def test_cancel_leaves_running_and_finished_jobs_alone(rows: Rows, superuser: Client) -> None:
    worker = rows.worker(hostname="box-3")
    running = rows.running(worker)
    done = rows.job(status="done", finished_at=datetime.now(UTC))
    response = superuser.post(JOBS, action_post("cancel", running.pk, done.pk))
    [(level, message)] = flash_levels(response)
    assert level == "warning"
    assert message.startswith("2 jobs left alone: ")
    assert f"it is already running (on worker box-3:{worker.pid})" in message
    assert "it is done; only queued jobs can be cancelled (1 job)" in message
    assert status_of(rows, running) == "processing"
    assert status_of(rows, done) == "done"


def test_cancel_one_job_from_its_page(rows: Rows, superuser: Client) -> None:
    job = rows.job()
    response = superuser.post(reverse("admin:soniq_job_cancel", args=[job.pk]))
    assert response.status_code == 302
    assert response["Location"] == change("job", job.pk)
    assert flashes(response) == ["Cancelled 1 job."]
    assert status_of(rows, job) == "cancelled"
    # Once cancelled, again: refused and explained.
    again = superuser.post(reverse("admin:soniq_job_cancel", args=[job.pk]))
    assert flashes(again)[-1] == (
        "1 job left alone: it is cancelled; only queued jobs can be cancelled (1 job)."
    )


def test_abort_asks_the_worker_to_stop_a_running_job(rows: Rows, superuser: Client) -> None:
    worker = rows.worker(hostname="box-4")
    running = rows.running(worker)
    queued = rows.job()
    done = rows.job(status="done", finished_at=datetime.now(UTC))
    response = superuser.post(JOBS, action_post("abort", running.pk, queued.pk, done.pk))
    [(level, message), (warning, refused)] = flash_levels(response)
    assert (level, message) == ("success", "Asked to abort 2 jobs.")
    assert warning == "warning"
    assert "it already finished successfully; only queued and running jobs can be aborted" in (
        refused
    )
    after = Job.objects.using(rows.alias).get(pk=running.pk)
    assert after.status == "processing"  # until its worker stops it
    assert (after.abort_requested_by or "").startswith("admin:user-")
    assert after.abort_requested_at is not None
    assert status_of(rows, queued) == "cancelled"
    assert status_of(rows, done) == "done"
    logged = LogEntry.objects.filter(object_id=str(running.pk)).values_list(
        "change_message", flat=True
    )
    assert list(logged) == ["Abort requested"]
    page = html(superuser.get(change("job", running.pk)))
    assert f"by {after.abort_requested_by} at " in page


def test_the_history_names_what_the_job_asked_for(rows: Rows, superuser: Client) -> None:
    entries = [
        ("soniq.core.control.Snooze", "file not there", "snoozed (attempt not charged)"),
        ("soniq.core.control.Retry", "partner busy", "retry requested"),
        ("soniq.core.control.Aborted", "abort requested by ops", "aborted"),
    ]
    job = rows.job(
        status="cancelled",
        errors=[
            {"attempt": 1, "error_type": kind, "message": text, "traceback": ""}
            for kind, text, _ in entries
        ],
    )
    page = html(superuser.get(change("job", job.pk)))
    for _, text, label in entries:
        assert f'<em class="soniq-control">{label}</em>' in page
        assert text in page


def test_every_matching_job_cancelled(rows: Rows, superuser: Client) -> None:
    payments = [rows.job(task_name="tests.process_payment") for _ in range(2)]
    email = rows.job(task_name="tests.send_email")
    response = superuser.post(
        f"{JOBS}?q=payment", action_post("cancel", payments[0].pk, select_across=True)
    )
    assert flashes(response) == ["Cancelled 2 jobs."]
    assert [status_of(rows, job) for job in payments] == ["cancelled", "cancelled"]
    assert status_of(rows, email) == "queued"


# -- a job's buttons --------------------------------------------------------------------------


def _buttons(client: Client, job: Job) -> list[tuple[str, str]]:
    response = client.get(change("job", job.pk))
    assert response.status_code == 200
    page = html(response)
    buttons = [(b["label"], b["url"]) for b in response.context["soniq_buttons"]]
    for label, url in buttons:
        assert f'action="{url}"' in page
        assert f'value="{label}"' in page
    return buttons


def test_the_buttons_follow_the_jobs_status(rows: Rows, superuser: Client) -> None:
    worker = rows.worker()
    queued = rows.job()
    cancelled = rows.job(status="cancelled")
    retry = "admin:soniq_job_retry"
    cancel = "admin:soniq_job_cancel"
    assert _buttons(superuser, queued) == [
        ("Run now", reverse(retry, args=[queued.pk])),
        ("Cancel", reverse(cancel, args=[queued.pk])),
    ]
    assert _buttons(superuser, cancelled) == [("Requeue", reverse(retry, args=[cancelled.pk]))]
    running = rows.running(worker)
    assert _buttons(superuser, running) == [
        ("Abort", reverse("admin:soniq_job_abort", args=[running.pk]))
    ]
    assert _buttons(superuser, rows.job(status="done")) == []
    assert 'id="soniq-buttons"' not in html(
        superuser.get(change("job", rows.job(status="done").pk))
    )


def test_the_action_menu_offers_retry_cancel_and_abort_only(rows: Rows, superuser: Client) -> None:
    rows.job()
    response = superuser.get(JOBS)
    assert offered_actions(response) == ["retry_now", "cancel", "abort"]
    assert 'value="delete_selected"' not in html(response)


def test_the_per_job_urls_take_only_post(rows: Rows, superuser: Client) -> None:
    job = rows.scheduled()
    for name in ("admin:soniq_job_retry", "admin:soniq_job_cancel", "admin:soniq_job_abort"):
        assert superuser.get(reverse(name, args=[job.pk])).status_code == 405
    after = Job.objects.using(rows.alias).get(pk=job.pk)
    assert after.status == "queued" and after.scheduled_at > datetime.now(UTC)


def test_the_per_job_urls_404_for_an_unknown_job(rows: Rows, superuser: Client) -> None:
    for name in ("admin:soniq_job_retry", "admin:soniq_job_cancel"):
        assert superuser.post(reverse(name, args=[uuid.uuid4()])).status_code == 404
        # A malformed id is no job either (not a server error).
        assert superuser.post(reverse(name, args=["not-a-uuid"])).status_code == 404


def test_an_action_without_a_selection_changes_nothing(rows: Rows, superuser: Client) -> None:
    job = rows.job()
    response = superuser.post(JOBS, {"action": "cancel", "index": "0"})
    assert "Items must be selected" in flashes(response)[0]
    assert status_of(rows, job) == "queued"
