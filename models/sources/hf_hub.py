"""hf-hub:ORG/NAME — timm weights from the Hugging Face Hub, through its local cache."""

from __future__ import annotations

from imaudit.errors import CheckpointError
from imaudit.models.hub import load_hub_model
from imaudit.models.load import same_arch
from imaudit.models.loaded import LoadedModel
from imaudit.models.sources import MODEL_SOURCES, LoadRequest, ModelSource, pretrained_loaded


@MODEL_SOURCES.register("hf-hub")
class HubSource(ModelSource):
    """Architecture, weights and label names from the repo's config.json; offline when cached."""

    usage = "hf-hub:ORG/NAME"

    def load(self, ref: str, value: str, request: LoadRequest) -> LoadedModel:
        module, digest = load_hub_model(value, input_size=request.input_size)
        name = module.pretrained_cfg.get("architecture") or type(module).__name__
        same_arch(request.arch, name, ref)
        n = int(module.num_classes)
        if request.num_classes is not None and request.num_classes != n:
            raise CheckpointError(f"{ref} has {n} classes but {request.num_classes} were asked for "
                                  f"(timm architecture {name})")
        if request.classes is not None and len(request.classes) != n:
            raise CheckpointError(f"{ref}: {len(request.classes)} class names for {n} outputs "
                                  f"(timm architecture {name})")
        return pretrained_loaded(module, ref=ref, arch=name, digest=digest, request=request)
