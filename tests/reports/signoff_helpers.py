"""Live review apps for the sign-off tests: a store, accounts made by `imaudit reviewers add`,
uvicorn on 127.0.0.1:<free port> in a thread, and an HTTP client that signs in through the form."""

from __future__ import annotations

import contextlib
import shutil
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
from reports_factory import make_result
from typer.testing import CliRunner

from imaudit.bench.review_load import free_port, hidden_inputs
from imaudit.cli import app as cli
from imaudit.reports.app import create_app

# name -> (role, password)
ACCOUNTS = {"ann": ("reviewer", "ann's long password"), "vic": ("viewer", "vic's long password"),
            "ada": ("admin", "ada's long password")}
ACKS = ["overfitting", "shortcut"]  # the factory's error and warning finding codes


def run_cli(*args: str, stdin: str | None = None) -> tuple[int, str]:
    r = CliRunner().invoke(cli, list(args), input=stdin)
    return r.exit_code, r.output


def build_store(root: Path, accounts: dict[str, tuple[str, str]] = ACCOUNTS) -> Path:
    """Audits of release net@1 (older and newer), net@2, an ad hoc model, a folder without audit, a corrupt one;
    accounts added through the CLI."""
    store = root / "reports"
    make_result(store / "net1-old", created="2024-05-01T10:00:00+00:00", model_ref="release:net@1", rich=False)
    make_result(store / "net2", created="2024-05-02T10:00:00+00:00", model_ref="release:net@2", seed=1, rich=False)
    make_result(store / "adhoc", created="2024-05-03T10:00:00+00:00", model_ref="timm:test_vit", rich=False)
    (store / "no-audit").mkdir()
    (store / "corrupt").mkdir()
    (store / "corrupt" / "audit.json").write_text("{not json")
    for name, (role, password) in accounts.items():
        code, out = run_cli("reviewers", "add", name, "--role", role, "--password-stdin", "--store", str(store),
                            stdin=password + "\n")
        assert code == 0, out
    return store


def copy_store(built: Path, dest: Path) -> Path:
    return Path(shutil.copytree(built, dest / "reports"))


def decision_rows(store: Path) -> list[dict[str, Any]]:
    """The decision log as plain rows, read with sqlite3 (not through imaudit)."""
    with contextlib.closing(sqlite3.connect(store / "reviews.db")) as con:
        con.row_factory = sqlite3.Row
        return [dict(r) for r in con.execute("SELECT * FROM imaudit_decisions ORDER BY id")]


@contextlib.contextmanager
def live_app(store: Path, **options: Any) -> Iterator[str]:
    """The review app over ``store`` on 127.0.0.1:<free port> in a thread; stopped on exit."""
    with serving(create_app(store, **options)) as base:
        yield base


@contextlib.contextmanager
def serving(app: Any) -> Iterator[str]:
    """``app`` on 127.0.0.1:<free port> in a thread; stopped (lifespan shutdown included) on exit."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           proxy_headers=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


class Visitor:
    """One browser-like client: keeps cookies, signs in through the form, posts forms with their tokens."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.http = httpx.Client(base_url=base, follow_redirects=False, timeout=60)

    def __enter__(self) -> "Visitor":
        return self

    def __exit__(self, *exc: object) -> None:
        self.http.close()

    def sign_in(self, name: str, password: str | None = None) -> httpx.Response:
        form = hidden_inputs(self.http.get("/login").text)
        return self.http.post("/login", headers={"Origin": self.base}, data={
            "name": name, "password": password or ACCOUNTS[name][1], "csrf": form["csrf"], "next": "/"})

    def form(self, path: str) -> dict[str, str]:
        """The hidden inputs (csrf, audit_digest) of a page."""
        r = self.http.get(path)
        assert r.status_code == 200, (path, r.status_code)
        return hidden_inputs(r.text)

    def review(self, audit_id: str, decision: str, *, acks: list[str] = ACKS, comment: str = "",
               origin: str | None = "self", **extra: Any) -> httpx.Response:
        """Post the review form of ``audit_id`` the way the page would (tokens read from the page)."""
        form = self.form(f"/audits/{audit_id}")
        data = {"decision": decision, "comment": comment, "ack": acks, "csrf": form.get("csrf", ""),
                "audit_digest": form.get("audit_digest", ""), **extra}
        headers = {} if origin is None else {"Origin": self.base if origin == "self" else origin}
        return self.http.post(f"/audits/{audit_id}/review", data=data, headers=headers)
