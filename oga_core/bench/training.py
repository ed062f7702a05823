"""The quality part's models: a fixed train/test split, the small CNN trained from scratch on the
given labels, its probabilities, and out-of-sample probabilities by K-fold cross-validation.

Pixels are uint8 ``(N, C, H, W)``; labels int64 ``(N,)``; probabilities float64 ``(N, K)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from oga_core.bench.settings import QualitySettings
from oga_core.data import load_source
from oga_core.gradients import forward_pass
from oga_core.models import Classifier, build_model
from oga_core.train import channel_stats, train


@dataclass
class Split:
    """train/test pixels, clean labels, and the number of classes."""

    train_px: np.ndarray
    train_y: np.ndarray
    test_px: np.ndarray
    test_y: np.ndarray
    num_classes: int


def split_data(source: str, *, test_fraction: float, seed: int) -> Split:
    """A stratified train/test split of a data source; the same ``seed``, the same split."""
    from sklearn.model_selection import train_test_split  # lazy: sklearn.model_selection is slow to import

    ds = load_source(source)
    px = ds.decode().pixels
    idx = np.arange(len(ds))
    tr, te = train_test_split(idx, test_size=test_fraction, stratify=ds.labels, random_state=seed)
    tr, te = np.sort(tr), np.sort(te)
    return Split(px[tr], ds.labels[tr], px[te], ds.labels[te], ds.num_classes)


def fit(
    settings: QualitySettings, px: np.ndarray, y: np.ndarray, *, classes: int, seed: int, device: torch.device
) -> Classifier:
    """A fresh model (initialised by ``seed``) trained on ``px, y``; final epoch, no early stopping."""
    c, h, _ = px.shape[1:]
    model = build_model(settings.model, num_classes=classes, in_channels=c, image_size=h, seed=seed)
    model.set_normalization(*channel_stats(px))
    train(
        model, px, y, epochs=settings.epochs, batch_size=settings.batch_size, lr=settings.lr, seed=seed, device=device
    )
    return model


def predict_probs(model: Classifier, px: np.ndarray, device: torch.device) -> np.ndarray:
    """Softmax probabilities ``(N, K)``."""
    logits = forward_pass(model, px, device=device).logits.astype(np.float64)
    p = np.exp(logits - logits.max(1, keepdims=True))
    return p / p.sum(1, keepdims=True)


def accuracy(model: Classifier, px: np.ndarray, y: np.ndarray, device: torch.device) -> float:
    """Fraction of ``y`` the model predicts."""
    return float((predict_probs(model, px, device).argmax(1) == y).mean())


def cross_val_probs(
    settings: QualitySettings, px: np.ndarray, given: np.ndarray, *, classes: int, seed: int, device: torch.device
) -> np.ndarray:
    """Out-of-sample ``(N, K)``: each sample predicted by the fold model that did not train on it."""
    from sklearn.model_selection import StratifiedKFold  # lazy: sklearn.model_selection is slow to import

    probs = np.zeros((len(given), classes), dtype=np.float64)
    folds = StratifiedKFold(n_splits=settings.folds, shuffle=True, random_state=seed)
    for tr, ho in folds.split(np.zeros(len(given)), given):
        model = fit(settings, px[tr], given[tr], classes=classes, seed=seed, device=device)
        probs[ho] = predict_probs(model, px[ho], device)
    return probs
