"""The admin dashboard: what ``collect`` reads on PostgreSQL and SQLite, in how many queries,
and the page ``dashboard_view`` renders."""

from __future__ import annotations

import gc
import re
import uuid
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta

import django
import pytest
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.db import connection, connections
from django.test import RequestFactory, override_settings
from django.test.utils import CaptureQueriesContext
from django.urls import NoReverseMatch, reverse

from soniq.admin.dashboard import (
    HOUR_BUCKETS,
    MINUTE_BUCKETS,
    Bucket,
    DashboardData,
    collect,
    completed_per_minute_query,
    dashboard_view,
    failed_per_minute_query,
    format_age,
    oldest_due_query,
    refresh_seconds,
    window,
)
from soniq.commands._limits import LimitUsage, registered_task_limits
from soniq.core.limits import Limit, parse_rate
from soniq.models import DeadLetterJob, Job, LimitStart, Worker

pytestmark = pytest.mark.django_db(databases=["default", "sqlite"])

NOW = datetime(2026, 3, 10, 14, 37, 25, 500_000, tzinfo=UTC)
TIMEOUT = 300.0
MINUTE_START = datetime(2026, 3, 10, 13, 38, tzinfo=UTC)  # the 60th minute before 14:37
HOUR_START = datetime(2026, 3, 9, 15, 0, tzinfo=UTC)  # the 24th hour before 14:00


def _job(alias: str, queue: str, status: str, **fields: object) -> Job:
    values: dict[str, object] = {
        "id": uuid.uuid4(),
        "task_name": "tests.send_email",
        "queue": queue,
        "status": status,
        "scheduled_at": NOW - timedelta(days=3),
        "created_at": NOW - timedelta(days=3),
    }
    values.update(fields)
    return Job.objects.using(alias).create(**values)


def _done(alias: str, finished_at: datetime, queue: str = "default") -> Job:
    return _job(alias, queue, "done", started_at=finished_at, finished_at=finished_at)


def _dead(alias: str, dead_lettered_at: datetime, queue: str = "default") -> DeadLetterJob:
    return DeadLetterJob.objects.using(alias).create(
        id=uuid.uuid4(),
        task_name="tests.send_email",
        queue=queue,
        priority=100,
        attempts=4,
        max_attempts=4,
        scheduled_at=NOW - timedelta(days=3),
        created_at=NOW - timedelta(days=3),
        dead_lettered_at=dead_lettered_at,
        reason="max_attempts",
    )


def _worker(alias: str, status: str, heartbeat_age: float, hostname: str = "host") -> Worker:
    return Worker.objects.using(alias).create(
        id=uuid.uuid4(),
        hostname=hostname,
        pid=1000 + Worker.objects.using(alias).count(),
        queues=["default"],
        concurrency=4,
        status=status,
        started_at=NOW - timedelta(hours=1),
        last_heartbeat_at=NOW - timedelta(seconds=heartbeat_age),
    )


def _minute(data: DashboardData, hh: int, mm: int) -> Bucket:
    start = datetime(2026, 3, 10, hh, mm, tzinfo=UTC)
    (bucket,) = [b for b in data.per_minute if b.start == start]
    return bucket


def _hour(data: DashboardData, day: int, hh: int) -> Bucket:
    start = datetime(2026, 3, day, hh, tzinfo=UTC)
    (bucket,) = [b for b in data.per_hour if b.start == start]
    return bucket


def _nonzero(buckets: list[Bucket]) -> dict[datetime, tuple[int, int]]:
    return {b.start: (b.completed, b.failed) for b in buckets if b.completed or b.failed}


def test_window() -> None:
    assert window(NOW) == (HOUR_START, MINUTE_START, datetime(2026, 3, 10, 14, 38, tzinfo=UTC))


