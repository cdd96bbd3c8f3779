"""The schedules admin through Django's test client: timing and next fire times, pause, resume
and run now, from the action menu and from a schedule's buttons. Schedules are stored on
PostgreSQL and on SQLite."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from django.test import Client, override_settings
from django.urls import reverse

from soniq import Soniq
from soniq.models import Job, Schedule
from tests.admin.conftest import (
    Rows,
    action_post,
    change,
    changelist,
    flash_levels,
    flashes,
    html,
    offered_actions,
    soniq_on,
)
from tests.jobs import register_jobs

pytestmark = pytest.mark.django_db(databases=["default", "sqlite"])

SCHEDULES = changelist("schedule")


def fresh(schedule: Schedule, alias: str = "default") -> Schedule:
    return Schedule.objects.using(alias).get(pk=schedule.pk)


def jobs_of(task_name: str, alias: str = "default") -> list[Job]:
    return list(Job.objects.using(alias).filter(task_name=task_name))


# -- pages ------------------------------------------------------------------------------------


def test_the_list_shows_timing_status_and_next_fire(pg_rows: Rows, superuser: Client) -> None:
    # Next fires due now: a time of today is shown to the second (one of another day would
    # show its date, as Rows' default of "in 5 minutes" does a few minutes before midnight).
    today = datetime.now(UTC)
    cron = pg_rows.schedule(
        name="nightly-report", cron="0 3 * * *", timezone="Europe/Paris", next_fire_at=today
    )
    every = pg_rows.schedule(name="heartbeat", cron=None, interval_seconds=90.0, next_fire_at=today)
    paused = pg_rows.schedule(name="on-hold", status="paused", source="code")
    response = superuser.get(SCHEDULES)
    assert response.status_code == 200
    assert [s.pk for s in response.context["cl"].result_list] == [every.pk, cron.pk, paused.pk]
    page = html(response)
    assert "cron &#x27;0 3 * * *&#x27; (Europe/Paris)" in page
    assert '<td class="field-timing">every 90 s</td>' in page
    assert "soniq-status-active" in page and "soniq-status-paused" in page
    # A paused schedule has no next fire; the active ones show theirs to the second.
    next_fires = re.findall(r'<td class="field-next_fire">(.*?)</td>', page)
    assert next_fires[2] == "paused"
    assert all(re.search(r">\d\d:\d\d:\d\d</time>$", fire) for fire in next_fires[:2])
    # The zone is in the timing: no column of its own.
    assert "column-timezone" not in page
    assert "shop.jobs.remind" in page
    assert offered_actions(response) == ["pause", "resume", "run_now"]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"status__exact": "paused"}, {"on-hold"}),
        ({"source__exact": "code"}, {"on-hold"}),
        ({"q": "nightly"}, {"nightly-report"}),
        ({"q": "report"}, {"nightly-report", "other"}),
        ({"q": "shop.jobs.remind"}, {"nightly-report", "on-hold"}),
    ],
)
def test_filters_and_search(
    pg_rows: Rows, superuser: Client, query: dict[str, str], expected: set[str]
) -> None:
    pg_rows.schedule(name="nightly-report")
    pg_rows.schedule(name="on-hold", status="paused", source="code")
    pg_rows.schedule(name="other", task_name="shop.jobs.build_report", args={"name": "x"})
    response = superuser.get(SCHEDULES, query)
    assert {s.name for s in response.context["cl"].result_list} == expected


def test_a_schedules_page_shows_its_next_five_fire_times(pg_rows: Rows, superuser: Client) -> None:
    schedule = pg_rows.schedule(
        cron="0 * * * *",
        timezone="America/New_York",
        next_fire_at=datetime(2030, 1, 1, 12, 0, tzinfo=UTC),
        queue="reminders",
        priority=5,
    )
    response = superuser.get(change("schedule", schedule.pk))
    assert response.status_code == 200
    page = html(response)
    fires = re.findall(r'<li><time datetime="([^"]+)">([^<]+)</time></li>', page)
    assert [f[0] for f in fires] == [
        f"2030-01-01T{hour}:00:00+00:00" for hour in ("12", "13", "14", "15", "16")
    ]
    assert fires[0][1] == "2030-01-01 07:00:00 EST (12:00:00 UTC)"
    # The next fire too, in the schedule's zone and to the second.
    assert '<div class="readonly"><time datetime="2030-01-01T12:00:00+00:00">' in page
    assert "&quot;customer_email&quot;: &quot;a@example.com&quot;" in page
    assert "reminders" in page


def test_a_paused_schedules_page_says_when_it_would_start_again(
    pg_rows: Rows, superuser: Client
) -> None:
    schedule = pg_rows.schedule(status="paused", last_fired_at=None)
    response = superuser.get(change("schedule", schedule.pk))
    page = html(response)
    assert "paused: resuming starts from the next slot after that moment" in page
    assert schedule.next_fire_at is not None
    assert schedule.next_fire_at.isoformat() not in page  # no next fire while paused
    fields = readonly_fields(page)
    assert fields["next_fire_at"] == "paused"
    assert fields["last_fired_at"] == "-"


def readonly_fields(page: str) -> dict[str, str]:
    """What each read-only field of an object's page shows, by field name."""
    found = re.findall(
        r'<div class="[^"]*field-(\w+)[^"]*">.*?<div class="readonly">(.*?)</div>', page, re.S
    )
    return {name: value.strip() for name, value in found}


