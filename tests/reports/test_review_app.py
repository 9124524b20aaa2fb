"""The review app over a report store: routes, path safety, form validation, decisions in the DB."""

from __future__ import annotations

import re

import shutil

import pytest
from fastapi.testclient import TestClient
from reports_factory import HOSTILE, make_result
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

from imaudit.bench.review_load import hidden_inputs
from imaudit.reports.accounts import Accounts
from imaudit.reports.app import create_app
from imaudit.reports.db import DecisionRow, ReviewDB, open_review_db
from imaudit.reports.render import render_report

BASE = "http://127.0.0.1"


@pytest.fixture(scope="module")
def built_store(tmp_path_factory):
    """Two rendered release audits and a broken folder, built once per module (figures take a second)."""
    store = tmp_path_factory.mktemp("app-store") / "reports"
    for i in range(2):
        folder = store / f"net-1.{i}"
        render_report(make_result(folder, created=f"2024-05-0{i + 1}T10:00:00+00:00",
                                  model_ref=f"release:net@1.{i}", seed=i), folder)
    (store / "broken").mkdir()
    (store / "broken" / "audit.json").write_text("[]")
    return store


@pytest.fixture
def store(built_store, tmp_path):
    """A private copy per test, so recorded decisions never leak between tests."""
    store = shutil.copytree(built_store, tmp_path / "reports")
    (tmp_path / "secret.txt").write_text("outside the store")
    return store


@pytest.fixture
def client(store, monkeypatch):
    """No accounts yet: loopback visitors may read (not decide)."""
    monkeypatch.delenv("IMAUDIT_DB_URL", raising=False)
    with TestClient(create_app(store), base_url=BASE) as c:
        yield c


def _rows(db_url: str) -> list[tuple[str, str, str, str]]:
    engine = create_engine(db_url)
    with Session(engine) as s:
        rows = [(r.audit_id, r.decision, r.reviewer, r.comment)
                for r in s.scalars(select(DecisionRow).order_by(DecisionRow.id))]
    engine.dispose()
    return rows


def _add_reviewer(db: ReviewDB, name: str = "ann") -> None:
    try:
        Accounts(db).add(name, "reviewer", f"{name}'s long password")
    finally:
        db.dispose()


def _sign_in(c: TestClient, name: str = "ann") -> str:
    """Sign in through the form; the session's CSRF token."""
    token = hidden_inputs(c.get("/login").text)["csrf"]
    r = c.post("/login", data={"name": name, "password": f"{name}'s long password", "csrf": token},
               headers={"Origin": BASE}, follow_redirects=False)
    assert r.status_code == 303
    return hidden_inputs(c.get("/").text)["csrf"]


def _review(c: TestClient, audit_id: str, **data: object):
    form = hidden_inputs(c.get(f"/audits/{audit_id}").text)
    return c.post(f"/audits/{audit_id}/review", data={**form, **data}, headers={"Origin": BASE},
                  follow_redirects=False)


def test_index_report_and_files(client):
    index = client.get("/")
    assert index.status_code == 200
    assert 'href="/audits/net-1.1"' in index.text and 'data-verdict="broken"' in index.text
    assert "/compare?a=net-1.0&amp;b=net-1.1" in index.text
    page = client.get("/audits/net-1.1")
    assert page.status_code == 200
    assert "Findings" in page.text and "No decision recorded yet." in page.text
    assert page.text.index('id="gallery"') < page.text.index('id="review"')  # the review after the evidence
    assert HOSTILE not in page.text and "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text
    src = re.search(r'src="(/audits/net-1.1/files/figures/\d+-confusion-val.png)"', page.text).group(1)
    figure = client.get(src)
    assert figure.status_code == 200 and figure.content.startswith(b"\x89PNG")


