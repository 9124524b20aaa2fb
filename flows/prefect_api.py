"""The Prefect API a command-line run talks to.

With PREFECT_API_URL set, that server. Otherwise Prefect would start its own
temporary ("ephemeral") API server lazily inside the first flow call: a child
process of about 235 MB that outlives a killed parent, that Ctrl-C kills
before the flow has recorded its end, and that gives up after 20 s on a busy
machine ("timed out while attempting to connect to ephemeral Prefect API
server"). ``start_api`` starts that same server up front instead, so that it
- announces itself ("starting Prefect ...") while the command waits, with the
  start-up timeout raised to what a busy machine needs
  (PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS, default 180 s here);
- runs in its own session and is stopped by this process on exit (Prefect's
  own atexit hook), on SIGINT and on SIGTERM (the CLI turns both into
  exceptions that unwind to a normal exit);
- dies with this process even on SIGKILL (imaudit.tethered: PR_SET_PDEATHSIG).
Prefect keeps one such server per process (``SubprocessASGIServer()`` with
no port is a per-process singleton), so its client finds and uses this one.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import prefect
from prefect.server.api.server import SubprocessASGIServer
from prefect.settings import PREFECT_API_URL, get_current_settings

from imaudit.errors import PrefectStartError
from imaudit.tethered import tethered_command

STARTUP_TIMEOUT_ENV = "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"
DEFAULT_STARTUP_TIMEOUT_S = 180


class BoundServer(SubprocessASGIServer):
    """Prefect's temporary API server, launched so that it cannot outlive this process."""

    def _run_uvicorn_command(self) -> subprocess.Popen[Any]:
        # The command and environment are Prefect's own (SubprocessASGIServer._run_uvicorn_command
        # in Prefect 3.8); only the launcher in front and the new session are added.
        args = [
            sys.executable, "-m", "uvicorn", "--app-dir", str(prefect.__module_path__.parent),
            "--factory", "prefect.server.api.server:create_app", "--host", "127.0.0.1", "--port", str(self.port),
            "--log-level", "error", "--lifespan", "on",
        ]
        env = {
            **os.environ,
            "PREFECT_UI_ENABLED": "0",
            "PREFECT__SERVER_EPHEMERAL": "1",
            "PREFECT__SERVER_FINAL": "1",
            **get_current_settings().to_environment_variables(exclude_unset=True),
        }
        return subprocess.Popen(tethered_command(args), env=env, start_new_session=True)


def startup_timeout() -> int:
    """Seconds to wait for the temporary server: the Prefect setting when given, else 180."""
    value = os.environ.get(STARTUP_TIMEOUT_ENV, "")
    return int(value) if value.strip().isdigit() else DEFAULT_STARTUP_TIMEOUT_S


def running_server() -> SubprocessASGIServer | None:
    """The temporary server this process already runs (Prefect's or ours), if any."""
    server = SubprocessASGIServer._instances.get(None)
    return server if server is not None and server.running else None


def start_api(say: Callable[[str], None] = lambda _: None) -> str:
    """Make sure a Prefect API is reachable for this process; return its URL.

    Raises PrefectStartError (CLI exit 3) when the temporary server does not
    answer within the start-up timeout.
    """
    url = PREFECT_API_URL.value()
    if url:
        return str(url)
    server = running_server()
    if server is not None:
        return server.api_url
    timeout = startup_timeout()
    SubprocessASGIServer._instances.pop(None, None)  # a stopped one would be handed back by __new__
    say(f"starting Prefect (a temporary API server; waiting up to {timeout} s) ...")
    server = BoundServer()
    try:
        server.start(timeout=timeout)
    except Exception as e:  # noqa: BLE001 - whatever stopped it, the run cannot go on: one line, exit 3
        server.stop()
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise PrefectStartError(
            f"Prefect could not start its temporary API server within {timeout} s ({first[:300]}); "
            f"set {STARTUP_TIMEOUT_ENV} higher or PREFECT_API_URL to a running server"
        ) from e
    return server.api_url
