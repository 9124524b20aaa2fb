"""Generator artifacts on disk, keyed by the dataset digest and a config version.

Layout: ``<store>/<dataset_digest>/<version>/`` (store defaults to
``paths.cache_dir()/generative``) holding

- ``meta.json``: identity (digest, version, classes, created), the GanConfig
  (``arch``), the training settings (``train``) and the model input space the
  generator draws (``space``: input size, interpolation, crop; see space.py);
- ``losses.json``: one row per epoch (d_loss, g_loss, d_real, d_fake, mean_gap);
- ``generator.safetensors`` (and ``discriminator.safetensors`` when trained here);
- ``samples.png``: a grid with one row of samples per class.

The version of a trained generator is a hash of its training settings, so the
same dataset + settings finds the existing artifact instead of retraining.
Each folder is written with ``atomic_dir``: a crash never leaves half an artifact.

A pretrained checkpoint (``load_pretrained_generator``) is a ``torch.save`` dict
``{"format": "imaudit.generator/1", "classes", "arch": {GanConfig fields},
"state_dict", optional "dataset_digest", "losses", "space",
"discriminator_state_dict"}``; ``export_checkpoint`` writes one from any artifact.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from imaudit import paths
from imaudit.errors import CheckpointError
from imaudit.io import atomic_dir, atomic_write_bytes, atomic_write_json, sha256_file

from .gan import ConditionalDiscriminator, ConditionalGenerator, GanConfig, sample_latents
from .space import same_geometry

CHECKPOINT_FORMAT = "imaudit.generator/1"


def default_store() -> Path:
    """Where generator artifacts live unless a store is given."""
    return paths.cache_dir() / "generative"


def config_version(settings: dict[str, Any]) -> str:
    """A short stable version id for a set of training settings."""
    blob = json.dumps(settings, sort_keys=True, default=str).encode()
    return "v-" + hashlib.sha256(blob).hexdigest()[:12]


@dataclass
class GeneratorArtifact:
    """A class-conditional generator behind one interface, trained here or pretrained.

    ``load_generator()`` returns a module with ``z_dim``, ``n_classes``,
    ``embed(labels)``, ``synthesize(z, e)`` and ``forward(z, labels)``
    producing pixels in [0, 1] (the protocol counterfactuals and in-fill use).
    """

    path: Path
    dataset_digest: str
    version: str
    classes: list[str]
    image_size: int
    channels: int
    z_dim: int
    losses: list[dict] = field(default_factory=list)
    created: str = ""
    arch: dict[str, Any] = field(default_factory=dict)
    source: str = "trained"
    space: dict[str, Any] | None = None  # InputSpace.geometry() the generator draws; None: unknown
    train: dict[str, Any] = field(default_factory=dict)
    _module: nn.Module | None = field(default=None, repr=False, compare=False)
    _critic: nn.Module | None = field(default=None, repr=False, compare=False)

    @classmethod
    def in_memory(
        cls, generator: nn.Module, classes: list[str], *, dataset_digest: str = "memory", version: str = "memory",
        discriminator: nn.Module | None = None, space: dict[str, Any] | None = None,
    ) -> "GeneratorArtifact":
        """Wrap an already built generator (tests, hand-built generators) without touching disk."""
        probe = generator.synthesize(torch.zeros(1, generator.z_dim), generator.embed(torch.zeros(1, dtype=torch.long)))
        return cls(
            path=Path("<memory>"),
            dataset_digest=dataset_digest,
            version=version,
            classes=list(classes),
            image_size=int(probe.shape[-1]),
            channels=int(probe.shape[1]),
            z_dim=int(generator.z_dim),
            created=_now(),
            source="memory",
            space=space,
            _module=generator.eval(),
            _critic=None if discriminator is None else discriminator.eval(),
        )

    def load_generator(self) -> nn.Module:
        """The generator in eval mode with frozen weights (cached after the first call; CPU unless moved)."""
        if self._module is None:
            self._module = _load_weights(ConditionalGenerator(GanConfig(**self.arch)),
                                         self.path / "generator.safetensors", "generator")
        # Inference only: gradients flow to latent codes, never into the weights.
        return self._module.requires_grad_(False)

    def load_discriminator(self) -> nn.Module | None:
        """The trained discriminator (frozen, eval mode), or None when the artifact has none."""
        if self._critic is None:
            weights = self.path / "discriminator.safetensors"
            if not self.arch or not weights.is_file():
                return None
            self._critic = _load_weights(ConditionalDiscriminator(GanConfig(**self.arch)), weights, "discriminator")
        return self._critic.requires_grad_(False)

    def identity(self) -> dict[str, Any]:
        """The generator's identity as audit.json records it."""
        final = self.losses[-1] if self.losses else {}
        return {
            "path": str(self.path),
            "dataset_digest": self.dataset_digest,
            "version": self.version,
            "source": self.source,
            "classes": self.classes,
            "image_size": self.image_size,
            "channels": self.channels,
            "z_dim": self.z_dim,
            "created": self.created,
            "epochs": len(self.losses),
            "losses_final": {k: v for k, v in final.items() if k not in ("epoch", "step")},
            "space": self.space,
            "train_seconds": self.train.get("seconds"),
            # How it was trained (a pretrained checkpoint records none): what --generator-batch-size/-lr/-width match.
            "training": {k: self.train[k] for k in ("batch_size", "lr", "width", "seed") if k in self.train} or None,
        }


