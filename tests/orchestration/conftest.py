"""One real Prefect server (SQLite, 127.0.0.1) for every orchestration test that needs one.

Started on first use and stopped, with its whole process group, when the
session ends. Tests that run flows in this process point Prefect at it, so no
temporary server is started per run.
"""

from __future__ import annotations

import pytest
from prefect_procs import prefect_server


@pytest.fixture(scope="session")
def prefect_api(tmp_path_factory):
    """(api_url, server process, prefect home) of the shared server."""
    home = tmp_path_factory.mktemp("prefect-server")
    with prefect_server(home) as (api, proc):
        yield api, proc, home


@pytest.fixture
def use_prefect_api(prefect_api, monkeypatch):
    """Flows run in this test (and processes it starts, Dask workers included) report to the shared server."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    api = prefect_api[0]
    monkeypatch.setenv("PREFECT_API_URL", api)
    with temporary_settings({PREFECT_API_URL: api}):
        yield api
