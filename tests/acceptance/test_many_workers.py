"""Eight worker processes, four queues, 100,000 jobs: each runs exactly once."""

from __future__ import annotations

import json
import signal
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.acceptance import jobs
from tests.acceptance.processes import WorkerProcess
from tests.acceptance.tally_jobs import count_in_memory
from tests.helpers import query_elsewhere, wait_until

pytestmark = [pytest.mark.acceptance, pytest.mark.django_db(transaction=True)]

QUEUES = ["q0", "q1", "q2", "q3"]
TOTAL = 100_000


def test_eight_workers_on_four_queues_run_each_job_once(
    start_worker: Callable[..., WorkerProcess], tmp_path: Path
) -> None:
    tally_dir = tmp_path / "tally"
    tally_dir.mkdir()
    workers = []
    for i in range(8):
        # Workers 0-3 serve one queue each; 4-7 serve two, overlapping the others.
        serving = QUEUES[i % 4 : i % 4 + 1] if i < 4 else [QUEUES[i % 4], QUEUES[(i + 1) % 4]]
        workers.append(
            start_worker(
                "--concurrency",
                "8",
                "--queues",
                ",".join(serving),
                SONIQ_JOBS_MODULES="tests.acceptance.tally_jobs",
                SONIQ_TEST_TALLY_DIR=str(tally_dir),
            )
        )
    for worker in workers:
        worker.wait_registered()
    per_queue = TOTAL // len(QUEUES)
    for index, queue in enumerate(QUEUES):
        numbers = range(index * per_queue, (index + 1) * per_queue)
        jobs.app.enqueue_many_sync(count_in_memory, [{"n": n} for n in numbers], queue=queue)

    def done() -> int:
        return int(
            query_elsewhere("default", "SELECT count(*) FROM soniq_jobs WHERE status = 'done'")[0][
                0
            ]
        )

    wait_until(lambda: done() == TOTAL, timeout=600, interval=0.5)
    for worker in workers:
        worker.send(signal.SIGTERM)
    for worker in workers:
        assert worker.wait(timeout=60) == 0, worker.output()

    # From the workers' own memory: every number once, and nothing else.
    files = sorted(tally_dir.glob("*.json"))
    assert {int(path.stem) for path in files} == {worker.pid for worker in workers}
    runs = Counter(n for path in files for n in json.loads(path.read_text()))
    assert len(runs) == TOTAL and set(runs.values()) == {1}
    assert set(runs) == set(range(TOTAL))
    # From the database: one attempt each, nothing dead-lettered.
    assert query_elsewhere("default", "SELECT count(*) FROM soniq_jobs WHERE attempts <> 1") == [
        (0,)
    ]
    assert query_elsewhere("default", "SELECT count(*) FROM soniq_dead_letter_jobs") == [(0,)]
