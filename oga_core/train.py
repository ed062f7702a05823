"""Training from scratch or fine-tuning, seeded, returning the final-epoch model.

No epoch is picked by looking at held-out accuracy: OGA scores the model a person would actually
ship, and docs/architecture.md ("Benchmarks") counts "max over epochs on the test set" among the
paper's faults.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from oga_core.distributed import World
from oga_core.errors import OgaError
from oga_core.lastlayer import TRAJECTORY_FIELDS, Trajectory, primitives
from oga_core.models import Classifier
from oga_core.pixels import Pixels, sample_rows
from oga_core.progress import Progress


@dataclass
class TrainResult:
    """history: one dict per epoch (mean training loss and accuracy on the given labels, and
    held-out accuracy when some samples are held out); trajectory: None when nothing was trained."""

    model: Classifier
    seconds: float
    history: list[dict[str, float]] = field(default_factory=list)
    trajectory: Trajectory | None = None


def _batches(order: torch.Tensor, batch_size: int) -> list[torch.Tensor]:
    """``order`` cut into batches of ``batch_size``; a last batch of one joins the one before
    (BatchNorm cannot normalise a single sample, and every sample must be seen every epoch)."""
    starts = list(range(0, len(order), batch_size))
    if len(starts) > 1 and len(order) - starts[-1] < 2:
        starts.pop()
    ends = [*starts[1:], len(order)]
    return [order[a:b] for a, b in zip(starts, ends)]


def thread_count() -> int:
    """Torch's intra-op threads: ``$OGA_THREADS``, else half the cores (1 to 4). On a machine
    shared with another busy process (a browser, a test run, a second job), torch's default of a
    thread per core ran small operations 25-170x slower (docs/architecture.md, "Threads")."""
    text = os.environ.get("OGA_THREADS", "").strip()
    if text:
        if not text.isdecimal() or int(text) < 1:
            raise OgaError(f"OGA_THREADS must be a whole number of threads, not '{text}'")
        return int(text)
    return max(1, min(4, (os.cpu_count() or 2) // 2))


def configure_threads() -> int:
    """Set torch's intra-op threads to :func:`thread_count`; returns it."""
    n = thread_count()
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n


def resolve_device(device: str = "auto") -> torch.device:
    """``auto`` -> cuda when present, else cpu; an explicit ``cuda`` without a GPU is an error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise OgaError("--device cuda was asked for, but torch sees no CUDA GPU here; use --device cpu or auto")
    if device not in ("cpu",) and not device.startswith("cuda"):
        raise OgaError(f"unknown device '{device}': use auto, cpu or cuda")
    return torch.device(device)


def channel_stats(pixels: Pixels) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and std ``(C,)`` of uint8 ``(N, C, H, W)`` images scaled to [0, 1],
    from at most 2,000 images spread over the set."""
    x = torch.from_numpy(sample_rows(pixels, 2_000)).float().div_(255)
    return x.mean(dim=(0, 2, 3)), x.std(dim=(0, 2, 3))


