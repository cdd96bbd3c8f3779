"""What flow control (locks, concurrency and rate limits) costs the drain of plain jobs.

    .venv/bin/python benchmarks/limits_cost.py [--rounds 8] [--jobs 100000] [--before REV]
                                               [--url postgresql://postgres@127.0.0.1/postgres]

Runs ``benchmarks/worker.py --jobs N`` ``--rounds`` times each way, alternating, and prints
each drain, the medians and the median of the paired ratios:

- a worker serving only unlimited jobs, against the same worker with a limited task and a
  queue limit registered (``--with-limits``; none of their jobs queued): what a worker that
  serves limited tasks pays for its limited claims while it drains other jobs;
- with ``--before REV``: the code of git revision REV (checked out in a temporary worktree,
  whose own ``benchmarks/worker.py`` runs, and starts its worker on that tree's soniq) against
  the working tree, both serving only unlimited jobs: what the change since REV costs a worker
  without limits.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
from pathlib import Path

import _scratch
import paired

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    _scratch.add_url_argument(parser)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--before", metavar="REV", help="also compare with git revision REV")
    options = parser.parse_args()
    print("the drain of plain jobs, without then with a limited task registered:")
    paired.compare(
        options.url,
        options.jobs,
        options.rounds,
        ("no limits", []),
        ("with limits", ["--with-limits"]),
    )
    if options.before:
        with tempfile.TemporaryDirectory(prefix="soniq-before-") as tree:
            subprocess.run(
                ["git", "-C", str(ROOT), "worktree", "add", "--detach", tree, options.before],
                check=True,
                capture_output=True,
            )
            try:
                print(f"the drain of plain jobs, {options.before} then the working tree:")
                paired.compare(
                    options.url,
                    options.jobs,
                    options.rounds,
                    # That tree's worker.py starts a worker on that tree's soniq.
                    (options.before, [], Path(tree) / "benchmarks" / "worker.py"),
                    ("working tree", []),
                )
            finally:
                subprocess.run(
                    ["git", "-C", str(ROOT), "worktree", "remove", "--force", tree], check=True
                )


if __name__ == "__main__":
    os.chdir(ROOT)
    main()