def test_an_empty_database(alias: str) -> None:
    data = collect(alias, NOW, TIMEOUT)
    assert data.counts == {} and data.dead_letters == {} and data.oldest_due == {}
    assert data.queues == []
    assert (data.workers_online, data.workers_stale, data.workers_stopping) == (0, 0, 0)
    assert len(data.per_minute) == MINUTE_BUCKETS and len(data.per_hour) == HOUR_BUCKETS
    assert data.per_minute[0] == Bucket(MINUTE_START, 0, 0)
    assert data.per_minute[-1] == Bucket(datetime(2026, 3, 10, 14, 37, tzinfo=UTC), 0, 0)
    assert data.per_hour[0] == Bucket(HOUR_START, 0, 0)
    assert data.per_hour[-1] == Bucket(datetime(2026, 3, 10, 14, tzinfo=UTC), 0, 0)
    assert _nonzero(data.per_minute) == {} and _nonzero(data.per_hour) == {}


def test_counts_per_queue_and_status(alias: str) -> None:
    for _ in range(3):
        _job(alias, "default", "queued")
    _job(alias, "default", "processing")
    _job(alias, "default", "cancelled", finished_at=NOW)
    _done(alias, NOW - timedelta(days=2))
    _job(alias, "emails", "queued", scheduled_at=NOW + timedelta(hours=1))
    _done(alias, NOW, queue="emails")
    _done(alias, NOW, queue="emails")
    _dead(alias, NOW - timedelta(days=30), queue="emails")
    _dead(alias, NOW, queue="reports")
    _dead(alias, NOW, queue="reports")

    data = collect(alias, NOW, TIMEOUT)
    assert data.counts == {
        ("default", "queued"): 3,
        ("default", "processing"): 1,
        ("default", "cancelled"): 1,
        ("default", "done"): 1,
        ("emails", "queued"): 1,
        ("emails", "done"): 2,
    }
    assert data.dead_letters == {"emails": 1, "reports": 2}
    assert data.queues == ["default", "emails", "reports"]
    assert data.count("default", "queued") == 3 and data.count("reports", "queued") == 0
    assert data.queue_total("default") == 6 and data.queue_total("reports") == 0
    assert data.status_totals == {"queued": 4, "processing": 1, "done": 3, "cancelled": 1}
    assert data.total_jobs == 9 and data.total_dead_letters == 3


def test_oldest_due_job_per_queue(alias: str) -> None:
    _job(alias, "default", "queued", scheduled_at=NOW - timedelta(minutes=5))
    _job(alias, "default", "queued", scheduled_at=NOW - timedelta(hours=1))
    _job(alias, "default", "queued", scheduled_at=NOW + timedelta(minutes=1))  # not due yet
    _job(alias, "emails", "queued", scheduled_at=NOW - timedelta(minutes=3, seconds=12))
    _job(alias, "emails", "queued", scheduled_at=NOW)  # due exactly now
    # Not queued: an old processing job, old finished jobs, a queue with nothing due.
    _job(alias, "emails", "processing", scheduled_at=NOW - timedelta(days=9))
    _done(alias, NOW - timedelta(days=1), queue="emails")
    _job(alias, "reports", "done", scheduled_at=NOW - timedelta(days=9), finished_at=NOW)
    _job(alias, "later", "queued", scheduled_at=NOW + timedelta(days=1))

    data = collect(alias, NOW, TIMEOUT)
    assert data.oldest_due == {
        "default": NOW - timedelta(hours=1),
        "emails": NOW - timedelta(minutes=3, seconds=12),
    }
    assert data.oldest_due_age("emails") == timedelta(minutes=3, seconds=12)
    assert data.oldest_due_age("reports") is None
    assert format_age(data.oldest_due_age("emails")) == "3 min 12 s"
    assert format_age(data.oldest_due_age("default")) == "1 h 0 min"


def test_workers_online_stopping_and_stale(alias: str) -> None:
    _worker(alias, "running", 10, hostname="fresh")
    _worker(alias, "running", TIMEOUT, hostname="edge")  # exactly the timeout: still online
    _worker(alias, "running", TIMEOUT + 1, hostname="stale")
    _worker(alias, "stopping", 5, hostname="leaving")
    _worker(alias, "stopping", 3600, hostname="stuck")
    _worker(alias, "stopped", 1, hostname="gone")
    _worker(alias, "dead", 1, hostname="dead")

    data = collect(alias, NOW, TIMEOUT)
    assert (data.workers_online, data.workers_stopping, data.workers_stale) == (2, 1, 2)
    assert [(w.hostname, w.state) for w in data.workers] == [
        ("leaving", "stopping"),
        ("fresh", "online"),
        ("edge", "online"),
        ("stale", "stale"),
        ("stuck", "stale"),
    ]
    fresh = data.workers[1]
    assert fresh.online and fresh.heartbeat_age == timedelta(seconds=10)
    assert fresh.queues == ["default"] and fresh.concurrency == 4


