"""file:PATH — a checkpoint file (torch or safetensors, bare or with metadata)."""

from __future__ import annotations

from pathlib import Path

from imaudit.models.load import load_checkpoint_file
from imaudit.models.loaded import LoadedModel
from imaudit.models.sources import MODEL_SOURCES, LoadRequest, ModelSource


@MODEL_SOURCES.register("file")
class FileSource(ModelSource):
    """Architecture from the checkpoint's metadata or ``--arch``; classes from the classifier weights."""

    usage = "file:PATH"

    def load(self, ref: str, value: str, request: LoadRequest) -> LoadedModel:
        loaded, _ = load_checkpoint_file(Path(value).expanduser(), request, ref=ref)
        return loaded
