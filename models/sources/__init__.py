"""Model sources: one module per model ref kind, registered in ``MODEL_SOURCES``.

A model ref is ``KIND:VALUE``; ``load_model`` (imaudit.models.load) looks the
kind up here and hands VALUE and the caller's ``LoadRequest`` to the source,
which returns a ``LoadedModel``. Adding a source is one file in this folder:

    @MODEL_SOURCES.register("onnx")
    class OnnxSource(ModelSource):
        usage = "onnx:PATH"
        def load(self, ref, value, request): ...

What belongs here: finding weights and building the module. What does not:
the data config (archs.data_config), checkpoint parsing (checkpoint.py) and
the release registry's storage (registry.py), which sources share.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from imaudit.registry import Registry

if TYPE_CHECKING:
    from imaudit.models.loaded import LoadedModel


@dataclass(frozen=True)
class LoadRequest:
    """What the caller asks of a model besides its ref.

    ``arch`` names the timm architecture of a bare state_dict; ``input_size``
    overrides the data config's; ``num_classes`` and ``classes`` are checked
    against what the weights say (and size the head of random weights).
    """

    arch: str | None = None
    input_size: int | None = None
    num_classes: int | None = None
    classes: list[str] | None = None


def pretrained_loaded(module, *, ref: str, arch: str, digest: str, request: LoadRequest) -> LoadedModel:
    """A LoadedModel of pretrained weights whose head size was already checked against ``request``.

    Output names come from the request when given, else from the weights' own label set
    (timm's pretrained config); shared by the timm and Hugging Face Hub sources.
    """
    from imaudit.models.archs import data_config
    from imaudit.models.labels import from_names, pretrained_labels
    from imaudit.models.loaded import LoadedModel

    labels = from_names(request.classes, "given") if request.classes else pretrained_labels(module)
    return LoadedModel(module=module, ref=ref, arch=arch, digest=digest, num_classes=int(module.num_classes),
                       classes=labels.names if labels else None,
                       data_config=data_config(module, request.input_size), labels=labels)


class ModelSource:
    """One model ref kind. Subclasses set ``usage`` (shown in errors and --help) and ``load``."""

    usage: ClassVar[str] = ""

    def load(self, ref: str, value: str, request: LoadRequest) -> LoadedModel:
        """Build the model ``ref`` names (``value`` is the part after ``KIND:``)."""
        raise NotImplementedError

    def check(self, ref: str, value: str) -> None:
        """Cheap checks that need neither the weights nor the dataset (a name that exists, options
        that parse): RefError here answers a bad ref before any dataset file is read. Default: none."""

    def sized_by_dataset(self, value: str) -> bool:
        """Whether the model's head is made to fit the dataset (random weights), not read from weights."""
        return False

    def dataset(self, value: str) -> str | None:
        """The dataset ref the model names for itself (a release's own data), if any."""
        return None


MODEL_SOURCES: Registry[type[ModelSource]] = Registry("model source", package="imaudit.models.sources")
