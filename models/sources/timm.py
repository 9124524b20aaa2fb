"""timm:NAME[.TAG][?pretrained=false] — timm's pretrained weights through the Hugging Face cache.

Pretrained weights are what a team audits, so they are the default; they load
offline from the HF cache (``HF_HUB_OFFLINE=1``) and fail with one line naming
the cache and the weights when absent. ``?pretrained=false`` gives seeded random
weights with one output per dataset class (reproducible smoke tests).
"""

from __future__ import annotations

from imaudit.errors import CheckpointError
from imaudit.models.archs import check_arch, create_arch, data_config
from imaudit.models.hub import load_pretrained
from imaudit.models.labels import from_names
from imaudit.models.load import same_arch
from imaudit.models.loaded import LoadedModel, model_digest
from imaudit.models.sources import MODEL_SOURCES, LoadRequest, ModelSource, pretrained_loaded
from imaudit.registry import flag, split_options

OPTIONS = {"pretrained": "true (default): timm's pretrained weights; false: seeded random weights"}


@MODEL_SOURCES.register("timm")
class TimmSource(ModelSource):
    """Pretrained weights and ImageNet label names by default; random weights when asked."""

    usage = "timm:NAME[.TAG][?pretrained=false]"

    def load(self, ref: str, value: str, request: LoadRequest) -> LoadedModel:
        name, pretrained = _parse(ref, value)
        check_arch(name)
        arch = name.split(".", 1)[0]
        same_arch(request.arch, arch, ref)
        if not pretrained:
            module = create_arch(name, num_classes=request.num_classes, input_size=request.input_size)
            labels = from_names(request.classes, "given") if request.classes else None
            return LoadedModel(module=module, ref=ref, arch=arch, digest=model_digest(module),
                               num_classes=int(module.num_classes), classes=request.classes,
                               data_config=data_config(module, request.input_size), labels=labels)
        module, digest = load_pretrained(name, ref, input_size=request.input_size)
        n = int(module.num_classes)
        if request.num_classes is not None and request.num_classes != n:
            raise CheckpointError(f"{ref}: its pretrained head has {n} outputs but {request.num_classes} were "
                                  f"asked for (use {ref.split('?')[0]}?pretrained=false for a fresh head)")
        return pretrained_loaded(module, ref=ref, arch=arch, digest=digest, request=request)

    def check(self, ref: str, value: str) -> None:
        check_arch(_parse(ref, value)[0])

    def sized_by_dataset(self, value: str) -> bool:
        return not _parse(f"timm:{value}", value)[1]


def _parse(ref: str, value: str) -> tuple[str, bool]:
    name, opts = split_options(value, OPTIONS, ref)
    return name, flag(opts, "pretrained", True, ref)
