"""Transactional enqueue on Django's connection, checked from a second connection."""

from __future__ import annotations

import warnings

import psycopg
import pytest
from django.db import transaction

from soniq import Soniq, TransactionWarning
from tests.helpers import committed_job_count, conninfo
from tests.jobs import JobSet, register_jobs

pytestmark = pytest.mark.django_db(databases=["default", "sqlite"], transaction=True)


def test_commit_makes_the_job_visible_elsewhere(jobs: JobSet, alias: str) -> None:
    with transaction.atomic(using=alias):
        job_id = jobs.send_email.enqueue(to="a", subject="s")
        # Not committed yet: another connection cannot see it.
        assert committed_job_count(alias, "task_name = %s", ("tests.send_email",)) == 0
    key = job_id if alias == "default" else job_id.replace("-", "")
    assert committed_job_count(alias, "id = %s", (key,)) == 1


def test_rollback_leaves_no_job(jobs: JobSet, alias: str) -> None:
    class Abort(Exception):
        pass

    with pytest.raises(Abort), transaction.atomic(using=alias):
        jobs.send_email.enqueue(to="a", subject="s")
        jobs.app.enqueue_many_sync(jobs.send_email, [{"to": "b", "subject": "s"}] * 3)
        raise Abort
    assert committed_job_count(alias) == 0


def test_rollback_of_a_savepoint_drops_only_its_jobs(jobs: JobSet, alias: str) -> None:
    with transaction.atomic(using=alias):
        kept = jobs.send_email.enqueue(to="kept", subject="s")
        try:
            with transaction.atomic(using=alias):
                jobs.send_email.enqueue(to="dropped", subject="s")
                raise RuntimeError
        except RuntimeError:
            pass
    rows = [jobs.app.get_job_sync(kept)]
    assert rows[0] is not None
    assert committed_job_count(alias) == 1


def test_duplicate_does_not_abort_the_callers_transaction(jobs: JobSet, alias: str) -> None:
    with transaction.atomic(using=alias):
        first = jobs.refresh_cache.enqueue(key="k")
        second = jobs.refresh_cache.enqueue(key="k")
        # The transaction is still usable after the conflict.
        third = jobs.send_email.enqueue(to="a", subject="s")
    assert first == second != third
    assert committed_job_count(alias) == 2


def test_notification_is_delivered_at_commit_only() -> None:
    jobs = register_jobs(Soniq(database="default"))
    with psycopg.connect(conninfo("default"), autocommit=True) as listener:
        listener.execute("LISTEN soniq_new_job")
        with pytest.raises(RuntimeError), transaction.atomic():
            jobs.send_email.using(queue="rolledback").enqueue(to="a", subject="s")
            raise RuntimeError
        with transaction.atomic():
            jobs.send_email.using(queue="committed").enqueue(to="a", subject="s")
            jobs.app.enqueue_many_sync(
                jobs.send_email, [{"to": "b", "subject": "s"}] * 2, queue="bulk"
            )
        received = [n.payload for n in listener.notifies(timeout=10, stop_after=2)]
    # The rolled-back enqueue never notified; the committed ones did, in commit order.
    assert received == ["committed", "bulk"]


def test_enqueue_in_atomic_block_of_another_alias_warns() -> None:
    jobs = register_jobs(Soniq(database="sqlite"))
    with transaction.atomic(using="default"), pytest.warns(TransactionWarning, match="'default'"):
        jobs.send_email.enqueue(to="a", subject="s")
    # Committed on its own: the default alias's transaction does not own it.
    assert committed_job_count("sqlite") == 1


def test_warning_points_at_the_callers_line() -> None:
    jobs = register_jobs(Soniq(database="sqlite"))
    with transaction.atomic(using="default"):
        with pytest.warns(TransactionWarning) as direct:
            jobs.send_email.enqueue(to="a", subject="s")
        with pytest.warns(TransactionWarning) as scheduled:
            jobs.app.schedule_sync(jobs.send_email, 5, to="a", subject="s")
        with pytest.warns(TransactionWarning) as configured:
            jobs.send_email.using(priority=3).enqueue(to="a", subject="s")
    for record in (*direct, *scheduled, *configured):
        assert record.filename == __file__


def test_no_warning_inside_the_right_alias() -> None:
    jobs = register_jobs(Soniq(database="sqlite"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with transaction.atomic(using="sqlite"):
            jobs.send_email.enqueue(to="a", subject="s")


def test_explicit_django_connection_argument() -> None:
    from django.db import connections

    jobs = register_jobs(Soniq(database="default"))
    with transaction.atomic(using="sqlite"):
        job_id = jobs.send_email.using(connection=connections["sqlite"]).enqueue(
            to="a", subject="s"
        )
    assert committed_job_count("sqlite", "id = %s", (job_id.replace("-", ""),)) == 1
    assert committed_job_count("default") == 0


@pytest.mark.asyncio
async def test_async_enqueue_refuses_connections_it_cannot_use(async_db: None) -> None:
    from django.db import connections

    from soniq import InvalidConnectionError

    jobs = register_jobs(Soniq(database="default"))
    with pytest.raises(InvalidConnectionError, match="AsyncConnection"):
        await jobs.send_email.using(connection=connections["default"]).aenqueue(to="a", subject="s")
    with (
        psycopg.connect(conninfo("default")) as conn,
        pytest.raises(InvalidConnectionError, match="_sync methods"),
    ):
        await jobs.app.enqueue(jobs.send_email, connection=conn, to="a", subject="s")
