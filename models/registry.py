"""The release registry: one folder per NAME/VERSION holding the checkpoint and manifest.json.

A release is immutable: re-releasing NAME@VERSION with the same checkpoint
digest is a no-op, with another digest it is refused. Each release folder is
built beside its final place and renamed into it, so readers never see half a
release and two concurrent releases of one version cannot both win.

With a shared store (``IMAUDIT_STORAGE``) the registry lives at
``<store>/registry/``: a release is built and checked in the local folder as
above, then published (checkpoint first, manifest.json last, so a manifest is
only ever seen beside its checkpoint); readers list and read manifests there
and fetch checkpoints into the local content-addressed cache, so a worker on
another machine with an empty home finds every release.
"""

from __future__ import annotations

import datetime as dt
import re
import shutil
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError

from imaudit import paths, storage
from imaudit.errors import BadInputError, RefError
from imaudit.io import atomic_dir, atomic_write_json, sha256_file
from imaudit.models.history import check_history
from imaudit.models.load import load_checkpoint_file
from imaudit.models.sources import LoadRequest

MANIFEST = "manifest.json"
_SAFE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$")


class ReleaseManifest(BaseModel):
    """What a release says about its model: architecture, weights digest, data and classes."""

    model_config = ConfigDict(extra="forbid")

    name: str
    version: str
    arch: str
    checkpoint: str  # relative to the registry root
    sha256: str
    dataset: str | None = None
    classes: list[str] | None = None
    num_classes: int
    input_size: int | None = None
    history: list[dict] | None = None
    created: str
    notes: str | None = None

    @property
    def ref(self) -> str:
        """The model ref that loads exactly this release."""
        return f"release:{self.name}@{self.version}"


def check_part(value: str, field: str) -> str:
    if not isinstance(value, str) or not _SAFE.match(value) or value in {".", ".."}:
        raise BadInputError(
            f"release {field} '{value}' may only hold letters, digits and . _ + - (and not start with one of them)"
        )
    return value


def _version_key(version: str) -> tuple:
    """Natural order, numbers compared as numbers: 1.9 < 1.10 < 2 (pre-release tags are not special)."""
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in re.split(r"(\d+)", version) if p)


