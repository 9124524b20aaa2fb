"""The review app as an attacker and as a reviewer would meet it, on 127.0.0.1 over real HTTP:
sign-in, roles, CSRF and Origin, hosts, frames and CSP, body limits, the append-only log,
release semantics, single sign-on, a corrupt database."""

from __future__ import annotations

import hashlib
import re
import socket
import sqlite3
import tempfile

import pytest
from reports_factory import make_result
from signoff_helpers import ACCOUNTS, ACKS, Visitor, build_store, copy_store, decision_rows, live_app, serving

from imaudit.reports.app import create_app
from imaudit.reports.auth import AuthConfig, LoginThrottle
from imaudit.reports.db import open_review_db
from imaudit.reports.decisions import DecisionLog, LogTampered

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """Audits and three accounts (argon2 hashing takes a moment), built once per module."""
    return build_store(tmp_path_factory.mktemp("signoff"))


@pytest.fixture
def store(built, tmp_path):
    return copy_store(built, tmp_path)


def test_anonymous_visitors_are_sent_to_sign_in_and_cannot_decide(store):
    with live_app(store) as base, Visitor(base) as anon:
        r = anon.http.get("/audits/net2")
        assert r.status_code == 303 and r.headers["location"] == "/login?next=%2Faudits%2Fnet2"
        assert anon.http.get("/api/audits").status_code == 401
        assert anon.http.get("/audits/net2/files/audit.json").status_code == 303
        # A forged post with a token of its own: still nobody signed in.
        token = anon.form("/login")["csrf"]
        r = anon.http.post("/audits/net2/review", headers={"Origin": base},
                           data={"decision": "approve", "ack": ACKS, "csrf": token, "reviewer": "ann"})
        assert r.status_code == 401
    assert decision_rows(store) == []


def test_viewer_reads_but_cannot_record_a_decision(store):
    with live_app(store) as base, Visitor(base) as vic:
        assert vic.sign_in("vic").status_code == 303
        page = vic.http.get("/audits/net2").text
        assert 'id="review-closed"' in page and "only reviewers and admins" in page
        assert 'name="audit_digest"' not in page  # no form for a viewer
        csrf = vic.form("/")["csrf"]  # the sign-out form's token is the session's token
        r = vic.http.post("/audits/net2/review", headers={"Origin": base},
                          data={"decision": "approve", "ack": ACKS, "csrf": csrf})
        assert r.status_code == 403 and "viewer" in r.text
    assert decision_rows(store) == []


def test_reviewer_approval_records_the_session_identity_digests_and_acknowledgements(store):
    audit_json = (store / "net2" / "audit.json").read_bytes()

    with live_app(store) as base, Visitor(base) as ann:
        wrong = Visitor(base)
        assert wrong.sign_in("ann", "not the password").status_code == 401
        wrong.http.close()
        assert ann.sign_in("ann").status_code == 303
        # Approving without acknowledging each error and warning finding is refused, naming them.
        r = ann.review("net2", "approve", acks=["overfitting"])
        assert r.status_code == 422 and "not acknowledged: Shortcut (shortcut)" in r.text
        r = ann.review("net2", "approve", acks=ACKS + ["made-up"])
        assert r.status_code == 422 and "made-up" in r.text
        # A reviewer field in the form is ignored: the recorded reviewer is the session's identity.
        r = ann.review("net2", "approve", comment="fine <b>bold</b>", reviewer="mallory")
        assert r.status_code == 303 and r.headers["location"] == "/audits/net2?recorded=1#review"
        page = ann.http.get("/audits/net2").text
        assert page.count('<tr class="decision">') == 1 and "fine &lt;b&gt;bold&lt;/b&gt;" in page
        assert re.search(r'id="release-status">.*badge pass">open', page, re.S)
        api = ann.http.get("/api/audits/net2/reviews").json()
        assert [d["reviewer"] for d in api] == ["ann"]
    [row] = decision_rows(store)
    assert row["reviewer"] == "ann" and row["role"] == "reviewer" and row["auth"] == "password"
    assert row["audit_id"] == "net2" and row["release"] == "net@2" and row["decision"] == "approve"
    assert row["audit_digest"] == "sha256:" + hashlib.sha256(audit_json).hexdigest()
    assert row["model_digest"] == "sha256:" + "ab" * 32
    assert row["acknowledged"] == '["overfitting", "shortcut"]'
    # the static index follows the log (rebuilt off the request path, finished at shutdown)
    static = (store / "index.html").read_text()
    assert "approve" in static[static.index('data-id="net2"'):][:2000]


