"""The admin in a real browser (headless chromium driven by Playwright): log in through the
login form, read the dashboard, requeue dead letters, pause and resume schedules, and soniq's
pages marked up as Django's own (breadcrumbs, action bar, paginator) in the Django version in use.

With ``SONIQ_SCREENSHOTS=1`` the showcase test also writes the README's screenshots to
``docs/images/``; without it every assertion still runs and no file is touched.
"""

from __future__ import annotations

import os
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import django
import pytest
from django.contrib.auth.models import Permission, User
from django.utils import timezone
from playwright.sync_api import Page, expect

from soniq.models import DeadLetterJob, Job, Schedule
from tests.browser.seed import (
    ScheduleSpec,
    add_schedules,
    make_dead_letter,
    make_job,
    seed_showcase,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.browser]

PASSWORD = "correct horse battery staple"
IMAGES = Path(__file__).resolve().parents[2] / "docs" / "images"
DASHBOARD = "/admin/soniq/job/dashboard/"


@pytest.fixture
def operator() -> User:
    return User.objects.create_superuser("operator", "ops@example.com", PASSWORD)


def log_in(page: Page, username: str, then: str = "/admin/") -> None:
    """Through the real login form: the admin redirects there, and back once logged in."""
    page.goto(then)
    expect(page).to_have_url(re.compile(r"/admin/login/"))
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(re.compile(re.escape(then) + "$"))
    expect(page.locator("#user-tools")).to_contain_text(username)


def success_message(page: Page) -> str:
    message = page.locator("ul.messagelist li.success")
    expect(message).to_have_count(1)
    return message.inner_text()


# An element's shape: its tag, classes and ARIA attributes, its children's shapes (a select's
# options left out: the choices differ), and the "\u203a" separators in its text (Django 5.2's
# breadcrumbs). Texts, links and values differ from page to page; the markup must not.
SHAPE_JS = """(element) => {
  const shape = (node) => ({
    tag: node.tagName.toLowerCase(),
    classes: [...node.classList].sort(),
    aria: node.getAttributeNames().filter((name) => name.startsWith("aria-")).sort(),
    children: [...node.children].filter((child) => child.tagName !== "OPTION").map(shape),
  });
  return { shape: shape(element), separators: (element.textContent.match(/\u203a/g) || []).length };
}"""


def shape_of(page: Page, url: str, selector: str) -> dict[str, Any]:
    """The shape of the one element ``selector`` finds on the page at ``url``."""
    if url:
        page.goto(url)
    element = page.locator(selector)
    expect(element).to_have_count(1)
    return dict(element.evaluate(SHAPE_JS))


def test_soniq_pages_are_marked_up_as_django_s_own(page: Page, operator: User) -> None:
    """Each soniq page's breadcrumbs, action bar and paginator have the shape of the same part
    of a stock Django admin page with as many steps or rows: the users' list (one row, the
    operator) and a user's page (Home > app > model > object)."""
    make_job()
    dead = make_dead_letter()
    log_in(page, "operator", then="/admin/soniq/job/")
    users, user = "/admin/auth/user/", f"/admin/auth/user/{operator.pk}/change/"

    # Home > app > list: an <ol> of <li> from Django 6.0 on, a <div> of links before.
    three_steps = shape_of(page, users, ".breadcrumbs")
    as_list = django.VERSION >= (6, 0)
    assert three_steps["shape"]["tag"] == ("ol" if as_list else "div")
    assert three_steps["separators"] == (0 if as_list else 2)
    assert shape_of(page, DASHBOARD, ".breadcrumbs") == three_steps
    four_steps = shape_of(page, user, ".breadcrumbs")
    assert shape_of(page, "/admin/soniq/deadletterjob/requeue-matching/", ".breadcrumbs") == (
        four_steps
    )

    # The action bar ("Go" in 5.2, "Run" in 6) and the paginator of a one-row list.
    action_bar = shape_of(page, users, "div.actions")
    paginator = shape_of(page, "", ".paginator")
    assert shape_of(page, "/admin/soniq/job/", "div.actions") == action_bar
    assert shape_of(page, "", ".paginator") == paginator
    assert shape_of(page, "/admin/soniq/deadletterjob/", "div.actions") == action_bar

    # The confirmation an action asks for: Home > app > dead letters > what is asked.
    page.locator(f'#result_list input.action-select[value="{dead.pk}"]').check()
    page.locator('select[name="action"]').select_option("requeue")
    page.locator("div.actions button[name=index]").click()
    expect(page.locator("#soniq-confirm-question")).to_be_visible()
    assert shape_of(page, "", ".breadcrumbs") == four_steps


