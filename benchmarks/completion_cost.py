"""What announcing job ends (for ``app.wait_for()``) costs the drain.

    .venv/bin/python benchmarks/completion_cost.py [--rounds 6] [--jobs 100000]
                                                   [--url postgresql://postgres@127.0.0.1/postgres]

Runs ``benchmarks/worker.py --jobs N`` ``--rounds`` times each way, alternating:

- as jobs usually are, nobody waiting for them: the completion statement checks each finished
  job's ``awaited`` flag and sends nothing;
- ``--awaited``: every job is marked awaited and a connection LISTENs on ``soniq_job_done``,
  so every completion sends a NOTIFY (the worst case: a waiter for each of the N jobs).

Prints each drain, the medians, and the median of the paired ratios.
"""

from __future__ import annotations

import argparse

import _scratch
import paired


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    _scratch.add_url_argument(parser)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--jobs", type=int, default=100_000)
    options = parser.parse_args()
    print("the drain, nobody waiting, then every job awaited (a NOTIFY per completion):")
    paired.compare(
        options.url,
        options.jobs,
        options.rounds,
        ("nobody waits", []),
        ("all awaited", ["--awaited"]),
    )


if __name__ == "__main__":
    main()
