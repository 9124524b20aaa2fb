"""Chunk planning and content keys (no Prefect), and the engine's chunked predict/explain:
reuse of finished chunks, recomputation of missing ones, and merging that does not
depend on the chunk size."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from orch_helpers import DATASET, FAST

from imaudit import paths
from imaudit.audits import chunks
from imaudit.audits.spec import AuditSpec
from imaudit.audits.stages import explain, identify, predict, sample

SHAS = [f"{i:064x}" for i in range(10)]
CFG = {"input_size": [3, 32, 32], "mean": [0.5] * 3, "std": [0.5] * 3}


def plan(**kw):
    args = {"stage": "predict", "image_sha256s": SHAS, "size": 4, "model_digest": "m" * 64, "config": CFG,
            "settings": {"device": "cpu"}}
    args.update(kw)
    return chunks.plan(args.pop("stage"), args.pop("image_sha256s"), args.pop("size"), **args)


@pytest.mark.parametrize("n,size", [(0, 3), (1, 3), (9, 3), (10, 3), (10, 100)])
def test_split_ranges_cover_every_item_once_in_order(n, size):
    ranges = chunks.split_ranges(n, size)
    assert [i for a, b in ranges for i in range(a, b)] == list(range(n))
    assert all(0 < b - a <= size for a, b in ranges)


def test_split_ranges_rejects_empty_chunks():
    with pytest.raises(ValueError):
        chunks.split_ranges(5, 0)


def test_plan_keys_follow_every_input_of_the_result():
    base = [c.key for c in plan()]
    assert [(c.start, c.stop) for c in plan()] == [(0, 4), (4, 8), (8, 10)]
    assert [c.key for c in plan()] == base  # deterministic
    assert len(set(base)) == 3

    changed_image = [c.key for c in plan(image_sha256s=SHAS[:5] + ["f" * 64] + SHAS[6:])]
    assert changed_image[0] == base[0] and changed_image[1] != base[1] and changed_image[2] == base[2]
    for kw in ({"model_digest": "n" * 64}, {"config": {**CFG, "input_size": [3, 64, 64]}},
               {"settings": {"device": "cuda"}}, {"stage": "explain:saliency"},
               {"per_image": {"target": list(range(10))}}):
        assert all(a != b for a, b in zip(base, [c.key for c in plan(**kw)])), kw


def test_code_version_is_part_of_the_key(monkeypatch):
    key = plan()[0].key
    monkeypatch.setattr(chunks, "code_version", lambda: "9.9.9+other")
    assert plan()[0].key != key


def test_chunk_files_are_content_addressed_under_the_cache(tmp_path, monkeypatch):
    # Its own cache: the session's shared cache holds other tests' chunks.
    monkeypatch.setenv("IMAUDIT_CACHE", str(tmp_path / "cache"))
    c = plan(suffix=".npz")[1]
    assert Path(c.path) == paths.cache_dir() / "chunks" / f"{c.key}.npz"
    assert chunks.lookup(c) == (False, None)
    chunks.save_arrays(c.path, {"maps": np.arange(6, dtype=np.float32).reshape(1, 2, 3)})
    assert chunks.lookup(c) == (True, None)
    np.testing.assert_array_equal(chunks.load_arrays(c.path)["maps"], np.arange(6).reshape(1, 2, 3))
    # The file and its size + checksum record; no temp files left.
    assert sorted(p.name for p in Path(c.path).parent.iterdir()) == [Path(c.path).name, Path(c.path).name + ".sum"]


def _spec(**kw) -> AuditSpec:
    return AuditSpec.model_validate({**FAST, "model": "timm:test_resnet?pretrained=false", "dataset": DATASET, "chunk_size": 16, **kw})


def test_engine_predict_reuses_finished_chunks_and_recomputes_missing(tmp_path, monkeypatch):
    monkeypatch.setenv("IMAUDIT_CACHE", str(tmp_path / "cache"))
    spec, work = _spec(), tmp_path / "work"
    identify.run(spec, work)
    first = predict.run(spec, work, progress=False)
    assert first.chunks.model_dump() == {"total": 3, "reused": 0, "computed": 3, "rejected": 0}
    logits = np.load(work / "logits.npy")

    assert predict.run(spec, work, progress=False).chunks.model_dump() == {"total": 3, "reused": 3, "computed": 0, "rejected": 0}
    Path(predict.plan(spec)[1].path).unlink()
    assert predict.run(spec, work, progress=False).chunks.model_dump() == {"total": 3, "reused": 2, "computed": 1, "rejected": 0}
    np.testing.assert_array_equal(np.load(work / "logits.npy"), logits)

    # One chunk holding everything gives the same logits: chunking changes nothing but the work units.
    one = tmp_path / "one"
    identify.run(spec, one)
    predict.run(_spec(chunk_size=1000), one, progress=False)
    np.testing.assert_allclose(np.load(one / "logits.npy"), logits, rtol=1e-5, atol=1e-6)


def test_engine_explain_merges_chunks_like_one_batch(tmp_path, monkeypatch):
    monkeypatch.setenv("IMAUDIT_CACHE", str(tmp_path / "cache"))
    from imaudit.audits.explain.run import load_maps

    maps = {}
    for size in (2, 16):
        spec, work = _spec(chunk_size=size), tmp_path / f"w{size}"
        identify.run(spec, work)
        predict.run(spec, work, progress=False)
        sample.run(spec, work)
        assert len(explain.plan(spec, work, "saliency")) == (2 if size == 2 else 1)
        rec = explain.run(spec, work, "saliency")
        assert rec.count == 4 and rec.maps_path and len(rec.model_extra["overlays"]) == 4
        maps[size] = load_maps(work / rec.maps_path)
    assert maps[2]["ids"] == maps[16]["ids"]
    np.testing.assert_allclose(maps[2]["maps"], maps[16]["maps"], rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(maps[2]["targets"], maps[16]["targets"])
