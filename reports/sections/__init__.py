"""Report sections: each one file holding a value computed from the audit and the template that shows it.

As deepchecks keeps a check's value apart from its display and evidently composes
a report from metrics that render themselves, a section here is a class with

- ``value(page)``: plain data computed from the AuditResult (``page.r``), or None
  when the audit has nothing for this section (the section is then left out);
- ``display(value, page)``: the same data plus what only a page has (figure URLs,
  links); by default the value itself;
- ``template``: Jinja2 source (autoescaped) that receives ``v`` (the displayed
  value), ``page`` and ``section``, and can import "_macros.html" as ``m``.

Registering it with ``@register`` in a module of this package is all it takes:
the report orders sections by ``order``, adds ``nav`` labels to its navigation,
and shows ``intro`` (how to read the section) under its title.

    @register
    class Timings(Section):
        name, title, nav, order = "timings", "Timings", "Timings", 960
        intro = "Seconds per audit stage."
        template = '<table>{% for k, s in v %}<tr><th>{{ k }}</th><td>{{ s|num }}</td></tr>{% endfor %}</table>'

        def value(self, page):
            return list(page.r.timings.items()) or None
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, ClassVar

from markupsafe import Markup

from imaudit.registry import Registry
from imaudit.reports.page import Page

log = logging.getLogger(__name__)


class Section:
    """A report section: a value from the audit, and its display."""

    name: ClassVar[str] = ""
    title: ClassVar[str] = ""
    nav: ClassVar[str | None] = None  # label in the report's navigation (None: not listed)
    order: ClassVar[int] = 500
    intro: ClassVar[str] = ""  # how to read this section, one or two sentences
    template: ClassVar[str] = ""

    def value(self, page: Page) -> Any | None:
        """The section's data from ``page.r``, or None when the audit has nothing to show here."""
        raise NotImplementedError

    def display(self, value: Any, page: Page) -> Any:
        """The value plus figures and links (drawn through ``page``); by default the value itself."""
        return value


SECTIONS: Registry[type[Section]] = Registry("report section", package="imaudit.reports.sections")


def register(cls: type[Section]) -> type[Section]:
    """Class decorator: add a section to the report."""
    if not cls.name or not cls.template:
        raise TypeError(f"report section {cls.__qualname__} needs a name and a template")
    SECTIONS.register(cls.name)(cls)
    return cls


@dataclass
class Rendered:
    """One section as it appears on the page."""

    name: str
    title: str
    nav: str | None
    intro: str
    html: Markup
    failed: bool = False


def ordered() -> list[type[Section]]:
    """Every registered section class in page order."""
    return sorted((cls for _, cls in SECTIONS.items()), key=lambda c: (c.order, c.name))


def compose(page: Page, only: tuple[str, ...] | None = None) -> list[Rendered]:
    """Compute, display and render every section that has something to show.

    A section that raises is shown as a short notice naming the error and is listed
    among the page's problems; the rest of the report is still drawn.
    """
    from imaudit.reports.templating import render_section

    out = []
    for cls in ordered():
        if only is not None and cls.name not in only:
            continue
        section = cls()
        try:
            value = section.value(page)
            if value is None:
                continue
            shown = section.display(value, page)
            html = render_section(cls, v=shown, page=page, section=section)
            out.append(Rendered(cls.name, cls.title, cls.nav, cls.intro, html))
        except Exception as exc:  # noqa: BLE001 - one broken section must not hide the others; it is shown
            log.warning("report section %s failed: %s", cls.name, exc, exc_info=True)
            error = f"{type(exc).__name__}: {exc}"
            page.problems.append({"stage": f"section {cls.name}", "error": error})
            html = render_section(Failed, v={"title": cls.title, "error": error}, page=page, section=Failed())
            out.append(Rendered(cls.name, cls.title, cls.nav, cls.intro, html, failed=True))
    return out


class Failed(Section):
    """Stands in for a section whose value or display raised (not registered)."""

    name = "failed"
    template = '<p class="error-box">This section could not be drawn: {{ v.error }}</p>'
