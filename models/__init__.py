"""Model sources (one module each under sources/: timm, hf-hub, file, release, mlflow) and the release registry.

Also here: what imaudit reads from MLflow's model registry (mlflow_registry) and
the registry watcher's engine (watch: what changed since the last poll).

What belongs here: turning a model ref into a LoadedModel (module, digest,
classes, timm data config), checkpoint files, the release registry, the small
training loop the demo and tests use. What does not: anything about auditing a
model (audits/), Prefect (never imported here: flows and tasks call into this
package, not the other way).
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