def test_completed_and_failed_per_minute_and_per_hour(alias: str) -> None:
    # Completed, by finished_at.
    _done(alias, NOW - timedelta(seconds=10))  # 14:37:15
    _done(alias, NOW - timedelta(seconds=20), queue="emails")  # 14:37:05
    _done(alias, datetime(2026, 3, 10, 14, 30, tzinfo=UTC))
    _done(alias, MINUTE_START)  # the first minute
    _done(alias, MINUTE_START - timedelta(microseconds=1))  # 13:37:59.999999: hour chart only
    _done(alias, HOUR_START)  # the first hour
    _done(alias, HOUR_START - timedelta(seconds=1))  # before both windows
    _done(alias, NOW + timedelta(minutes=2))  # in the future: a skewed clock, not drawn
    # Not completed: cancelled, queued, processing.
    _job(alias, "default", "cancelled", finished_at=NOW - timedelta(seconds=5))
    _job(alias, "default", "queued", scheduled_at=NOW - timedelta(seconds=5))
    _job(alias, "default", "processing", started_at=NOW - timedelta(seconds=5))
    # Failed, by dead_lettered_at.
    _dead(alias, NOW - timedelta(seconds=30), queue="emails")  # 14:36:55
    _dead(alias, datetime(2026, 3, 10, 14, 0, tzinfo=UTC))
    _dead(alias, datetime(2026, 3, 9, 20, 15, 30, tzinfo=UTC))
    _dead(alias, HOUR_START - timedelta(hours=2))  # too old

    data = collect(alias, NOW, TIMEOUT)
    assert _nonzero(data.per_minute) == {
        datetime(2026, 3, 10, 13, 38, tzinfo=UTC): (1, 0),
        datetime(2026, 3, 10, 14, 0, tzinfo=UTC): (0, 1),
        datetime(2026, 3, 10, 14, 30, tzinfo=UTC): (1, 0),
        datetime(2026, 3, 10, 14, 36, tzinfo=UTC): (0, 1),
        datetime(2026, 3, 10, 14, 37, tzinfo=UTC): (2, 0),
    }
    assert _nonzero(data.per_hour) == {
        datetime(2026, 3, 9, 15, tzinfo=UTC): (1, 0),
        datetime(2026, 3, 9, 20, tzinfo=UTC): (0, 1),
        datetime(2026, 3, 10, 13, tzinfo=UTC): (2, 0),
        datetime(2026, 3, 10, 14, tzinfo=UTC): (3, 2),
    }
    assert _minute(data, 14, 37) == data.per_minute[-1]
    assert _hour(data, 9, 15) == data.per_hour[0]
    starts = [b.start for b in data.per_minute]
    assert starts == [MINUTE_START + timedelta(minutes=i) for i in range(MINUTE_BUCKETS)]
    starts = [b.start for b in data.per_hour]
    assert starts == [HOUR_START + timedelta(hours=i) for i in range(HOUR_BUCKETS)]


def test_a_naive_or_other_zone_now_is_read_as_the_same_instant(alias: str) -> None:
    _done(alias, NOW - timedelta(seconds=10))
    from zoneinfo import ZoneInfo

    data = collect(alias, NOW.astimezone(ZoneInfo("Asia/Kolkata")), TIMEOUT)
    assert data.now == NOW
    assert data.per_minute[-1] == Bucket(datetime(2026, 3, 10, 14, 37, tzinfo=UTC), 1, 0)


