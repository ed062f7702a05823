"""What the speed and memory measurements run on: a model case's data, its model, and the
baseline every scoring time is divided by (one inference pass)."""

from __future__ import annotations

import numpy as np
import torch

from oga_core.bench.common import synthetic_images
from oga_core.bench.settings import ModelCase
from oga_core.models import Classifier, build_model
from oga_core.train import channel_stats, to_float

NUM_CLASSES = 10


def case_data(case: ModelCase) -> tuple[np.ndarray, np.ndarray]:
    """``case.n`` synthetic uint8 images ``(n, C, H, W)`` and int64 labels ``(n,)``; seed 0."""
    return synthetic_images(case.n, case.shape, num_classes=NUM_CLASSES, seed=0)


def case_model(case: ModelCase, pixels: np.ndarray, *, seed: int = 0) -> Classifier:
    """A fresh, untrained ``case.model`` normalised to ``pixels``, in eval mode."""
    c, h, _ = case.shape
    model = build_model(case.model, num_classes=NUM_CLASSES, in_channels=c, image_size=h, seed=seed)
    model.set_normalization(*channel_stats(pixels))
    return model.eval()


@torch.no_grad()
def inference_pass(model: Classifier, pixels: np.ndarray, *, batch_size: int, device: torch.device) -> np.ndarray:
    """The baseline: predictions for every sample (logits ``(N, K)`` on the host), nothing else."""
    model.eval().to(device)
    x_all = torch.from_numpy(pixels)
    out = [
        model(to_float(x_all[lo : lo + batch_size], device)).float().cpu() for lo in range(0, len(x_all), batch_size)
    ]
    return torch.cat(out).numpy()