@pytest.mark.parametrize(
    ("zone", "seconds", "timing", "shown"),
    [
        ("UTC", 10.0, "every 10 s", "2030-01-01 12:00:07 UTC"),
        ("Europe/Paris", 300.0, "every 5 min", "2030-01-01 13:00:07 CET (12:00:07 UTC)"),
        ("Asia/Tokyo", 2.5, "every 2.5 s", "2030-01-01 21:00:07 JST (12:00:07 UTC)"),
        ("America/New_York", 7200.0, "every 2 h", "2030-01-01 07:00:07 EST (12:00:07 UTC)"),
    ],
)
def test_a_schedules_page_shows_fire_times_in_its_zone_and_utc_only_when_it_differs(
    pg_rows: Rows, superuser: Client, zone: str, seconds: float, timing: str, shown: str
) -> None:
    at = datetime(2030, 1, 1, 12, 0, 7, tzinfo=UTC)
    schedule = pg_rows.schedule(
        cron=None,
        interval_seconds=seconds,
        timezone=zone,
        last_fired_at=at,
        next_fire_at=at + timedelta(seconds=seconds),
    )
    fields = readonly_fields(html(superuser.get(change("schedule", schedule.pk))))
    assert fields["timing"] == timing
    assert re.sub(r"<[^>]+>", "", fields["last_fired_at"]) == shown
    next_fire = strip(fields["next_fire_at"])
    assert next_fire.endswith(" UTC)") if zone != "UTC" else "(" not in next_fire
    # Other times: the current time zone, to the second.
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", strip(fields["created_at"]))


def strip(markup: str) -> str:
    return re.sub(r"<[^>]+>", "", markup)


# -- pause and resume -------------------------------------------------------------------------


def test_pause_and_resume_from_the_action_menu(pg_rows: Rows, superuser: Client) -> None:
    schedule = pg_rows.schedule(next_fire_at=datetime.now(UTC) - timedelta(hours=3))
    other = pg_rows.schedule()
    response = superuser.post(SCHEDULES, action_post("pause", schedule.pk))
    assert response.status_code == 302
    assert flash_levels(response) == [("success", "Paused 1 schedule.")]
    assert fresh(schedule).status == "paused"
    assert fresh(other).status == "active"

    resumed = superuser.post(SCHEDULES, action_post("resume", schedule.pk))
    assert flashes(resumed)[-1] == "Resumed 1 schedule."
    after = fresh(schedule)
    assert after.status == "active"
    # From now on: the slots missed while paused are skipped.
    now = datetime.now(UTC)
    assert after.next_fire_at is not None
    assert now < after.next_fire_at <= now + timedelta(minutes=5)


