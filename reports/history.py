"""Audits over time: which model an audit is of, which settings it ran with, and which
earlier audits its numbers can be compared with.

A number only moves meaningfully between audits that measured it the same way:
accuracy needs the same data and input size; explanation-quality scores also need
the same methods, samples, seed and quality settings. The index's trends, the
compare page and the report's "change since" all ask ``comparable`` so an
identical model never shows a trend because its audit settings changed.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from imaudit.audits.result import AuditResult
from imaudit.reports.identity import model_identity
from imaudit.reports.store import AuditEntry, list_audits

# Settings that change what each kind of number measures (spec fields, plus the dataset digest).
DATA_SETTINGS = ("dataset_digest", "input_size", "splits", "train_cap")
EXPLAIN_SETTINGS = ("methods", "samples", "method_samples", "method_settings", "target", "seed", "quality",
                    "thresholds")
METRIC_SETTINGS = {
    "accuracy": DATA_SETTINGS, "ece": DATA_SETTINGS, "gap": DATA_SETTINGS,
    "faithfulness": DATA_SETTINGS + EXPLAIN_SETTINGS,
}
SHOWN_SETTINGS = ("dataset_digest", "input_size", "methods", "samples", "method_samples", "target", "seed",
                  "train_cap", "fail_on", "imaudit_version")


def settings_of(r: AuditResult) -> dict[str, Any]:
    """The settings an audit ran with that decide what its numbers mean."""
    spec = r.spec or {}
    out: dict[str, Any] = {k: spec.get(k) for k in ("input_size", "splits", "train_cap", "methods", "samples",
                                                     "method_samples", "method_settings", "target", "seed",
                                                     "quality", "thresholds", "fail_on")}
    out["input_size"] = out["input_size"] or (r.model.data_config or {}).get("input_size")
    out["methods"] = list(spec.get("methods") or r.explanations)
    out["dataset_digest"] = r.dataset.digest
    out["imaudit_version"] = r.imaudit_version
    return out


def comparable(a: AuditResult, b: AuditResult, metric: str = "faithfulness") -> bool:
    """Whether ``metric`` measured by audits a and b can be compared (same data, and for
    explanation scores the same explanation settings)."""
    sa, sb = settings_of(a), settings_of(b)
    return all(sa.get(k) == sb.get(k) for k in METRIC_SETTINGS.get(metric, DATA_SETTINGS + EXPLAIN_SETTINGS))


def setting_text(value: Any) -> str:
    """A setting's value as words: lists joined, mappings as key=value, nothing as a dash."""
    if value is None or value == [] or value == {}:
        return "—"
    if isinstance(value, (list, tuple)):
        return ", ".join(setting_text(v) for v in value)
    if isinstance(value, Mapping):
        return ", ".join(f"{k}={setting_text(v)}" for k, v in value.items())
    return str(value)


def samples_text(r: AuditResult) -> str:
    """How many images each method explained, in words: the number asked for, or what the defaults chose
    (audit.json ``sample.per_method``) instead of a bare dash."""
    samples = (r.spec or {}).get("samples")
    per = (r.sample or {}).get("per_method") if isinstance(r.sample, Mapping) else None
    counts = ", ".join(f"{m} {n}" for m, n in per.items()) if isinstance(per, Mapping) and per else ""
    if samples is not None:
        return f"{samples}" + (f" ({counts})" if counts else "")
    return f"default ({counts})" if counts else "default"


def _shown(r: AuditResult, key: str, value: Any) -> str:
    """A setting in words; sample counts left to the defaults say what the defaults chose."""
    if key == "samples":
        return samples_text(r)
    if key.startswith("method_samples.") and value is None:
        method = key.split(".", 1)[1]
        per = (r.sample or {}).get("per_method") if isinstance(r.sample, Mapping) else None
        if method not in (settings_of(r).get("methods") or []):
            return "not run"
        n = per.get(method) if isinstance(per, Mapping) else None
        return f"default ({n})" if n is not None else "default"
    return setting_text(value)


def settings_diff(a: AuditResult, b: AuditResult) -> list[dict[str, Any]]:
    """Settings that differ between two audits, as rows {name, a, b} (nested settings by their key);
    ``a_text``/``b_text`` say the values in words."""
    sa, sb = settings_of(a), settings_of(b)
    rows = []
    for key in list(SHOWN_SETTINGS) + ["quality", "thresholds", "method_settings", "splits"]:
        va, vb = sa.get(key), sb.get(key)
        if va == vb:
            continue
        if isinstance(va, Mapping) or isinstance(vb, Mapping):
            va, vb = dict(va or {}), dict(vb or {})
            for sub in sorted(set(va) | set(vb)):
                if va.get(sub) != vb.get(sub):
                    rows.append({"name": f"{key}.{sub}", "a": va.get(sub), "b": vb.get(sub)})
        else:
            rows.append({"name": key, "a": va, "b": vb})
    for row in rows:
        row["a_text"], row["b_text"] = _shown(a, row["name"], row["a"]), _shown(b, row["name"], row["b"])
    return rows


def earlier_audits(store: Path | None, r: AuditResult, entries: list[AuditEntry] | None = None) -> list[AuditEntry]:
    """Readable audits of the same model created before ``r``, newest first: from ``entries``
    (the review app's cached catalog) or else read from ``store``."""
    if entries is None:
        if store is None or not Path(store).is_dir():
            return []
        entries = list_audits(Path(store))
    name, _ = model_identity(r)
    out = []
    for e in sorted(entries, key=lambda e: e.result.created if e.result else "", reverse=True):
        if e.result is None or e.id == r.id or e.result.created >= r.created:
            continue
        if model_identity(e.result)[0] == name:
            out.append(e)
    return out
