"""Real Prefect processes for the orchestration tests: a server (SQLite) and workers.

Every process starts in its own process group and is stopped with its whole
group, so nothing a test starts outlives it. Logs go to files printed on failure.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def free_port() -> int:
    with contextlib.closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def prefect_env(prefect_home: Path, api_url: str | None, **extra: str) -> dict[str, str]:
    """Environment for Prefect processes: isolated home and SQLite database, no telemetry."""
    prefect_home.mkdir(parents=True, exist_ok=True)  # Prefect's server hangs when the folder's parent is missing
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(
        PREFECT_HOME=str(prefect_home),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_UI_ENABLED="false",
        PREFECT_API_DATABASE_CONNECTION_URL=f"sqlite+aiosqlite:///{prefect_home / 'prefect.db'}",
        PREFECT_LOGGING_LEVEL="INFO",
        PREFECT_CLI_PROMPT="false",
        DO_NOT_TRACK="1",
    )
    if api_url:
        env["PREFECT_API_URL"] = api_url
    env.update(extra)
    return env


class Proc:
    """A subprocess in its own process group, logging to a file."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path, cwd: Path = REPO) -> None:
        self.log = log
        self._fh = open(log, "wb")
        self.popen = subprocess.Popen(args, env=env, cwd=cwd, stdout=self._fh, stderr=subprocess.STDOUT,
                                      start_new_session=True)

    def tail(self, n: int = 60) -> str:
        lines = self.log.read_text(errors="replace").splitlines()
        return f"--- {self.log.name} (last {n} lines) ---\n" + "\n".join(lines[-n:])

    def stop(self, timeout: float = 15) -> None:
        """SIGTERM the group, then SIGKILL what is left."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGTERM)
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(5)
        self._fh.close()


def run(args: list[str], env: dict[str, str], timeout: float = 180, cwd: Path = REPO) -> subprocess.CompletedProcess:
    """Run a command to completion in its own process group (killed with it on timeout)."""
    p = subprocess.Popen(args, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         start_new_session=True, text=True)
    try:
        out, _ = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        out, _ = p.communicate()
        raise AssertionError(f"{' '.join(args)} timed out after {timeout}s:\n{out[-4000:]}") from None
    return subprocess.CompletedProcess(args, p.returncode, out, None)


@contextlib.contextmanager
def sync_client(api: str) -> Iterator:
    """A synchronous Prefect client on the server at ``api`` (this process's settings untouched after)."""
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: api}), get_client(sync_client=True) as client:
        yield client


@contextlib.contextmanager
def prefect_server(home: Path, timeout: float = 120) -> Iterator[tuple[str, Proc]]:
    """`prefect server start` on 127.0.0.1 with SQLite under ``home``; yields (api_url, process)."""
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    # The scheduler looks for due schedules every 5 s instead of every 60 s (a cron test waits less).
    env = prefect_env(home, None, PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS="5")
    proc = Proc([str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                env, home / "server.log")
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.popen.poll() is not None:
                raise AssertionError(f"prefect server exited with {proc.popen.returncode}\n{proc.tail()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{api}/health", timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise AssertionError(f"prefect server not healthy after {timeout}s\n{proc.tail()}")
            time.sleep(0.5)
        yield api, proc
    finally:
        proc.stop()


def run_then_reap(args: list[str], env: dict[str, str], log: Path, timeout: float = 300) -> int:
    """Run a command until its main process exits; then kill whatever it left in its group.

    For processes that die without cleaning up (SIGKILL): their children would
    otherwise linger and hold pipes open. Returns the main process's exit status.
    """
    proc = Proc(args, env, log)
    try:
        return proc.popen.wait(timeout)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"{' '.join(args)} still running after {timeout}s\n{proc.tail()}") from None
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.popen.pid, signal.SIGKILL)
        proc._fh.close()
