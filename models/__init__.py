"""Model sources (timm, hf-hub, checkpoint files, releases) and the release registry.

Never imports prefect: flows and tasks call into here, not the other way.
"""

from imaudit.models.checkpoint import read_checkpoint, save_checkpoint
from imaudit.models.history import load_history
from imaudit.models.load import load_checkpoint_file, load_model, parse_ref
from imaudit.models.loaded import LoadedModel, model_digest
from imaudit.models.registry import Registry, ReleaseManifest

__all__ = [
    "LoadedModel",
    "Registry",
    "ReleaseManifest",
    "load_checkpoint_file",
    "load_history",
    "load_model",
    "model_digest",
    "parse_ref",
    "read_checkpoint",
    "save_checkpoint",
]
