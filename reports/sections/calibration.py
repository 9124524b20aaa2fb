"""Calibration: does the model's confidence match how often it is right?"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from imaudit.audits.verdict import headline_split
from imaudit.reports import figures as figs
from imaudit.reports.page import Page
from imaudit.reports.sections import Section, register
from imaudit.reports.sections.summary import calibration_state
from imaudit.reports.sections.performance import split_key


@register
class Calibration(Section):
    name = "calibration"
    title = "Calibration"
    nav = "Calibration"
    order = 40
    intro = ("The reliability diagram puts images in bins by confidence and shows how often each bin is right; a "
             "calibrated model's bars sit on the diagonal. ECE (expected calibration error) is the image-weighted "
             "mean gap between bar and diagonal. The lower panel counts the images in each bin: gaps in nearly "
             "empty bins are noise.")
    template = """{% import "_macros.html" as m %}
{% if v.state %}<p>ECE on {{ v.split }} <b>{{ v.state.ece|num(3) }}</b>: {{ v.state.word }}{% if v.state.direction %}, {{ v.state.direction }} (confidence {{ "above" if v.state.direction == "over-confident" else "below" }} accuracy){% endif %}. The audit warns above {{ v.state.limit|num(2) }}.</p>{% endif %}
<div class="figs">{% for c in v.splits %}{{ m.fig(c.src, "reliability diagram " ~ c.split, c.split ~ ": ECE " ~ (c.ece|num(3)) ~ " over " ~ c.n ~ " images") }}{% endfor %}</div>"""

    def value(self, page: Page) -> dict[str, Any] | None:
        r = page.r
        split = headline_split(r)
        splits = []
        for s in sorted(r.calibration, key=split_key):
            cal = r.calibration[s]
            if not isinstance(cal, Mapping):
                continue
            bins = [b for b in cal.get("bins") or [] if isinstance(b, Mapping)]
            if bins:
                splits.append({"split": s, "ece": cal.get("ece"), "bins": bins, "n": sum(b.get("count") or 0 for b in bins)})
        if not splits:
            return None
        # The headline split first; the train split's calibration matters less.
        splits.sort(key=lambda c: c["split"] != split)
        return {"split": split, "state": calibration_state(r, split), "splits": splits}

    def display(self, value: dict[str, Any], page: Page) -> dict[str, Any]:
        for c in value["splits"]:
            ece = c["ece"] if isinstance(c["ece"], (int, float)) else None
            c["src"] = page.figure(f"reliability-{c['split']}", lambda c=c, e=ece: figs.reliability_counts_png(c["bins"], e, c["split"]),
                                   key=(c["bins"], ece, c["split"]))
        return value
