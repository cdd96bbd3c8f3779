"""An enqueue that commits a dedup key while a requeue makes the same key live again: the
requeue's batch rolls back and runs again, and the dead letter is refused, not lost."""

from __future__ import annotations

import threading
import uuid

import psycopg
import pytest
from django.db import connections

from soniq import Soniq
from soniq.core.operations import ActionResult
from tests.helpers import conninfo, query_elsewhere, wait_until

pytestmark = pytest.mark.django_db(transaction=True)

DEAD_LETTER = """
INSERT INTO soniq_dead_letter_jobs (id, task_name, args, queue, priority, attempts,
    max_attempts, scheduled_at, created_at, dead_lettered_at, errors, reason, dedup_key)
VALUES (%s, 'tests.race', '{}', 'default', 100, 1, 1, now(), now(), now(), '[]',
        'max_attempts', 'the-key')
"""
LIVE_JOB = """
INSERT INTO soniq_jobs (id, task_name, args, queue, priority, status, attempts, max_attempts,
    scheduled_at, created_at, errors, dedup_key, worker_losses)
VALUES (%s, 'tests.race', '{}', 'default', 100, 'queued', 0, 1, now(), now(), '[]',
        'the-key', 0)
"""


def _requeue_waits_on_a_lock() -> bool:
    rows = query_elsewhere(
        "default",
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
        "AND wait_event_type = 'Lock' AND query LIKE %s",
        ("%soniq_dead_letter_jobs%",),
    )
    return bool(rows[0][0])


@pytest.mark.parametrize("through", ["psycopg", "django"])
def test_a_key_taken_during_the_requeue_is_refused_not_lost(through: str) -> None:
    dead_id = str(uuid.uuid4())
    with psycopg.connect(conninfo(), autocommit=True) as setup:
        setup.execute(DEAD_LETTER, (dead_id,))
    app = Soniq(database_url=conninfo()) if through == "psycopg" else Soniq(database="default")
    outcome: list[ActionResult] = []

    def requeue() -> None:
        try:
            outcome.append(app.requeue_dead_letters_sync([dead_id]))
        finally:
            connections.close_all()  # the thread's own Django connection

    with psycopg.connect(conninfo()) as enqueuer:
        # The competing enqueue holds the key, not yet committed: the requeue's NOT EXISTS
        # does not see it, and its INSERT waits on the unique index.
        enqueuer.execute(LIVE_JOB, (str(uuid.uuid4()),))
        worker = threading.Thread(target=requeue)
        worker.start()
        wait_until(_requeue_waits_on_a_lock)
        enqueuer.commit()
        worker.join(timeout=20)
    assert not worker.is_alive()
    [result] = outcome
    assert result.applied == ()
    assert "dedup key" in result.refused[dead_id]
    # Still a dead letter, and only the competing job is live.
    assert query_elsewhere(
        "default", "SELECT count(*) FROM soniq_dead_letter_jobs WHERE id = %s", (dead_id,)
    ) == [(1,)]
    assert query_elsewhere("default", "SELECT count(*) FROM soniq_jobs") == [(1,)]
    if through == "psycopg":
        app.backend.close_sync()  # type: ignore[attr-defined]