def test_pause_every_schedule_selected(pg_rows: Rows, superuser: Client) -> None:
    schedules = [pg_rows.schedule() for _ in range(3)]
    response = superuser.post(SCHEDULES, action_post("pause", schedules[0].pk, select_across=True))
    assert flashes(response) == ["Paused 3 schedules."]
    assert {fresh(s).status for s in schedules} == {"paused"}


def test_pause_resume_and_run_one_from_its_page(pg_rows: Rows, superuser: Client) -> None:
    schedule = pg_rows.schedule()
    page = change("schedule", schedule.pk)

    response = superuser.post(reverse("admin:soniq_schedule_pause", args=[schedule.pk]))
    assert response.status_code == 302
    assert response["Location"] == page
    assert flashes(response) == ["Paused 1 schedule."]
    assert fresh(schedule).status == "paused"

    response = superuser.post(reverse("admin:soniq_schedule_resume", args=[schedule.pk]))
    assert response["Location"] == page
    assert flashes(response)[-1] == "Resumed 1 schedule."
    assert fresh(schedule).status == "active"

    response = superuser.post(reverse("admin:soniq_schedule_run", args=[schedule.pk]))
    assert response["Location"] == page
    assert flashes(response)[-1] == "Enqueued a job for 1 schedule."
    assert len(jobs_of("shop.jobs.remind")) == 1


def test_the_buttons_follow_the_schedules_status(pg_rows: Rows, superuser: Client) -> None:
    active = pg_rows.schedule()
    paused = pg_rows.schedule(status="paused")
    for schedule, verb in ((active, "pause"), (paused, "resume")):
        response = superuser.get(change("schedule", schedule.pk))
        assert response.context["soniq_buttons"] == [
            {
                "url": reverse(f"admin:soniq_schedule_{verb}", args=[schedule.pk]),
                "label": verb.capitalize(),
            },
            {"url": reverse("admin:soniq_schedule_run", args=[schedule.pk]), "label": "Run now"},
        ]
        for button in response.context["soniq_buttons"]:
            assert f'action="{button["url"]}"' in html(response)


def test_the_per_schedule_urls_take_only_post(pg_rows: Rows, superuser: Client) -> None:
    schedule = pg_rows.schedule()
    for verb in ("pause", "resume", "run"):
        url = reverse(f"admin:soniq_schedule_{verb}", args=[schedule.pk])
        assert superuser.get(url).status_code == 405
        for unknown in (999_999, "not-a-number"):
            missing = reverse(f"admin:soniq_schedule_{verb}", args=[unknown])
            assert superuser.post(missing).status_code == 404
    assert fresh(schedule).status == "active"
    assert not Job.objects.exists()


# -- run now ----------------------------------------------------------------------------------


def test_run_now_enqueues_one_job_with_the_schedules_args(pg_rows: Rows, superuser: Client) -> None:
    next_fire = datetime.now(UTC) + timedelta(minutes=5)
    schedule = pg_rows.schedule(
        args={"customer_email": "z@example.com"}, priority=7, next_fire_at=next_fire
    )
    response = superuser.post(SCHEDULES, action_post("run_now", schedule.pk))
    assert flash_levels(response) == [("success", "Enqueued a job for 1 schedule.")]
    [job] = jobs_of("shop.jobs.remind")
    assert job.status == "queued"
    assert job.args == {"customer_email": "z@example.com"}
    assert job.queue == "reminders"  # the job's own queue (the schedule names none)
    assert job.priority == 7
    assert job.scheduled_at <= datetime.now(UTC)
    # Outside its timing: the next slot still fires as planned.
    after = fresh(schedule)
    assert after.next_fire_at == next_fire and after.last_fired_at is None


def test_run_now_of_several_and_of_a_paused_one(pg_rows: Rows, superuser: Client) -> None:
    active = pg_rows.schedule()
    paused = pg_rows.schedule(status="paused", args={"customer_email": "p@example.com"})
    response = superuser.post(SCHEDULES, action_post("run_now", active.pk, paused.pk))
    assert flashes(response) == ["Enqueued a job for 2 schedules."]
    assert len(jobs_of("shop.jobs.remind")) == 2
    assert fresh(paused).status == "paused"


