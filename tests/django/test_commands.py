"""``manage.py soniq status`` and ``healthcheck``, on PostgreSQL and SQLite, text and JSON.

The standalone ``soniq`` runs the same commands: tests/acceptance/test_soniq_commands.py.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.conf import settings
from django.core.management import call_command
from django.test import override_settings

from soniq.admin.display import MASK
from soniq.models import Job
from tests.rows import Rows

pytestmark = pytest.mark.django_db(databases=["default", "sqlite"])


@pytest.fixture(params=["default", "sqlite"], ids=["postgres", "sqlite"])
def rows(request: pytest.FixtureRequest) -> Iterator[Rows]:
    alias = str(request.param)
    with override_settings(SONIQ={**settings.SONIQ, "DATABASE": alias}):
        yield Rows(alias)


def soniq(*args: str) -> tuple[int, str]:
    """``manage.py soniq ARGS``: its exit status and what it printed."""
    out = io.StringIO()
    try:
        call_command("soniq", *args, stdout=out)
    except SystemExit as exit_:
        return int(exit_.code or 0), out.getvalue()
    return 0, out.getvalue()


def busy(rows: Rows) -> dict[str, Any]:
    """A busy moment: due and scheduled jobs, running ones, done and failed in the hour."""
    now = datetime.now(UTC)
    alive = rows.worker(hostname="web-1", queues=["default"], task_names=["a", "b"])
    rows.worker(hostname="web-2", heartbeat_age=3600)  # stale
    rows.job(scheduled_at=now - timedelta(minutes=5))
    rows.job(scheduled_at=now - timedelta(seconds=30))
    rows.scheduled()
    rows.running(alive)
    rows.running(alive, started_at=None)  # claimed ahead, not started yet
    rows.job(status="done", finished_at=now - timedelta(minutes=10), attempts=1)
    rows.job(status="done", finished_at=now - timedelta(hours=3), attempts=1)  # not this hour
    rows.job(queue="emails", scheduled_at=now + timedelta(minutes=1))
    rows.dead_letter(queue="emails", dead_lettered_at=now - timedelta(minutes=1))
    rows.dead_letter(queue="emails", dead_lettered_at=now - timedelta(days=1))
    rows.schedule(name="digest", status="paused")
    return {"alive": alive}


def test_status_json_counts_each_queue_from_the_database(rows: Rows) -> None:
    made = busy(rows)
    now = datetime.now(UTC)
    code, text = soniq("status", "--json")
    assert code == 0
    data = json.loads(text)
    queues = {q["queue"]: q for q in data["queues"]}
    default = queues["default"]
    assert (default["due"], default["scheduled"], default["processing"]) == (2, 1, 2)
    assert (default["done_last_hour"], default["failed_last_hour"], default["dead_letters"]) == (
        1,
        0,
        0,
    )
    assert 299 <= default["oldest_due_age_seconds"] < 400
    emails = queues["emails"]
    assert (emails["due"], emails["scheduled"], emails["failed_last_hour"]) == (0, 1, 1)
    assert emails["dead_letters"] == 2 and emails["oldest_due_age_seconds"] is None
    workers = {w["hostname"]: w for w in data["workers"]}
    assert workers["web-1"]["state"] == "alive" and workers["web-1"]["running"] == 1
    assert workers["web-1"]["held"] == 2
    assert workers["web-1"]["id"] == str(made["alive"].id)
    assert workers["web-1"]["queues"] == ["default"] and workers["web-1"]["tasks"] == ["a", "b"]
    assert workers["web-2"]["state"] == "stale" and workers["web-2"]["queues"] is None
    [schedule] = data["schedules"]
    assert (schedule["name"], schedule["task"], schedule["paused"]) == (
        "digest",
        "shop.jobs.remind",
        True,
    )
    next_fire = datetime.fromisoformat(schedule["next_fire_at"])
    assert timedelta(minutes=4) < next_fire - now < timedelta(minutes=6)  # rows: in 5 minutes


def test_status_text_is_an_aligned_table(rows: Rows) -> None:
    made = busy(rows)
    code, text = soniq("status")
    assert code == 0
    lines = text.splitlines()
    header = next(line for line in lines if line.startswith("QUEUE"))
    default = next(line for line in lines if line.startswith("default"))
    assert header.split() == [
        "QUEUE",
        "DUE",
        "SCHEDULED",
        "PROCESSING",
        "DONE",
        "1H",
        "FAILED",
        "1H",
        "DEAD",
        "OLDEST",
        "DUE",
    ]
    # Numbers right-aligned under their headers.
    assert default.index(" 2  ") > 0 and len(default.split()) >= 8
    assert default.split()[1:7] == ["2", "1", "2", "1", "0", "0"]
    assert "min" in default  # the oldest due job's age, "5 min 0 s"
    assert "Workers: 1 alive, 0 stopping, 1 stale" in text
    worker_line = next(line for line in lines if "web-1" in line)
    assert "alive" in worker_line and "default" in worker_line
    worker_header = next(line for line in lines if line.startswith("ID"))
    assert worker_header.split()[6:9] == ["RUNNING", "SLOTS", "HELD"]
    assert worker_line.split()[6:9] == ["1", str(made["alive"].concurrency), "2"]
    assert "Schedules: 1" in text and any(line.startswith("digest") for line in lines)


def test_status_of_an_empty_database(rows: Rows) -> None:
    code, text = soniq("status")
    assert code == 0
    assert "no jobs" in text and "Workers: 0 alive" in text
    code, text = soniq("status", "--json")
    assert json.loads(text)["queues"] == []


def test_status_shows_each_limit_and_how_full_it_is(rows: Rows) -> None:
    """A task's limits (from its @app.job) and a queue's (QUEUE_LIMITS): the jobs processing
    against each, and the starts recorded within the rate's window."""
    from soniq import Soniq
    from soniq.models import LimitStart

    app = Soniq()

    @app.job(name="status.capped", concurrency_limit=3, rate_limit="20/m")
    def capped() -> None: ...

    @app.job(name="status.rated", rate_limit="5/h")
    def rated() -> None: ...

    now = datetime.now(UTC)
    alive = rows.worker()
    rows.running(alive, task_name="status.capped")
    rows.running(alive, task_name="status.capped", started_at=None)  # claimed: it counts
    rows.running(alive, task_name="tests.send_email", queue="partner")
    rows.job(task_name="status.capped")  # queued: not running
    rows.job(task_name="status.capped", status="done", finished_at=now)
    starts = LimitStart.objects.using(rows.alias)
    for key, seconds_ago, count in [
        ("task:status.capped", 10, 10),
        ("task:status.capped", 30, 4),
        ("task:status.capped", 120, 7),  # out of the minute
        ("queue:partner", 5, 3),
        ("queue:other", 5, 8),  # not a limit
    ]:
        starts.create(key=key, started_at=now - timedelta(seconds=seconds_ago), count=count)
    limits = {"partner": {"concurrency": 5, "rate": "10/s"}}

    with override_settings(SONIQ={**settings.SONIQ, "QUEUE_LIMITS": limits}):
        code, text = soniq("status", "--json")
        assert code == 0
        shown = {(row["kind"], row["name"]): row for row in json.loads(text)["limits"]}
        code, text = soniq("status")
        assert code == 0
    assert shown[("task", "status.capped")] == {
        "kind": "task",
        "name": "status.capped",
        "concurrency_limit": 3,
        "running": 2,
        "rate_limit": "20/m",
        "rate_count": 20,
        "window_seconds": 60.0,
        "started": 14,
    }
    rated_row = shown[("task", "status.rated")]
    assert (rated_row["concurrency_limit"], rated_row["running"]) == (None, 0)
    assert (rated_row["rate_limit"], rated_row["window_seconds"], rated_row["started"]) == (
        "5/h",
        3600.0,
        0,
    )
    partner = shown[("queue", "partner")]
    assert (partner["concurrency_limit"], partner["running"]) == (5, 1)
    assert (partner["rate_limit"], partner["started"]) == ("10/s", 0)  # 5 s ago: out of 1 s
    # Tasks first, then queues, each by name.
    assert [key for key in shown if key[0] == "queue"] == [("queue", "partner")]

    lines = text.splitlines()
    assert re.search(r"^Limits: \d+$", text, flags=re.MULTILINE)
    header = next(line for line in lines if line.startswith("KIND"))
    assert header.split() == ["KIND", "NAME", "RUNNING", "RATE", "STARTED"]
    capped_line = next(line for line in lines if "status.capped" in line)
    assert capped_line.split()[:4] == ["task", "status.capped", "2/3", "20/m"]
    assert capped_line.endswith("  14 in the last 1 min")
    rated_line = next(line for line in lines if "status.rated" in line)
    assert rated_line.split()[:4] == ["task", "status.rated", "0", "5/h"]
    assert rated_line.endswith("  0 in the last 1 h")
    partner_line = next(line for line in lines if line.startswith("queue"))
    assert partner_line.split()[:4] == ["queue", "partner", "1/5", "10/s"]
    assert partner_line.endswith("  0 in the last 1 s")
    # The section sits between the workers and the schedules.
    assert text.index("Workers:") < text.index("Limits:") < text.index("Schedules:")