def save_artifact(
    generator: ConditionalGenerator,
    classes: list[str],
    dataset_digest: str,
    version: str,
    *,
    losses: list[dict] | None = None,
    discriminator: ConditionalDiscriminator | None = None,
    settings: dict[str, Any] | None = None,
    source: str = "trained",
    space: dict[str, Any] | None = None,
    store: Path | None = None,
) -> GeneratorArtifact:
    """Write a generator artifact folder atomically and return it."""
    final = Path(store or default_store()) / dataset_digest / version
    cfg: GanConfig = generator.config
    created = _now()
    meta = {
        "format": CHECKPOINT_FORMAT,
        "dataset_digest": dataset_digest,
        "version": version,
        "classes": list(classes),
        "created": created,
        "source": source,
        "arch": cfg.to_dict(),
        "train": settings or {},
        "space": space,
    }
    with atomic_dir(final) as tmp:
        save_file({k: v.detach().cpu().contiguous() for k, v in generator.state_dict().items()}, str(tmp / "generator.safetensors"))
        if discriminator is not None:
            save_file(
                {k: v.detach().cpu().contiguous() for k, v in discriminator.state_dict().items()},
                str(tmp / "discriminator.safetensors"),
            )
        atomic_write_json(tmp / "losses.json", losses or [])
        atomic_write_json(tmp / "meta.json", meta)
        _save_samples(generator, len(classes), tmp / "samples.png")
    return read_artifact(final)


def read_artifact(folder: Path) -> GeneratorArtifact:
    """The artifact stored in ``folder`` (raises CheckpointError when it is not one)."""
    folder = Path(folder)
    meta_path = folder / "meta.json"
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        losses_path = folder / "losses.json"
        losses = json.loads(losses_path.read_text(encoding="utf-8")) if losses_path.exists() else []
        arch = meta["arch"]
        return GeneratorArtifact(
            path=folder,
            dataset_digest=meta["dataset_digest"],
            version=meta["version"],
            classes=list(meta["classes"]),
            image_size=int(arch["image_size"]),
            channels=int(arch["channels"]),
            z_dim=int(arch["z_dim"]),
            losses=losses,
            created=meta.get("created", ""),
            arch=dict(arch),
            source=meta.get("source", "trained"),
            space=meta.get("space"),
            train=dict(meta.get("train") or {}),
        )
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise CheckpointError(f"{meta_path}: not a generator artifact ({_first_line(e)})") from None


def stored_generators(dataset_digest: str, store: Path | None = None) -> list[GeneratorArtifact]:
    """Every generator stored for a dataset digest, newest first."""
    root = Path(store or default_store()) / dataset_digest
    folders = sorted(root.glob("*")) if root.is_dir() else []
    found = [read_artifact(f) for f in folders if (f / "meta.json").is_file()]
    return sorted(found, key=lambda a: a.created, reverse=True)


def find_generator(
    dataset_digest: str,
    store: Path | None = None,
    version: str | None = None,
    *,
    space: dict[str, Any] | None = None,
    wanted: dict[str, Any] | None = None,
) -> GeneratorArtifact | None:
    """The newest stored generator for a dataset digest, or None.

    ``version`` picks one folder; ``space`` (an ``InputSpace.geometry()``)
    keeps only generators drawn in that input space; ``wanted`` keeps only
    those whose training settings have these values (None values ignored).
    """
    if version:
        folder = Path(store or default_store()) / dataset_digest / version
        return read_artifact(folder) if (folder / "meta.json").is_file() else None
    for art in stored_generators(dataset_digest, store):
        if space is not None and not same_geometry(art.space, space):
            continue
        if any(v is not None and _setting(art, k) != v for k, v in (wanted or {}).items()):
            continue
        return art
    return None


