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
    return {"demo": demo, "next": second, "page": page, "output": r.output, "home": root / "home"}


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
    # Each audit explained its own sample, so a regressed image was explained by B only: compare drew A's
    # gradient maps with A's model, and every changed image shows both audits' saliency, Grad-CAM and IG.
    rows = page.locator("figure.cmp")
    assert rows.count() > 0
    for k in range(rows.count()):
        for method in ("saliency", "gradcam", "ig"):
            for side in ("A", "B"):
                assert rows.nth(k).locator(f'img[alt^="{side} {method} map"]').count() == 1, (k, side, method)
    assert page.locator("figure.by-compare").count() > 0 and "computed by imaudit compare" in page.inner_text("body")
    page.close()


def test_maps_compare_draws_match_the_audits_own(defaults, tmp_path, monkeypatch):
    """Known answer: for an image the audit explained itself, the map compare draws with that audit's model
    is the audit's own (the same overlay, up to float noise from another batch composition)."""
    import numpy as np
    from PIL import Image

    from imaudit.reports.compare_maps import _explain_side
    from imaudit.reports.store import load_audit

    monkeypatch.setenv("IMAUDIT_HOME", str(defaults["home"]))  # where demo-digits@1 is registered
    folder = defaults["demo"]
    audit = load_audit(folder)
    own = (audit.explanations["saliency"].model_extra or {})["overlays"]
    ids = sorted(own)[:3]
    drawn, why = _explain_side(audit, folder, ids, ["saliency", "gradcam"], tmp_path, "a")
    assert why is None and {i for _, i in drawn} == set(ids)
    for i in ids:
        ours = np.asarray(Image.open(tmp_path / drawn[("saliency", i)]).convert("RGB"), dtype=np.float32)
        theirs = np.asarray(Image.open(folder / own[i]).convert("RGB"), dtype=np.float32)
        assert ours.shape == theirs.shape and np.abs(ours - theirs).mean() < 2.0, i
    # another model's weights under the same ref are refused, not drawn
    audit.model.digest = "0" * 64
    drawn, why = _explain_side(audit, folder, ids, ["saliency"], tmp_path / "other", "a")
    assert drawn == {} and "other weights" in why