def test_log_in_and_read_the_dashboard(page: Page, operator: User) -> None:
    now = timezone.now()
    two_minutes_ago, a_minute_ago = now - timedelta(minutes=2), now - timedelta(minutes=1)
    for order_id in (1, 2, 3):
        make_job(
            args={"order_id": order_id},
            status="done",
            attempts=1,
            started_at=two_minutes_ago,
            finished_at=two_minutes_ago,
        )
    make_job(queue="emails", task_name="shop.jobs.send_receipt")
    for _ in range(2):
        make_dead_letter(started_at=a_minute_ago, dead_lettered_at=a_minute_ago)

    log_in(page, "operator", then="/admin/soniq/")
    page.locator("#soniq-dashboard-link").click()
    expect(page).to_have_url(re.compile(re.escape(DASHBOARD) + "$"))
    expect(page.locator("#soniq-dashboard")).to_be_visible()

    for chart in ("#chart-minute", "#chart-hour"):
        svg = page.locator(chart)
        expect(svg).to_be_visible()
        expect(svg.locator(".soniq-chart-legend")).to_contain_text("Completed (3)")
        expect(svg.locator(".soniq-chart-legend")).to_contain_text("Failed (2)")
        # One bucket holds the three done jobs, one the two dead letters (plus the legend's
        # swatches), and the bars are drawn with a height.
        for series in ("completed", "failed"):
            bars = svg.locator(f".soniq-chart-bars rect.soniq-chart-{series}")
            expect(bars).to_have_count(1)
            box = bars.bounding_box()
            assert box is not None and box["height"] > 1
    expect(page.locator("#chart-minute desc")).to_contain_text("3 jobs completed and 2 failed")

    expect(page.locator("#summary-done .soniq-number")).to_have_text("3")
    expect(page.locator("#summary-queued .soniq-number")).to_have_text("1")
    expect(page.locator("#summary-dead-letters .soniq-number")).to_have_text("2")
    orders = page.locator('#jobs-per-queue tr[data-queue="orders"]')
    expect(orders).to_contain_text("3")
    imports = page.locator('#jobs-per-queue tr[data-queue="imports"]')
    expect(imports.locator("td.soniq-warn")).to_have_text("2")

    # The dead-letter count leads to the dead letters.
    page.locator("#summary-dead-letters a").click()
    expect(page).to_have_url(re.compile(r"/admin/soniq/deadletterjob/$"))
    expect(page.locator("#result_list tbody tr")).to_have_count(2)


def test_requeue_one_dead_letter_from_its_page(page: Page, operator: User) -> None:
    dead = make_dead_letter()

    log_in(page, "operator", then=f"/admin/soniq/deadletterjob/{dead.pk}/change/")
    expect(page.locator("#content")).to_contain_text("shop.jobs.import_feed")
    page.locator("#soniq-buttons").get_by_role("button", name="Requeue").click()

    expect(page).to_have_url(re.compile(rf"/admin/soniq/job/{dead.pk}/change/$"))
    assert success_message(page) == "Requeued 1 dead letter."
    expect(page.locator(".field-status_display")).to_contain_text("queued")
    job = Job.objects.get(pk=dead.pk)
    assert job.status == "queued"
    assert job.task_name == "shop.jobs.import_feed"
    assert len(job.errors) == 2  # the history is kept
    assert not DeadLetterJob.objects.filter(pk=dead.pk).exists()


