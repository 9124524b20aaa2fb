"""The README's "Extending imaudit" examples, and dropping one into its plug-in package for a test.

The README shows each kind of plug-in as one file; these helpers take that
file verbatim from the README and make it a module of the package it names
(an extra folder on the package's ``__path__``), so a test can check that the
registry picks it up with no other edit, and the README cannot drift from
what works.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from imaudit.registry import Registry

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_example(path: str) -> str:
    """The ```python block that follows the README's first mention of `path`."""
    text = README.read_text(encoding="utf-8")
    at = text.index(f"`{path}`")
    start = text.index("```python\n", at) + len("```python\n")
    return text[start : text.index("```", start)]


@contextmanager
def dropped_in(registry: Registry, package: str, filename: str, source: str, folder: Path) -> Iterator[str]:
    """``source`` as module ``package.<filename stem>`` while the block runs; the registry looks again.

    Afterwards the package, the registry and sys.modules are as they were, so
    other tests in this process never see the plug-in.
    """
    pkg = importlib.import_module(package)
    (folder / filename).write_text(source, encoding="utf-8")
    name = f"{package}.{Path(filename).stem}"
    path, items, loaded = list(pkg.__path__), dict(registry._items), registry._loaded  # noqa: SLF001
    pkg.__path__.append(str(folder))
    importlib.invalidate_caches()
    registry._loaded = False  # noqa: SLF001 - the next lookup imports the package's modules again
    try:
        yield name
    finally:
        pkg.__path__[:] = path
        registry._items, registry._loaded = items, loaded  # noqa: SLF001
        sys.modules.pop(name, None)
