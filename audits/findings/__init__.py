"""Finding kinds: every code an audit can raise, with what it means and what to do.

One registry (imaudit.registry) holds a ``FindingKind`` per code, declared in
the module of its group (model.py, data.py, explainer.py, run.py); adding a
finding is adding its kind in one file. The report, the CLI summary and the
README read the plain-language text from here, so a finding always says what
it means for a release and what a reviewer should do.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from imaudit.registry import Registry

Group = Literal["model", "data", "explainer", "run"]


@dataclass(frozen=True)
class FindingKind:
    """What one finding code means: its group, a title, why it matters and what to do."""

    code: str
    group: Group  # model: about the model; data: the dataset; explainer: caveats about explanations; run: the audit itself
    title: str
    meaning: str  # what it means and why it matters for a release
    action: str  # what a reviewer should do about it

    @property
    def name(self) -> str:
        return self.code


KINDS: Registry[FindingKind] = Registry("finding code", package="imaudit.audits.findings")


def declare(code: str, group: Group, title: str, meaning: str, action: str) -> FindingKind:
    """Register a finding kind (called at import of its group's module)."""
    kind = FindingKind(code, group, title, meaning, action)
    KINDS.register(code)(kind)
    return kind


def kind_of(code: str) -> FindingKind:
    """The kind of ``code``; an unregistered code is a run problem described generically."""
    if code in KINDS:
        return KINDS.get(code)
    return FindingKind(code, "run", code.replace("-", " "), "A check reported this condition.", "Read the evidence.")
