"""Real Prefect processes for the orchestration tests: a server (SQLite) and workers.

Every process starts in its own process group and is stopped with its whole
group, so nothing a test starts outlives it. Logs go to files printed on failure.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from local_procs import REPO, Proc, free_port

BIN = Path(sys.executable).parent
__all__ = ["BIN", "REPO", "Proc", "free_port", "prefect_env", "prefect_server", "run", "server_command", "sync_client"]


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


def server_command(host: str, port: int) -> list[str]:
    """The README's step 1 (`prefect server start`) for ``host`` and ``port``."""
    return ["prefect", "server", "start", "--host", host, "--port", str(port)]


@contextlib.contextmanager
def prefect_server(home: Path, timeout: float = 120) -> Iterator[tuple[str, Proc]]:
    """`prefect server start` on 127.0.0.1 with SQLite under ``home``; yields (api_url, process)."""
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    # The scheduler looks for due schedules every 5 s instead of every 60 s (a cron test waits less).
    env = prefect_env(home, None, PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS="5")
    proc = Proc([str(BIN / "prefect"), *server_command("127.0.0.1", port)[1:]], env, home / "server.log")
    try:
        proc.wait_healthy(f"{api}/health", timeout, "prefect server")
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