def test_collect_runs_nine_small_aggregate_queries(alias: str) -> None:
    _job(alias, "default", "queued", scheduled_at=NOW - timedelta(minutes=1))
    _done(alias, NOW - timedelta(minutes=1))
    _dead(alias, NOW - timedelta(minutes=1))
    _worker(alias, "running", 1)
    with CaptureQueriesContext(connections[alias]) as captured:
        collect(alias, NOW, TIMEOUT)
    statements = [query["sql"] for query in captured.captured_queries]
    assert len(statements) == 9, statements
    for sql in statements:
        upper = sql.upper()
        if "COUNT(" in upper and re.search(r'\bFROM "SONIQ_JOBS"', upper):
            # Counting soniq_jobs is grouped, or limited to an index range of finished rows.
            assert "GROUP BY" in upper, sql
    jobs_reads = [sql for sql in statements if '"soniq_jobs"' in sql]
    # The per-status counts (and, among them, the claimed ones: an aggregate FILTER) are the
    # only read of soniq_jobs without a WHERE clause.
    assert sum("WHERE" not in re.sub(r"FILTER \(WHERE", "", sql.upper()) for sql in jobs_reads) == 1
    oldest = next(sql for sql in jobs_reads if "MIN(" in sql.upper())
    assert "'queued'" in oldest and "GROUP BY" in oldest.upper()


def _start(alias: str, key: str, started_at: datetime, count: int) -> None:
    LimitStart.objects.using(alias).create(key=key, started_at=started_at, count=count)


def test_limits_and_how_full_they_are(alias: str) -> None:
    _job(alias, "default", "processing", task_name="dash.capped")
    _job(alias, "partner", "processing", task_name="dash.capped")  # counts for both
    _job(alias, "partner", "processing")
    _job(alias, "partner", "queued", task_name="dash.capped")  # not running
    _start(alias, "task:dash.capped", NOW - timedelta(seconds=20), 6)
    _start(alias, "task:dash.capped", NOW - timedelta(seconds=59), 5)
    _start(alias, "task:dash.capped", NOW - timedelta(seconds=61), 9)  # out of the minute
    _start(alias, "queue:partner", NOW - timedelta(seconds=1), 2)
    task_limits = {"dash.capped": Limit(3, parse_rate("20/m")), "dash.free": Limit()}
    queue_limits = {"partner": Limit(concurrency=2), "quiet": Limit(rate=parse_rate("10/15m"))}

    with CaptureQueriesContext(connections[alias]) as captured:
        data = collect(alias, NOW, TIMEOUT, task_limits=task_limits, queue_limits=queue_limits)
    assert len(captured.captured_queries) == 11  # the nine, then running and started
    assert data.limits == (
        LimitUsage("task", "dash.capped", 3, 2, "20/m", 20, 60.0, 11),
        LimitUsage("queue", "partner", 2, 2, None, None, None, None),
        LimitUsage("queue", "quiet", None, 0, "10/15m", 10, 900.0, 0),
    )
    assert [limit.window for limit in data.limits] == ["1 min", "-", "15 min"]
    # Without a rate limit the starts are not read: one query, for the running jobs.
    with CaptureQueriesContext(connections[alias]) as captured:
        data = collect(alias, NOW, TIMEOUT, queue_limits={"partner": Limit(concurrency=2)})
    assert len(captured.captured_queries) == 10
    assert data.limits == (LimitUsage("queue", "partner", 2, 2, None, None, None, None),)


def _explain_without_seqscan(alias: str, queryset: object) -> str:
    with connections[alias].cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
    return str(queryset.explain())  # type: ignore[attr-defined]


@pytest.mark.django_db(databases=["default"])
def test_the_oldest_due_query_reads_the_queued_partial_index() -> None:
    # On a near-empty table the planner would scan anyway; forbid that to see what it can use.
    plan = _explain_without_seqscan("default", oldest_due_query("default", NOW))
    assert "soniq_jobs_claim" in plan, plan


@pytest.mark.django_db(databases=["default"])
def test_the_chart_queries_read_an_index_range() -> None:
    start, _, end = window(NOW)
    plan = _explain_without_seqscan("default", completed_per_minute_query("default", start, end))
    assert "soniq_jobs_finished_idx" in plan, plan
    plan = _explain_without_seqscan("default", failed_per_minute_query("default", start, end))
    assert "soniq_dead_at_idx" in plan, plan