class Registry:
    """Release manifests and checkpoints under ``root`` (default: paths.registry_dir())."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = Path(root) if root is not None else paths.registry_dir()
        # An explicit root is a local registry; the default one is the shared store's when there is one.
        self.shared = storage.shared("registry") if root is None else None

    # -- reading -----------------------------------------------------------------------
    def models(self) -> list[str]:
        """Names of released models, sorted."""
        if self.shared is not None:
            return sorted({k.split("/")[0] for k in self._shared_manifests()})
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir()
                      if p.is_dir() and not p.name.startswith(".") and self.versions(p.name))

    def versions(self, name: str) -> list[str]:
        """Released versions of ``name``, oldest first (natural order)."""
        if self.shared is not None:
            return sorted({k.split("/")[1] for k in self._shared_manifests(name)}, key=_version_key)
        folder = self.root / name
        if not folder.is_dir():
            return []
        found = [p.name for p in folder.iterdir() if not p.name.startswith(".") and (p / MANIFEST).is_file()]
        return sorted(found, key=_version_key)

    def latest(self, name: str) -> ReleaseManifest:
        """The highest version of ``name``."""
        return self.get(name, "latest")

    def get(self, name: str, version: str = "latest") -> ReleaseManifest:
        """The manifest of NAME@VERSION (VERSION may be 'latest'); RefError lists what exists."""
        for part in (name, version):
            if not _SAFE.match(part or ""):  # never let a ref walk out of the registry
                raise RefError(f"release:{name}@{version} is not a valid release ref (letters, digits, . _ + -)")
        versions = self.versions(name)
        if not versions:
            known = ", ".join(self.models()) or "none"
            raise RefError(f"no released model named '{name}' in registry {self.where()} (known: {known})")
        if version == "latest":
            version = versions[-1]
        if version not in versions:
            raise RefError(f"no release {name}@{version} in registry {self.where()} "
                           f"(versions of {name}: {', '.join(versions)})")
        if self.shared is not None:
            return self._read_shared(name, version)
        return self._read(self.root / name / version / MANIFEST)

    def checkpoint_path(self, manifest: ReleaseManifest) -> Path:
        """Absolute path of the release's checkpoint copy (from the shared store: a cached local copy)."""
        if self.shared is None:
            return self.root / manifest.checkpoint
        return storage.fetch_file(self.shared.url_of(manifest.checkpoint))

    def where(self) -> str:
        """Where the registry lives, for messages."""
        return self.shared.url if self.shared is not None else str(self.root)

    def _shared_manifests(self, name: str = "") -> list[str]:
        """Keys NAME/VERSION/manifest.json in the shared registry (of one model, or all)."""
        assert self.shared is not None
        keys = self.shared.list(name)
        return [k for k in keys if k.count("/") == 2 and k.endswith(f"/{MANIFEST}") and not k.startswith(".")]

    def _read_shared(self, name: str, version: str) -> ReleaseManifest:
        assert self.shared is not None
        key = f"{name}/{version}/{MANIFEST}"
        try:
            return ReleaseManifest.model_validate_json(self.shared.read_bytes(key))
        except (ValidationError, ValueError) as exc:
            raise BadInputError(f"release manifest {self.shared.url_of(key)} is invalid: "
                                f"{str(exc).splitlines()[0]}") from exc

    @staticmethod
    def _read(path: Path) -> ReleaseManifest:
        try:
            return ReleaseManifest.model_validate_json(path.read_text(encoding="utf-8"))
        except (ValidationError, ValueError) as exc:
            first = str(exc).splitlines()[0]
            raise BadInputError(f"release manifest {path} is invalid: {first}") from exc

    # -- writing -----------------------------------------------------------------------
    def release(self, name: str, version: str, *, arch: str, checkpoint: Path, dataset: str | None,
                classes: list[str] | None = None, input_size: int | None = None,
                history: list[dict] | None = None, notes: str | None = None) -> ReleaseManifest:
        """Register a checkpoint as NAME@VERSION after checking it loads into ``arch``.

        Classes, input size and history default to the checkpoint's metadata.
        """
        check_part(name, "name")
        check_part(version, "version")
        if version == "latest":
            raise BadInputError("release version 'latest' is reserved; give a concrete version")
        checkpoint = Path(checkpoint)
        if not checkpoint.is_file():
            raise RefError(f"checkpoint file {checkpoint} does not exist")
        existing = self._existing(name, version, sha256_file(checkpoint))
        if existing is not None:
            return existing
        if self.shared is not None:
            # Built and checked in a local folder of its own, then published to the shared registry.
            staged = Registry(self.root).release(name, version, arch=arch, checkpoint=checkpoint, dataset=dataset,
                                                 classes=classes, input_size=input_size, history=history, notes=notes)
            storage.publish_tree(self.root / name / version, self.shared, f"{name}/{version}", MANIFEST)
            return self._existing(name, version, staged.sha256) or staged
        loaded, meta = load_checkpoint_file(checkpoint, LoadRequest(arch=arch, input_size=input_size, classes=classes))
        if history is not None:
            history = check_history(history, "release history")
        manifest = ReleaseManifest(
            name=name, version=version, arch=loaded.arch, sha256=loaded.digest,
            checkpoint=f"{name}/{version}/model{checkpoint.suffix or '.pt'}",
            dataset=dataset, classes=loaded.classes, num_classes=loaded.num_classes,
            input_size=input_size if input_size is not None else meta.get("input_size"),
            history=history if history is not None else loaded.history,
            created=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), notes=notes,
        )
        with atomic_dir(self.root / name / version, replace=False) as tmp:
            shutil.copyfile(checkpoint, tmp / Path(manifest.checkpoint).name)
            if sha256_file(tmp / Path(manifest.checkpoint).name) != manifest.sha256:
                raise BadInputError(f"checkpoint {checkpoint} changed while it was being released")
            atomic_write_json(tmp / MANIFEST, manifest.model_dump(mode="json"))
        # Someone may have released the same version meanwhile: same digest is fine, else refuse.
        return self._existing(name, version, manifest.sha256) or manifest

    def _existing(self, name: str, version: str, digest: str) -> ReleaseManifest | None:
        """The manifest of an existing NAME@VERSION if ``digest`` matches; refuse a different one."""
        if self.shared is not None:
            if not self.shared.exists(f"{name}/{version}/{MANIFEST}"):
                return None
            manifest = self._read_shared(name, version)
        else:
            path = self.root / name / version / MANIFEST
            if not path.is_file():
                return None
            manifest = self._read(path)
        if manifest.sha256 != digest:
            raise BadInputError(
                f"release {name}@{version} exists with digest {manifest.sha256[:12]}…; refusing to overwrite"
            )
        return manifest

