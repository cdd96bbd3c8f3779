"""The async API inside Django: aenqueue, await app.enqueue/enqueue_many/schedule/get_job."""

from __future__ import annotations

import pytest

from soniq import JobStatus
from tests.helpers import committed_job_count
from tests.jobs import JobSet

pytestmark = [pytest.mark.django_db(databases=["default", "sqlite"], transaction=True)]


@pytest.mark.asyncio
async def test_async_methods(jobs: JobSet, alias: str, async_db: None) -> None:
    one = await jobs.send_email.aenqueue(to="a", subject="s")
    two = await jobs.app.enqueue(jobs.send_email, queue="q2", to="b", subject="s")
    three = await jobs.app.enqueue("tests.send_email", args={"to": "c", "subject": "s"})
    later = await jobs.app.schedule(jobs.send_email, 60, to="d", subject="s")
    configured = await jobs.send_email.using(priority=2).aenqueue(to="e", subject="s")
    many = await jobs.app.enqueue_many(jobs.send_email, [{"to": "f", "subject": "s"}] * 3)
    dup = await jobs.refresh_cache.aenqueue(key="k")
    assert dup == await jobs.refresh_cache.aenqueue(key="k")
    info = await jobs.app.get_job(two)
    assert info is not None and info.queue == "q2" and info.status is JobStatus.QUEUED
    configured_info = await jobs.app.get_job(configured)
    assert configured_info is not None and configured_info.priority == 2
    assert len({one, two, three, later, configured, *many}) == 8
    assert committed_job_count(alias) == 9