def test_the_chart_queries_use_an_index_on_sqlite_too() -> None:
    start, _, end = window(NOW)
    plan = str(completed_per_minute_query("sqlite", start, end).explain())
    assert "soniq_jobs_finished_idx" in plan, plan
    plan = str(failed_per_minute_query("sqlite", start, end).explain())
    assert "soniq_dead_at_idx" in plan, plan
    plan = str(oldest_due_query("sqlite", NOW).explain())
    assert "soniq_jobs_claim" in plan, plan


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0 s"),
        (-5, "0 s"),
        (45.9, "45 s"),
        (60, "1 min 0 s"),
        (192, "3 min 12 s"),
        (2 * 3600 + 5 * 60 + 7, "2 h 5 min"),
        (3 * 86400 + 4 * 3600 + 59, "3 d 4 h"),
    ],
)
def test_format_age(seconds: float, text: str) -> None:
    assert format_age(timedelta(seconds=seconds)) == text


def test_format_age_of_nothing() -> None:
    assert format_age(None) == "-"


@pytest.mark.parametrize(
    ("raw", "seconds"),
    [
        (None, None),
        ("", None),
        ("abc", None),
        ("-10", None),
        ("4", None),
        ("5", 5),
        ("30", 30),
        (" 60 ", 60),
        ("3600", 3600),
        ("3601", None),
        ("1e3", None),
        ("10.5", None),
        ("٣٠", None),  # Arabic-Indic digits: isdigit() but not what anyone typed
    ],
)
def test_refresh_seconds(raw: str | None, seconds: int | None) -> None:
    assert refresh_seconds(raw) == seconds


# -- the page ---------------------------------------------------------------------------------


def _render(alias: str, query: str = "", **soniq: object) -> str:
    user = get_user_model().objects.create_superuser("boss", "boss@example.com", "pw")
    request = RequestFactory().get(f"/admin/soniq/dashboard/{query}")
    request.user = user
    with override_settings(SONIQ={"DATABASE": alias, "APP": "config.tasks:app", **soniq}):
        response = dashboard_view(request, admin.site)
        assert response.status_code == 200
        assert response.template_name == "admin/soniq/dashboard.html"
        response.render()
    return response.content.decode()


def _svgs(page: str) -> dict[str, ET.Element]:
    found = {}
    for match in re.finditer(r"<svg [^>]*class=\"soniq-chart\".*?</svg>", page, flags=re.DOTALL):
        root = ET.fromstring(match.group(0))
        found[root.get("id", "")] = root
    return found


def _reverse_or_empty(name: str) -> str:
    try:
        return reverse(name)
    except NoReverseMatch:
        return ""


def test_the_page_shows_tables_workers_and_both_charts(alias: str) -> None:
    _job(alias, "emails", "queued", scheduled_at=NOW - timedelta(minutes=3))
    _job(alias, "emails", "processing")
    _done(alias, datetime.now(UTC) - timedelta(seconds=30), queue="emails")
    _dead(alias, datetime.now(UTC) - timedelta(minutes=2), queue="<b>odd</b>")
    Worker.objects.using(alias).create(
        id=uuid.uuid4(),
        hostname="web-1",
        pid=77,
        concurrency=8,
        status="running",
        started_at=datetime.now(UTC),
        last_heartbeat_at=datetime.now(UTC),
    )

    page = _render(alias)
    for element_id in ("soniq-dashboard", "chart-minute", "chart-hour", "workers-online"):
        assert f'id="{element_id}"' in page, element_id
    assert "<title>Soniq dashboard | " in page
    if django.VERSION >= (6, 0):  # Django's own breadcrumbs are a list from 6.0 on
        assert re.search(r'<ol class="breadcrumbs">\s*<li><a href="/admin/">Home</a></li>', page)
        assert '<li aria-current="page">Dashboard</li>' in page
    else:
        assert re.search(r'<div class="breadcrumbs">\s*<a href="/admin/">Home</a>', page)
        assert "&rsaquo; Dashboard" in page
    assert 'http-equiv="refresh"' not in page

    svgs = _svgs(page)
    assert set(svgs) == {"chart-minute", "chart-hour"}
    for root in svgs.values():
        assert root.get("role") == "img"
    minute_titles = [
        g.find("{http://www.w3.org/2000/svg}title").text  # type: ignore[union-attr]
        for g in svgs["chart-minute"].iter("{http://www.w3.org/2000/svg}g")
        if g.get("class") == "soniq-chart-bucket"
    ]
    assert len(minute_titles) == MINUTE_BUCKETS
    assert sum("1 completed" in (title or "") for title in minute_titles) == 1

    workers = page[page.index('id="workers-online"') :]
    assert re.match(r'id="workers-online">\s*<div class="soniq-number">1</div>', workers)
    assert "web-1:77" in page
    # Queue names are escaped like everything else.
    assert "&lt;b&gt;odd&lt;/b&gt;" in page and "<b>odd</b>" not in page
    assert re.search(r'<tr data-queue="emails">', page)

    jobs_url = _reverse_or_empty("admin:soniq_job_changelist")
    if jobs_url:
        assert f'href="{jobs_url}?queue=emails&amp;status__exact=queued"' in page
    else:
        assert "?queue=emails" not in page


