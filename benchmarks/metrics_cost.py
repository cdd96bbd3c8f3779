"""What the worker's Prometheus metrics cost: the observer in isolation, then the drain.

    .venv/bin/python benchmarks/metrics_cost.py [--rounds 6] [--jobs 100000]
                                                [--url postgresql://postgres@127.0.0.1/postgres]

(a) calls ``WorkerMetrics.job_ended()`` for 100,000 attempts, as the worker does (one call per
    attempt), then builds the exposition once, and prints the CPU time per attempt;
(b) runs ``benchmarks/worker.py --jobs N`` ``--rounds`` times each way, alternating, without
    and with ``--metrics-port`` (which also makes ``soniq worker`` read the queue gauges through
    a minimal Django configuration), and prints each drain, the medians, the mean and the
    median of the paired ratios, with the worker's CPU per job.
"""

from __future__ import annotations

import argparse
import socket
import time
from datetime import UTC, datetime

import _scratch
import paired

from soniq.core.records import ClaimedJob
from soniq.metrics import WorkerMetrics


def observer_cost(attempts: int = 100_000) -> float:
    """CPU seconds per attempt of the metrics' observer, folds included."""
    now = datetime.now(UTC)
    jobs = [
        ClaimedJob(
            id=str(n),
            task_name="bench.noop",
            args={},
            queue="default",
            priority=100,
            attempt=1,
            max_attempts=4,
            scheduled_at=now,
            created_at=now,
        )
        for n in range(attempts)
    ]
    metrics = WorkerMetrics()
    began = time.process_time()
    for job in jobs:
        metrics.job_ended(job, "succeeded", time.time())
    metrics.families()  # one scrape
    return (time.process_time() - began) / attempts


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    _scratch.add_url_argument(parser)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--jobs", type=int, default=100_000)
    options = parser.parse_args()
    print(f"(a) the observer alone: {observer_cost() * 1e6:.2f} µs of CPU per attempt")
    print("(b) the drain, without and with metrics (and the queue gauges):")
    paired.compare(
        options.url,
        options.jobs,
        options.rounds,
        ("without", []),
        ("with metrics", ["--metrics-port", str(free_port())]),
    )


if __name__ == "__main__":
    main()
