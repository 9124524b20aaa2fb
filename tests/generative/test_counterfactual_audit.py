"""Counterfactuals through the product's path (imaudit generative train, imaudit audit) on planted data.

A test_resnet trained on plain shapes with a class-coloured corner patch relies
on the patch alone; its clean twin (the same recipe without the patch) learns
the shapes. Each model gets a generator in its input space (25 epochs at batch
16, learning rate 1e-3 and width 16: a few hundred images need more updates
than DCGAN's defaults give them, and flat shapes need no more capacity): the
clean twin's from ``imaudit generative train`` once for the module, the
shortcut model's trained by its own audit (``--train-generator`` with the same
settings as ``--generator-*`` options). The shortcut model's counterfactuals
must reach the target confidence with most of their change in the patch, and
the audit's shortcut finding (saliency's shortcut search, confirmed by
intervention) must cite them; the clean twin's must change the objects and
raise no such finding.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from imaudit.audits.generative import InputSpace
from imaudit.audits.generative.concentration import box_mass
from imaudit.cli import app
from imaudit.models import load_model

from gen_helpers import PATCH, plain_shapes, train_checkpoint

# The module's fixture trains two classifiers and a generator, the first test a second generator; on a shared, loaded
# machine the first test's setup alone can pass the suite's 600 s default.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1500)]
N_EXPLAINED = 9
GENERATOR = {"epochs": 25, "batch-size": 16, "lr": 1e-3, "width": 16}  # training settings of both generators


@pytest.fixture(scope="module")
def planted(tmp_path_factory) -> dict[str, tuple[str, str]]:
    """name -> (dataset ref, model ref), with a generator for each stored in the tests' shared cache."""
    root = tmp_path_factory.mktemp("cf-planted")
    cases = {}
    with pytest.MonkeyPatch.context() as mp:
        # The same cache every test's IMAUDIT_CACHE points at (tests/conftest.py), so audits find the generators.
        mp.setenv("IMAUDIT_CACHE", str(tmp_path_factory.getbasetemp() / "shared-cache"))
        mp.setenv("IMAUDIT_HOME", str(root / "home"))
        before = torch.get_num_threads()
        torch.set_num_threads(1)  # tiny networks: more threads only thrash on a shared 2-core machine
        try:
            for name, patch in (("shortcut", True), ("clean", False)):
                data = plain_shapes(root / name, patch=patch)
                # The clean model also sees blurred and noisy copies, so it reads a small GAN's soft shapes as shapes.
                cases[name] = (data, train_checkpoint(data, root / f"{name}.pt", epochs=8, robust=not patch))
            # The shortcut model's generator is trained by its audit (--train-generator), the clean one's here.
            data, model = cases["clean"]
            options = [a for k, v in GENERATOR.items() for a in (f"--{k}", str(v))]
            r = CliRunner().invoke(app, ["generative", "train", "--dataset", data, "--model", model, *options])
            assert r.exit_code == 0, r.output
            assert "32x32 model input" in r.output
        finally:
            torch.set_num_threads(before)
    return cases


def audit(tmp_path, data: str, model: str, *extra: str, methods: str = "", exit_code: int = 0) -> dict:
    store = tmp_path / "store"
    r = CliRunner().invoke(
        app,
        ["audit", "--model", model, "--dataset", data, "--methods", methods, "--out", str(store),
         "--counterfactuals", str(N_EXPLAINED), *extra],
        catch_exceptions=False,
    )
    assert r.exit_code == exit_code, r.output
    folder = next(store.glob("*/audit.json")).parent
    return {"audit": json.loads((folder / "audit.json").read_text()), "folder": folder, "output": r.output}


def patch_box(model: str) -> list[int]:
    """The planted patch's box in model-input pixels: the patch pushed through the model's own transform."""
    space = InputSpace.from_data_config(load_model(model).data_config)
    a = np.zeros((32, 32, 3), np.uint8)
    x0, y0, x1, y1 = PATCH
    a[y0:y1, x0:x1] = 255
    seen = space.pixel_transform()(Image.fromarray(a))[0].numpy() > 0.5
    ys, xs = np.nonzero(seen)
    return [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1]


def _saturated(png) -> np.ndarray:
    """Where an RGB image holds a strongly saturated colour (the patch; shapes and background are pale or dark)."""
    a = np.asarray(Image.open(png).convert("RGB"), dtype=np.float32) / 255
    return (a.max(2) - a.min(2)) > 0.45


