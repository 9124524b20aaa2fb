"""Data too small to say much, said plainly.

One class is bad input: an audit of a classifier compares classes. Smaller
troubles become findings that say what the audit can and cannot say: no
evaluation split (nothing about unseen data), classes with fewer images than
``thresholds.data.min_class_images`` in the evaluated split (their per-class
numbers mean little; a class with none is the data gate's ``empty-class``),
and fewer evaluation images than the explanation sample asked for.
"""

from __future__ import annotations

from imaudit.audits.data import DatasetBundle
from imaudit.audits.result import Finding
from imaudit.audits.spec import AuditSpec
from imaudit.errors import BadInputError

EVAL_SPLITS = ("val", "test")


def require_classes(ds: DatasetBundle) -> None:
    """BadInputError unless the dataset has at least two classes with images."""
    seen = sorted(set(ds.manifest["label"]))
    if len(seen) < 2:
        only = f"images of one class only ({seen[0]!r})" if seen else "no labelled images"
        raise BadInputError(
            f"dataset {ds.ref} has {only}: an audit compares a classifier's classes, so it needs at least two"
        )


def eval_split(ds: DatasetBundle) -> str | None:
    """The split the audit evaluates and explains on (val, else test), if any."""
    return next((s for s in EVAL_SPLITS if s in ds.splits), None)


def findings(ds: DatasetBundle, spec: AuditSpec) -> list[Finding]:
    """Findings for data too small to support some of the audit's conclusions."""
    split = eval_split(ds)
    counts = ds.counts()
    if split is None:
        n_train = sum(counts.get("train", {}).values())
        return [Finding(
            code="no-eval-split", severity="error",
            message=f"no val or test split: the audit measures only how the model fits its {n_train} training "
                    "images; accuracy on unseen data, calibration, the fit verdict and the explanations (drawn "
                    "from val images) cannot be measured",
            evidence={"splits": ds.splits, "counts": counts},
        )]
    out: list[Finding] = []
    floor = spec.thresholds.data.min_class_images
    tiny = {c: n for c, n in counts[split].items() if 0 < n < floor}
    if tiny:
        listed = ", ".join(f"{c} ({n})" for c, n in sorted(tiny.items(), key=lambda kv: kv[1])[:10])
        out.append(Finding(
            code="tiny-class", severity="warning",
            message=f"{len(tiny)} class(es) have fewer than {floor} {split} images: {listed}; their per-class "
                    "recall, precision and confusion rows rest on too few images to mean much",
            evidence={"split": split, "min_class_images": floor, "counts": tiny},
        ))
    # What each method asks for with this many classes (--samples, or its per-class default since issue 11).
    n_classes = sum(1 for n in counts[split].values() if n > 0)
    asked = max([spec.samples_for(m, n_classes) for m in spec.methods] + [0])
    n_eval = sum(counts[split].values())
    if n_eval < asked:
        out.append(Finding(
            code="small-sample", severity="warning",
            message=f"{split} has {n_eval} images, fewer than the {asked} each explanation method was asked to "
                    f"explain: explanations, global importance and strategies rest on those {n_eval}",
            evidence={"split": split, "images": n_eval, "asked": asked},
        ))
    return out