def test_run_now_with_arguments_the_job_refuses_explains_why(
    pg_rows: Rows, superuser: Client
) -> None:
    broken = pg_rows.schedule(name="broken", args={"no_such_argument": 1})
    fine = pg_rows.schedule(name="fine")
    response = superuser.post(SCHEDULES, action_post("run_now", broken.pk, fine.pk))
    assert response.status_code == 302
    levels = flash_levels(response)
    assert levels[0] == ("success", "Enqueued a job for 1 schedule.")
    [(level, message)] = levels[1:]
    assert level == "error"
    assert message.startswith("broken: ")
    assert "no_such_argument" in message
    assert len(jobs_of("shop.jobs.remind")) == 1


def test_run_now_without_one_app_to_build_the_job_says_so(pg_rows: Rows, superuser: Client) -> None:
    schedule = pg_rows.schedule()
    # No SONIQ["APP"], and a second app with jobs besides the testproject's: which one builds
    # the job is ambiguous.
    second = register_jobs(Soniq())
    with override_settings(SONIQ={"DATABASE": "default"}):
        response = superuser.post(SCHEDULES, action_post("run_now", schedule.pk))
    assert response.status_code == 302
    [(level, message)] = flash_levels(response)
    assert level == "error"
    assert message.startswith("Nothing done: ")
    assert "Soniq apps have jobs registered; pick one" in message
    assert not Job.objects.exists()
    assert second.app.registry.names()


def test_pause_and_resume_need_no_app(pg_rows: Rows, superuser: Client) -> None:
    schedule = pg_rows.schedule()
    second = register_jobs(Soniq())  # two apps with jobs: none could be chosen to build jobs
    with override_settings(SONIQ={"DATABASE": "default"}):
        superuser.post(SCHEDULES, action_post("pause", schedule.pk))
        assert Schedule.objects.get(pk=schedule.pk).status == "paused"
        superuser.post(SCHEDULES, action_post("resume", schedule.pk))
        assert Schedule.objects.get(pk=schedule.pk).status == "active"
    assert second.app.registry.names()


# -- on SQLite: the same actions, on Django's SQLite connection ------------------------------


@pytest.fixture
def sqlite_schedule() -> Schedule:
    with soniq_on("sqlite"):
        return Rows("sqlite").schedule(name="on-sqlite")


def test_on_sqlite_the_actions_pause_resume_and_run(
    sqlite_schedule: Schedule, superuser: Client
) -> None:
    with soniq_on("sqlite"):
        assert superuser.get(SCHEDULES).status_code == 200
        assert superuser.get(change("schedule", sqlite_schedule.pk)).status_code == 200
        superuser.post(SCHEDULES, action_post("pause", sqlite_schedule.pk))
        assert fresh(sqlite_schedule, "sqlite").status == "paused"
        superuser.post(SCHEDULES, action_post("resume", sqlite_schedule.pk))
        assert fresh(sqlite_schedule, "sqlite").status == "active"
        response = superuser.post(SCHEDULES, action_post("run_now", sqlite_schedule.pk))
    assert response.status_code == 302
    assert all(level != "error" for level, _ in flash_levels(response))
    assert Job.objects.using("sqlite").count() == 1


@pytest.mark.parametrize(("verb", "status", "jobs"), [("pause", "paused", 0), ("run", "active", 1)])
def test_on_sqlite_the_buttons_work(
    sqlite_schedule: Schedule, superuser: Client, verb: str, status: str, jobs: int
) -> None:
    with soniq_on("sqlite"):
        url = reverse(f"admin:soniq_schedule_{verb}", args=[sqlite_schedule.pk])
        response = superuser.post(url)
    assert response.status_code == 302
    assert response["Location"] == change("schedule", sqlite_schedule.pk)
    assert all(level != "error" for level, _ in flash_levels(response))
    assert fresh(sqlite_schedule, "sqlite").status == status
    assert Job.objects.using("sqlite").count() == jobs
