"""The demo: a real model, a real release, a real audit, in about a minute on a laptop CPU.

Trains timm's tiny test_resnet at 32x32 on scikit-learn's bundled digits,
releases it as demo-digits@1 (checkpoint, sha256, training history) and
audits the release.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from rich.console import Console

from imaudit.audits.data import ImageDataset, load_dataset
from imaudit.audits.spec import AuditSpec
from imaudit.errors import RefError
from imaudit.flows.audit import run_audit
from imaudit.models import load_model, save_checkpoint
from imaudit.models.registry import Registry
from imaudit.models.train import train_classifier

DEMO_NAME, DEMO_VERSION, DEMO_ARCH, DEMO_DATA, DEMO_SIZE = "demo-digits", "1", "test_resnet", "builtin:digits", 32


def train_demo_release(epochs: int = 6, console: Console | None = None, retrain: bool = False):
    """Train and register demo-digits@1 unless it already exists; return its manifest."""
    reg = Registry()
    if not retrain:
        try:
            manifest = reg.get(DEMO_NAME, DEMO_VERSION)
            if console:
                console.print(f"using the registered release {manifest.ref}")
            return manifest
        except RefError:
            pass
    ds = load_dataset(DEMO_DATA)
    lm = load_model(f"timm:{DEMO_ARCH}?pretrained=false", num_classes=len(ds.classes), input_size=DEMO_SIZE)
    # Train on the model's own eval transform: the digits are already 32x32, so
    # augmentation would only blur the demo's point.
    tf = lm.transform()
    train = ImageDataset(ds.split("train"), ds.classes, tf)
    val = ImageDataset(ds.split("val"), ds.classes, tf)
    if console:
        console.print(f"training {DEMO_ARCH} on {DEMO_DATA} for {epochs} epochs ({len(train)} images, CPU)")
    history = train_classifier(lm.module, train, val, epochs=epochs, lr=3e-3, batch_size=64, device="cpu")
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = Path(tmp) / "demo-digits.pt"
        save_checkpoint(ckpt, lm.module, arch=DEMO_ARCH, classes=ds.classes, input_size=DEMO_SIZE, history=history)
        manifest = reg.release(
            DEMO_NAME,
            DEMO_VERSION,
            arch=DEMO_ARCH,
            checkpoint=ckpt,
            dataset=DEMO_DATA,
            classes=ds.classes,
            input_size=DEMO_SIZE,
            history=history,
            notes="imaudit demo model",
        )
    if console:
        last = history[-1]
        console.print(
            f"released {manifest.ref}: train acc {last['train_acc']:.3f}, val acc {last.get('val_acc', float('nan')):.3f}"
        )
    return manifest


def run_demo(
    epochs: int = 6,
    methods: str | None = None,
    samples: int | None = None,
    out: Path | None = None,
    retrain: bool = False,
    console: Console | None = None,
) -> Path:
    """Release the demo model if needed, audit it, return the report folder."""
    manifest = train_demo_release(epochs, console, retrain)
    fields = {"model": manifest.ref, "dataset": DEMO_DATA, "samples": samples, "out": out}
    if methods is not None:
        fields["methods"] = methods
    spec = AuditSpec.model_validate({k: v for k, v in fields.items() if v is not None})
    if console:
        console.print(f"auditing {manifest.ref} with {', '.join(spec.methods) or 'no explanation methods'}")
    return run_audit(spec)
