"""Deduplication is race-free: a partial unique index plus INSERT ... ON CONFLICT."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connections, transaction

from tests.helpers import committed_job_count, query_elsewhere
from tests.jobs import JobSet

pytestmark = pytest.mark.django_db(databases=["default", "sqlite"], transaction=True)

ENQUEUERS = 8


def _finish(alias: str, job_id: str) -> None:
    key = job_id if connections[alias].vendor == "postgresql" else job_id.replace("-", "")
    with connections[alias].cursor() as cursor:
        cursor.execute("UPDATE soniq_jobs SET status = 'done' WHERE id = %s", [key])


def _all_at_once(enqueue: Callable[[int], str]) -> list[str]:
    """Run ``enqueue(n)`` in 8 threads released together, each on its own Django connection."""
    barrier = threading.Barrier(ENQUEUERS)

    def run(n: int) -> str:
        try:
            barrier.wait(timeout=30)
            return enqueue(n)
        finally:
            connections.close_all()

    with ThreadPoolExecutor(ENQUEUERS) as pool:
        return list(pool.map(run, range(ENQUEUERS)))


def test_eight_concurrent_enqueuers_get_one_job(jobs: JobSet, alias: str) -> None:
    def enqueue(_: int) -> str:
        # Each thread commits its own transaction.
        with transaction.atomic(using=alias):
            return str(jobs.refresh_cache.enqueue(key="hot"))

    assert len(set(_all_at_once(enqueue))) == 1
    assert committed_job_count(alias) == 1


def test_eight_concurrent_enqueuers_with_a_dedup_key(jobs: JobSet, alias: str) -> None:
    def enqueue(n: int) -> str:
        return str(jobs.send_email.using(dedup_key="digest").enqueue(to=f"u{n}", subject="s"))

    assert len(set(_all_at_once(enqueue))) == 1
    assert committed_job_count(alias) == 1


def test_a_finished_job_no_longer_blocks_its_key(jobs: JobSet, alias: str) -> None:
    first = jobs.refresh_cache.enqueue(key="k")
    _finish(alias, first)
    second = jobs.refresh_cache.enqueue(key="k")
    assert second != first
    assert committed_job_count(alias) == 2


def test_a_running_job_still_counts(jobs: JobSet, alias: str) -> None:
    first = jobs.refresh_cache.enqueue(key="k")
    key = first if alias == "default" else first.replace("-", "")
    with connections[alias].cursor() as cursor:
        cursor.execute("UPDATE soniq_jobs SET status = 'processing' WHERE id = %s", [key])
    assert jobs.refresh_cache.enqueue(key="k") == first


def test_keys_are_scoped_per_task_and_by_args(jobs: JobSet, alias: str) -> None:
    a = jobs.refresh_cache.enqueue(key="a")
    b = jobs.refresh_cache.enqueue(key="b")
    shared = jobs.send_email.using(dedup_key="x").enqueue(to="a", subject="s")
    other_task = jobs.refresh_cache.using(dedup_key="x").enqueue(key="c")
    assert len({a, b, shared, other_task}) == 4
    rows = query_elsewhere(alias, "SELECT count(DISTINCT dedup_key) FROM soniq_jobs")
    assert rows[0][0] == 3