def test_shortcut_model_counterfactuals_change_the_patch_and_the_findings_say_so(planted, tmp_path):
    data, model = planted["shortcut"]
    # No generator is stored for this data: the audit trains one with the --generator-* settings.
    options = [a for k, v in GENERATOR.items() for a in (f"--generator-{k}", str(v))]
    out = audit(tmp_path, data, model, "--train-generator", *options, methods="saliency")
    gen, folder = out["audit"]["generative"], out["folder"]
    box = patch_box(model)
    assert gen["space"]["input_size"] == [32, 32] and gen["coverage"]["ran"] is True
    assert gen["generator"]["epochs"] == GENERATOR["epochs"] and gen["generator"]["training"] == {
        "batch_size": 16, "lr": 1e-3, "width": 16, "seed": 0}
    ok = [it for it in gen["items"] if it["outcome"] == "success"]
    assert len(ok) >= 6, gen["counts"]
    assert all(it["counterfactual_confidence"] >= 0.9 and it["prediction_survives"] for it in ok)
    # audit.json's coverage says what the stage saw: the searched images, with the left-out ones counted apart.
    cov = out["audit"]["coverage"]["counterfactuals"]
    assert cov["ran"] and cov["images"] == gen["searched"] and cov["counts"] == gen["counts"]
    assert cov["selected"] == N_EXPLAINED and set(cov["classes"]) <= {"circle", "square", "triangle"}
    # Reconstructions are drawn in the model's input space: the patch lands on the input's patch pixels.
    for it in ok:
        orig, recon = (_saturated(folder / it["pngs"][k]) for k in ("original", "reconstruction"))
        assert (orig & recon).sum() >= 0.5 * orig.sum() > 0
    overall = gen["concentration"]["overall"]
    assert box_mass(np.array(overall["grid"]), box, overall["image_size"]) >= 0.5
    # Saliency's shortcut search names the patch and the intervention confirms it; the shortcut finding then
    # cites the counterfactuals (and no hotspot finding repeats what it already says).
    findings = out["audit"]["findings"]
    cited = [f for f in findings if f["code"] == "shortcut" and f["evidence"]["confirmed"]
             and (f["evidence"].get("counterfactual") or {}).get("supports")]
    assert cited, [(f["code"], f["message"]) for f in findings]
    for f in cited:
        hb = f["evidence"]["box"]
        overlap = max(0, min(hb[2], box[2]) - max(hb[0], box[0])) * max(0, min(hb[3], box[3]) - max(hb[1], box[1]))
        assert overlap >= 0.5 * (box[2] - box[0]) * (box[3] - box[1]), (hb, box)
        assert "Counterfactuals agree" in f["message"]
    assert not [f for f in findings if f["code"] == "counterfactual-hotspot"]
    # The report shows every searched item's five images at one size, and the scale legend.
    html = (folder / "report.html").read_text()
    section = html[html.index('id="generative"'):]
    for it in ok:
        for kind in ("original", "reconstruction", "counterfactual", "change", "colour"):
            assert f'src="{it["pngs"][kind]}"' in section
    assert gen["legend_png"] in section and "fixed scale" in section


def test_clean_twin_counterfactuals_change_the_objects_and_raise_nothing(planted, tmp_path):
    data, model = planted["clean"]
    out = audit(tmp_path, data, model)
    gen = out["audit"]["generative"]
    ok = [it for it in gen["items"] if it["outcome"] == "success"]
    assert len(ok) >= 4, gen["counts"]
    overall = gen["concentration"]["overall"]
    assert overall["object_share"] >= 0.5 > overall["object_area"]
    assert box_mass(np.array(overall["grid"]), patch_box(model), overall["image_size"]) < 0.05
    assert not [f for f in out["audit"]["findings"] if f["code"] == "counterfactual-hotspot"
                or (f["evidence"].get("counterfactual") or {}).get("supports")]
    # Images left out are reported apart with their reason, never as successes.
    for it in gen["items"]:
        if it["outcome"] not in ("success", "not-reached"):
            assert it["reason"] and it["distance"] is None
    assert gen["success_rate"] == gen["counts"]["success"] / gen["searched"]


def test_without_a_generator_in_the_model_space_the_section_says_how_to_train_one(planted, tmp_path):
    data, model = planted["clean"]
    # The same data seen at 64 px: the stored generator draws 32 px inputs, so the audit cannot use it.
    # Counterfactuals asked for and impossible: the audit is partial, its gate fails (exit 1), never "passed".
    out = audit(tmp_path, data, model, "--input-size", "64", "--cf-set", "infill=false", exit_code=1)
    assert out["audit"]["status"] == "partial" and "passed" not in out["output"].lower()
    gen = out["audit"]["generative"]
    assert gen["coverage"] == {"ran": False, "images": 0, "classes": [], "reason": gen["skipped"]}
    assert out["audit"]["coverage"]["counterfactuals"]["reason"] == gen["skipped"]
    assert "draw 32x32" in gen["skipped"] and "imaudit generative train" in gen["skipped"]
    assert "--input-size 64" in gen["skipped"]


@pytest.mark.parametrize("option, value, field", [("--generator-batch-size", "1", "batch_size"),
                                                   ("--generator-lr", "0", "train_lr"),
                                                   ("--generator-width", "0", "width")])
def test_generator_training_settings_are_checked_before_anything_is_read(tmp_path, option, value, field):
    args = ["audit", "--model", "timm:test_resnet?pretrained=false", "--dataset", f"folder:{tmp_path / 'absent'}",
            "--counterfactuals", "2", "--train-generator"]
    r = CliRunner().invoke(app, [*args, option, value])
    # named as the option typed, in one line
    assert r.exit_code == 2 and r.output.startswith(f"imaudit: error: {option}: "), r.output
    assert len(r.output.strip().splitlines()) == 1
    # the same value from a --config file is named by its field there
    config = tmp_path / "audit.json"
    config.write_text(json.dumps({"generative": {field: float(value)}}))
    r = CliRunner().invoke(app, [*args, "--config", str(config)])
    want = "--generative." + field.replace("_", "-")
    assert r.exit_code == 2 and r.output.startswith(f"imaudit: error: {want}: "), r.output
