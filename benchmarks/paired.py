"""Two ways of running ``benchmarks/worker.py``, drained in alternating rounds and compared:
the machine's noise (±10-20 % between runs) hits both sides alike."""

from __future__ import annotations

import re
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

DRAIN = re.compile(r"^\(b\) drain.*?([\d,]+) jobs/s", re.MULTILINE)
CPU = re.compile(r"worker CPU over the drain\s+([\d.]+) µs per job")


def drain(
    url: str, jobs: int, extra: list[str], script: Path = HERE / "worker.py"
) -> tuple[int, float]:
    """One run of ``script`` (benchmarks/worker.py, of this tree or another one, whose worker
    then runs that tree's soniq): (drain jobs/s, worker CPU µs per job)."""
    command = [sys.executable, str(script), "--url", url, "--jobs", str(jobs)]
    command += ["--latency-samples", "10", *extra]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    rate, cpu = DRAIN.search(output), CPU.search(output)
    assert rate is not None and cpu is not None, output
    return int(rate.group(1).replace(",", "")), float(cpu.group(1))


def compare(
    url: str,
    jobs: int,
    rounds: int,
    plain: tuple[str, list[str]] | tuple[str, list[str], Path],
    changed: tuple[str, list[str]] | tuple[str, list[str], Path],
) -> float:
    """Run each way ``rounds`` times, alternating; print every round, the medians and the
    paired ratios (changed / plain); return the median of the paired ratios. A way is
    ``(label, extra arguments)``, or with a third item, the worker.py script to run."""
    runs: dict[str, list[tuple[int, float]]] = {plain[0]: [], changed[0]: []}
    for n in range(1, rounds + 1):
        for label, extra, *script in (plain, changed):
            rate, cpu = drain(url, jobs, extra, *script)
            runs[label].append((rate, cpu))
            print(f"    round {n} {label:<13} {rate:>7,} jobs/s  {cpu:5.1f} µs per job")
    for label, found in runs.items():
        rates = [rate for rate, _ in found]
        cpus = [cpu for _, cpu in found]
        print(
            f"    {label:<13} median {statistics.median(rates):>9,.0f} jobs/s, mean "
            f"{statistics.mean(rates):,.0f}; worker CPU median {statistics.median(cpus):.1f} µs"
        )
    base, other = runs[plain[0]], runs[changed[0]]
    paired = [o[0] / b[0] for b, o in zip(base, other, strict=True)]
    medians = statistics.median(r for r, _ in other) / statistics.median(r for r, _ in base)
    print(
        f"    {changed[0]} / {plain[0]}: medians {medians:.3f}, paired ratios' median "
        f"{statistics.median(paired):.3f} (from {min(paired):.3f} to {max(paired):.3f})"
    )
    return statistics.median(paired)
