"""Child processes of the fault benchmarks (``faults.py``, ``network_faults.py``).

Every child writes its output to a log file of its own (printed when a scenario fails), runs in
a session of its own (a Ctrl-C reaches only the benchmark, which stops its children in order)
and gets SIGKILL when the benchmark dies, however it dies, so that no worker outlives a run.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Every process ever started, for the last-resort cleanup in kill_leftovers().
STARTED: list[subprocess.Popen[bytes]] = []

_LIBC = ctypes.CDLL(None, use_errno=True)
_PR_SET_PDEATHSIG = 1


def die_with_parent(parent: int) -> Callable[[], None]:
    """preexec_fn: the child gets SIGKILL when ``parent`` dies, however it dies."""

    def preexec() -> None:
        _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:  # the parent died before the prctl
            os._exit(1)

    return preexec


@dataclass
class ChildProcess:
    """A started process, its label and its log file."""

    label: str
    process: subprocess.Popen[bytes]
    log_path: Path
    exit_code: int | None = None  # set once alive() has seen it exit

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        if self.process.poll() is None:
            return True
        self.exit_code = self.process.returncode
        return False

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def start_logged(
    label: str, command: Sequence[str], *, env: dict[str, str], cwd: Path, log_path: Path
) -> ChildProcess:
    """Start ``command`` with its stdout and stderr in ``log_path``, in a session of its own,
    killed if this process dies."""
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            list(command),
            env=env,
            cwd=cwd,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=die_with_parent(os.getpid()),
        )
    STARTED.append(process)
    return ChildProcess(label, process, log_path)


def run_or_raise(
    what: str, command: Sequence[str], *, env: dict[str, str], cwd: Path, timeout: float
) -> None:
    """Run ``command`` to its end; if it fails, raise with its output (the scenario's error)."""
    result = subprocess.run(
        list(command),
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if result.returncode:
        raise RuntimeError(f"{what} failed:\n{result.stdout}\n{result.stderr}")


def kill_leftovers() -> None:
    """SIGKILL every process still alive (after a SIGCONT, in case one was left paused): the
    scenarios stop theirs in order, this is for when they could not finish."""
    for process in STARTED:
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGCONT)
                process.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(10)


def interrupt_on_sigterm() -> None:
    """A SIGTERM stops the benchmark as a Ctrl-C does, so that its cleanup runs."""

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, interrupt)


def tail(text: str, lines: int = 40) -> str:
    """The end of a log, for an error message."""
    return "\n".join(text.splitlines()[-lines:])
