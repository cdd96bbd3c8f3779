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
import re
import socket
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import _scratch

from soniq.core.records import ClaimedJob
from soniq.metrics import WorkerMetrics

HERE = Path(__file__).resolve().parent

DRAIN = re.compile(r"^\(b\) drain.*?([\d,]+) jobs/s", re.MULTILINE)
CPU = re.compile(r"worker CPU over the drain\s+([\d.]+) µs per job")


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


def drain(url: str, jobs: int, metrics: bool) -> tuple[int, float]:
    """One run of benchmarks/worker.py: (drain jobs/s, worker CPU µs per job)."""
    command = [sys.executable, str(HERE / "worker.py"), "--url", url, "--jobs", str(jobs)]
    command += ["--latency-samples", "10"]
    if metrics:
        command += ["--metrics-port", str(free_port())]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    rate, cpu = DRAIN.search(output), CPU.search(output)
    assert rate is not None and cpu is not None, output
    return int(rate.group(1).replace(",", "")), float(cpu.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    _scratch.add_url_argument(parser)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--jobs", type=int, default=100_000)
    options = parser.parse_args()
    print(f"(a) the observer alone: {observer_cost() * 1e6:.2f} µs of CPU per attempt")
    runs: dict[bool, list[tuple[int, float]]] = {False: [], True: []}
    for n in range(1, options.rounds + 1):
        for metrics in (False, True):
            rate, cpu = drain(options.url, options.jobs, metrics)
            runs[metrics].append((rate, cpu))
            label = "with metrics" if metrics else "without"
            print(f"    round {n} {label:<13} {rate:>7,} jobs/s  {cpu:5.1f} µs per job")
    plain, with_metrics = runs[False], runs[True]
    for label, found in (("without", plain), ("with metrics", with_metrics)):
        rates = [rate for rate, _ in found]
        cpus = [cpu for _, cpu in found]
        print(
            f"(b) {label:<13} median {statistics.median(rates):>9,.0f} jobs/s, mean "
            f"{statistics.mean(rates):,.0f}; worker CPU median {statistics.median(cpus):.1f} µs"
        )
    paired = [m[0] / p[0] for p, m in zip(plain, with_metrics, strict=True)]
    medians = statistics.median(r for r, _ in with_metrics) / statistics.median(r for r, _ in plain)
    print(
        f"    with / without: medians {medians:.3f}, paired ratios' median "
        f"{statistics.median(paired):.3f} (from {min(paired):.3f} to {max(paired):.3f})"
    )


if __name__ == "__main__":
    main()
