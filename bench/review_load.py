"""Review app under load: concurrent decisions and page loads on a store of many audits, loopback only.

``python -m imaudit.bench.review_load [--audits 1000] [--decisions 100] [--pages 100]`` builds a
store of small audit.json stubs, starts ``imaudit serve`` on 127.0.0.1 (a subprocess), signs two
reviewers in through the login form, then sends every decision and page load at once and
reports errors, decisions recorded, and page times (median under load, and one page at a
time). It stops by itself: every request has a timeout and the server is terminated.
tests/reports/test_review_load.py runs the same driver and checks correctness only.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from html.parser import HTMLParser
from pathlib import Path

import httpx

from imaudit.audits.result import AuditResult, Finding

START = datetime(2024, 1, 1, tzinfo=timezone.utc)
REVIEWERS = (("load-ann", "load test password 1"), ("load-bob", "load test password 2"))
ACKS = ("overfitting", "shortcut")


def stub_audits(store: Path, n: int, models: int = 20) -> list[tuple[str, str]]:
    """``n`` small release audits (a few KB each) in ``store``; returns (audit id, audit.json digest) pairs.

    Audit i is of release ``model-(i % models)@(i // models)``; each has an error and a
    warning finding, so an approval must acknowledge both.
    """
    out = []
    for i in range(n):
        aid = f"load-{i:05d}"
        result = AuditResult(
            id=aid, created=(START + timedelta(minutes=i)).isoformat(timespec="seconds"),
            model={"ref": f"release:model-{i % models}@{i // models}", "digest": "sha256:" + f"{i:064x}",
                   "arch": "test_resnet", "num_classes": 2, "classes": ["a", "b"]},
            dataset={"ref": "builtin:shapes", "digest": "sha256:" + "0" * 64, "classes": ["a", "b"]},
            metrics={"val": {"n": 40, "accuracy": 0.5 + (i % 50) / 100, "loss": 0.7, "ece": 0.05}},
            findings=[Finding(code="overfitting", severity="warning", message="train/val gap 0.2"),
                      Finding(code="shortcut", severity="error", message="class a relies on a corner")],
            gates={"passed": False, "counts": {"error": 1, "warning": 1}},
        )
        path = result.write(store / aid)
        out.append((aid, "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()))
    return out


def add_reviewers(store: Path) -> None:
    """The load test's reviewer accounts, through the same code as ``imaudit reviewers add``."""
    from imaudit.reports.accounts import Accounts
    from imaudit.reports.db import open_review_db

    db = open_review_db(store)
    try:
        accounts = Accounts(db)
        for name, password in REVIEWERS:
            if accounts.get(name) is None:
                accounts.add(name, "reviewer", password)
    finally:
        db.dispose()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def review_server(store: Path, start_timeout_s: float = 120.0) -> Iterator[str]:
    """``imaudit serve`` on 127.0.0.1:<free port> as a subprocess; terminated (then killed) on exit."""
    port = free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-c", "from imaudit.cli import main; main()", "serve", "--store", str(store),
           "--host", "127.0.0.1", "--port", str(port)]
    log = open(store.parent / f"serve-{port}.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + start_timeout_s
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"imaudit serve exited {proc.returncode}: see {log.name}")
            try:
                if httpx.get(base + "/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass  # not listening yet
            if time.monotonic() > deadline:
                raise RuntimeError(f"imaudit serve did not start in {start_timeout_s:.0f}s: see {log.name}")
            time.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        log.close()


class _Inputs(HTMLParser):
    """The hidden inputs of a page (the CSRF token and audit digest of our own forms)."""

    def __init__(self) -> None:
        super().__init__()
        self.values: dict[str, str] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "input" and a.get("type") == "hidden" and a.get("name"):
            self.values.setdefault(a["name"] or "", a.get("value") or "")


def hidden_inputs(html: str) -> dict[str, str]:
    parser = _Inputs()
    parser.feed(html)
    return parser.values


def sign_in(client: httpx.Client, base: str, name: str, password: str) -> str:
    """Sign ``name`` in through the login form (the client keeps the session cookie); the session's CSRF token."""
    form = hidden_inputs(client.get(base + "/login").text)
    r = client.post(base + "/login", data={"name": name, "password": password, "csrf": form["csrf"], "next": "/"},
                    headers={"Origin": base}, follow_redirects=False)
    if r.status_code != 303:
        raise RuntimeError(f"sign-in of {name} failed: HTTP {r.status_code}")
    return hidden_inputs(client.get(base + "/").text)["csrf"]


@dataclass
class LoadResult:
    """What one load run saw (times in seconds)."""

    audits: int
    decisions_sent: int
    pages_sent: int
    errors: list[str] = field(default_factory=list)
    decisions_ok: int = 0
    index_times: list[float] = field(default_factory=list)
    report_times: list[float] = field(default_factory=list)
    decision_times: list[float] = field(default_factory=list)
    quiet_index: list[float] = field(default_factory=list)
    quiet_report: list[float] = field(default_factory=list)
    wall_s: float = 0.0

    def medians(self) -> dict[str, float | None]:
        def med(xs: list[float]) -> float | None:
            return round(statistics.median(xs), 4) if xs else None
        return {"page under load": med(self.index_times + self.report_times), "index under load": med(self.index_times),
                "report under load": med(self.report_times), "decision under load": med(self.decision_times),
                "index alone": med(self.quiet_index), "report alone": med(self.quiet_report)}


async def _timed(result: LoadResult, bucket: list[float], label: str, expect: int, send) -> httpx.Response | None:  # noqa: ANN001
    t0 = time.perf_counter()
    try:
        r = await send()
    except httpx.HTTPError as exc:
        result.errors.append(f"{label}: {type(exc).__name__}: {exc}")
        return None
    bucket.append(time.perf_counter() - t0)
    if r.status_code != expect:
        result.errors.append(f"{label}: HTTP {r.status_code}")
    elif bucket is result.decision_times:
        result.decisions_ok += 1
    return r


async def _burst(base: str, sessions: list[tuple[dict[str, str], str]], targets: list[tuple[str, str]],
                 decisions: int, pages: int, timeout_s: float, result: LoadResult) -> None:
    """Every decision and page load at once; one client (cookie jar) per signed-in reviewer."""
    limits = httpx.Limits(max_connections=decisions + pages, max_keepalive_connections=0)
    clients = [httpx.AsyncClient(base_url=base, timeout=timeout_s, limits=limits, cookies=cookies)
               for cookies, _ in sessions]
    try:
        jobs = []
        for k in range(decisions):
            client, (_, csrf) = clients[k % len(clients)], sessions[k % len(sessions)]
            aid, digest = targets[k]
            data = {"decision": "approve", "comment": f"load decision {k}", "ack": list(ACKS),
                    "audit_digest": digest, "csrf": csrf}

            def send(client=client, aid=aid, data=data):  # noqa: ANN202
                return client.post(f"/audits/{aid}/review", data=data, headers={"Origin": base})
            jobs.append(_timed(result, result.decision_times, f"decision {aid}", 303, send))
        for k in range(pages):
            client = clients[k % len(clients)]
            on_index = k % 2 == 0
            path = "/" if on_index else f"/audits/{targets[-1 - k][0]}"

            def get(client=client, path=path):  # noqa: ANN202
                return client.get(path)
            jobs.append(_timed(result, result.index_times if on_index else result.report_times, f"GET {path}",
                               200, get))
        await asyncio.gather(*jobs)
    finally:
        for client in clients:
            await client.aclose()


def run_load(store: Path, targets: list[tuple[str, str]], *, decisions: int = 100, pages: int = 100,
             timeout_s: float = 180.0, quiet: int = 3) -> LoadResult:
    """Serve ``store``, sign the reviewers in, send ``decisions`` approvals and ``pages`` page loads at once.

    Decision k approves ``targets[k]`` (acknowledging its findings); pages alternate between the
    index and reports of other audits. ``quiet`` pages of each kind are then timed one at a time.
    """
    if decisions > len(targets):
        raise ValueError(f"{decisions} decisions need as many audits (have {len(targets)})")
    result = LoadResult(audits=len(targets), decisions_sent=decisions, pages_sent=pages)
    with review_server(store) as base:
        sessions = []
        for name, password in REVIEWERS:
            with httpx.Client(timeout=60) as c:
                csrf = sign_in(c, base, name, password)
                sessions.append((dict(c.cookies), csrf))
        t0 = time.perf_counter()
        asyncio.run(asyncio.wait_for(_burst(base, sessions, targets, decisions, pages, timeout_s, result),
                                     timeout_s + 30))
        result.wall_s = round(time.perf_counter() - t0, 3)
        with httpx.Client(base_url=base, timeout=60, cookies=sessions[0][0]) as c:
            for i in range(quiet):
                for path, bucket in (("/", result.quiet_index), (f"/audits/{targets[-1 - i][0]}", result.quiet_report)):
                    t = time.perf_counter()
                    c.get(path).raise_for_status()
                    bucket.append(time.perf_counter() - t)
    return result


def main(argv: list[str] | None = None) -> None:
    """Build a stub store in a temporary folder, run the load, print the medians and write JSON if asked."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--audits", type=int, default=1000)
    ap.add_argument("--decisions", type=int, default=100)
    ap.add_argument("--pages", type=int, default=100)
    ap.add_argument("--out", type=Path, help="write the measurements as JSON here")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="imaudit-load-") as tmp:
        store = Path(tmp) / "reports"
        targets = stub_audits(store, args.audits)
        add_reviewers(store)
        result = run_load(store, targets, decisions=args.decisions, pages=args.pages)
    report = {"config": vars(args) | {"out": str(args.out) if args.out else None}, "medians_s": result.medians(),
              "errors": result.errors[:20], "n_errors": len(result.errors), "wall_s": result.wall_s}
    print(json.dumps(report, indent=2))
    if args.out:
        args.out.write_text(json.dumps({**report, "raw": asdict(result)}, indent=2))


if __name__ == "__main__":
    main()
