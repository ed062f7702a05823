"""The quality part's models: a fixed train/test split, the product's default model trained by its
recipe (recording its trajectory, holding out what the product holds out), its final-model
statistics, and out-of-sample probabilities by K-fold cross-validation for cleanlab.

Pixels are uint8 ``(N, C, H, W)``; labels int64 ``(N,)``; probabilities float64 ``(N, K)``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from oga_core import demos, health, options
from oga_core.bench import photos
from oga_core.bench.settings import QualitySettings
from oga_core.config import AnalysisConfig
from oga_core.data import load_source
from oga_core.gradients import forward_pass
from oga_core.lastlayer import Trajectory, softmax
from oga_core.models import Classifier, FeatureHead, build_model, load_weights, pretrained_weights
from oga_core.noise import NoisyLabels, flip_labels
from oga_core.train import channel_stats, feature_stats, train


@dataclass
class Split:
    """train/test pixels and clean labels, the number of classes, and the train part's ids."""

    train_px: np.ndarray
    train_y: np.ndarray
    test_px: np.ndarray
    test_y: np.ndarray
    num_classes: int
    train_ids: list[str]


def split_data(
    source: str, *, test_fraction: float, seed: int, max_samples: int, image_size: int = options.DEFAULT_IMAGE_SIZE
) -> Split:
    """A stratified train/test split of a data source (subsampled, stratified, to ``max_samples``
    first; file images decoded at ``image_size``); the same ``seed``, the same split."""
    from sklearn.model_selection import train_test_split  # lazy: sklearn.model_selection is slow to import

    ds = load_source(photos.resolve(source), image_size=image_size)
    px, labels = np.asarray(ds.decode().pixels), ds.labels
    idx = np.arange(len(ds))
    if len(idx) > max_samples:
        idx, _ = train_test_split(idx, train_size=max_samples, stratify=labels, random_state=seed)
        idx = np.sort(idx)
    tr, te = train_test_split(idx, test_size=test_fraction, stratify=labels[idx], random_state=seed)
    tr, te = np.sort(tr), np.sort(te)
    return Split(px[tr], labels[tr], px[te], labels[te], ds.num_classes, [ds.ids[i] for i in tr])


def noisy_labels(source: str, labels: np.ndarray, classes: int, *, kind: str, rate: float, seed: int) -> NoisyLabels:
    """The run's label flips; ``lookalike`` sends a shape to its look-alike class, ``human`` a
    photo to the class people confuse it with (``photos.HUMAN_FLIPS``)."""
    if kind == "lookalike":
        return flip_labels(labels, classes, rate=rate, kind="pair", seed=seed, mapping=demos.LOOKALIKE)
    if kind == "human":
        return flip_labels(labels, classes, rate=rate, kind="pair", seed=seed, mapping=photos.HUMAN_FLIPS[source])
    return flip_labels(labels, classes, rate=rate, kind=kind, seed=seed)


@dataclass
class Fitted:
    """A trained model, its trajectory (None when not recorded), the held-out mask, the epochs
    it trained and the seconds training took."""

    model: Classifier
    trajectory: Trajectory | None
    holdout: np.ndarray
    epochs: int
    seconds: float


def fit(
    settings: QualitySettings,
    px: np.ndarray,
    y: np.ndarray,
    *,
    classes: int,
    seed: int,
    device: torch.device,
    factor: float = 1.0,
    ids: list[str] | None = None,
    record: bool = True,
) -> Fitted:
    """A fresh model (initialised by ``seed``) trained by the product's recipe on ``px, y``,
    ``factor`` times the recipe's epochs; the samples the product would hold out (by ``ids``) are
    held out. Final epoch, no early stopping."""
    features = px.ndim == 2  # a frozen backbone's features (N, D): a linear head is trained on them
    if features:
        recipe = options.HEAD_RECIPE
    else:
        model_name = settings.model
        if model_name == options.AUTO_MODEL:
            model_name = options.auto_model(colour=px.shape[1] == 3)
        config = AnalysisConfig(model=model_name, epochs=settings.epochs)
        recipe = config.recipe()
    holdout = health.holdout_mask(ids, settings.holdout) if ids is not None else np.zeros(len(y), dtype=bool)
    base = settings.epochs if settings.epochs is not None else recipe.epochs_for(int((~holdout).sum()))
    epochs = max(1, int(round(base * factor)))
    if features:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model: Classifier = FeatureHead(px.shape[1], classes)
        model.set_normalization(*feature_stats(px[~holdout]))
    else:
        c, h, _ = px.shape[1:]
        model = build_model(model_name, num_classes=classes, in_channels=c, image_size=h, seed=seed)
        model.set_normalization(*channel_stats(px))
    start = time.perf_counter()
    result = train(
        model,
        px,
        y,
        epochs=epochs,
        batch_size=recipe.batch_size,
        lr=recipe.lr,
        weight_decay=recipe.weight_decay,
        seed=seed,
        device=device,
        holdout=holdout,
        record_trajectory=record,
        augment=recipe.augment,
    )
    return Fitted(model, result.trajectory, holdout, epochs, time.perf_counter() - start)


def predict_probs(model: Classifier, px: np.ndarray, device: torch.device) -> np.ndarray:
    """Softmax probabilities ``(N, K)``."""
    return softmax(forward_pass(model, px, device=device).logits)


def accuracy(model: Classifier, px: np.ndarray, y: np.ndarray, device: torch.device) -> float:
    """Fraction of ``y`` the model predicts."""
    return float((predict_probs(model, px, device).argmax(1) == y).mean())


def cross_val_probs(
    settings: QualitySettings,
    px: np.ndarray,
    given: np.ndarray,
    *,
    classes: int,
    seed: int,
    device: torch.device,
    factor: float = 1.0,
) -> np.ndarray:
    """Out-of-sample ``(N, K)``: each sample predicted by the fold model that did not train on it
    (the same recipe, on 1 - 1/folds of the samples)."""
    from sklearn.model_selection import StratifiedKFold  # lazy: sklearn.model_selection is slow to import

    probs = np.zeros((len(given), classes), dtype=np.float64)
    folds = StratifiedKFold(n_splits=settings.folds, shuffle=True, random_state=seed)
    for tr, ho in folds.split(np.zeros(len(given)), given):
        fold = fit(settings, px[tr], given[tr], classes=classes, seed=seed, device=device, factor=factor, record=False)
        probs[ho] = predict_probs(fold.model, px[ho], device)
    return probs


def pretrained_features(split: Split, *, model: str, device: torch.device) -> tuple[Split, dict[str, Any]]:
    """The pretrained-features regime's data: every image of the split through ``model``'s
    published ImageNet weights (frozen, as ``oga analyze --model MODEL --pretrained`` loads them),
    the training and test parts as its features ``(N, D)``, on which the noise is put and a linear
    head trained. Returns the split and what the backbone is (name, feature width, seconds)."""
    backbone = build_model(
        model,
        num_classes=split.num_classes,
        in_channels=split.train_px.shape[1],
        image_size=split.train_px.shape[2],
    )
    weights = pretrained_weights(model)
    load_weights(backbone, weights, pretrained=True)
    start = time.perf_counter()
    train_features = forward_pass(backbone.eval(), split.train_px, device=device).features
    test_features = forward_pass(backbone, split.test_px, device=device).features
    about = {
        "backbone": model,
        "backbone_weights": weights.name,
        "feature_dim": int(train_features.shape[1]),
        "backbone_seconds": round(time.perf_counter() - start, 2),
    }
    out = Split(train_features, split.train_y, test_features, split.test_y, split.num_classes, split.train_ids)
    return out, about