def test_status_without_limits_says_so(rows: Rows) -> None:
    with override_settings(SONIQ={**settings.SONIQ, "QUEUE_LIMITS": {}}):
        data = json.loads(soniq("status", "--json")[1])
        code, text = soniq("status")
    assert code == 0
    assert not [row for row in data["limits"] if row["kind"] == "queue"]
    if not data["limits"]:  # no Soniq app with a limited task alive in this process
        assert "\nLimits: 0\n" in text and "KIND" not in text


def test_healthcheck_healthy(rows: Rows) -> None:
    now = datetime.now(UTC)
    rows.worker(queues=["default"])
    rows.job(scheduled_at=now - timedelta(seconds=2))
    code, text = soniq("healthcheck", "--worker", "--queue", "default", "--max-latency", "60")
    assert code == 0, text
    lines = text.splitlines()
    assert [line.split()[:2] for line in lines] == [
        ["ok", "database"],
        ["ok", "migrations"],
        ["ok", "worker"],
        ["ok", "latency"],
    ]
    assert "1 live worker(s) serve queue default" in lines[2]
    assert re.search(r"the oldest due job in queue default has waited \d+ s$", lines[3])


def test_healthcheck_unhealthy(rows: Rows) -> None:
    now = datetime.now(UTC)
    rows.worker(queues=["emails"])  # alive, but not on this queue
    rows.worker(heartbeat_age=3600)  # every queue, but presumed dead
    rows.job(scheduled_at=now - timedelta(minutes=10))
    code, text = soniq("healthcheck", "--worker", "--queue", "default", "--max-latency", "60")
    assert code == 1
    lines = text.splitlines()
    assert lines[2].startswith("FAIL  worker") and "no live worker serves queue default" in text
    assert lines[3].startswith("FAIL  latency") and "the limit is 60 s" in lines[3]
    # Without the options only the database and the migrations are checked.
    assert soniq("healthcheck")[0] == 0


