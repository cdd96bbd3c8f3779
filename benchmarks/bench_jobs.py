"""Jobs for ``benchmarks/worker.py``, imported by the ``soniq worker`` process it starts
(``SONIQ_JOBS_MODULES=bench_jobs`` with ``benchmarks/`` on ``PYTHONPATH``) and by the benchmark
itself to enqueue them.

- ``bench.noop`` does nothing: the drain measures soniq's own cost per job.
- ``bench.stamp`` returns ``time.time()`` taken as its first statement, so the result column
  records when the job started on the machine clock the benchmark also reads. When
  ``BENCH_STARTED_ADDR`` ("host:port") is set it also sends that time in one UDP datagram, so
  the benchmark learns at once that the job started without polling the database.
"""

from __future__ import annotations

import os
import socket
import time

from soniq import Soniq

app = Soniq(database_url=os.environ["SONIQ_DATABASE_URL"])

_started_socket: socket.socket | None = None


def _report_start(seq: int, started: float) -> None:
    global _started_socket
    address = os.environ.get("BENCH_STARTED_ADDR")
    if not address:
        return
    host, _, port = address.rpartition(":")
    if _started_socket is None:
        _started_socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    _started_socket.sendto(f"{seq} {started!r}".encode(), (host, int(port)))


@app.job(name="bench.noop")
async def noop(n: int) -> None:
    return None


@app.job(name="bench.stamp")
async def stamp(seq: int) -> float:
    started = time.time()
    _report_start(seq, started)
    return started
