"""Real worker processes for the acceptance tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from django.db import connections

from tests.helpers import query_elsewhere, wait_until

ROOT = Path(__file__).resolve().parents[2]

# Fast cadences so crashes are noticed in about a second; generous timeouts elsewhere.
FAST_SETTINGS = {
    "SONIQ_HEARTBEAT_INTERVAL": "0.5",
    "SONIQ_HEARTBEAT_TIMEOUT": "30",
    "SONIQ_POLL_INTERVAL": "1",
    "SONIQ_ERROR_RETRY_DELAY": "0.2",
    "SONIQ_SHUTDOWN_TIMEOUT": "10",
}


def worker_env(**overrides: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SONIQ_") or "TEST" in k}
    env.update(
        DJANGO_SETTINGS_MODULE="tests.settings",
        PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "testproject")]),
        SONIQ_WORKER_DATABASE_NAME=str(connections["default"].settings_dict["NAME"]),
        PYTHONUNBUFFERED="1",
        **FAST_SETTINGS,
    )
    env.update(overrides)
    return env


class WorkerProcess:
    """``manage.py soniq_worker`` in a child process, its output kept in a log file."""

    def __init__(self, log_dir: Path, *args: str, **env: str) -> None:
        self.log_path = log_dir / f"worker-{len(list(log_dir.glob('worker-*')))}.log"
        self._log = self.log_path.open("wb")
        command = [
            sys.executable,
            str(ROOT / "testproject" / "manage.py"),
            "soniq_worker",
            "--app",
            "tests.acceptance.jobs:app",
            *args,
        ]
        self.process = subprocess.Popen(
            command, env=worker_env(**env), stdout=self._log, stderr=subprocess.STDOUT
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def wait_registered(self, timeout: float = 30) -> str:
        """The worker's id, once it is registered as running."""

        def registered() -> Any:
            assert self.process.poll() is None, self.output()
            rows = query_elsewhere(
                "default",
                "SELECT id FROM soniq_workers WHERE pid = %s AND status = 'running'",
                (self.pid,),
            )
            return rows[0][0] if rows else None

        return str(wait_until(registered, timeout))

    def send(self, signum: int = signal.SIGTERM) -> None:
        self.process.send_signal(signum)

    def wait(self, timeout: float = 30) -> int:
        try:
            return self.process.wait(timeout)
        finally:
            self._log.flush()

    def output(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self._log.close()


class Supervisor:
    """Keeps one ``manage.py soniq_worker`` running, as systemd's ``Restart=always`` does:
    when the process exits (a crash, a kill), a new one starts."""

    def __init__(self, log_dir: Path, *args: str, **env: str) -> None:
        self._start = lambda: WorkerProcess(log_dir, *args, **env)
        self.processes = [self._start()]
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="supervisor", daemon=True)
        self._thread.start()

    @property
    def current(self) -> WorkerProcess:
        return self.processes[-1]

    @property
    def restarts(self) -> int:
        return len(self.processes) - 1

    def exit_codes(self) -> list[int | None]:
        return [worker.process.returncode for worker in self.processes[:-1]]

    def _watch(self) -> None:
        while not self._stopping.wait(0.05):
            if self.current.process.poll() is not None:
                self.current.stop()
                self.processes.append(self._start())

    def output(self) -> str:
        return "\n".join(f"--- {w.log_path.name}\n{w.output()}" for w in self.processes)

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(10)
        for worker in self.processes:
            worker.stop()