def _setting(art: GeneratorArtifact, key: str) -> Any:
    """A training setting of an artifact; image size and z_dim come from its architecture."""
    if key == "image_size":
        return art.image_size
    if key == "z_dim":
        return art.z_dim
    if key == "epochs":
        return art.train.get("epochs", len(art.losses))
    return art.train.get(key)


def export_checkpoint(artifact: GeneratorArtifact, path: Path) -> Path:
    """Write ``artifact`` as one pretrained-checkpoint file that load_pretrained_generator reads."""
    g = artifact.load_generator()
    blob = {
        "format": CHECKPOINT_FORMAT,
        "classes": artifact.classes,
        "dataset_digest": artifact.dataset_digest,
        "arch": g.config.to_dict(),
        "losses": artifact.losses,
        "space": artifact.space,
        "state_dict": {k: v.detach().cpu() for k, v in g.state_dict().items()},
    }
    d = artifact.load_discriminator()
    if d is not None:
        blob["discriminator_state_dict"] = {k: v.detach().cpu() for k, v in d.state_dict().items()}
    buf = io.BytesIO()
    torch.save(blob, buf)
    return atomic_write_bytes(path, buf.getvalue())


def load_pretrained_generator(
    checkpoint: Path,
    *,
    dataset_digest: str | None = None,
    classes: list[str] | None = None,
    expected_classes: list[str] | None = None,
    space: dict[str, Any] | None = None,
    store: Path | None = None,
) -> GeneratorArtifact:
    """Bring a user-supplied generator checkpoint (file, or an artifact folder) behind the artifact interface.

    The checkpoint's metadata must name the classes (or ``classes`` is given)
    and the architecture (GanConfig fields). It is copied into the store under
    ``dataset_digest`` (argument, else the checkpoint's own) as version
    ``pretrained-<file sha256>``, so later audits of that dataset find it.
    ``expected_classes`` (the dataset's) must equal the checkpoint's classes.
    ``space`` is the input space the generator is used in: a checkpoint that
    records another one is refused; one that records none is taken to draw it.
    """
    checkpoint = Path(checkpoint)
    if checkpoint.is_dir():
        art = read_artifact(checkpoint)
        _check_classes(checkpoint, art.classes, expected_classes)
        _check_space(checkpoint, art.space, space)
        art.source = "pretrained"
        art.space = art.space or space
        return art
    if not checkpoint.is_file():
        raise CheckpointError(f"{checkpoint}: generator checkpoint not found")
    try:
        blob = torch.load(checkpoint, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - torch raises many types for unreadable files; re-raised as one
        raise CheckpointError(f"{checkpoint}: unreadable generator checkpoint ({_first_line(e)})") from None
    if not isinstance(blob, dict) or "state_dict" not in blob or "arch" not in blob:
        raise CheckpointError(f"{checkpoint}: a generator checkpoint needs 'arch' and 'state_dict' (format {CHECKPOINT_FORMAT})")
    classes = list(classes or blob.get("classes") or [])
    try:
        cfg = GanConfig(**{**blob["arch"], "n_classes": blob["arch"].get("n_classes", len(classes))})
    except TypeError as e:
        raise CheckpointError(f"{checkpoint}: field 'arch' does not describe a generator ({_first_line(e)})") from None
    if len(classes) != cfg.n_classes:
        raise CheckpointError(f"{checkpoint}: field 'classes' has {len(classes)} names for {cfg.n_classes} generator classes")
    _check_classes(checkpoint, classes, expected_classes)
    _check_space(checkpoint, blob.get("space"), space)
    g = _load_net(ConditionalGenerator(cfg), blob["state_dict"], checkpoint, "state_dict")
    d = None
    if blob.get("discriminator_state_dict"):
        d = _load_net(ConditionalDiscriminator(cfg), blob["discriminator_state_dict"], checkpoint, "discriminator_state_dict")
    digest = dataset_digest or blob.get("dataset_digest") or "unknown"
    version = "pretrained-" + sha256_file(checkpoint)[:12]
    losses = blob.get("losses") or []
    return save_artifact(
        g.eval(), classes, digest, version, losses=losses, discriminator=d, settings={"checkpoint": str(checkpoint)},
        source="pretrained", space=blob.get("space") or space, store=store,
    )


def _load_net(net: nn.Module, state: Any, checkpoint: Path, key: str) -> nn.Module:
    try:
        net.load_state_dict(state)
    except (RuntimeError, TypeError, AttributeError) as e:
        raise CheckpointError(f"{checkpoint}: {key} does not fit the generator 'arch' ({_first_line(e)})") from None
    return net.eval()


def _check_space(checkpoint: Path, recorded: dict[str, Any] | None, wanted: dict[str, Any] | None) -> None:
    if recorded and wanted and not same_geometry(recorded, wanted):
        raise CheckpointError(
            f"{checkpoint}: the generator draws {_space_text(recorded)} but the model sees {_space_text(wanted)}; "
            "train one in the model's space (imaudit generative train --model ...)"
        )


def _space_text(space: dict[str, Any] | None) -> str:
    if not space:
        return "an unknown input space"
    h, w = space.get("input_size", ["?", "?"])
    return f"{h}x{w} {space.get('interpolation')} crop_pct {space.get('crop_pct')}"


@torch.no_grad()
def _save_samples(generator: ConditionalGenerator, n_classes: int, path: Path, per_class: int = 8) -> None:
    """One row of fixed-seed samples per class, for the report and a quick look."""
    from torchvision.utils import save_image

    rows = min(n_classes, 20)
    labels = torch.arange(rows).repeat_interleave(per_class)
    images = generator.eval()(sample_latents(len(labels), generator.z_dim, 0), labels)
    save_image(images, str(path), nrow=per_class, padding=1)


def _check_classes(checkpoint: Path, classes: list[str], expected: list[str] | None) -> None:
    if expected is not None and list(classes) != list(expected):
        raise CheckpointError(
            f"{checkpoint}: generator classes {_short(classes)} do not match the dataset's {_short(expected)}"
        )


def _short(names: list[str], k: int = 5) -> str:
    return "[" + ", ".join(map(str, names[:k])) + (", ..." if len(names) > k else "") + "]"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


def _load_weights(module: nn.Module, weights: Path, what: str) -> nn.Module:
    """``module`` with the safetensors file's weights, in eval mode; a one-line CheckpointError when they do not fit."""
    try:
        module.load_state_dict(load_file(str(weights)))
    except (OSError, RuntimeError, SafetensorError) as e:  # SafetensorError: a damaged file's header
        raise CheckpointError(f"{weights}: cannot load {what} weights ({_first_line(e)})") from None
    return module.eval()


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0][:200]