def test_cross_origin_posts_and_missing_tokens_are_refused(store):
    with live_app(store) as base, Visitor(base) as ann:
        ann.sign_in("ann")
        other = f"http://127.0.0.1:{int(base.rsplit(':', 1)[1]) + 1}"  # same site, another origin
        assert ann.review("net2", "approve", origin=other).status_code == 403
        assert ann.review("net2", "approve", origin="null").status_code == 403
        assert ann.review("net2", "approve", origin=None).status_code == 403  # neither Origin nor Referer
        form = ann.form("/audits/net2")
        r = ann.http.post("/audits/net2/review", headers={"Origin": base},
                          data={"decision": "approve", "ack": ACKS, "audit_digest": form["audit_digest"]})
        assert r.status_code == 403 and "security token" in r.text
        r = ann.http.post("/audits/net2/review", headers={"Referer": base + "/audits/net2"},
                          data={"decision": "reject", "csrf": form["csrf"], "audit_digest": form["audit_digest"]})
        assert r.status_code == 303  # a same-origin Referer is enough when Origin is absent
        # a sign-in form posted from another origin is refused too (login CSRF)
        login_token = Visitor(base).form("/login")["csrf"]
        r = ann.http.post("/login", headers={"Origin": other},
                          data={"name": "ann", "password": ACCOUNTS["ann"][1], "csrf": login_token})
        assert r.status_code == 403
    assert [r["decision"] for r in decision_rows(store)] == ["reject"]


def test_other_host_headers_are_refused(store):
    with live_app(store) as base, Visitor(base) as v:
        for host in ("evil.example", "127.0.0.1.evil.example", "attacker:8765"):
            r = v.http.get("/login", headers={"Host": host})
            assert r.status_code == 400, host
        assert v.http.get("/login", headers={"Host": "localhost"}).status_code == 200


def test_pages_cannot_be_framed_and_only_their_own_scripts_run(store):
    with live_app(store) as base, Visitor(base) as ann:
        ann.sign_in("ann")
        for path in ("/", "/audits/net2", "/compare?a=net1-old&b=net2", "/login"):
            r = ann.http.get(path)
            assert r.status_code == 200, path
            assert r.headers["x-frame-options"] == "DENY"
            policy = r.headers["content-security-policy"]
            assert "frame-ancestors 'none'" in policy and "default-src 'none'" in policy
            nonce = re.search(r"script-src 'nonce-([^']+)'", policy).group(1)
            scripts = re.findall(r"<script\b[^>]*>", r.text)
            assert all(f'nonce="{nonce}"' in s for s in scripts), (path, scripts)
            assert not re.search(r"<[^>]+\son[a-z]+\s*=", r.text), path  # no inline event handlers
            assert "javascript:" not in r.text
        assert re.findall(r"<script\b[^>]*>", ann.http.get("/").text)  # the index has its filter script
        two = [re.search(r"nonce-([^']+)'", ann.http.get("/").headers["content-security-policy"]).group(1)
               for _ in range(2)]
        assert two[0] != two[1]  # a fresh nonce per response, also when the page comes from the cache
        with Visitor(base) as ada:  # the cached index is personalised: each sees their own name and token
            ada.sign_in("ada")
            def who(text: str) -> str:
                return re.search(r'class="account small">\s*(\S+) <', text).group(1)
            assert who(ada.http.get("/").text) == "ada" and who(ann.http.get("/").text) == "ann"
            assert ada.form("/")["csrf"] != ann.form("/")["csrf"]
        f = ann.http.get("/audits/net2/files/audit.json")
        assert f.status_code == 200 and f.headers["content-security-policy"].startswith("sandbox")


def _raw_request(base: str, head: str, body: bytes = b"") -> tuple[int, str]:
    """Send a raw HTTP/1.1 request head (and optionally the start of a body); the status and the response."""
    host, port = base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as s:
        s.sendall(head.replace("\n", "\r\n").encode() + b"\r\n" + body)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    status = int(data.split(b" ", 2)[1])
    return status, data.decode("latin-1")


def test_large_and_unusual_bodies_are_refused_before_anything_is_read_or_written(store, tmp_path, monkeypatch):
    spool = tmp_path / "spool"
    spool.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(spool))  # where a form parser would spool uploads
    with live_app(store) as base, Visitor(base) as ann:
        ann.sign_in("ann")
        cookie = "; ".join(f"{k}={v}" for k, v in ann.http.cookies.items())
        head = (f"POST /audits/net2/review HTTP/1.1\nHost: 127.0.0.1\nOrigin: {base}\nCookie: {cookie}\n"
                "Content-Type: multipart/form-data; boundary=x\nContent-Length: {n}\n")
        status, _ = _raw_request(base, head.format(n=300 * 1024 * 1024), b"--x\r\n")  # 300 MB announced, 4 bytes sent
        assert status == 413
        status, _ = _raw_request(base, head.format(n=200), b"--x\r\n" + b"a" * 194)
        assert status == 415  # small multipart: still never parsed
        chunked = head.replace("Content-Length: {n}\n", "Transfer-Encoding: chunked\n")
        status, _ = _raw_request(base, chunked, b"5\r\nhello\r\n0\r\n\r\n")
        assert status == 411
        big = ann.http.post("/audits/net2/review", headers={"Origin": base},
                            data={"decision": "approve", "comment": "x" * 70_000})
        assert big.status_code == 413
        assert ann.http.get("/audits/net2").status_code == 200  # the app is fine afterwards
    assert list(spool.iterdir()) == []
    assert decision_rows(store) == []