REFUSED = [
    "/audits/nope",
    "/audits/broken",
    "/audits/%2e%2e",
    "/audits/..%2Freports",
    "/audits/%2Fetc",
    "/audits/net-1.1/files/..%2F..%2Fsecret.txt",
    "/audits/net-1.1/files/%2Fetc%2Fpasswd",
    "/audits/net-1.1/files/figures",
    "/audits/net-1.1/files/nothing.png",
    "/audits/..%2F..%2Fsecret.txt/files/x",
]


def test_unknown_ids_and_paths_outside_the_store_are_refused(client):
    for url in REFUSED:
        r = client.get(url)
        assert r.status_code in (400, 404), url
        assert "outside the store" not in r.text, url


def test_review_is_validated_stored_and_shown(store, monkeypatch):
    monkeypatch.delenv("IMAUDIT_DB_URL", raising=False)
    _add_reviewer(open_review_db(store), "ann")
    _add_reviewer(open_review_db(store), "bob")
    with TestClient(create_app(store), base_url=BASE) as c:
        _sign_in(c, "ann")
        bad = _review(c, "net-1.1", decision="ship-it")
        assert bad.status_code == 422 and "Decision: choose one of approve, reject, needs-work" in bad.text
        ok = _review(c, "net-1.1", decision="approve", ack=["overfitting", "shortcut"], comment=f"fine {HOSTILE}")
        assert ok.status_code == 303 and ok.headers["location"].startswith("/audits/net-1.1")
        c.cookies.clear()
        _sign_in(c, "bob")
        assert _review(c, "net-1.1", decision="needs-work", comment="wait").status_code == 303
        assert _rows(f"sqlite:///{store / 'reviews.db'}") == [
            ("net-1.1", "approve", "ann", f"fine {HOSTILE}"), ("net-1.1", "needs-work", "bob", "wait")]

        page = c.get("/audits/net-1.1").text
        assert page.count('<tr class="decision">') == 2 and HOSTILE not in page
        assert page.index("needs-work") < page.index(">ann ")  # newest first
        index = c.get("/").text
        row = index[index.index('data-id="net-1.1"'):]
        assert "needs-work" in row[: row.index("</tr>")]
        api = c.get("/api/audits").json()
        by_id = {a["id"]: a for a in api}
        assert by_id["net-1.1"]["review"]["decision"] == "needs-work"
        assert by_id["net-1.0"]["pending"] is True and by_id["broken"]["broken"] is True
        assert [d["reviewer"] for d in c.get("/api/audits/net-1.1/reviews").json()] == ["ann", "bob"]
    assert "needs-work" in (store / "index.html").read_text()  # the static index follows the log


def test_compare_page(client):
    r = client.get("/compare", params={"a": "net-1.0", "b": "net-1.1"})
    assert r.status_code == 200 and "Metric deltas" in r.text and 'href="/audits/net-1.0"' in r.text
    assert HOSTILE not in r.text
    assert client.get("/compare", params={"a": "net-1.0"}).status_code == 400
    assert client.get("/compare", params={"a": "net-1.0", "b": "../x"}).status_code == 404
    assert client.get("/compare", params={"a": "net-1.0", "b": "broken"}).status_code == 404


def test_database_url_from_setting(store, tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'elsewhere' / 'decisions.sqlite'}"
    monkeypatch.setenv("IMAUDIT_DB_URL", url)
    _add_reviewer(ReviewDB(url), "cy")
    with TestClient(create_app(store), base_url=BASE) as c:
        _sign_in(c, "cy")
        assert _review(c, "net-1.0", decision="reject").status_code == 303
    assert _rows(url) == [("net-1.0", "reject", "cy", "")]
    assert not (store / "reviews.db").exists()


def test_bad_database_urls_are_one_line_input_errors(store):
    from imaudit.errors import BadInputError

    for url, why in (("nonsense", "cannot parse"), ("mysql+nodriver://u:pw@host/db", "driver not installed")):
        with pytest.raises(BadInputError, match=why) as info:
            create_app(store, db_url=url)
        assert "\n" not in str(info.value) and "pw" not in str(info.value)
