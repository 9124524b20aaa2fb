"""`imaudit reviewers` and `imaudit serve`'s safe defaults; an audit into a store whose review database is corrupt."""

from __future__ import annotations

import contextlib
import sqlite3
import subprocess
import sys
import time

import httpx
import pytest
from signoff_helpers import run_cli
from typer.testing import CliRunner

from imaudit.bench.review_load import free_port
from imaudit.cli import app as cli


def test_reviewers_are_added_with_an_argon2id_hash_and_managed(tmp_path):
    store = tmp_path / "reports"
    s = ("--store", str(store))
    assert run_cli("reviewers", "list", *s) == (0, "no accounts (add one with: imaudit reviewers add NAME)\n")
    code, out = run_cli("reviewers", "add", "ann", "--password-stdin", *s, stdin="a long password 1\n")
    assert code == 0 and out.strip() == "added ann (reviewer)"
    code, out = run_cli("reviewers", "add", "sso.user@example.org", "--no-password", "--role", "viewer", *s)
    assert code == 0 and "single sign-on only" in out
    with contextlib.closing(sqlite3.connect(store / "reviews.db")) as con:
        stored = dict(con.execute("SELECT name, password_hash FROM imaudit_reviewers"))
    assert stored["ann"].startswith("$argon2id$") and "a long password" not in stored["ann"]
    assert stored["sso.user@example.org"] is None
    assert run_cli("reviewers", "role", "ann", "admin", *s)[0] == 0
    assert run_cli("reviewers", "password", "ann", "--password-stdin", *s, stdin="another long password\n")[0] == 0
    assert run_cli("reviewers", "disable", "ann", *s)[0] == 0
    code, out = run_cli("reviewers", "list", *s)
    assert [line.split() for line in out.splitlines()] == [
        ["ann", "admin", "password", "disabled"], ["sso.user@example.org", "viewer", "sign-on", "only", "active"]]


@pytest.mark.parametrize("args,stdin,needle", [
    (("add", "ann", "--password-stdin"), "short\n", "at least 12 characters"),
    (("add", "bad name", "--password-stdin"), "a long password 1\n", "reviewer name 'bad name'"),
    (("add", "ann", "--role", "owner", "--password-stdin"), "a long password 1\n", "role 'owner'"),
    (("add", "ann"), None, "--password-stdin"),  # no terminal to ask at
    (("role", "nobody", "admin"), None, "no such account"),
])
def test_reviewer_bad_input_exits_2_with_one_line(tmp_path, args, stdin, needle):
    code, out = run_cli("reviewers", *args, "--store", str(tmp_path / "reports"), stdin=stdin)
    assert code == 2 and needle in out and len(out.strip().splitlines()) == 1, out


@pytest.mark.parametrize("args,needle", [
    (("--host", "0.0.0.0"), "--allowed-host"),
    (("--host", "10.1.2.3"), "refusing to serve on 10.1.2.3 without authentication"),
    (("--host", "0.0.0.0", "--allowed-host", "audits.example.org"), "--insecure-no-auth"),
    (("--proxy-user-header", "X-Forwarded-User"), "--trusted-proxy"),
    (("--proxy-user-header", "X-Forwarded-User", "--trusted-proxy", "proxy.local"), "not an IP address"),
    (("--proxy-role", "owner"), "role 'owner'"),
])
def test_serve_refuses_unsafe_exposure_with_one_line(tmp_path, args, needle):
    code, out = run_cli("serve", "--store", str(tmp_path / "reports"), *args)
    assert code == 2 and needle in out and len(out.strip().splitlines()) == 1, out


def test_serve_with_a_corrupt_database_exits_3(tmp_path):
    store = tmp_path / "reports"
    store.mkdir()
    (store / "reviews.db").write_bytes(b"not a database" * 100)
    code, out = run_cli("serve", "--store", str(store))
    assert code == 3 and "unreadable" in out and len(out.strip().splitlines()) == 1


@pytest.mark.slow
def test_insecure_no_auth_says_what_it_gives_away(tmp_path):
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-c", "from imaudit.cli import main; main()", "serve", "--store", str(tmp_path / "r"),
         "--port", str(port), "--insecure-no-auth"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None and time.monotonic() < deadline, "serve did not start"
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                    break
            time.sleep(0.2)
    finally:
        proc.terminate()
        output = proc.communicate(timeout=60)[0]
    first = output.splitlines()[0]
    assert first.startswith("warning: --insecure-no-auth:") and "never open 'imaudit gate'" in first


@pytest.mark.slow
def test_a_corrupt_review_database_never_breaks_an_audit(tmp_path):
    store = tmp_path / "store"
    store.mkdir()
    (store / "reviews.db").write_bytes(b"not a database" * 100)
    r = CliRunner().invoke(cli, ["audit", "--model", "timm:test_resnet?pretrained=false", "--dataset", "builtin:shapes?n=60&size=32",
                                 "--input-size", "32", "--methods", "", "--out", str(store)])
    assert r.exception is None or isinstance(r.exception, SystemExit), repr(r.exception)
    assert r.exit_code in (0, 1), r.output  # the audit's own gate decides; never a crash
    [folder] = [p for p in store.iterdir() if p.is_dir()]
    assert (folder / "report.html").stat().st_size > 1000
    index = (store / "index.html").read_text()
    assert f'data-id="{folder.name}"' in index
    assert 'id="db-problem"' in index and "unreadable" in index


def test_a_locked_review_database_is_one_line_and_exit_3(tmp_path, monkeypatch):
    import imaudit.reports.db as db

    store = tmp_path / "reports"
    assert run_cli("reviewers", "add", "ann", "--password-stdin", "--store", str(store), stdin="a long password 1\n")[0] == 0
    monkeypatch.setattr(db, "LOCK_WAIT_S", 1)  # how long a writer waits for the lock (15 s by default)
    holder = sqlite3.connect(store / "reviews.db", isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        code, out = run_cli("reviewers", "role", "ann", "admin", "--store", str(store))
    finally:
        holder.close()
    assert code == 3 and "locked by another process" in out and len(out.strip().splitlines()) == 1
    assert run_cli("reviewers", "role", "ann", "admin", "--store", str(store))[0] == 0  # released: fine again
