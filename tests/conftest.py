"""Shared test set-up: an isolated imaudit home, offline hubs, no telemetry, few threads."""

from __future__ import annotations

import os

# Set before prefect / GX / HF are imported by any test module.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("DO_NOT_TRACK", "1")
# Prefect's temporary API server gets 20 s to start; on a loaded shared machine that is not
# always enough (seen with 8 test runs at once), and a timeout there says nothing about imaudit.
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
if "PREFECT_HOME" not in os.environ:
    # Each test process gets its own Prefect home: two xdist workers writing one
    # ~/.prefect SQLite database can hit "database is locked". The folder must
    # exist before Prefect starts its temporary server.
    import tempfile

    _prefect_home = os.path.join(
        tempfile.gettempdir(), f"imaudit-tests-prefect-{os.environ.get('PYTEST_XDIST_WORKER', 'main')}-{os.getpid()}"
    )
    os.makedirs(_prefect_home, exist_ok=True)
    os.environ["PREFECT_HOME"] = _prefect_home
if os.environ.get("PYTEST_XDIST_WORKER"):
    # One torch thread per xdist worker: two workers on two cores, no oversubscription.
    os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory, monkeypatch):
    """Every test gets its own IMAUDIT_HOME so report stores and registries never mix."""
    home = tmp_path_factory.mktemp("imaudit-home")
    monkeypatch.setenv("IMAUDIT_HOME", str(home))
    for var in ("IMAUDIT_REPORTS", "IMAUDIT_REGISTRY"):
        monkeypatch.delenv(var, raising=False)
    # Generated builtin datasets are deterministic: share them across tests to save time.
    monkeypatch.setenv("IMAUDIT_CACHE", str(tmp_path_factory.getbasetemp() / "shared-cache"))
    yield home


def pytest_sessionfinish(session, exitstatus):
    """Remove this process's Prefect home (its SQLite database) once the tests are done."""
    home = globals().get("_prefect_home")
    if home and os.environ.get("PREFECT_HOME") == home:
        import shutil

        shutil.rmtree(home, ignore_errors=True)
