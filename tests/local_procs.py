"""Local server processes for tests: a free loopback port, a process group with a log, a health wait.

The Prefect server, the MLflow tracking server and the review app are each started
by some test on 127.0.0.1 and must not outlive it; this is the one place that
knows how. Importable from every test folder (pytest puts tests/ on sys.path).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    """A TCP port nothing listens on at 127.0.0.1 (bound and released)."""
    with contextlib.closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Proc:
    """A subprocess in its own process group, logging to a file; ``stop`` ends the whole group."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path, cwd: Path = REPO) -> None:
        self.log = log
        self._fh = open(log, "wb")
        self.popen = subprocess.Popen(args, env=env, cwd=cwd, stdout=self._fh, stderr=subprocess.STDOUT,
                                      start_new_session=True)

    def tail(self, n: int = 60) -> str:
        lines = self.log.read_text(errors="replace").splitlines()
        return f"--- {self.log.name} (last {n} lines) ---\n" + "\n".join(lines[-n:])

    def wait_healthy(self, url: str, timeout: float, name: str, ok: Callable[[httpx.Response], bool] | None = None) -> None:
        """Poll ``url`` until it answers 200 (or ``ok``); fail with the log's tail if the process dies or time runs out."""
        deadline = time.monotonic() + timeout
        while True:
            if self.popen.poll() is not None:
                raise AssertionError(f"{name} exited with {self.popen.returncode}\n{self.tail()}")
            with contextlib.suppress(httpx.HTTPError):
                r = httpx.get(url, timeout=5)
                if ok(r) if ok else r.status_code == 200:
                    return
            if time.monotonic() > deadline:
                raise AssertionError(f"{name} not healthy after {timeout}s\n{self.tail()}")
            time.sleep(0.5)

    def stop(self, timeout: float = 15) -> None:
        """SIGTERM the group, then SIGKILL what is left (idempotent)."""
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(5)
        self._fh.close()