def test_the_page_shows_the_limits_table(alias: str) -> None:
    from soniq import Soniq

    app = Soniq()

    @app.job(name="dash.page_capped", concurrency_limit=2, rate_limit="30/m")
    def capped() -> None: ...

    now = datetime.now(UTC)
    _job(alias, "default", "processing", task_name="dash.page_capped")
    _job(alias, "default", "processing", task_name="dash.page_capped")
    _start(alias, "task:dash.page_capped", now - timedelta(seconds=5), 7)
    _start(alias, "queue:partner", now - timedelta(minutes=5), 4)  # out of the 1 s window
    page = _render(alias, QUEUE_LIMITS={"partner": {"concurrency": 5, "rate": "10/s"}})

    section = page[page.index('<section id="soniq-limits">') :]
    section = section[: section.index("</section>")]
    assert "<h2>Limits</h2>" in section and 'id="limits-table"' in section
    cells = {
        match.group(1): re.findall(r"<t[dh][^>]*>(.*?)</t[dh]>", match.group(2), flags=re.DOTALL)
        for match in re.finditer(r'<tr data-limit="([^"]+)">(.*?)</tr>', section, re.DOTALL)
    }
    capped_cells = [re.sub(r"<[^>]+>", "", cell) for cell in cells["task:dash.page_capped"]]
    assert capped_cells == ["task", "dash.page_capped", "2", "2", "30/m", "7 in the last 1 min"]
    partner_cells = [re.sub(r"<[^>]+>", "", cell) for cell in cells["queue:partner"]]
    assert partner_cells == ["queue", "partner", "0", "5", "10/s", "0 in the last 1 s"]
    # At its limit (2 of 2 running): marked as such.
    capped_row = section[section.index('data-limit="task:dash.page_capped"') :]
    assert re.search(r'<td class="soniq-num soniq-warn">(<a [^>]*>)?2', capped_row)
    jobs_url = _reverse_or_empty("admin:soniq_job_changelist")
    if jobs_url:
        assert f'href="{jobs_url}?task=dash.page_capped&amp;status__exact=processing"' in section
        assert f'href="{jobs_url}?queue=partner"' in section
    assert page.index('id="soniq-workers"') < page.index('id="soniq-limits"')
    assert callable(capped)


def test_the_page_has_no_limits_table_without_limits(alias: str) -> None:
    gc.collect()  # the apps of earlier tests
    limited = registered_task_limits()  # a Soniq app with a limited task alive in this process
    page = _render(alias)
    assert ('id="soniq-limits"' in page) == bool(limited)


def test_the_page_reloads_on_request(alias: str) -> None:
    assert '<meta http-equiv="refresh" content="30">' in _render(alias, "?refresh=30")


def test_an_invalid_reload_period_is_ignored(alias: str) -> None:
    assert 'http-equiv="refresh"' not in _render(alias, "?refresh=1")


def test_the_page_reads_the_soniq_database_only(alias: str) -> None:
    other = "sqlite" if alias == "default" else "default"
    _job(other, "elsewhere", "queued")
    _job(alias, "here", "queued")
    page = _render(alias)
    assert 'data-queue="here"' in page and 'data-queue="elsewhere"' not in page


def test_with_soniq_on_sqlite_no_soniq_table_is_read_on_default() -> None:
    """The dashboard's reads go to SONIQ['DATABASE']; only auth (the user) uses 'default'."""
    with CaptureQueriesContext(connection) as on_default:
        _render("sqlite")
    assert not [q["sql"] for q in on_default.captured_queries if "soniq_" in q["sql"]]