def test_healthcheck_without_migrations_skips_what_needs_the_tables(rows: Rows) -> None:
    from django.db.migrations.recorder import MigrationRecorder

    recorder = MigrationRecorder.Migration.objects.using(rows.alias)
    recorder.filter(app="soniq", name="0007_errors_dropped").delete()
    code, text = soniq("healthcheck", "--worker")
    assert code == 1
    assert "FAIL  migrations  not applied: 0007_errors_dropped" in text
    assert "skip  worker" in text


def test_bad_healthcheck_options_are_refused() -> None:
    from django.core.management.base import CommandError

    for args in (["--max-latency", "0"], ["--max-latency", "soon"], ["--queue", "no spaces"]):
        with pytest.raises((CommandError, SystemExit)):
            call_command("soniq", "healthcheck", *args, stdout=io.StringIO(), stderr=io.StringIO())


# -- jobs ---------------------------------------------------------------------------------------


def test_jobs_list_newest_first_with_filters(rows: Rows) -> None:
    now = datetime.now(UTC)
    old = rows.job(created_at=now - timedelta(minutes=5), task_name="tests.old")
    new = rows.job(created_at=now, queue="emails", status="done", finished_at=now)
    code, text = soniq("jobs", "list", "--json")
    assert code == 0
    assert [row["id"] for row in json.loads(text)] == [str(new.pk), str(old.pk)]
    assert json.loads(soniq("jobs", "list", "--json", "--queue", "emails")[1])[0]["status"] == (
        "done"
    )
    assert [
        r["id"] for r in json.loads(soniq("jobs", "list", "--json", "--status", "queued")[1])
    ] == [str(old.pk)]
    assert len(json.loads(soniq("jobs", "list", "--json", "--limit", "1")[1])) == 1
    assert json.loads(soniq("jobs", "list", "--json", "--task", "tests.old")[1])[0]["id"] == str(
        old.pk
    )
    code, text = soniq("jobs", "list")
    lines = text.splitlines()
    assert lines[0].split()[:3] == ["ID", "TASK", "STATUS"]
    assert lines[1].startswith(str(new.pk)) and "0/4" in lines[2]
    assert soniq("jobs", "list", "--task", "nothing")[1] == "no jobs match\n"