def test_requeue_every_dead_letter_matching_a_filter(page: Page, operator: User) -> None:
    feeds = [make_dead_letter() for _ in range(3)]
    orders = [
        make_dead_letter(
            task_name="shop.jobs.fulfill_order",
            queue="orders",
            args={"order_id": n},
            reason="worker_lost",
        )
        for n in (1, 2)
    ]

    log_in(page, "operator", then="/admin/soniq/deadletterjob/")
    expect(page.locator("#result_list tbody tr")).to_have_count(5)
    page.locator("#changelist-filter").get_by_role("link", name="shop.jobs.import_feed").click()
    expect(page).to_have_url(re.compile(r"task=shop\.jobs\.import_feed"))
    expect(page.locator("#result_list tbody tr")).to_have_count(3)

    page.locator("#requeue-matching").click()
    expect(page).to_have_url(re.compile(r"/requeue-matching/\?task=shop\.jobs\.import_feed$"))
    expect(page.locator("#soniq-confirm-question")).to_contain_text(
        "Requeue all 3 dead letter(s) that match the current filter?"
    )
    expect(page.locator("#soniq-confirm-filters")).to_have_text("task = shop.jobs.import_feed")
    page.locator("#soniq-confirm-button").click()

    expect(page).to_have_url(re.compile(r"/admin/soniq/deadletterjob/\?task=shop\.jobs\."))
    assert success_message(page) == "Requeued 3 dead letters."
    expect(page.locator("#result_list tbody tr")).to_have_count(0)
    assert sorted(Job.objects.filter(status="queued").values_list("pk", flat=True)) == sorted(
        dead.pk for dead in feeds
    )
    assert sorted(DeadLetterJob.objects.values_list("pk", flat=True)) == sorted(
        dead.pk for dead in orders
    )


def test_requeue_selected_dead_letters_after_the_confirmation(page: Page, operator: User) -> None:
    chosen, other = make_dead_letter(), make_dead_letter()

    log_in(page, "operator", then="/admin/soniq/deadletterjob/")
    page.locator(f'#result_list input.action-select[value="{chosen.pk}"]').check()
    page.locator('select[name="action"]').select_option("requeue")
    page.locator("div.actions button[name=index]").click()  # "Go"; "Run" in Django 6

    expect(page.locator("#soniq-confirm-question")).to_contain_text("Requeue 1 dead letter(s)?")
    assert DeadLetterJob.objects.count() == 2  # nothing done before the confirmation
    page.locator("#soniq-confirm-button").click()

    assert success_message(page) == "Requeued 1 dead letter."
    expect(page.locator("#result_list tbody tr")).to_have_count(1)
    assert Job.objects.get(pk=chosen.pk).status == "queued"
    assert list(DeadLetterJob.objects.values_list("pk", flat=True)) == [other.pk]


