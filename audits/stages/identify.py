"""Stage identify: load model and dataset, check they fit, write manifest.csv; return their identities."""

from __future__ import annotations

import time
from pathlib import Path

from imaudit.audits.result import DatasetIdentity, ModelIdentity, jsonable
from imaudit.audits.spec import AuditSpec
from imaudit.audits.stages import inputs
from imaudit.audits.degenerate import require_classes
from imaudit.audits.stages.records import ChunkStats, Identity
from imaudit.io import text_safe


def run(spec: AuditSpec, work: Path) -> Identity:
    """Model and dataset identity (refs, digests, classes, counts) and the release's training history."""
    t0 = time.perf_counter()
    ds = inputs.dataset(spec)
    require_classes(ds)
    model, cmap = inputs.model(spec), inputs.class_map(spec)
    work.mkdir(parents=True, exist_ok=True)
    # File paths that are not UTF-8 are written with \\x escapes (the manifest is for people and tools).
    ds.manifest.assign(**{c: ds.manifest[c].map(lambda p: text_safe(p) if isinstance(p, str) else p)
                          for c in ("path", "mask")}).to_csv(work / "manifest.csv", index=False)
    counts = {
        split: {c: int(n) for c, n in grp["label"].value_counts().reindex(ds.classes, fill_value=0).items()}
        for split, grp in ds.manifest.groupby("split", sort=False)
    }
    return Identity(
        model=ModelIdentity(
            ref=spec.model,
            digest=model.digest,
            arch=model.arch,
            num_classes=model.num_classes,
            classes=cmap.model_names,  # in the dataset's class order, as every table of the audit
            params=model.params,
            data_config=jsonable(model.data_config),
            release=model.release.model_dump(mode="json") if model.release is not None else None,
            origin=model.origin,
        ),
        dataset=DatasetIdentity(
            ref=ds.ref,
            digest=ds.digest,
            classes=ds.classes,
            counts=counts,
            n_images=int(len(ds.manifest)),
            excluded=ds.excluded,
            dropped_masks=ds.meta.get("dropped_masks", []),
            has_masks=bool(ds.has_masks),
        ),
        history=model.history,
        class_map=cmap.record(ds.classes),
        seconds=time.perf_counter() - t0,
        cache=ChunkStats.model_validate(ds.meta["cache"]) if ds.meta.get("cache") else None,
        manifest=ChunkStats.model_validate(ds.meta["manifest_cache"]) if ds.meta.get("manifest_cache") else None,
    )