def test_jobs_show_masks_as_the_admin_does(rows: Rows) -> None:
    job = rows.job(
        args={"to": "a@example.com", "password": "hunter2"},
        attempts=2,
        errors=[
            {
                "attempt": 1,
                "error_type": "builtins.ValueError",
                "message": "login with hunter2 failed\x1b[31m",
                "traceback": "Traceback (most recent call last):\nValueError: hunter2",
                "failed_at": "2026-12-05T10:00:00+00:00",
                "worker_id": "w-1",
            }
        ],
    )
    code, text = soniq("jobs", "show", str(job.pk))
    assert code == 0
    assert "hunter2" not in text and "\x1b" not in text
    assert '"password": "********"' in text
    assert "attempt 1: builtins.ValueError: login with ******** failed\\x1b[31m" in text
    assert "  ValueError: ********" in text
    data = json.loads(soniq("jobs", "show", str(job.pk), "--json")[1])
    assert data["args"] == {"to": "a@example.com", "password": "********"}
    assert data["errors"][0]["message"] == "login with ******** failed\x1b[31m"
    code, text = soniq("jobs", "show", "00000000-0000-4000-8000-000000000000")
    assert code == 1 and "no job has id" in text


def test_jobs_retry_and_cancel_report_what_they_refused(rows: Rows) -> None:
    queued = rows.job()
    done = rows.job(status="done", finished_at=datetime.now(UTC))
    code, text = soniq("jobs", "cancel", str(queued.pk), str(done.pk))
    assert code == 0
    assert f"cancelled: {queued.pk}" in text
    assert f"refused: {done.pk}: " in text
    code, text = soniq("jobs", "retry", str(queued.pk), "--json")
    assert code == 0 and json.loads(text) == {"applied": [str(queued.pk)], "refused": {}}
    code, text = soniq("jobs", "cancel", str(done.pk))
    assert code == 1  # nothing could be done


def test_jobs_cancel_abort_asks_the_worker_to_stop_running_jobs(rows: Rows) -> None:
    running = rows.running(rows.worker())
    done = rows.job(status="done", finished_at=datetime.now(UTC))
    code, text = soniq("jobs", "cancel", str(running.pk))
    assert code == 1 and "only queued jobs can be cancelled" in text
    code, text = soniq("jobs", "cancel", "--abort", str(running.pk), str(done.pk))
    assert code == 0
    assert f"cancelled or aborting: {running.pk}" in text
    assert f"refused: {done.pk}: it already finished successfully" in text
    after = Job.objects.using(rows.alias).get(pk=running.pk)
    assert after.status == "processing" and after.abort_requested_at is not None
    assert (after.abort_requested_by or "").startswith("cli:")
    assert "@" in (after.abort_requested_by or "")


# -- dead letters ---------------------------------------------------------------------------------


