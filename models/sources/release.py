"""release:NAME@VERSION — a model from imaudit's release registry, digest-verified."""

from __future__ import annotations

from imaudit.errors import CheckpointError, RefError
from imaudit.io import sha256_file
from imaudit.models.load import load_checkpoint_file, same_arch
from imaudit.models.loaded import LoadedModel
from imaudit.models.registry import Registry, ReleaseManifest
from imaudit.models.sources import MODEL_SOURCES, LoadRequest, ModelSource


@MODEL_SOURCES.register("release")
class ReleaseSource(ModelSource):
    """VERSION may be ``latest``; ``release:NAME`` means latest. The release names its own dataset."""

    usage = "release:NAME@VERSION"

    def load(self, ref: str, value: str, request: LoadRequest) -> LoadedModel:
        manifest = _manifest(value)
        same_arch(request.arch, manifest.arch, manifest.ref)
        path = Registry().checkpoint_path(manifest)
        if not path.is_file():
            raise CheckpointError(f"checkpoint {path} of release {manifest.ref} is missing")
        actual = sha256_file(path)
        if actual != manifest.sha256:
            raise CheckpointError(f"checkpoint {path} of {manifest.ref} has sha256 {actual[:12]}… but its manifest "
                                  f"says {manifest.sha256[:12]}…; refusing to load a changed release")
        if request.num_classes is not None and request.num_classes != manifest.num_classes:
            raise CheckpointError(f"release {manifest.ref} ({manifest.arch}) has {manifest.num_classes} classes "
                                  f"but {request.num_classes} were asked for")
        loaded, _ = load_checkpoint_file(
            path,
            LoadRequest(arch=manifest.arch, num_classes=manifest.num_classes,
                        input_size=request.input_size if request.input_size is not None else manifest.input_size,
                        classes=request.classes if request.classes is not None else manifest.classes),
            ref=manifest.ref,
        )
        loaded.release = manifest
        if manifest.history is not None:
            loaded.history = manifest.history
        return loaded

    def dataset(self, value: str) -> str | None:
        return _manifest(value).dataset


def _manifest(value: str) -> ReleaseManifest:
    name, sep, version = value.partition("@")
    version = version if sep else "latest"  # release:NAME means the latest version
    if not name or not version:
        raise RefError(f"release ref 'release:{value}' must be release:NAME@VERSION (VERSION may be 'latest')")
    return Registry().get(name, version)