def feature_stats(features: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-dimension mean and std ``(D,)`` of float features ``(N, D)`` (a frozen backbone's, for
    the linear head trained on them)."""
    x = torch.from_numpy(np.asarray(features, dtype=np.float32))
    return x.mean(0), x.std(0)


def rows(pixels: Pixels, index: torch.Tensor | np.ndarray | slice) -> torch.Tensor:
    """uint8 ``(B, C, H, W)`` rows of pixels in memory or in a file, as a CPU tensor."""
    if isinstance(index, torch.Tensor):
        index = index.numpy()
    return torch.from_numpy(np.ascontiguousarray(pixels[index]))


def to_float(batch: torch.Tensor, device: torch.device) -> torch.Tensor:
    """uint8 ``(B, C, H, W)`` -> float32 in [0, 1] on ``device`` (conversion after the copy: 4x less
    traffic); float rows (a frozen backbone's features ``(B, D)``) are moved as they are."""
    if batch.dtype != torch.uint8:
        return batch.to(device, non_blocking=True).float()
    return batch.to(device, non_blocking=True).float().div_(255)


def random_crop_flip(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """The augmentation photos need (He et al. 2016): each image of ``x (B, C, H, W)`` shifted by
    up to an eighth of its side (reflection-padded, then cropped back to H x W) and mirrored left
    to right with probability 1/2. Same shape as ``x``; ``generator`` makes it reproducible."""
    b, _, h, w = x.shape
    pad = max(1, min(h, w) // 8)
    padded = torch.nn.functional.pad(x, (pad, pad, pad, pad), mode="reflect")
    top = torch.randint(0, 2 * pad + 1, (b,), generator=generator).to(x.device)
    left = torch.randint(0, 2 * pad + 1, (b,), generator=generator).to(x.device)
    flip = (torch.rand(b, generator=generator) < 0.5).to(x.device)
    rows = (top[:, None] + torch.arange(h, device=x.device)[None, :])[:, :, None]  # (B, H, 1)
    cols = left[:, None] + torch.arange(w, device=x.device)[None, :]  # (B, W)
    cols = torch.where(flip[:, None], cols.flip(1), cols)[:, None, :]  # (B, 1, W)
    batch = torch.arange(b, device=x.device)[:, None, None]
    return padded.permute(0, 2, 3, 1)[batch, rows, cols].permute(0, 3, 1, 2).contiguous()


class _WithFeatures(nn.Module):
    """``x -> (logits, h)`` in one forward call, so that DistributedDataParallel, which hooks the
    forward call, sees both what the loss needs and what the trajectory records."""

    def __init__(self, model: Classifier) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.model.features(x)
        return self.model.head(h), h


def train(
    model: Classifier,
    pixels: Pixels,
    labels: np.ndarray,
    *,
    epochs: int = 10,
    batch_size: int = 128,
    lr: float = 2e-3,
    weight_decay: float = 5e-4,
    seed: int = 0,
    device: torch.device | str = "cpu",
    holdout: np.ndarray | None = None,
    progress: Progress | None = None,
    on_batch: Callable[[int, torch.Tensor, torch.Tensor, torch.Tensor], None] | None = None,
    record_trajectory: bool = True,
    augment: bool = False,
    world: World | None = None,
) -> TrainResult:
    """Train ``model`` in place on uint8 ``pixels (N, C, H, W)`` and int ``labels (N,)``, and
    record the per-sample trajectory (:class:`Trajectory`) at no extra pass over the trained data.

    Adam with a cosine-decayed learning rate. ``augment``: random crops and flips of each training
    batch (:func:`random_crop_flip`, for photos); the trajectory is then recorded on those views,
    from the same forward pass (a shifted or mirrored view of a photo keeps its label, and an extra
    un-augmented pass per epoch would cost a third of a training epoch), while held-out samples and
    every final-model score see the images as they are. ``holdout``: bool ``(N,)`` of samples never trained on; they are
    scored by an eval-mode pass at the end of every epoch. ``progress(step, total_steps)`` is
    called after each batch; ``on_batch(epoch, idx, logits, y)`` after each forward pass, before the
    optimiser step (``logits`` still carries its graph). ``record_trajectory=False`` skips the
    bookkeeping (the benchmarks time training without it). ``world``: train data-parallel across
    its processes (each an interleaved slice of every epoch, ``batch_size`` the global batch); the
    trajectory and history are summed over ranks, so every rank returns the whole. OgaError when
    the loss becomes NaN or infinite.
    """
    device = torch.device(device)
    start = time.perf_counter()
    model.to(device)
    result = TrainResult(model=model, seconds=0.0)
    if epochs <= 0:
        model.eval()
        return result
    y_all = torch.from_numpy(np.asarray(labels, dtype=np.int64))
    n = len(y_all)
    held = np.zeros(n, dtype=bool) if holdout is None else np.asarray(holdout, dtype=bool)
    trained_idx = torch.from_numpy(np.flatnonzero(~held))
    held_idx = torch.from_numpy(np.flatnonzero(held))
    if len(trained_idx) < 2:
        raise OgaError(f"{len(trained_idx)} sample(s) left to train on after holding out {len(held_idx)}")
    ranks, rank = (world.size, world.rank) if world is not None else (1, 0)
    local_batch = max(2, batch_size // ranks)
    net: nn.Module = _WithFeatures(model)
    if world is not None:
        from torch.nn.parallel import DistributedDataParallel  # only when training across processes

        net = DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None)
    steps_per_epoch = len(_batches(_my_slice(trained_idx, ranks, rank), local_batch))
    total = epochs * steps_per_epoch
    generator = torch.Generator().manual_seed(seed)  # the same order on every rank
    views = torch.Generator().manual_seed(seed + 1)  # augmentation: its own stream, so the order stays
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 0.5 * (1 + math.cos(math.pi * s / total)))
    loss_fn = nn.CrossEntropyLoss()
    values = np.zeros((epochs, n, len(TRAJECTORY_FIELDS)), dtype=np.float32)
    classes = model.head.out_features
    # The class probabilities of one epoch, and their sums over epochs weighted by learning rate and
    # by quality: three (N, K) arrays, the size of the final logits that scoring keeps anyway.
    epoch_probs = np.zeros((n, classes), dtype=np.float32) if record_trajectory else None
    probs_lr = np.zeros((n, classes), dtype=np.float32) if record_trajectory else None
    probs_quality = np.zeros((n, classes), dtype=np.float32) if record_trajectory and len(held_idx) else None
    quality = np.zeros(epochs + 1, dtype=np.float64)
    epoch_lr = np.zeros(epochs, dtype=np.float64)
    step = 0
    for epoch in range(epochs):
        model.train()
        order = trained_idx[torch.randperm(len(trained_idx), generator=generator)]
        mine = _my_slice(order, ranks, rank)
        seen_here = np.zeros(n, dtype=np.float32)
        loss_sum, correct, seen, lr_sum = 0.0, 0, 0, 0.0
        for idx in _batches(mine, local_batch):
            step += 1
            x = to_float(rows(pixels, idx), device)
            if augment:
                x = random_crop_flip(x, views)
            y = y_all[idx].to(device)
            logits, h = net(x)
            loss = loss_fn(logits, y)
            loss_value = float(loss.detach())
            if not math.isfinite(loss_value):  # before the step: the weights stay as they were
                raise OgaError(
                    f"training diverged: the loss became {loss_value} at epoch {epoch + 1}, step {step} of {total} "
                    f"(learning rate {lr:g}); lower the learning rate or check the data"
                )
            if record_trajectory:
                values[epoch, idx.numpy()] += _batch_primitives(h, logits, y)
                epoch_probs[idx.numpy()] += _batch_probs(logits)
                seen_here[idx.numpy()] += 1
            if on_batch is not None:
                on_batch(epoch, idx, logits, y)
            lr_sum += optimizer.param_groups[0]["lr"]
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            loss_sum += loss_value * len(idx)
            correct += int((logits.argmax(1) == y).sum())
            seen += len(idx)
            if progress:
                progress(step, total)
        epoch_lr[epoch] = lr_sum / steps_per_epoch
        if len(held_idx) and record_trajectory:
            model.eval()
            part = _my_slice(held_idx, ranks, rank, pad=False)
            values[epoch, part.numpy()], epoch_probs[part.numpy()] = _eval_primitives(
                model, pixels, y_all, part, batch_size, device
            )
            seen_here[part.numpy()] = 1
        if world is not None:  # every rank saw a slice: sum them (a padded duplicate is averaged)
            counts = world.all_sum(seen_here)
            values[epoch] = world.all_sum(values[epoch]) / np.maximum(counts, 1)[:, None]
            if record_trajectory:
                epoch_probs = world.all_sum(epoch_probs) / np.maximum(counts, 1)[:, None]
            loss_sum, correct, seen = world.all_sum(np.array([loss_sum, correct, seen]))
        record = {"epoch": epoch + 1, "loss": loss_sum / max(seen, 1), "accuracy": correct / max(seen, 1)}
        if len(held_idx) and record_trajectory:
            margin = values[epoch, held_idx.numpy(), TRAJECTORY_FIELDS.index("logit_margin")]
            record["holdout_accuracy"] = float((margin > 0).mean())  # the given label has the top logit
        if record_trajectory:
            probs_lr += epoch_lr[epoch] * epoch_probs
            if probs_quality is not None:
                # The trained samples were recorded while the model went from the last epoch's
                # held-out accuracy to this one's: their mean is the record's quality.
                before = result.history[-1]["holdout_accuracy"] if result.history else 1.0 / classes
                quality[epoch] = _quality((before + record["holdout_accuracy"]) / 2, classes)
                quality[epochs] = _quality(record["holdout_accuracy"], classes)  # the model after this epoch
                probs_quality += quality[epoch] * epoch_probs
            epoch_probs[:] = 0.0
        result.history.append(record)
    model.eval()
    if record_trajectory:
        probs_lr /= max(float(epoch_lr.sum()), 1e-300)
        if probs_quality is not None:
            probs_quality /= max(float(quality[:epochs].sum()), 1e-300)
        result.trajectory = Trajectory(
            values=values,
            lr=epoch_lr,
            trained=~held,
            probs=probs_lr,
            probs_quality=probs_quality,
            quality=quality if probs_quality is not None else None,
        )
    result.seconds = time.perf_counter() - start
    return result


def _quality(holdout_accuracy: float, classes: int) -> float:
    """A record's weight in the quality-weighted probabilities: the squared held-out accuracy above
    chance (a half-trained model's guesses weigh little, a model that generalises much)."""
    return max(holdout_accuracy - 1.0 / classes, 0.0) ** 2


def _my_slice(order: torch.Tensor, ranks: int, rank: int, *, pad: bool = True) -> torch.Tensor:
    """Rank ``rank``'s interleaved slice of ``order``; with ``pad``, ``order`` first wraps around to
    a multiple of ``ranks`` so that every rank makes the same number of steps (DDP's collectives
    need that)."""
    if ranks == 1:
        return order
    if pad and len(order) % ranks:
        order = torch.cat([order, order[: ranks - len(order) % ranks]])
    return order[rank::ranks]


@torch.no_grad()
def _eval_primitives(
    model: Classifier,
    pixels: Pixels,
    y_all: torch.Tensor,
    idx: torch.Tensor,
    batch_size: int,
    device: torch.device,
) -> tuple[np.ndarray, np.ndarray]:
    """Trajectory fields ``(len(idx), F)`` and class probabilities ``(len(idx), K)`` of samples
    ``idx`` from an eval-mode pass."""
    fields, probs = [], []
    for lo in range(0, len(idx), batch_size):  # no larger than training's: see gradients' batches
        part = idx[lo : lo + batch_size]
        h = model.features(to_float(rows(pixels, part), device))
        logits = model.head(h)
        fields.append(_batch_primitives(h, logits, y_all[part]))
        probs.append(_batch_probs(logits))
    return np.concatenate(fields), np.concatenate(probs)


def _batch_primitives(h: torch.Tensor, logits: torch.Tensor, y: torch.Tensor) -> np.ndarray:
    """The trajectory fields ``(B, F)`` of one batch, by the same closed form as the final scores."""
    return primitives(h.detach().float().cpu().numpy(), logits.detach().float().cpu().numpy(), y.cpu().numpy())


def _batch_probs(logits: torch.Tensor) -> np.ndarray:
    """float32 class probabilities ``(B, K)`` of one batch."""
    return torch.softmax(logits.detach().float(), dim=1).cpu().numpy()