def test_dead_letters_list_show_export_requeue_delete(rows: Rows) -> None:
    now = datetime.now(UTC)
    first = rows.dead_letter(dead_lettered_at=now - timedelta(minutes=2), args={"token": "s3"})
    second = rows.dead_letter(queue="emails", reason="worker_lost", dead_lettered_at=now)
    listed = json.loads(soniq("dead-letters", "list", "--json")[1])
    assert [row["id"] for row in listed] == [str(second.pk), str(first.pk)]
    only = json.loads(soniq("dead-letters", "list", "--json", "--reason", "worker_lost")[1])
    assert [row["id"] for row in only] == [str(second.pk)]
    code, text = soniq("dead-letters", "show", str(first.pk))
    assert code == 0 and "reason:    max_attempts" in text and "s3" not in text

    code, text = soniq("dead-letters", "export", "--all")
    assert code == 0
    exported = [json.loads(line) for line in text.splitlines()]
    assert [entry["id"] for entry in exported] == [str(first.pk), str(second.pk)]  # oldest first
    assert exported[0]["args"] == {"token": "********"}
    assert exported[0]["dead_letter_reason"] == "max_attempts"

    code, text = soniq("dead-letters", "requeue", "--all", "--queue", "default")
    assert code == 0 and text == f"requeued: {first.pk}\n"
    code, text = soniq("dead-letters", "delete", str(second.pk), "--json")
    assert code == 0 and json.loads(text) == {"applied": [str(second.pk)], "refused": {}}
    assert soniq("dead-letters", "list")[1] == "no dead letters match\n"
    assert soniq("dead-letters", "requeue", str(first.pk))[0] == 1  # it is a job again


def test_dead_letter_actions_need_ids_or_all(rows: Rows) -> None:
    from django.core.management.base import CommandError

    dead = rows.dead_letter()
    for args in ([], ["--all", str(dead.pk)], [str(dead.pk), "--queue", "default"]):
        with pytest.raises(CommandError, match="give ids, or --all"):
            call_command("soniq", "dead-letters", "requeue", *args, stdout=io.StringIO())
    with pytest.raises(CommandError, match="not a job id"):
        call_command("soniq", "jobs", "retry", "nope", stdout=io.StringIO())


# -- schedules ------------------------------------------------------------------------------------


def test_schedules_list_pause_resume_and_run_now(rows: Rows) -> None:
    rows.schedule(name="digest", cron="0 7 * * *", args={"customer_email": "a@example.com"})
    listed = json.loads(soniq("schedules", "list", "--json")[1])
    assert [(s["name"], s["task"], s["paused"]) for s in listed] == [
        ("digest", "shop.jobs.remind", False)
    ]
    assert listed[0]["timing"] == "cron '0 7 * * *' (UTC)"
    code, text = soniq("schedules", "pause", "digest", "nope")
    assert code == 0
    assert text == "paused: digest\nrefused: nope: no schedule named 'nope'\n"
    assert json.loads(soniq("schedules", "list", "--json")[1])[0]["paused"] is True
    assert soniq("schedules", "list")[1].splitlines()[1].split()[:2] == [
        "digest",
        "shop.jobs.remind",
    ]
    assert soniq("schedules", "resume", "digest")[0] == 0
    assert json.loads(soniq("schedules", "list", "--json")[1])[0]["paused"] is False

    code, text = soniq("schedules", "run-now", "digest", "--json")
    assert code == 0
    job_id = json.loads(text)["applied"]["digest"]
    code, text = soniq("jobs", "show", job_id, "--json")
    shown = json.loads(text)
    assert (shown["task"], shown["status"]) == ("shop.jobs.remind", "queued")
    assert shown["args"] == {"customer_email": "a@example.com"}
    assert soniq("schedules", "run-now", "nope")[0] == 1


# -- prune ---------------------------------------------------------------------------------------


@pytest.mark.django_db(databases=["default", "sqlite"], transaction=True)
def test_prune_applies_the_retention_now(rows: Rows) -> None:
    now = datetime.now(UTC)
    old = rows.job(status="done", finished_at=now - timedelta(days=2), attempts=1)
    recent = rows.job(status="done", finished_at=now - timedelta(hours=1), attempts=1)
    queued = rows.job(created_at=now - timedelta(days=3))
    dead = rows.dead_letter(dead_lettered_at=now - timedelta(days=30))
    code, text = soniq("prune")
    assert code == 0 and text == "deleted 1 finished job(s) older than 86400 s\n"
    from soniq.models import DeadLetterJob, Job

    left = set(Job.objects.using(rows.alias).values_list("pk", flat=True))
    assert left == {recent.pk, queued.pk} and old.pk not in left
    assert DeadLetterJob.objects.using(rows.alias).filter(pk=dead.pk).exists()
    assert json.loads(soniq("prune", "--json")[1]) == {
        "deleted_jobs": 0,
        "retention_seconds": 86400.0,
    }


