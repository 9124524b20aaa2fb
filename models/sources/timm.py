"""timm:NAME — a timm architecture with seeded random weights."""

from __future__ import annotations

from imaudit.models.archs import check_arch, create_arch, data_config
from imaudit.models.load import same_arch
from imaudit.models.loaded import LoadedModel, model_digest
from imaudit.models.sources import MODEL_SOURCES, LoadRequest, ModelSource


@MODEL_SOURCES.register("timm")
class TimmSource(ModelSource):
    """Random weights seeded at 0 (reproducible); one output per dataset class."""

    usage = "timm:NAME"

    def load(self, ref: str, value: str, request: LoadRequest) -> LoadedModel:
        check_arch(value)
        same_arch(request.arch, value, ref)
        module = create_arch(value, num_classes=request.num_classes, input_size=request.input_size)
        return LoadedModel(module=module, ref=ref, arch=value, digest=model_digest(module),
                           num_classes=int(module.num_classes), classes=request.classes,
                           data_config=data_config(module, request.input_size))

    def sized_by_dataset(self, value: str) -> bool:
        return True
