"""The side of ``benchmarks/compare.py`` that runs inside each system's own virtualenv.

Standard library only: ``compare_soniq``, ``compare_pgqueuer`` and ``compare_procrastinate``
import it in soniq's, pgqueuer's and procrastinate's virtualenvs alike.

- ``Tally`` is what every job calls first. In the worker process it counts the executions of
  each job in memory (by the job's number), tells ``compare.py`` over UDP when the first
  no-op job starts (the drain's clock starts there) and when each latency job starts, and
  writes its counts to ``COMPARE_REPORT`` (a JSON file) when the worker process exits.
- ``serve`` is the enqueueing client: ``compare.py`` starts one per system and round, with the
  system's API behind a ``Client``, and sends it one JSON request per line on stdin (bulk
  enqueue, single enqueues, one latency job); it answers one JSON line per request on stdout.
"""

from __future__ import annotations

import asyncio
import atexit
import json
import os
import socket
import sys
import time
import traceback
from typing import Any, Protocol

# Read by the worker process; absent in the client process.
UDP_ADDRESS = "COMPARE_UDP"  # host:port of compare.py's socket
REPORT_PATH = "COMPARE_REPORT"  # where the worker writes its counts when it exits
JOBS = "COMPARE_JOBS"  # how many no-op jobs, numbered 0 .. JOBS-1, the drain enqueues
DATABASE_URL = "COMPARE_DATABASE_URL"


class Tally:
    """Executions counted inside the worker process, and start times sent over UDP."""

    def __init__(self) -> None:
        self.runs = bytearray(int(os.environ.get(JOBS, "0")))
        self.out_of_range = 0
        self.stamps: dict[int, int] = {}
        self.first_started: float | None = None
        self._socket: socket.socket | None = None
        self._address: tuple[str, int] | None = None
        address = os.environ.get(UDP_ADDRESS)
        if address:
            host, _, port = address.rpartition(":")
            self._address = (host, int(port))
            self._socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        report = os.environ.get(REPORT_PATH)
        if report:
            atexit.register(self.write_report, report)

    def _send(self, text: str) -> None:
        if self._socket is not None and self._address is not None:
            self._socket.sendto(text.encode(), self._address)

    def noop(self, n: int) -> None:
        """A no-op job number ``n`` runs (its first statement)."""
        if self.first_started is None:
            self.first_started = time.time()
            self._send(f"first {self.first_started!r}")
        if 0 <= n < len(self.runs):
            if self.runs[n] < 255:
                self.runs[n] += 1
        else:
            self.out_of_range += 1

    def stamp(self, seq: int, started: float) -> None:
        """Latency job ``seq`` started at ``started`` (``time.time()``, its first statement)."""
        self._send(f"stamp {seq} {started!r}")
        self.stamps[seq] = self.stamps.get(seq, 0) + 1

    def summary(self) -> dict[str, Any]:
        runs = self.runs
        never, once = runs.count(0), runs.count(1)
        return {
            "pid": os.getpid(),
            "noop_runs": sum(runs) + self.out_of_range,
            "noop_once": once,
            "noop_never": never,
            "noop_more_than_once": len(runs) - never - once,
            "noop_out_of_range": self.out_of_range,
            "stamp_runs": sum(self.stamps.values()),
            "stamp_jobs": len(self.stamps),
        }

    def write_report(self, path: str) -> None:
        with open(path, "w") as report:
            json.dump(self.summary(), report)


class Client(Protocol):
    """One system's enqueueing API, as ``serve`` drives it."""

    async def open(self) -> None:
        """Connect (outside every timed span)."""

    async def bulk(self, numbers: list[int]) -> float:
        """Enqueue one no-op job per number with the bulk API; seconds the call took."""
        ...

    async def single(self, n: int) -> None:
        """Enqueue one no-op job with the single-job API."""

    async def stamp(self, seq: int) -> None:
        """Enqueue one latency job with the single-job API."""

    async def close(self) -> None: ...


def _reply(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


async def _handle(client: Client, request: dict[str, Any]) -> dict[str, Any]:
    op = request["op"]
    if op == "bulk":
        numbers = list(range(request["n"]))
        return {"seconds": await client.bulk(numbers)}
    if op == "singles":
        first, count = request["first"], request["n"]
        started = time.perf_counter()
        for n in range(first, first + count):
            await client.single(n)
        return {"seconds": time.perf_counter() - started}
    if op == "stamp":
        before = time.time()
        await client.stamp(request["seq"])
        return {"before": before, "after": time.time()}
    raise ValueError(f"unknown request {request!r}")


async def serve(client: Client) -> None:
    """Answer ``compare.py``'s requests until stdin closes or it sends ``{"op": "quit"}``."""
    loop = asyncio.get_running_loop()
    try:
        await client.open()
        _reply({"ready": True})
        while True:
            line = await loop.run_in_executor(None, sys.stdin.readline)
            if not line:
                break
            request = json.loads(line)
            if request["op"] == "quit":
                break
            _reply(await _handle(client, request))
    except Exception:
        _reply({"error": traceback.format_exc()})
        raise
    finally:
        await client.close()
