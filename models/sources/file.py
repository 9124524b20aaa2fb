"""file:PATH-OR-URL — a checkpoint file (torch or safetensors, bare or with metadata).

A URL (``s3://``, ``gs://``, ``https://``, ``file://``) is fetched once into the
local content-addressed cache (imaudit.storage); the digest is the file's
sha256 either way, so the same weights audit the same from anywhere.
"""

from __future__ import annotations

from pathlib import Path

from imaudit.models.load import load_checkpoint_file
from imaudit.models.loaded import LoadedModel
from imaudit.models.sources import MODEL_SOURCES, LoadRequest, ModelSource
from imaudit.storage import fetch_file, is_url


@MODEL_SOURCES.register("file")
class FileSource(ModelSource):
    """Architecture from the checkpoint's metadata or ``--arch``; classes from the classifier weights."""

    usage = "file:PATH-OR-URL"

    def load(self, ref: str, value: str, request: LoadRequest) -> LoadedModel:
        path = fetch_file(value) if is_url(value) else Path(value).expanduser()
        loaded, _ = load_checkpoint_file(path, request, ref=ref)
        return loaded
