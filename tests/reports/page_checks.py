"""What no imaudit page may show a reader: Python's None, NaN, missing files, raw dicts or lists.

Shared by the HTML tests (visible text parsed from the file) and the browser tests (the
text chromium renders), so both hold pages to the same bar.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

# Whole words only: "None found" is a fine sentence, a bare None cell is not.
FORBIDDEN = [
    (re.compile(r"(?<![\w-])None(?![\w-]| found| of)"), "Python None"),
    (re.compile(r"(?<![\w-])(NaN|nan|inf|Infinity)(?![\w-])"), "NaN or infinity"),
    (re.compile(r"missing file"), "missing file"),
    (re.compile(r"nested too deep"), "raw nesting notice"),
    (re.compile(r"\{\s*['\"][^'\"]+['\"]\s*:"), "raw dict text"),
    (re.compile(r"\[\s*\{"), "raw list of dicts"),
    (re.compile(r"\[\s*'[^']*'\s*[,\]]"), "raw list text"),
    (re.compile(r"\[\s*\[\s*-?\d"), "raw nested list"),
]


def text_problems(text: str) -> list[str]:
    """Each forbidden pattern found in ``text``, with a little context."""
    out = []
    for pattern, what in FORBIDDEN:
        for m in pattern.finditer(text):
            out.append(f"{what}: ...{text[max(0, m.start() - 40):m.end() + 40]!r}...")
    return out


class _Text(HTMLParser):
    """The text a reader sees (script and style bodies left out), and the tags and attributes used."""

    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self.attrs: list[tuple[str, str, str | None]] = []
        self.tags: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.attrs += [(tag, k, v) for k, v in attrs]
        if tag in ("script", "style"):
            self._skip += 1

    def handle_endtag(self, tag):
        if tag in ("script", "style"):
            self._skip -= 1

    def handle_data(self, data):
        if not self._skip:
            self.parts.append(data)


def parse(html: str) -> _Text:
    p = _Text()
    p.feed(html)
    return p


def visible_text(html: str) -> str:
    return " ".join(parse(html).parts)


def csp_problems(html: str) -> list[str]:
    """What a strict content security policy would block: inline handlers, style attributes, extra scripts."""
    p = parse(html)
    out = [f"{tag} {k}=" for tag, k, _ in p.attrs if k.startswith("on") or k == "style"]
    out += [f"{p.tags.count(t)} <{t}> elements" for t in ("script", "style") if p.tags.count(t) > 1]
    out += [f"external {tag} {k}={v}" for tag, k, v in p.attrs
            if k in ("src", "href") and v and re.match(r"^[a-z]+:", v) and not v.startswith("data:image/png;base64,")]
    return out