def test_decisions_need_a_readable_audit_and_the_audit_the_reviewer_saw(store):
    with live_app(store) as base, Visitor(base) as ann:
        ann.sign_in("ann")
        token = ann.form("/")["csrf"]
        for audit_id in ("no-audit", "corrupt", "nope", "..%2Fnet2"):
            r = ann.http.post(f"/audits/{audit_id}/review", headers={"Origin": base},
                              data={"decision": "reject", "csrf": token, "audit_digest": "x"})
            assert r.status_code == 404, audit_id
        form = ann.form("/audits/net2")
        # The audit is rewritten after the page was loaded: the decision would be about content nobody read.
        (store / "net2" / "audit.json").write_text((store / "net2" / "audit.json").read_text().replace(
            '"accuracy": 0.8', '"accuracy": 0.99'))
        r = ann.http.post("/audits/net2/review", headers={"Origin": base},
                          data={"decision": "approve", "ack": ACKS, **form})
        assert r.status_code == 409 and "changed since the page was loaded" in r.text
    assert decision_rows(store) == []


def test_decisions_cannot_be_edited_or_deleted(store):
    with live_app(store) as base, Visitor(base) as ann:
        ann.sign_in("ann")
        assert ann.review("net2", "approve").status_code == 303
        token = ann.form("/")["csrf"]
        for method in ("PUT", "PATCH", "DELETE"):
            for path in ("/audits/net2/review", "/api/audits/net2/reviews", "/audits/net2"):
                r = ann.http.request(method, path, headers={"Origin": base}, data={"csrf": token, "decision": "reject"})
                assert r.status_code == 405, (method, path)
    before = decision_rows(store)
    assert len(before) == 1
    # Not through SQL either: the database refuses UPDATE and DELETE on the log.
    with sqlite3.connect(store / "reviews.db") as con:
        for sql in ("UPDATE imaudit_decisions SET decision = 'reject'", "DELETE FROM imaudit_decisions"):
            with pytest.raises(sqlite3.IntegrityError, match="append-only"):
                con.execute(sql)
    assert decision_rows(store) == before
    # Someone who drops the trigger and edits the file breaks the hash chain, and it is detected.
    with sqlite3.connect(store / "reviews.db") as con:
        con.execute("DROP TRIGGER imaudit_decisions_no_update")
        con.execute("UPDATE imaudit_decisions SET comment = 'edited'")
    db = open_review_db(store)
    try:
        with pytest.raises(LogTampered, match="decision 1"):
            DecisionLog(db).verify()
    finally:
        db.dispose()


def test_a_later_audit_of_the_same_release_shows_the_approval_as_applying_to_the_older_one(store):
    with live_app(store) as base, Visitor(base) as ann:
        ann.sign_in("ann")
        assert ann.review("net1-old", "approve").status_code == 303
        make_result(store / "net1-new", created="2024-06-01T10:00:00+00:00", model_ref="release:net@1", rich=False)
        page = ann.http.get("/audits/net1-new").text
        related = page[page.index('id="release-decisions"'):]
        assert "older" in related and "net1-old" in related and "approve" in related
        assert "No decision recorded yet." in page
        assert "latest complete audit net1-new is pending review" in page  # the gate is closed again
        index = ann.http.get("/").text
        row = index[index.index('data-id="net1-new"'):]
        assert "approve on an older audit" in row[: row.index("</tr>")]
        gate = ann.http.get("/api/gate", params={"release": "release:net@1"}).json()
        assert gate["passed"] is False and "net1-new" in gate["reason"]


def test_sign_out_ends_the_session_and_disabled_accounts_lose_theirs(store):
    with live_app(store) as base, Visitor(base) as ann, Visitor(base) as ada:
        set_cookie = ann.sign_in("ann").headers["set-cookie"]
        assert "HttpOnly" in set_cookie and "SameSite=lax" in set_cookie and "Secure" not in set_cookie
        session = ann.http.cookies["imaudit_session"]
        token = ann.form("/")["csrf"]
        assert ann.http.post("/logout", headers={"Origin": base}, data={"csrf": token}).status_code == 303
        with Visitor(base) as replay:  # someone who kept a copy of the cookie
            replay.http.cookies.set("imaudit_session", session)
            assert replay.http.get("/").status_code == 303
        ann.sign_in("ann")
        assert ann.http.get("/").status_code == 200
        # An admin disables ann: her session ends at once; a reviewer cannot reach the admin page.
        assert ann.http.get("/admin").status_code == 403
        ada.sign_in("ada")
        admin_token = ada.form("/admin")["csrf"]
        r = ada.http.post("/admin/reviewers/ann/disable", headers={"Origin": base}, data={"csrf": admin_token})
        assert r.status_code == 303
        assert ann.http.get("/").status_code == 303
        assert ann.sign_in("ann").status_code == 401


