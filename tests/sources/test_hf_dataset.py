"""hf:ORG/NAME datasets saved with ``datasets`` into its local cache, audited offline through the CLI."""

from __future__ import annotations

import pytest
from orch_helpers import CLASSES, tiny_checkpoint
from source_helpers import SHAPES, age_files, audit_json, audit_predictions, count_probes, oracle_logits, save_hf_dataset
from typer.testing import CliRunner

from imaudit.audits.data import load_dataset
from imaudit.audits.stages import inputs
from imaudit.cli import app
from imaudit.models import load_model

pytestmark = pytest.mark.slow


def cli(*args: str) -> tuple[int, str]:
    r = CliRunner().invoke(app, list(args), catch_exceptions=False)
    return r.exit_code, r.output


@pytest.fixture
def shapes_hf(hf_datasets_cache) -> tuple[str, object]:
    """builtin:shapes saved as the HF dataset acme/shapes (train, validation, and a test split without labels)."""
    shapes = load_dataset(SHAPES, progress=False)
    rows = {split: [((shapes.root / "images" / r.id.split("/", 1)[1]).read_bytes(), CLASSES.index(r.label))
                    for r in shapes.split(split).itertuples()] for split in ("train", "val")}
    splits = {"train": rows["train"], "validation": rows["val"], "test": [(data, -1) for data, _ in rows["val"][:3]]}
    save_hf_dataset(hf_datasets_cache, "acme/shapes", splits, CLASSES)
    return "hf:acme/shapes", shapes


def test_audit_of_a_cached_hf_dataset(shapes_hf, tmp_path):
    ref, shapes = shapes_hf
    ckpt = tiny_checkpoint(tmp_path, seed=2)
    code, out = cli("audit", "--model", f"file:{ckpt}", "--dataset", ref, "--methods", "", "--out",
                    str(tmp_path / "s"), "--train-cap", "8")
    assert code == 0, out
    audit = audit_json(tmp_path / "s")
    ds = audit["dataset"]
    assert ds["ref"] == ref and ds["classes"] == CLASSES
    assert ds["counts"]["train"] == shapes.counts()["train"] and ds["counts"]["val"] == shapes.counts()["val"]
    # Same images, labels and splits as the builtin set: the same content digest.
    assert ds["digest"] == shapes.digest
    assert [e["reason"] for e in ds["excluded"]] == ["no label"] * 3  # the unlabelled test rows
    bundle = load_dataset(ref, progress=False)
    logits, y = oracle_logits(load_model(f"file:{ckpt}"), bundle)
    assert audit_predictions(tmp_path / "s")["pred"].tolist() == logits.argmax(1).tolist()
    assert audit["metrics"]["val"]["accuracy"] == pytest.approx(float((logits.argmax(1) == y).mean()))


def test_options_and_offline_errors(shapes_hf, tmp_path):
    ref, shapes = shapes_hf
    only_train = load_dataset(f"{ref}?split=train", progress=False)
    assert only_train.split_method.startswith("auto") and set(only_train.splits) == {"train", "val"}
    assert len(only_train.manifest) == len(shapes.split("train"))
    for bad, needle in [(f"{ref}?image=pixels", "no column 'pixels' (columns: image, label)"),
                        (f"{ref}?split=dev", "no split 'dev' (splits: train, validation, test)"),
                        (f"{ref}?colour=red", "unknown option 'colour'"),
                        ("hf:acme/absent", "dataset acme/absent is not in the local Hugging Face datasets cache")]:
        code, out = cli("audit", "--model", "timm:test_resnet?pretrained=false", "--dataset", bad)
        assert code == 2 and needle in out and len(out.strip().splitlines()) == 1, out


def test_a_re_audit_of_an_hf_dataset_reads_no_image_again(shapes_hf, tmp_path, monkeypatch):
    """The manifest cache works for hf: too: the materialised copy is probed once (audit.json cache.manifest)."""
    ref, shapes = shapes_hf
    ckpt = tiny_checkpoint(tmp_path, seed=2)
    probed = count_probes(monkeypatch)

    def audit(store: str) -> dict:
        inputs.forget()  # a new audit process would not have the bundle in memory either
        code, out = cli("audit", "--model", f"file:{ckpt}", "--dataset", ref, "--methods", "", "--out",
                        str(tmp_path / store), "--train-cap", "8")
        assert code == 0, out
        return audit_json(tmp_path / store)

    cold = audit("cold")
    n = len(shapes.manifest)  # labelled rows; the 3 unlabelled ones are excluded before probing
    assert cold["cache"]["manifest"] == {"total": n, "reused": 0, "computed": n, "rejected": 0} and len(probed) == n
    folder = load_dataset(ref, progress=False).root
    age_files(folder)  # just written: past the cache's racy window, as time would
    load_dataset(ref, progress=False)  # the cache learns the aged mtimes
    probed.clear()
    warm = audit("warm")
    assert probed == [] and warm["cache"]["manifest"] == {"total": n, "reused": n, "computed": 0, "rejected": 0}
    assert warm["dataset"]["digest"] == cold["dataset"]["digest"] == shapes.digest
    inputs.forget()