def test_pause_resume_and_run_a_schedule(page: Page, operator: User) -> None:
    report, feed = add_schedules(
        ScheduleSpec(
            name="daily-sales-report",
            task_name="shop.jobs.build_report",
            cron="*/5 * * * *",
            timezone="Europe/Paris",
            args={"name": "daily sales"},
        ),
        ScheduleSpec(
            name="stock-feed",
            task_name="shop.jobs.import_feed",
            every=900,
            args={"url": "https://partner.example.com/feeds/stock.csv"},
        ),
    )
    assert report.status == feed.status == "active"
    status = page.locator(".field-status_display")
    buttons = page.locator("#soniq-buttons")

    # One schedule, from its page.
    log_in(page, "operator", then=f"/admin/soniq/schedule/{report.pk}/change/")
    expect(status).to_contain_text("active")
    expect(page.locator("ol.soniq-next-fires li")).to_have_count(5)
    buttons.get_by_role("button", name="Pause").click()
    assert success_message(page) == "Paused 1 schedule."
    expect(status).to_contain_text("paused")
    expect(buttons.get_by_role("button", name="Resume")).to_be_visible()
    assert Schedule.objects.get(pk=report.pk).status == "paused"

    before_resume = timezone.now()
    buttons.get_by_role("button", name="Resume").click()
    assert success_message(page) == "Resumed 1 schedule."
    expect(status).to_contain_text("active")
    resumed = Schedule.objects.get(pk=report.pk)
    assert resumed.status == "active"
    # From the next slot after the resume, not one that fell while paused.
    assert resumed.next_fire_at is not None and resumed.next_fire_at > before_resume

    buttons.get_by_role("button", name="Run now").click()
    assert success_message(page) == "Enqueued a job for 1 schedule."
    job = Job.objects.get(task_name="shop.jobs.build_report")
    assert job.status == "queued" and job.args == {"name": "daily sales"}

    # Both, through the change list's action.
    page.goto("/admin/soniq/schedule/")
    for schedule in (report, feed):
        page.locator(f'#result_list input.action-select[value="{schedule.pk}"]').check()
    page.locator('select[name="action"]').select_option("pause")
    page.locator("div.actions button[name=index]").click()  # "Go"; "Run" in Django 6
    assert success_message(page) == "Paused 2 schedules."
    expect(page.locator("#result_list td.field-status_display")).to_have_text(["paused", "paused"])
    assert set(Schedule.objects.values_list("status", flat=True)) == {"paused"}
    # Paused: no next fire. An interval reads as people write it.
    expect(page.locator("#result_list td.field-next_fire")).to_have_text(["paused", "paused"])
    expect(page.locator("#result_list td.field-timing").nth(1)).to_have_text("every 15 min")

    page.locator("#action-toggle").check()
    page.locator('select[name="action"]').select_option("resume")
    page.locator("div.actions button[name=index]").click()  # "Go"; "Run" in Django 6
    assert success_message(page) == "Resumed 2 schedules."
    assert set(Schedule.objects.values_list("status", flat=True)) == {"active"}


def test_staff_without_the_permission_sees_no_requeue(page: Page) -> None:
    clerk = User.objects.create_user("clerk", password=PASSWORD, is_staff=True)
    clerk.user_permissions.add(Permission.objects.get(codename="view_deadletterjob"))
    dead = make_dead_letter()

    log_in(page, "clerk", then="/admin/soniq/deadletterjob/")
    expect(page.locator("#result_list tbody tr")).to_have_count(1)
    expect(page.locator("#requeue-matching")).to_have_count(0)
    expect(page.locator('select[name="action"] option[value="requeue"]')).to_have_count(0)
    page.goto(f"/admin/soniq/deadletterjob/{dead.pk}/change/")
    expect(page.locator("#content")).to_contain_text("shop.jobs.import_feed")
    expect(page.locator("#soniq-buttons")).to_have_count(0)
    expect(page.get_by_role("button", name="Requeue")).to_have_count(0)


# The screenshots' width, the width the pages are judged at: the lists must fit it.
SCREENSHOT_VIEWPORT = {"width": 1400, "height": 900}


def assert_not_cut_off(page: Page) -> None:
    """The change list's table fits its box: no column hidden behind a horizontal scroll."""
    widths = page.locator("#changelist .results").evaluate(
        "(box) => [box.clientWidth, box.scrollWidth]"
    )
    assert widths[1] <= widths[0], f"the list is {widths[1]} px wide in {widths[0]} px"


