"""What OGA replaces, timed: per-sample gradients one sample at a time or with ``torch.func.vmap``,
and cleanlab's whole pipeline next to OGA's. Seconds are wall-clock (``time.perf_counter``), with
CUDA synchronised before each clock read."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from oga_core.bench.common import sync
from oga_core.bench.settings import ModelCase, SpeedSettings
from oga_core.bench.workload import NUM_CLASSES, case_model, inference_pass
from oga_core.detectors import score_columns
from oga_core.gradients import gradient_stats, norms_of
from oga_core.models import Classifier
from oga_core.train import to_float, train


def reference_seconds(
    fn: Callable[[Classifier, torch.Tensor, torch.Tensor], Any],
    model: Classifier,
    pixels: np.ndarray,
    labels: np.ndarray,
    *,
    n_ref: int,
    chunk: int,
    device: torch.device,
) -> float:
    """Seconds for ``fn`` (a per-sample-gradient reference) + norms over the first ``n_ref`` samples,
    in chunks of ``chunk`` (the loop takes any chunk; vmap's memory is chunk x parameters)."""
    model.eval().to(device)
    x = to_float(torch.from_numpy(pixels[:n_ref]), device)
    y = torch.from_numpy(labels[:n_ref]).to(device)
    fn(model, x[:2], y[:2])  # warm-up: first-call compilation of the functional transforms
    sync(device)
    start = time.perf_counter()
    for lo in range(0, n_ref, chunk):
        norms_of(fn(model, x[lo : lo + chunk], y[lo : lo + chunk]))
    sync(device)
    return time.perf_counter() - start


def cleanlab_pipeline(
    case: ModelCase, pixels: np.ndarray, labels: np.ndarray, settings: SpeedSettings, device: torch.device
) -> dict[str, Any]:
    """cleanlab's whole pipeline: K trainings for out-of-sample probabilities, then
    ``find_label_issues``: ``{"seconds", "trainings_seconds"}`` (or a note without cleanlab)."""
    from sklearn.model_selection import StratifiedKFold  # lazy: sklearn.model_selection is slow to import

    start = time.perf_counter()
    probs = np.zeros((len(labels), NUM_CLASSES))
    for fold, (tr, ho) in enumerate(
        StratifiedKFold(settings.folds, shuffle=True, random_state=0).split(pixels, labels)
    ):
        model = case_model(case, pixels[tr], seed=fold)
        train(
            model,
            pixels[tr],
            labels[tr],
            epochs=settings.pipeline_epochs,
            batch_size=settings.grad_batch_size,
            device=device,
        )
        logits = inference_pass(model, pixels[ho], batch_size=settings.batch_size, device=device).astype(np.float64)
        p = np.exp(logits - logits.max(1, keepdims=True))
        probs[ho] = p / p.sum(1, keepdims=True)
    trainings = time.perf_counter() - start
    try:
        from cleanlab.filter import find_label_issues  # lazy: cleanlab is optional (the bench extra)
    except ImportError:
        return {
            "seconds": trainings,
            "note": "cleanlab not installed: the K trainings only (find_label_issues takes well under a second here)",
        }
    find_label_issues(labels=labels, pred_probs=probs, return_indices_ranked_by="self_confidence", n_jobs=1)
    return {"seconds": time.perf_counter() - start, "trainings_seconds": trainings}


def oga_pipeline(
    case: ModelCase, pixels: np.ndarray, labels: np.ndarray, settings: SpeedSettings, device: torch.device
) -> float:
    """Seconds of OGA's whole pipeline: one training on all samples, then every last-layer score."""
    start = time.perf_counter()
    model = case_model(case, pixels)
    train(model, pixels, labels, epochs=settings.pipeline_epochs, batch_size=settings.grad_batch_size, device=device)
    score_columns(
        gradient_stats(model, pixels, labels, scope="last", batch_size=settings.batch_size, device=device), labels
    )
    sync(device)
    return time.perf_counter() - start
