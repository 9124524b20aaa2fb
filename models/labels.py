"""What a model's outputs are called: display names, WordNet ids and synonyms per output.

An audit matches a dataset's class names to these (imaudit.audits.classmap),
so a 1000-class ImageNet model can be audited on a team's own labelled sample
of a few ImageNet classes. Names come, in order of preference, from the weights'
own metadata (a hub config's ``label_names``/``label_descriptions``, a
checkpoint's ``classes``) and, for timm's ImageNet heads, from timm's bundled
ImageNet synset and lemma files (``timm.data.ImageNetInfo``; no download).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from timm.data import ImageNetInfo, infer_imagenet_subset
from torch import nn

WNID = re.compile(r"^n\d{8}$")


@dataclass(frozen=True, eq=False)  # hashed by identity: a loaded model's labels are one object
class LabelSet:
    """One entry per model output: ``names`` for display, ``ids`` (WordNet ids or None), ``synonyms``."""

    names: list[str]
    ids: list[str] | None
    synonyms: list[list[str]]
    source: str

    def __len__(self) -> int:
        return len(self.names)

    def describe(self, index: int) -> str:
        """``name (id)`` for messages."""
        return f"{self.names[index]} ({self.ids[index]})" if self.ids else self.names[index]


def from_names(names: list[str], source: str) -> LabelSet:
    """Labels given as plain names (a checkpoint's classes); WordNet ids are recognised and described."""
    if names and all(WNID.match(n) for n in names):
        return from_wordnet_ids(names, source)
    return LabelSet(names=list(names), ids=None, synonyms=[[n] for n in names], source=source)


def from_wordnet_ids(ids: list[str], source: str, descriptions: dict[str, str] | None = None) -> LabelSet:
    """Labels that are WordNet ids: names and synonyms from the descriptions (or timm's lemma file)."""
    info = _imagenet_info("imagenet-22k") if descriptions is None else None
    names, synonyms = [], []
    for wnid in ids:
        text = (descriptions or {}).get(wnid) or _lemma(info, wnid) or wnid
        parts = [p.strip() for p in text.split(",") if p.strip()] or [wnid]
        names.append(parts[0])
        synonyms.append(parts)
    return LabelSet(names=names, ids=list(ids), synonyms=synonyms, source=source)


def imagenet_labels(module: nn.Module) -> LabelSet | None:
    """timm's ImageNet labels for a pretrained head whose size matches an ImageNet subset."""
    subset = infer_imagenet_subset(module)
    if subset is None:
        return None
    info = _imagenet_info(subset)
    ids = info.label_names()
    return from_wordnet_ids(ids, f"timm ImageNet info ({subset})",
                            {wnid: info.label_name_to_description(wnid) for wnid in ids})


def pretrained_labels(module: nn.Module) -> LabelSet | None:
    """Labels from the weights' pretrained config (hub config.json), else timm's ImageNet info."""
    cfg = getattr(module, "pretrained_cfg", None) or {}
    names = cfg.get("label_names")
    if isinstance(names, dict):  # id -> name
        items = sorted((int(k), str(v)) for k, v in names.items())
        names = [v for _, v in items] if [i for i, _ in items] == list(range(len(items))) else None
    n = int(getattr(module, "num_classes", 0) or 0)
    if names and len(names) == n:
        names = [str(x) for x in names]
        if all(WNID.match(x) for x in names):
            return from_wordnet_ids(names, "config.json label_names", cfg.get("label_descriptions") or None)
        return from_names(names, "config.json label_names")
    return imagenet_labels(module)


_INFO: dict[str, ImageNetInfo] = {}


def _imagenet_info(subset: str) -> ImageNetInfo:
    if subset not in _INFO:
        _INFO[subset] = ImageNetInfo(subset)
    return _INFO[subset]


def _lemma(info: ImageNetInfo | None, wnid: str) -> str | None:
    if info is None:
        return None
    try:
        return info.label_name_to_description(wnid)
    except KeyError:
        return None
