"""One plug-in idiom for everything imaudit looks up by name.

Explainers, dataset sources, model sources, findings and report sections are
all registered the same way, in the style of timm's model registry: a module
defines the thing and decorates it with its registry's ``register``; the
registry imports every module of its package the first time it is asked, so
adding a plug-in is adding one file. Tests parametrise over ``names()``.

    SOURCES = Registry("dataset source", package="imaudit.audits.sources")

    @SOURCES.register("folder")
    class FolderSource: ...

    SOURCES.get("folder")      # the class; BadInputError listing the known names otherwise
    SOURCES.names()            # registration order
"""

from __future__ import annotations

import difflib
import importlib
import pkgutil
import threading
from urllib.parse import parse_qsl
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from imaudit.errors import BadInputError

T = TypeVar("T")


class Registry(Generic[T]):
    """Named plug-ins of one kind, discovered by importing their package's modules."""

    def __init__(self, kind: str, package: str | None = None) -> None:
        self.kind = kind
        self.package = package
        self._items: dict[str, T] = {}
        self._loaded = package is None
        self._lock = threading.RLock()

    def register(self, name: str | None = None) -> Callable[[T], T]:
        """Decorator: make the decorated object reachable as ``name`` (default: its ``name`` attribute)."""

        def deco(obj: T) -> T:
            key = name or getattr(obj, "name", None)
            if not key:
                raise TypeError(f"{self.kind} {obj!r} needs a name")
            existing = self._items.get(key)
            if existing is not None and existing is not obj and _qualname(existing) != _qualname(obj):
                raise ValueError(f"{self.kind} {key!r} is registered twice ({_qualname(existing)}, {_qualname(obj)})")
            self._items[key] = obj
            return obj

        return deco

    def _load(self) -> None:
        """Import every module of the registry's package once (each registers itself)."""
        if self._loaded:
            return
        with self._lock:
            if self._loaded:
                return
            pkg = importlib.import_module(self.package)  # type: ignore[arg-type]
            for info in pkgutil.iter_modules(pkg.__path__):
                if not info.name.startswith("_"):
                    importlib.import_module(f"{self.package}.{info.name}")
            self._loaded = True

    def names(self) -> list[str]:
        """Registered names, in registration order."""
        self._load()
        return list(self._items)

    def items(self) -> Iterator[tuple[str, T]]:
        self._load()
        return iter(list(self._items.items()))

    def __contains__(self, name: object) -> bool:
        self._load()
        return name in self._items

    def get(self, name: str) -> T:
        """The plug-in registered as ``name``; bad input naming the close matches otherwise."""
        self._load()
        try:
            return self._items[name]
        except KeyError:
            close = difflib.get_close_matches(name, self._items, n=3)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise BadInputError(
                f"unknown {self.kind} {name!r}{hint}; known: {', '.join(self._items)}"
            ) from None


def _qualname(obj: object) -> str:
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', repr(obj))}"


def split_options(value: str, allowed: dict[str, str], ref: str) -> tuple[str, dict[str, str]]:
    """``NAME?k=v&k2=v2`` -> (NAME, {k: v}); an option not in ``allowed`` (name -> meaning) is bad input.

    Plug-ins whose refs take options (``timm:NAME?pretrained=false``,
    ``hf:ORG/NAME?split=val``) share this, so every ref spells options the same way.
    """
    base, sep, query = value.partition("?")
    if not sep:
        return base, {}
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=True)
    except ValueError:
        raise BadInputError(f"{ref}: options must look like ?key=value&key=value (got {query!r})") from None
    opts: dict[str, str] = {}
    for key, val in pairs:
        if key not in allowed:
            known = ", ".join(f"{k} ({m})" for k, m in allowed.items()) or "none"
            raise BadInputError(f"{ref}: unknown option {key!r}; options: {known}")
        opts[key] = val
    return base, opts


def flag(opts: dict[str, str], key: str, default: bool, ref: str) -> bool:
    """A true/false option (true, false, 1, 0, yes, no)."""
    if key not in opts:
        return default
    text = opts[key].strip().lower()
    if text in {"1", "true", "yes", "on"}:
        return True
    if text in {"0", "false", "no", "off"}:
        return False
    raise BadInputError(f"{ref}: option {key}={opts[key]!r} must be true or false")

