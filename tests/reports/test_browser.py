"""Drives the review app in headless Chromium: index -> report -> approve -> stored and shown.

Saves a screenshot of the report to the test's tmp folder and to test-artifacts/ (git-ignored).
"""

from __future__ import annotations

import shutil
import socket
import threading
import time
from pathlib import Path

import pytest
from reports_factory import HOSTILE, make_result
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

from imaudit.reports.app import create_app
from imaudit.reports.db import Review
from imaudit.reports.index import build_index
from imaudit.reports.render import render_report

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server(tmp_path):
    """The app on 127.0.0.1:<free port> in a thread; stopped after the test."""
    import uvicorn

    store = tmp_path / "reports"
    for i in range(2):
        folder = store / f"net-1.{i}"
        render_report(make_result(folder, created=f"2024-05-0{i + 1}T10:00:00+00:00",
                                  model_ref=f"release:net@1.{i}", seed=i, accuracy=0.7 + 0.1 * i), folder)
    make_result(store / "other", created="2024-04-01T10:00:00+00:00", model_ref="timm:test_vit", rich=False)
    build_index(store)
    port = _free_port()
    srv = uvicorn.Server(uvicorn.Config(create_app(store), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not srv.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}", store
    srv.should_exit = True
    thread.join(timeout=10)


def test_review_in_browser(server, tmp_path):
    if not CHROMIUM.exists():
        pytest.skip("/usr/bin/chromium is not installed (apt-get install chromium)")
    from playwright.sync_api import expect, sync_playwright

    base, store = server
    dialogs: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))

            page.goto(base + "/")
            row = page.locator('tr[data-id="net-1.1"]')
            expect(row).to_contain_text("Pending review")
            row.get_by_role("link", name="net").click()

            page.wait_for_url(base + "/audits/net-1.1")
            expect(page.locator("h1")).to_have_text("net v1.1")
            expect(page.locator("#per-class-table")).to_contain_text(HOSTILE)  # shown as text, not run
            # Load lazy images so the full-page screenshot shows the galleries.
            page.evaluate("document.querySelectorAll('img[loading=lazy]').forEach(i => i.loading = 'eager')")
            page.wait_for_load_state("networkidle")
            broken = page.evaluate("Array.from(document.images).filter(i => !i.complete || i.naturalWidth === 0).length")
            assert broken == 0
            shot = tmp_path / "report.png"
            page.screenshot(path=str(shot), full_page=True)
            ARTIFACTS.mkdir(exist_ok=True)
            shutil.copy(shot, ARTIFACTS / "report.png")

            page.select_option("#decision", "approve")
            page.fill("#reviewer", "Playwright Reviewer")
            page.fill("#comment", "approved from the browser")
            page.get_by_role("button", name="Record decision").click()
            page.wait_for_url(base + "/audits/net-1.1?recorded=1#review")
            expect(page.locator("#review-confirmation")).to_contain_text("Decision recorded: Approved by Playwright Reviewer")
            expect(page.locator(".verdict .vreview")).to_contain_text("Approved")
            expect(page.locator("tr.decision")).to_contain_text("Playwright Reviewer")

            page.goto(base + "/")
            expect(page.locator('tr[data-id="net-1.1"] td.review')).to_contain_text("Approved")
            expect(page.locator('tr[data-id="net-1.0"] td.review')).to_contain_text("Pending review")
            # the model filter hides other models' rows
            page.select_option('[data-index-filter="model"]', "net")
            expect(page.locator('tr[data-id="other"]')).to_be_hidden()
            expect(page.locator('tr[data-id="net-1.1"]')).to_be_visible()
        finally:
            browser.close()

    assert dialogs == []
    engine = create_engine(f"sqlite:///{store / 'reviews.db'}")
    with Session(engine) as s:
        rows = [(r.audit_id, r.decision, r.reviewer, r.comment) for r in s.scalars(select(Review))]
    engine.dispose()
    assert rows == [("net-1.1", "approve", "Playwright Reviewer", "approved from the browser")]
    assert shot.stat().st_size > 10_000