def test_show_hides_a_dedup_key_beside_masked_values_as_the_admin_does(rows: Rows) -> None:
    hashed = rows.job(args={"password": "hunter2"}, dedup_key="sha256:abc123")
    plain = rows.job(args={"to": "a@example.com"}, dedup_key="order:7")
    shown = json.loads(soniq("jobs", "show", str(hashed.pk), "--json")[1])
    assert shown["dedup_key"] == "set (hidden: the arguments hold masked values)"
    assert json.loads(soniq("jobs", "show", str(plain.pk), "--json")[1])["dedup_key"] == "order:7"
    with override_settings(
        SONIQ={**settings.SONIQ, "DATABASE": rows.alias, "ADMIN_HIDE_DEDUP_KEYS": True}
    ):
        assert json.loads(soniq("jobs", "show", str(plain.pk), "--json")[1])["dedup_key"] is None


def test_show_prints_the_lock_redacted(rows: Rows) -> None:
    job = rows.job(args={"api_key": "k_7f7f7f7f"}, lock="partner:k_7f7f7f7f")
    shown = json.loads(soniq("jobs", "show", str(job.pk), "--json")[1])
    assert shown["lock"] == f"partner:{MASK}"
    assert "lock:      partner:" in soniq("jobs", "show", str(job.pk))[1]


def test_job_data_cannot_drive_the_terminal(rows: Rows) -> None:
    job = rows.job(args={"note": "a\x9b31mred\u202eevil\x7f"}, task_name="tests.send_email")
    code, text = soniq("jobs", "show", str(job.pk))
    assert code == 0
    assert all(char.isprintable() or char == "\n" for char in text)
    assert "\\u009b31mred\\u202eevil\\u007f" in text


def test_export_reports_what_it_could_not_export(
    rows: Rows, capsys: pytest.CaptureFixture[str]
) -> None:
    dead = rows.dead_letter()
    job = rows.job()
    code, text = soniq("dead-letters", "export", str(dead.pk), str(job.pk))
    assert code == 0 and json.loads(text)["id"] == str(dead.pk)
    assert f"refused: {job.pk}: not a dead letter (it is queued)" in capsys.readouterr().err
    code, text = soniq("dead-letters", "export", "--all", "--queue", "none")
    assert code == 1 and text == ""
    assert "nothing matched" in capsys.readouterr().err


@pytest.mark.django_db(databases=["default", "sqlite"])
def test_schedules_with_debug_on_sqlite() -> None:
    """DEBUG makes Django format every query for its log: SQLite's statements survive it."""
    rows = Rows("sqlite")
    rows.schedule(name="nightly")
    with override_settings(SONIQ={**settings.SONIQ, "DATABASE": "sqlite"}, DEBUG=True):
        code, text = soniq("schedules", "pause", "nightly")
        assert code == 0, text
        assert json.loads(soniq("schedules", "list", "--json")[1])[0]["paused"] is True


def test_status_and_healthcheck_without_use_tz(rows: Rows) -> None:
    """USE_TZ = False (soniq.W002 warns of it) with a TIME_ZONE far from UTC: Django reads
    naive local times, and the ages must still be right."""
    from django.utils import timezone

    with override_settings(USE_TZ=False, TIME_ZONE="America/New_York"):
        local_now = timezone.now()  # naive, New York time
        rows.worker(last_heartbeat_at=local_now, started_at=local_now)
        rows.job(scheduled_at=local_now - timedelta(minutes=2), created_at=local_now)
        data = json.loads(soniq("status", "--json")[1])
        [queue] = data["queues"]
        assert 100 <= queue["oldest_due_age_seconds"] < 300
        assert [w["state"] for w in data["workers"]] == ["alive"]
        code, text = soniq("healthcheck", "--worker", "--max-latency", "600")
        assert code == 0, text
