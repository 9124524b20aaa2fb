"""Drives the review app in headless Chromium: sign in -> index -> report -> acknowledge findings -> approve
-> recorded with the session's identity, the release gate open; the same review form posted from a page
on another origin (served by a second loopback server) and the app framed by that page are refused.

Saves a screenshot of the report to the test's tmp folder and to test-artifacts/ (git-ignored).
"""

from __future__ import annotations

import http.server
import shutil
import threading
from pathlib import Path

import pytest
from jinja2 import Template
from reports_factory import HOSTILE, make_result
from signoff_helpers import ACCOUNTS, decision_rows, live_app, run_cli

from imaudit.reports.index import build_index
from imaudit.reports.render import render_report

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture
def server(tmp_path):
    """The app on 127.0.0.1:<free port> in a thread with one reviewer account; stopped after the test."""
    store = tmp_path / "reports"
    for i in range(2):
        folder = store / f"net-1.{i}"
        render_report(make_result(folder, created=f"2024-05-0{i + 1}T10:00:00+00:00",
                                  model_ref=f"release:net@1.{i}", seed=i, accuracy=0.7 + 0.1 * i), folder)
    make_result(store / "other", created="2024-04-01T10:00:00+00:00", model_ref="timm:test_vit", rich=False)
    build_index(store)
    code, out = run_cli("reviewers", "add", "ann", "--password-stdin", "--store", str(store),
                        stdin=ACCOUNTS["ann"][1] + "\n")
    assert code == 0, out
    with live_app(store) as base:
        yield base, store


ATTACKER_PAGE = Template("""<!doctype html><html><body>
<h1>Win a prize</h1>
<form id="f" method="post" action="{{ target }}">
  <input type="hidden" name="decision" value="approve">
  {% for code in acks %}<input type="hidden" name="ack" value="{{ code }}">{% endfor %}
  <input type="hidden" name="comment" value="approved by a page on another origin">
  <input type="hidden" name="csrf" value="{{ csrf }}">
  <input type="hidden" name="audit_digest" value="{{ digest }}">
</form>
{% if frame %}<iframe id="app" src="{{ frame }}" width="800" height="600"></iframe>{% endif %}
{% if submit %}<script>document.getElementById("f").submit();</script>{% endif %}
</body></html>""", autoescape=True)


@pytest.fixture
def attacker():
    """A second loopback server (another origin, same site) whose page is set by the test."""
    pages: dict[str, str] = {}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            body = pages.get(self.path, "not found").encode()
            self.send_response(200 if self.path in pages else 404)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}", pages
    srv.shutdown()
    srv.server_close()
    thread.join(timeout=10)


def test_review_in_browser(server, attacker, tmp_path):
    if not CHROMIUM.exists():
        pytest.skip("/usr/bin/chromium is not installed (apt-get install chromium)")
    from playwright.sync_api import expect, sync_playwright

    base, store = server
    evil, evil_pages = attacker
    dialogs: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))

            page.goto(base + "/")
            page.wait_for_url(base + "/login?next=%2F")
            page.fill("#name", "ann")
            page.fill("#password", ACCOUNTS["ann"][1])
            page.get_by_role("button", name="Sign in").click()
            page.wait_for_url(base + "/")
            row = page.locator('tr[data-id="net-1.1"]')
            expect(row).to_contain_text("Pending review")
            row.get_by_role("link", name="net").click()

            page.wait_for_url(base + "/audits/net-1.1")
            expect(page.locator("h1")).to_have_text("net v1.1")
            expect(page.locator("#per-class-table")).to_contain_text(HOSTILE)  # shown as text, not run
            # the review comes after the evidence; the navigation jumps to it
            assert page.evaluate("document.getElementById('gallery').getBoundingClientRect().top"
                                 " < document.querySelector('form.review').getBoundingClientRect().top")
            expect(page.locator('nav.toc a[href="#review"]')).to_be_visible()
            expect(page.locator("#release-status")).to_contain_text("closed")
            # Load lazy images so the full-page screenshot shows the galleries.
            page.evaluate("document.querySelectorAll('img[loading=lazy]').forEach(i => i.loading = 'eager')")
            page.wait_for_load_state("networkidle")
            broken = page.evaluate("Array.from(document.images).filter(i => !i.complete || i.naturalWidth === 0).length")
            assert broken == 0
            shot = tmp_path / "report.png"
            page.screenshot(path=str(shot), full_page=True)
            ARTIFACTS.mkdir(exist_ok=True)
            shutil.copy(shot, ARTIFACTS / "report.png")

            # Approving needs every error and warning finding acknowledged.
            page.select_option("#decision", "approve")
            page.fill("#comment", "approved from the browser")
            page.get_by_role("button", name="Record decision").click()
            expect(page.locator("#review .error-box")).to_contain_text("not acknowledged")
            for box in page.locator("#acks input[name=ack]").all():
                box.check()
            page.select_option("#decision", "approve")
            page.get_by_role("button", name="Record decision").click()
            page.wait_for_url(base + "/audits/net-1.1?recorded=1#review")
            expect(page.locator("#review-confirmation")).to_contain_text("Decision recorded: Approved by ann")
            expect(page.locator(".verdict .vreview")).to_contain_text("Approved")  # the banner shows the decision
            expect(page.locator("tr.decision")).to_contain_text("ann")
            expect(page.locator("#release-status")).to_contain_text("open")

            # A page on another origin posts the same form, even carrying this session's real token
            # (which it could not read in reality): refused by the Origin check, nothing recorded.
            tokens = page.evaluate("""() => ({csrf: document.querySelector('form.review input[name=csrf]').value,
                                            digest: document.querySelector('input[name=audit_digest]').value})""")
            target = base + "/audits/net-1.1/review"
            for name, csrf in (("/no-token", ""), ("/stolen-token", tokens["csrf"])):
                evil_pages[name] = ATTACKER_PAGE.render(target=target, acks=["overfitting", "shortcut"], csrf=csrf,
                                                        digest=tokens["digest"], submit=True, frame=None)
                with page.expect_response(target) as answer:
                    page.goto(evil + name)
                assert answer.value.status == 403, name
                expect(page.locator("body")).to_contain_text("cross-origin request refused")
            # ... and cannot show the app inside a frame to trick a click.
            evil_pages["/frame"] = ATTACKER_PAGE.render(target=target, acks=[], csrf="", digest="", submit=False,
                                                        frame=base + "/audits/net-1.1")
            page.goto(evil + "/frame")
            page.wait_for_timeout(500)
            assert page.frame_locator("#app").locator("#review").count() == 0

            page.goto(base + "/")
            expect(page.locator('tr[data-id="net-1.1"] td.review')).to_contain_text("Approved")
            expect(page.locator('tr[data-id="net-1.0"] td.review')).to_contain_text("Pending review")
            # the model filter hides other models' rows (the index's script runs under the CSP)
            page.select_option('[data-index-filter="model"]', "net")
            expect(page.locator('tr[data-id="other"]')).to_be_hidden()
            expect(page.locator('tr[data-id="net-1.1"]')).to_be_visible()
        finally:
            browser.close()

    assert dialogs == []
    rows = [(r["audit_id"], r["decision"], r["reviewer"], r["comment"]) for r in decision_rows(store)]
    assert rows == [("net-1.1", "approve", "ann", "approved from the browser")]
    assert shot.stat().st_size > 10_000
    code, out = run_cli("gate", "release:net@1.1", "--store", str(store))
    assert code == 0 and "approved by ann" in out