def resolve_generator(
    dataset_digest: str,
    classes: list[str],
    space: dict[str, Any],
    checkpoint: Path | None = None,
    store: Path | None = None,
    wanted: dict[str, Any] | None = None,
) -> tuple[GeneratorArtifact | None, str | None]:
    """The generator an audit should use, or None and why not.

    The given checkpoint (AuditSpec.generator) wins; else the newest stored one
    for the dataset that draws the model's input ``space`` (and has the
    ``wanted`` settings). Generators of the dataset drawn in another space are
    named in the reason, so the user knows to retrain rather than wonder.
    """
    if checkpoint is not None:
        art = load_pretrained_generator(Path(checkpoint), dataset_digest=dataset_digest, expected_classes=classes,
                                        space=space, store=store)
        return art, None
    found = find_generator(dataset_digest, store, space=space, wanted=wanted)
    if found is not None:
        _check_classes(found.path, found.classes, classes)
        return found, None
    others = stored_generators(dataset_digest, store)
    if not others:
        return None, "no generator for this dataset"
    drawn = sorted({_space_text(a.space) for a in others})
    if not any(same_geometry(a.space, space) for a in others):
        return None, (f"the stored generators of this dataset draw {', '.join(drawn)}, "
                      f"not what the model sees ({_space_text(space)})")
    return None, f"no generator of this dataset in the model's input space with {_wanted_text(wanted)}"


def _wanted_text(wanted: dict[str, Any] | None) -> str:
    return ", ".join(f"{k}={v}" for k, v in (wanted or {}).items() if v is not None) or "these settings"
