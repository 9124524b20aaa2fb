"""A default audit, as a reviewer sees it in chromium: the report of ``imaudit demo`` and its compare page.

``imaudit demo`` is the audit a newcomer runs first and the one users meet: test_resnet trained on
builtin:digits (1,797 images, 10 classes), released as demo-digits@1 and audited with every default
(the default methods, samples per class, gallery and quality settings; nothing made cheaper for the
test). A next release (the classifier nudged) is then audited at the same defaults and compared
with it by ``imaudit compare``. Built once for the module; screenshots go to test-artifacts/.
"""

from __future__ import annotations

import json

import pytest
from browser_pages import (
    assert_reviewable, audit_via_cli, check_compare, check_gallery, first_screen, look, nudged_release)
from typer.testing import CliRunner

from imaudit.audits.spec import AuditSpec
from imaudit.cli import app

# About 2 minutes of CPU for the demo's training and two default audits (the timeout guards against a hang).
pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(1500)]


@pytest.fixture(scope="module")
def defaults(tmp_path_factory) -> dict:
    """The demo's default audit, the next release's default audit and their compare page (module-wide)."""
    root = tmp_path_factory.mktemp("default-audits")
    store = root / "store"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("IMAUDIT_HOME", str(root / "home"))
        mp.setenv("IMAUDIT_CACHE", str(tmp_path_factory.getbasetemp() / "shared-cache"))
        demo = audit_via_cli(store, command="demo")
        nxt = nudged_release("release:demo-digits@1", root / "next.pt")
        second = audit_via_cli(store, "--model", f"file:{nxt}", "--dataset", "builtin:digits")
        page = root / "compare.html"
        r = CliRunner().invoke(app, ["compare", str(demo), str(second), "--out", str(page)])
        assert r.exit_code == 0, r.output
    return {"demo": demo, "next": second, "page": page, "output": r.output}


def test_default_audit_report_is_reviewable(defaults, browser):
    audit = json.loads((defaults["demo"] / "audit.json").read_text())
    # it really is a default audit: the default methods, samples and quality settings
    spec = audit["spec"]
    default = AuditSpec(model=spec["model"], dataset=spec["dataset"]).model_dump(mode="json")
    assert {k for k, v in default.items() if spec.get(k) != v} <= {"out"}
    assert audit["dataset"]["n_images"] == 1797 and len(audit["dataset"]["classes"]) == 10
    seen = look(browser, defaults["demo"] / "report.html", "report-default")
    assert_reviewable(seen)
    page = seen["page"]
    first_screen(page)
    acc = audit["metrics"]["val"]["accuracy"]
    assert page.locator("#headline-accuracy").inner_text() == f"{100 * acc:.1f}%"
    check_gallery(page, defaults["demo"], "report-default")
    page.close()


def test_default_compare_counts_match_both_predictions(defaults, browser):
    page = check_compare(browser, {"a": defaults["demo"], "b": defaults["next"], "page": defaults["page"],
                                   "output": defaults["output"]}, "compare-default")
    assert "Same data and settings" in page.locator("#settings").inner_text()  # both audits ran the defaults
    page.close()