def test_repeated_failed_sign_ins_are_throttled(store):
    app = create_app(store)
    app.state.services.gatekeeper.throttle = LoginThrottle(per_name=2, per_address=10, window_s=600)
    with serving(app) as base, Visitor(base) as v:
        assert [v.sign_in("ann", "wrong password").status_code for _ in range(2)] == [401, 401]
        r = v.sign_in("ann")  # the right password, but too many failures just now
        assert r.status_code == 429 and "try again in" in r.text
        assert v.sign_in("vic").status_code == 303  # another account from the same address is not locked


def test_single_sign_on_header_is_trusted_only_from_the_configured_proxy(store):
    sso = AuthConfig(proxy_header="X-Forwarded-User", trusted_proxies=("127.0.0.1",), proxy_role="viewer")
    with live_app(store, auth=sso) as base, Visitor(base) as v:
        # ann has an account (reviewer): her role applies; the recorded reviewer is the header's identity.
        v.http.headers["X-Forwarded-User"] = "ann"
        assert v.review("net2", "approve").status_code == 303
        # someone without an account gets the proxy's default role: viewer
        v.http.headers["X-Forwarded-User"] = "zed"
        v.http.cookies.clear()
        assert 'id="review-closed"' in v.http.get("/audits/net2").text
        v.http.headers["X-Forwarded-User"] = "bad name<script>"
        assert v.http.get("/").status_code == 303
        # Over HTTPS (as the proxy says), cookies are Secure with the __Host- prefix.
        v.http.cookies.clear()
        v.http.headers.update({"X-Forwarded-User": "ann", "X-Forwarded-Proto": "https"})
        r = v.http.get("/", headers={"Host": "127.0.0.1"})
        assert r.status_code == 200
        cookie = r.headers["set-cookie"]
        assert cookie.startswith("__Host-imaudit_session=") and "Secure" in cookie
        assert r.headers["strict-transport-security"].startswith("max-age=")
    [row] = decision_rows(store)
    assert row["reviewer"] == "ann" and row["auth"] == "proxy" and row["role"] == "reviewer"

    elsewhere = AuthConfig(proxy_header="X-Forwarded-User", trusted_proxies=("10.9.0.0/16",))
    with live_app(store, auth=elsewhere) as base, Visitor(base) as v:
        r = v.http.get("/", headers={"X-Forwarded-User": "ann"})
        assert r.status_code == 303 and r.headers["location"].startswith("/login")


def test_without_accounts_loopback_visitors_read_only_and_insecure_mode_never_opens_the_gate(tmp_path):
    store = build_store(tmp_path, accounts={})
    with live_app(store) as base, Visitor(base) as anon:
        page = anon.http.get("/audits/net2").text
        assert "imaudit reviewers add NAME" in page and 'name="audit_digest"' not in page
        token = anon.form("/login")["csrf"]
        r = anon.http.post("/audits/net2/review", headers={"Origin": base},
                           data={"decision": "approve", "ack": ACKS, "csrf": token})
        assert r.status_code == 403
    assert decision_rows(store) == []
    with live_app(store, auth=AuthConfig(insecure_no_auth=True)) as base, Visitor(base) as anon:
        assert "not signed in" in anon.http.get("/audits/net2").text
        assert anon.review("net2", "approve").status_code == 303
        gate = anon.http.get("/api/gate", params={"release": "release:net@2"}).json()
        assert gate["passed"] is False and "without sign-in" in gate["reason"]
    [row] = decision_rows(store)
    assert row["reviewer"] == "anonymous" and row["auth"] == "none"


def test_corrupt_database_while_running_gives_a_clear_page(store):
    with live_app(store) as base, Visitor(base) as ann:
        ann.sign_in("ann")
        assert ann.http.get("/").status_code == 200
        for suffix in ("", "-wal", "-shm"):
            path = store / f"reviews.db{suffix}"
            if path.exists():
                path.write_bytes(b"\0garbage" * 4096)
        r = ann.http.get("/audits/net2")
        assert r.status_code == 503
        assert "review database" in r.text and "audits and reports are unaffected" in r.text
        assert "Traceback" not in r.text
        api = ann.http.get("/api/audits")
        assert api.status_code == 503 and "review database" in api.json()["detail"]
