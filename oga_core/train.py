"""Training from scratch or fine-tuning, seeded, returning the final-epoch model.

No epoch is picked by looking at held-out accuracy: OGA scores the model a person would actually
ship, and docs/architecture.md ("Benchmarks") counts "max over epochs on the test set" among the
paper's faults.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from oga_core.errors import OgaError
from oga_core.models import Classifier

StepProgress = Callable[[int, int], None]


@dataclass
class TrainResult:
    """history: one dict per epoch with mean training loss and accuracy on the given labels."""

    model: Classifier
    seconds: float
    history: list[dict[str, float]] = field(default_factory=list)


def resolve_device(device: str = "auto") -> torch.device:
    """``auto`` -> cuda when present, else cpu; an explicit ``cuda`` without a GPU is an error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise OgaError("--device cuda was asked for, but torch sees no CUDA GPU here; use --device cpu or auto")
    if device not in ("cpu",) and not device.startswith("cuda"):
        raise OgaError(f"unknown device '{device}': use auto, cpu or cuda")
    return torch.device(device)


def channel_stats(pixels: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and std ``(C,)`` of uint8 ``(N, C, H, W)`` images scaled to [0, 1]."""
    x = torch.from_numpy(pixels[: min(len(pixels), 20_000)]).float().div_(255)
    return x.mean(dim=(0, 2, 3)), x.std(dim=(0, 2, 3))


def to_float(batch: torch.Tensor, device: torch.device) -> torch.Tensor:
    """uint8 ``(B, C, H, W)`` -> float32 in [0, 1] on ``device`` (conversion after the copy: 4x less traffic)."""
    return batch.to(device, non_blocking=True).float().div_(255)


def train(
    model: Classifier,
    pixels: np.ndarray,
    labels: np.ndarray,
    *,
    epochs: int = 10,
    batch_size: int = 128,
    lr: float = 2e-3,
    weight_decay: float = 5e-4,
    seed: int = 0,
    device: torch.device | str = "cpu",
    progress: StepProgress | None = None,
) -> TrainResult:
    """Train ``model`` in place on uint8 ``pixels (N, C, H, W)`` and int ``labels (N,)``.

    Adam with a cosine-decayed learning rate, no augmentation (the analysed model sees the same
    images it was trained on). ``progress(step, total_steps)`` is called after each batch.
    """
    device = torch.device(device)
    start = time.perf_counter()
    model.to(device)
    result = TrainResult(model=model, seconds=0.0)
    if epochs <= 0:
        model.eval()
        return result
    x_all = torch.from_numpy(np.ascontiguousarray(pixels))
    y_all = torch.from_numpy(np.asarray(labels, dtype=np.int64))
    n = len(y_all)
    steps_per_epoch = math.ceil(n / batch_size)
    total = epochs * steps_per_epoch
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 0.5 * (1 + math.cos(math.pi * s / total)))
    loss_fn = nn.CrossEntropyLoss()
    step = 0
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(n, generator=generator)
        loss_sum, correct, seen = 0.0, 0, 0
        for lo in range(0, n, batch_size):
            idx = order[lo : lo + batch_size]
            step += 1
            if len(idx) < 2:  # BatchNorm cannot normalise a batch of one
                continue
            x = to_float(x_all[idx], device)
            y = y_all[idx].to(device)
            logits = model(x)
            loss = loss_fn(logits, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            loss_value = float(loss.detach())
            if not math.isfinite(loss_value):
                raise OgaError(
                    f"training diverged: the loss became {loss_value} at epoch {epoch + 1}, step {step} of {total} "
                    f"(learning rate {lr:g}); lower the learning rate or check the data"
                )
            loss_sum += loss_value * len(idx)
            correct += int((logits.argmax(1) == y).sum())
            seen += len(idx)
            if progress:
                progress(step, total)
        result.history.append({"epoch": epoch + 1, "loss": loss_sum / max(seen, 1), "accuracy": correct / max(seen, 1)})
    model.eval()
    result.seconds = time.perf_counter() - start
    return result
