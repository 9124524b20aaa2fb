"""Model sources (one module each under sources/: timm, hf-hub, file, release) and the release registry.

Never imports prefect: flows and tasks call into here, not the other way.
"""

from imaudit.models.checkpoint import read_checkpoint, save_checkpoint
from imaudit.models.history import load_history
from imaudit.models.load import load_checkpoint_file, load_model, model_source, parse_ref
from imaudit.models.loaded import LoadedModel, model_digest
from imaudit.models.registry import Registry, ReleaseManifest
from imaudit.models.sources import MODEL_SOURCES, LoadRequest, ModelSource

__all__ = [
    "LoadRequest",
    "LoadedModel",
    "MODEL_SOURCES",
    "ModelSource",
    "Registry",
    "ReleaseManifest",
    "load_checkpoint_file",
    "load_history",
    "load_model",
    "model_digest",
    "model_source",
    "parse_ref",
    "read_checkpoint",
    "save_checkpoint",
]
