"""Dataset sources: one module per ref scheme, registered in ``SOURCES``.

A dataset ref is ``SCHEME:REST``; ``load_dataset`` (imaudit.audits.data) looks
the scheme up here and hands REST to the source, which returns a
``DatasetBundle`` built with ``data.make_bundle``. Adding a source is one file
in this folder:

    @SOURCES.register("zip")
    class ZipSource(DatasetSource):
        usage = "zip:PATH"
        def load(self, ref, rest, ctx): ...

What belongs here: turning a ref into manifest rows. What does not: hashing,
ids, split order and digests (data.make_bundle does those the same way for
every source), preprocessing (the model's timm data config).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from imaudit.audits.manifest_cache import ManifestCache
from imaudit.audits.spec import ImageLimits
from imaudit.registry import Registry

if TYPE_CHECKING:
    from imaudit.audits.data import DatasetBundle


@dataclass(frozen=True)
class LoadContext:
    """What every source may need besides its ref: the cache root, whether to draw progress bars
    (at a terminal only), whether to probe every file again instead of trusting the manifest cache
    (``rehash``), the size/dimension limits files are checked against before reading, and further
    allowed roots."""

    cache: Path
    progress: bool = True
    rehash: bool = False
    limits: ImageLimits = field(default_factory=ImageLimits)
    # Folders besides a dataset's own that the files it names may lie in (--allowed-root).
    roots: tuple[Path, ...] = ()

    def manifest_cache(self, root: Path) -> ManifestCache:
        """The manifest cache of a local dataset root (audits/manifest_cache); the limits are part of its
        key, so a file left out under one limit is probed again under another."""
        return ManifestCache.for_root(self.cache, root, self.rehash, settings={"limits": self.limits.model_dump()})


class DatasetSource:
    """One dataset ref scheme. Subclasses set ``usage`` (shown in errors and --help) and ``load``."""

    usage: ClassVar[str] = ""

    def load(self, ref: str, rest: str, ctx: LoadContext) -> DatasetBundle:
        """Resolve ``rest`` (the ref after ``SCHEME:``) into a bundle; RefError naming ``ref`` when it cannot."""
        raise NotImplementedError


SOURCES: Registry[type[DatasetSource]] = Registry("dataset source", package="imaudit.audits.sources")


def usage() -> str:
    """Every registered ref form, for error messages and --help."""
    return ", ".join(SOURCES.get(n).usage for n in SOURCES.names())
