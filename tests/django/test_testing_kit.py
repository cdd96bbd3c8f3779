"""soniq.testing inside ordinary Django TestCases (the test's transaction is never committed)."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import TestCase, override_settings

from shop.models import Order
from soniq import Cancel, Discard, JobContext, JobStatus, Retry, Snooze, Soniq
from soniq.testing import assert_enqueued, assert_not_enqueued, drain, enqueued


def _app(alias: str) -> tuple[Soniq, dict[str, Any]]:
    app = Soniq(database=alias)
    seen: dict[str, Any] = {"contexts": []}

    @app.job(name="kit.fulfil")
    def fulfil(order_id: int, ctx: JobContext) -> str:
        seen["contexts"].append(ctx)
        order = Order.objects.using(alias).get(pk=order_id)  # uncommitted test data
        return order.customer_email

    @app.job(name="kit.flaky", retries=3, retry_delay=60)
    def flaky(ctx: JobContext) -> int:
        if ctx.attempt < 3:
            raise RuntimeError(f"attempt {ctx.attempt}")
        return ctx.attempt

    @app.job(name="kit.doomed", retries=1)
    async def doomed() -> None:
        raise ValueError("never works")

    @app.job(name="kit.later")
    async def later(n: int) -> int:
        return n * 2

    @app.job(name="kit.strict", retries=3, no_retry_on=LookupError)
    def strict() -> None:
        raise KeyError("no such customer")

    @app.job(name="kit.polite", retries=1, no_retry_on=Exception)  # a Retry is retried all the same
    def polite(ctx: JobContext) -> int:
        if ctx.attempt == 1:
            raise Retry(delay=3600)
        return ctx.attempt

    @app.job(name="kit.discard", retries=3)
    def discard() -> None:
        raise Discard("nothing to do")

    seen.update(fulfil=fulfil, flaky=flaky, doomed=doomed, later=later, strict=strict)

    @app.job(name="kit.snooze", retries=0)
    def snooze(ctx: JobContext, times: int) -> int:
        snoozed.append(ctx.attempt)
        if len(snoozed) <= times:
            raise Snooze(3600 if times > 1 else 0)
        return len(snoozed)

    @app.job(name="kit.cancel", retries=3)
    def cancel() -> None:
        raise Cancel("no longer wanted")

    snoozed: list[int] = []
    seen.update(polite=polite, discard=discard, snooze=snooze, cancel=cancel)
    return app, seen


class DrainOnPostgres(TestCase):
    databases = {"default", "sqlite"}
    alias = "default"

    def setUp(self) -> None:
        self.app, self.jobs = _app(self.alias)

    def test_drain_runs_jobs_enqueued_in_the_test_transaction(self) -> None:
        order = Order.objects.using(self.alias).create(customer_email="t@e.st", total_cents=1)
        job_id = self.jobs["fulfil"].enqueue(order_id=order.pk)
        assert_enqueued(self.jobs["fulfil"], self.app, order_id=order.pk)
        assert drain(self.app) == 1
        info = self.app.get_job_sync(job_id)
        assert info is not None
        assert info.status is JobStatus.DONE
        assert info.result == "t@e.st"
        assert self.jobs["contexts"][0].attempt == 1
        assert_not_enqueued(self.jobs["fulfil"], self.app, order_id=order.pk)

    def test_retries_wait_unless_run_scheduled(self) -> None:
        job_id = self.jobs["flaky"].enqueue()
        assert drain(self.app) == 1  # the retry is an hour away
        info = self.app.get_job_sync(job_id)
        assert info is not None and info.status is JobStatus.QUEUED and info.attempts == 1
        assert drain(self.app, run_scheduled=True) == 2
        info = self.app.get_job_sync(job_id)
        assert info is not None and info.status is JobStatus.DONE and info.result == 3
        assert [error["message"] for error in info.errors] == ["attempt 1", "attempt 2"]

    def test_async_job_dead_letters(self) -> None:
        job_id = self.jobs["doomed"].enqueue()
        assert drain(self.app, run_scheduled=True) == 2
        info = self.app.get_job_sync(job_id)
        assert info is not None
        assert info.status is JobStatus.DEAD_LETTER
        assert info.dead_letter_reason == "max_attempts"
        assert info.errors[-1]["error_type"] == "builtins.ValueError"

    def test_retry_and_discard_raised_by_the_job(self) -> None:
        polite = self.jobs["polite"].enqueue()
        discard = self.jobs["discard"].enqueue()
        assert drain(self.app) == 2  # the retry is an hour away
        info = self.app.get_job_sync(polite)
        assert info is not None and info.status is JobStatus.QUEUED and info.attempts == 1
        assert drain(self.app, run_scheduled=True) == 1
        info = self.app.get_job_sync(polite)
        assert info is not None and (info.status, info.result) == (JobStatus.DONE, 2)
        gone = self.app.get_job_sync(discard)
        assert gone is not None and gone.status is JobStatus.DEAD_LETTER
        assert (gone.dead_letter_reason, gone.errors[-1]["message"]) == (
            "discarded",
            "nothing to do",
        )

    def test_snooze_and_cancel_raised_by_the_job(self) -> None:
        snoozed = self.jobs["snooze"].enqueue(times=1)
        cancelled = self.jobs["cancel"].enqueue()
        assert drain(self.app) == 3  # the snooze of 0 s is due again at once
        info = self.app.get_job_sync(snoozed)
        assert info is not None
        assert (info.status, info.attempts, info.snoozes, info.result) == (
            JobStatus.DONE,
            1,
            1,
            2,
        )
        out = self.app.get_job_sync(cancelled)
        assert out is not None and out.status is JobStatus.CANCELLED
        assert (out.attempts, out.errors[-1]["message"]) == (1, "no longer wanted")

    def test_an_error_the_job_may_not_retry_dead_letters_at_once(self) -> None:
        job_id = self.jobs["strict"].enqueue()
        assert drain(self.app, run_scheduled=True) == 1
        info = self.app.get_job_sync(job_id)
        assert info is not None and info.status is JobStatus.DEAD_LETTER
        assert (info.dead_letter_reason, info.attempts) == ("not_retryable", 1)

    def test_scheduled_jobs_and_max_jobs(self) -> None:
        later = self.jobs["later"].using(scheduled_at=3600)
        ids = [later.enqueue(n=n) for n in range(3)]
        assert drain(self.app) == 0
        assert drain(self.app, run_scheduled=True, max_jobs=2) == 2
        statuses = [self.app.get_job_sync(job_id).status for job_id in ids]  # type: ignore[union-attr]
        assert statuses.count(JobStatus.DONE) == 2

    def test_assertions_explain_what_was_there(self) -> None:
        self.jobs["later"].enqueue(n=1)
        self.jobs["later"].enqueue(n=1)
        with pytest.raises(AssertionError, match="found 2"):
            assert_enqueued(self.jobs["later"], self.app, n=1)
        with pytest.raises(AssertionError, match=r"\{'n': 1\}"):
            assert_not_enqueued("kit.later", self.app)
        assert len(enqueued("kit.later", self.app)) == 2
        assert enqueued("kit.later", self.app, n=2) == []

    def test_drain_with_debug_on(self) -> None:
        """DEBUG makes Django format every query it runs for its log; the drain's writes
        must survive that on both databases (the demo project runs with DEBUG on)."""
        job_id = self.jobs["later"].enqueue(n=4)
        with override_settings(DEBUG=True):
            assert drain(self.app) == 1
        info = self.app.get_job_sync(job_id)
        assert info is not None and info.status is JobStatus.DONE and info.result == 8


class DrainOnSQLite(DrainOnPostgres):
    alias = "sqlite"


def test_the_pytest_fixture_drains_the_project_app(soniq_jobs: Any) -> None:
    from shop.jobs import fulfill_order

    order = Order.objects.create(customer_email="fixture@e.st", total_cents=5)
    fulfill_order.enqueue(order_id=order.pk)
    soniq_jobs.assert_enqueued(fulfill_order, order_id=order.pk)
    assert soniq_jobs.drain(queues=["orders"]) == 1
    order.refresh_from_db()
    assert order.fulfilled_at is not None
    soniq_jobs.assert_not_enqueued(fulfill_order, order_id=order.pk)


def test_an_app_whose_jobs_live_elsewhere_is_refused() -> None:
    from soniq import ConfigurationError

    app = Soniq(database_url="memory://")
    with pytest.raises(ConfigurationError, match="DATABASE_URL"):
        drain(app)
    with pytest.raises(ConfigurationError, match="DATABASE_URL"):
        enqueued("anything", app)