def test_showcase_pages_and_screenshots(page: Page, operator: User) -> None:
    """Every page on a realistic day of data. SONIQ_SCREENSHOTS=1 saves them for the README."""
    shots = os.environ.get("SONIQ_SCREENSHOTS") == "1"
    seeded = seed_showcase()

    def shoot(name: str, full_page: bool = True) -> None:
        if shots:
            IMAGES.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(IMAGES / name), full_page=full_page, animations="disabled")

    page.set_viewport_size(SCREENSHOT_VIEWPORT)
    log_in(page, "operator", then=DASHBOARD)
    # The wide tables need the room: fold the admin's navigation (the browser remembers).
    page.locator("#toggle-nav-sidebar").click()
    expect(page.locator("#nav-sidebar")).to_be_hidden()
    minute = page.locator("#chart-minute")
    expect(minute).to_be_visible()
    expect(page.locator("#chart-hour")).to_be_visible()
    expect(minute.locator(".soniq-chart-legend")).to_contain_text(
        f"Failed ({seeded.dead_last_hour})"
    )
    assert minute.locator(".soniq-chart-bars rect.soniq-chart-completed").count() >= 55
    assert page.locator("#chart-hour .soniq-chart-bars rect.soniq-chart-completed").count() >= 20
    expect(page.locator("#workers-online .soniq-number")).to_have_text("2")
    expect(page.locator("#workers-stale .soniq-number")).to_have_text("1")
    expect(page.locator("#workers-table tr.soniq-worker-stale")).to_contain_text("batch-1")
    shoot("admin-dashboard.png")

    page.goto("/admin/soniq/job/")
    rows = page.locator("#result_list tbody tr")
    expect(rows).to_have_count(50)
    for status in ("queued", "processing", "done", "cancelled"):
        expect(rows.locator(f".soniq-status-{status}").first).to_be_visible()
    shoot("admin-jobs.png", full_page=False)  # the newest jobs; the page holds 50

    page.goto(f"/admin/soniq/job/{seeded.retrying_job}/change/")
    content = page.locator("#content")
    expect(page.locator("ol.soniq-errors li.soniq-error")).to_have_count(2)
    expect(page.locator("pre.soniq-traceback").first).to_contain_text("Traceback")
    expect(content).to_contain_text('"card_token": "********"')
    expect(content).to_contain_text('"api_key": "********"')
    expect(content).not_to_contain_text("sk_live_")
    expect(page.locator("#soniq-buttons input[type=submit]")).to_have_count(2)  # Run now, Cancel
    shoot("admin-job-detail.png")

    page.goto("/admin/soniq/deadletterjob/")
    expect(page.locator("#result_list tbody tr")).to_have_count(15)
    expect(page.locator("#requeue-matching")).to_be_visible()
    assert_not_cut_off(page)
    shoot("admin-dead-letters.png")

    # Every attempt failed the same way: the traceback once, then "same as attempt 1".
    page.goto(f"/admin/soniq/deadletterjob/{seeded.dead_letter}/change/")
    attempts = page.locator("ol.soniq-errors li.soniq-error")
    folded = page.locator("details.soniq-traceback-same")
    expect(folded.first).to_be_visible()
    assert folded.count() == attempts.count() - 1
    expect(folded.first.locator("summary")).to_have_text("Same traceback as attempt 1")
    expect(folded.first.locator("pre.soniq-traceback")).to_be_hidden()  # one click away

    page.goto("/admin/soniq/schedule/")
    expect(page.locator("#result_list tbody tr")).to_have_count(3)
    assert_not_cut_off(page)
    paused = page.locator("#result_list tbody tr", has_text="weekly-reminders")
    expect(paused.locator("td.field-next_fire")).to_have_text("paused")

    page.goto(f"/admin/soniq/schedule/{seeded.schedule}/change/")
    expect(page.locator(".field-status_display")).to_contain_text("active")
    expect(page.locator("ol.soniq-next-fires li")).to_have_count(5)
    expect(page.locator("ol.soniq-next-fires")).to_contain_text("06:00:00 CE")
    # To the second, in the schedule's zone, with UTC beside it (Paris is not UTC).
    expect(page.locator(".field-last_fired_at .readonly")).to_have_text(
        re.compile(r"^\d{4}-\d\d-\d\d 06:00:00 CES?T \(0[45]:00:00 UTC\)$")
    )
    shoot("admin-schedule.png")
