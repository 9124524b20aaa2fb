"""How the browser tests look at a page as a reviewer would: chromium through Playwright, a page at
1400x900 and at 390 px, and the checks every report, index and compare page must pass.

Shared by the browser tests over a default audit and over the 1,000-image every-method audit.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
from page_checks import text_problems
from typer.testing import CliRunner

from imaudit.cli import app

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
MAX_HEIGHT = 20_000


def look(browser, path: Path, name: str) -> dict:
    """Open a page as a reviewer would, at 1400x900 and at 390 px; screenshots into test-artifacts/."""
    ARTIFACTS.mkdir(exist_ok=True)
    out: dict = {}
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(path.as_uri())
    page.wait_for_load_state("load")
    page.screenshot(path=str(ARTIFACTS / f"{name}-1400-top.png"))
    # Load every image, lazy ones included, then count those that failed.
    page.evaluate("document.querySelectorAll('img[loading=lazy]').forEach(i => i.loading = 'eager')")
    page.wait_for_function("Array.from(document.images).every(i => i.complete)", timeout=30_000)
    out["broken"] = page.evaluate(
        "Array.from(document.images).filter(i => i.naturalWidth === 0).map(i => i.getAttribute('src'))")
    out["n_images"] = page.evaluate("document.images.length")
    out["height"] = page.evaluate("document.documentElement.scrollHeight")
    out["text"] = page.inner_text("body")
    page.screenshot(path=str(ARTIFACTS / f"{name}-1400-full.png"), full_page=True)
    out["page"] = page
    out["errors"] = errors
    phone = browser.new_page(viewport={"width": 390, "height": 844})
    phone.goto(path.as_uri())
    phone.wait_for_load_state("load")
    out["phone_width"] = phone.evaluate("document.documentElement.scrollWidth")
    phone.screenshot(path=str(ARTIFACTS / f"{name}-390-top.png"))
    phone.close()
    return out


def assert_reviewable(seen: dict, *, images: bool = True) -> None:
    assert seen["errors"] == [], seen["errors"]
    assert seen["broken"] == [] and (seen["n_images"] > 0 or not images)
    assert text_problems(seen["text"]) == []
    assert seen["height"] < MAX_HEIGHT, seen["height"]
    assert seen["phone_width"] <= 390, seen["phone_width"]


def first_screen(page) -> None:
    """The verdict and the validation accuracy are inside the first 1400x900 screen."""
    page.evaluate("window.scrollTo(0, 0)")
    for sel in (".verdict .vlabel", "#headline-accuracy"):
        box = page.locator(sel).bounding_box()
        assert box is not None and box["y"] >= 0 and box["y"] + box["height"] <= 900, (sel, box)
    assert re.fullmatch(r"\d+\.\d%", page.locator("#headline-accuracy").inner_text())


def check_gallery(page, audit: Path, name: str) -> None:
    """Filtering by class and result shows only matching tiles; clicking a tile enlarges every map."""
    from playwright.sync_api import expect

    gallery = json.loads((audit / "audit.json").read_text())["artifacts"]["gallery"]
    cls = gallery[0]["label"]
    page.select_option('[data-filter="class"]', cls)
    tiles = page.locator("figure.tile:visible")
    assert tiles.count() > 0
    for i in range(tiles.count()):
        t = tiles.nth(i)
        assert cls in (t.get_attribute("data-label"), t.get_attribute("data-pred"))
    page.select_option('[data-filter="correct"]', "1")
    assert all(page.locator("figure.tile:visible").nth(i).get_attribute("data-correct") == "1"
               for i in range(page.locator("figure.tile:visible").count()))
    page.select_option('[data-filter="correct"]', "")
    page.select_option('[data-filter="class"]', "")
    if page.locator("[data-gallery-more]").is_visible():
        page.locator("[data-gallery-more]").click()
    methods = page.locator('[data-filter="method"] option').all_inner_texts()
    page.select_option('[data-filter="method"]', methods[-1])
    # a tile the chosen method explained shows its map (the others say they have none)
    first = page.locator(f'figure.tile:visible:has(img.ov[data-method="{methods[-1]}"])').first
    expect(first.locator(f'img.ov[data-method="{methods[-1]}"]')).to_be_visible()
    first.click()
    dialog = page.locator("dialog#lightbox")
    expect(dialog).to_be_visible()
    # the image and every method's map; a method that did not explain this image says so
    assert dialog.locator("figure").count() == 1 + len(methods)
    assert dialog.locator("img").count() == 1 + first.locator("img.ov").count()
    assert dialog.locator(".noimg").count() == first.locator(".ov.noimg").count()
    assert all(dialog.locator("img").nth(i).evaluate("i => i.complete && i.naturalWidth > 0")
               for i in range(dialog.locator("img").count()))
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    page.locator("#gallery").screenshot(path=str(ARTIFACTS / f"{name}-gallery.png"))


def nudged_release(model: str, out: Path) -> Path:
    """A 'next release' of a test_resnet at 32 px (``model`` is its ref) without training again: its
    classifier nudged by seeded noise, so some predictions change (some fixed, some broken) while most stay."""
    import torch

    from imaudit.models import load_model, save_checkpoint

    lm = load_model(model)
    fc = lm.module.get_classifier()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        fc.weight.add_(0.6 * fc.weight.std() * torch.randn(fc.weight.shape, generator=g))
    save_checkpoint(out, lm.module, arch="test_resnet", classes=lm.classes, input_size=32)
    return out


def audit_via_cli(store: Path, *args: str, command: str = "audit") -> Path:
    """Run ``imaudit audit`` (or ``demo``) into ``store`` as a user would; the one new audit folder."""
    before = {p.name for p in store.iterdir()} if store.is_dir() else set()
    r = CliRunner().invoke(app, [command, "--out", str(store), *args], catch_exceptions=False)
    assert r.exit_code in (0, 1), r.output
    new = [p for p in store.iterdir() if p.is_dir() and p.name not in before and not p.name.startswith(".")]
    assert len(new) == 1, (r.output, new)
    return new[0]


def compare_counts(a: Path, b: Path) -> dict[str, int]:
    """Fixed, regressed, wrong in both and common images, counted from the two audits' predictions.csv."""
    pa = pd.read_csv(a / "predictions.csv", dtype={"id": str})
    pb = pd.read_csv(b / "predictions.csv", dtype={"id": str})
    j = pa.merge(pb, on=["id", "split"], suffixes=("_a", "_b"))
    ra, rb = j["y_a"] == j["pred_a"], j["y_b"] == j["pred_b"]
    return {"fixed": int((~ra & rb).sum()), "regressed": int((ra & ~rb).sum()),
            "wrong-both": int((~ra & ~rb).sum()), "common": len(j)}


def shown_counts(page) -> dict[str, int]:
    """The same counts as the compare page shows them."""
    return {k: int(page.locator(f"#n-{k}").inner_text().replace(",", ""))
            for k in ("fixed", "regressed", "wrong-both", "common")}


def check_compare(browser, compared: dict, name: str):
    """The compare page of audits ``compared["a"]`` and ``["b"]`` (written to ``["page"]``; the CLI printed
    ``["output"]``) is reviewable and its counts, and the terminal's, match both predictions.csv; the page."""
    want = compare_counts(compared["a"], compared["b"])
    assert want["fixed"] + want["regressed"] > 0  # the nudged classifier changed some predictions
    seen = look(browser, compared["page"], name)
    assert_reviewable(seen)
    assert shown_counts(seen["page"]) == want
    assert f"{want['fixed']} fixed, {want['regressed']} regressed, {want['wrong-both']} wrong in both" in compared["output"]
    return seen["page"]
