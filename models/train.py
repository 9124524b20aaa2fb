"""A small, honest training loop for the demo, tests and calibration models.

imaudit audits models; it does not train them for production. This loop
exists so the demo and the built-in validation cases (shortcut vs no
shortcut, memorising vs untrained) can make real models on the CPU in
seconds. It records a per-epoch history that release manifests carry.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from imaudit.audits.device import autocast, to_device


def _batch_xy(batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = batch[0], batch[1]
    return x, torch.as_tensor(y)


@torch.no_grad()
def evaluate(model: nn.Module, loader: DataLoader, device: torch.device) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of ``model`` over ``loader``."""
    model.eval()
    loss_sum, correct, n = 0.0, 0, 0
    for batch in loader:
        x, y = _batch_xy(batch)
        x, y = to_device(x, device), y.to(device)
        with autocast(device):
            logits = model(x)
        logits = logits.float()
        loss_sum += nn.functional.cross_entropy(logits, y, reduction="sum").item()
        correct += (logits.argmax(1) == y).sum().item()
        n += len(y)
    return (loss_sum / max(n, 1), correct / max(n, 1))


def train_classifier(
    model: nn.Module,
    train: Dataset,
    val: Dataset | None = None,
    *,
    epochs: int = 5,
    lr: float = 3e-3,
    weight_decay: float = 1e-4,
    batch_size: int = 64,
    device: torch.device | str = "cpu",
    seed: int = 0,
    progress: bool = True,
) -> list[dict[str, float]]:
    """Train with AdamW + cosine schedule; return one history row per epoch.

    Rows hold epoch, train_loss, train_acc and, with ``val``, val_loss, val_acc
    (the release manifest's training history format).
    """
    device = torch.device(device)
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    loader = DataLoader(train, batch_size=batch_size, shuffle=True, generator=g, num_workers=0)
    val_loader = DataLoader(val, batch_size=256, num_workers=0) if val is not None else None
    model.to(device)
    for p in model.parameters():
        p.requires_grad_(True)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    steps = max(1, epochs * math.ceil(len(train) / batch_size))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.15)
    history: list[dict[str, float]] = []
    bar = tqdm(range(epochs), desc="train", disable=None if progress else True, leave=False)
    for epoch in bar:
        model.train()
        loss_sum, correct, n = 0.0, 0, 0
        for batch in loader:
            x, y = _batch_xy(batch)
            x, y = to_device(x, device), y.to(device)
            with autocast(device):
                logits = model(x)
            loss = nn.functional.cross_entropy(logits.float(), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            loss_sum += loss.item() * len(y)
            correct += (logits.argmax(1) == y).sum().item()
            n += len(y)
        row = {"epoch": epoch + 1, "train_loss": loss_sum / n, "train_acc": correct / n}
        if val_loader is not None:
            row["val_loss"], row["val_acc"] = evaluate(model, val_loader, device)
        history.append(row)
        bar.set_postfix({k: round(v, 3) for k, v in row.items() if k != "epoch"})
    model.eval()
    return history
