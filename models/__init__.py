"""Model sources (timm, hf-hub, checkpoint files, releases) and the release registry.

What belongs here: turning a model ref into a LoadedModel (module, digest,
classes, timm data config), checkpoint files, the release registry, the small
training loop the demo and tests use. What does not: anything about auditing a
model (audits/), Prefect (never imported here: flows and tasks call into this
package, not the other way).
"""

from imaudit.models.checkpoint import load_checkpoint_file, read_checkpoint, save_checkpoint
from imaudit.models.history import load_history
from imaudit.models.load import load_model, parse_ref
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
