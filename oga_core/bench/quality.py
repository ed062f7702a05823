"""Detection quality: the paper's mislabeled-sample experiment at small scale.

For every setting (data set, noise kind, noise rate, seed):

1. split the data once, stratified, ``test_fraction`` held out (fixed ``split_seed``: every seed
   and setting sees the same test images);
2. flip labels of the training part only (``oga_core.noise.flip_labels``, the seed is the noise
   seed), train the small CNN from scratch on the GIVEN labels (the seed is also the model seed);
3. score every training sample: OGA on the last layer (closed form) and on all layers (hooks),
   the loss-based baselines, cleanlab's confident learning (out-of-sample ``pred_probs`` from
   ``folds``-fold cross-validation of the same CNN, fed the GIVEN labels, as its docs require),
   and seeded random scores;
4. detection metrics against the truly flipped samples (AUROC, AP, precision/recall at 5% and at
   the true noise count);
5. drop the top ``budget`` of each retrained score, retrain from scratch with the same seed,
   report the FINAL-epoch test accuracy; plus "none" (no trimming: the model of step 2) and
   "oracle" (drop exactly the flipped samples).

Every run is one dict; runs are written as they finish, so an interrupted full run resumes.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch

from oga_core.bench.common import log, machine_info, now_iso
from oga_core.data import load_source
from oga_core.detectors import flag_top, score_columns
from oga_core.evaluate import detection_metrics
from oga_core.gradients import forward_pass, gradient_stats
from oga_core.models import build_model
from oga_core.noise import flip_labels
from oga_core.train import channel_stats, train

LAST_COLUMNS = ("oga_l1", "oga_l2", "oga_iforest")
ALL_COLUMNS = ("oga_l1_all", "oga_l2_all", "oga_iforest_all")
OGA_COLUMNS = LAST_COLUMNS + ALL_COLUMNS
BASELINE_COLUMNS = ("loss", "el2n", "margin", "cleanlab", "random")
COLUMNS = OGA_COLUMNS + BASELINE_COLUMNS
# Keys of one run's "metrics" entry per column.
METRICS = ("auroc", "ap", "precision@5%", "recall@5%", "precision@n", "recall@n")
# The main columns retrained after trimming in the full run: each OGA detector once (all-layer
# L2 stands for the all-layer family: it is the ghost-norm path), the strongest loss-based baseline
# of the same forward pass, cleanlab, and random. el2n and margin rank almost like loss; the
# all-layer L1 and iForest cost an all-layer pass each and add little (see the detection tables).
MAIN_RETRAIN = ("oga_l1", "oga_l2", "oga_iforest", "oga_l2_all", "loss", "cleanlab", "random")
RETRAIN_REASON = (
    "Each run already costs 1 training plus 5 cross-validation trainings on 4/5 of the data (for "
    "cleanlab), and each retrained column one more; retraining all 11 columns plus the oracle "
    "would be about 17 training-equivalents per run instead of 13, roughly 30% more time on a "
    "run that takes hours on 2 CPU cores. So the accuracy table retrains the main columns at "
    "every setting: each last-layer OGA detector, the all-layer L2 norm (the ghost-norm path), "
    "the loss (el2n and margin are functions of the same probabilities and rank almost alike), "
    "cleanlab and random, plus no trimming and the oracle. Trimming 5% when 10-40% of the labels "
    "are wrong removes at most half of the noise, so accuracy differences are small against the "
    "seed-to-seed spread; the detection tables, which cover every column at every setting, are "
    "the sharper measure."
)


@dataclass(frozen=True)
class QualitySettings:
    """What the quality part runs. ``epochs`` is the small CNN's product default (12)."""

    datasets: tuple[str, ...] = ("demo:digits", "demo:mnist5k")
    kinds: tuple[str, ...] = ("symmetric", "pair")
    rates: tuple[float, ...] = (0.1, 0.2, 0.4)
    seeds: tuple[int, ...] = (0, 1, 2)
    model: str = "small_cnn"
    epochs: int = 12
    folds: int = 5
    budget: float = 0.05
    test_fraction: float = 0.25
    split_seed: int = 0
    retrain: tuple[str, ...] = MAIN_RETRAIN
    batch_size: int = 128
    lr: float = 2e-3

    @classmethod
    def quick(cls) -> QualitySettings:
        """One setting for CI: digits, symmetric 20%, one seed, few epochs."""
        return cls(
            datasets=("demo:digits",),
            kinds=("symmetric",),
            rates=(0.2,),
            seeds=(0,),
            epochs=6,
            retrain=("oga_l1", "oga_l2", "oga_iforest", "loss", "cleanlab", "random"),
        )

    def signature(self) -> dict[str, Any]:
        """Everything that makes two runs comparable (a resumed run must match it)."""
        return {k: v for k, v in asdict(self).items() if k not in ("datasets", "kinds", "rates", "seeds")}


@dataclass
class Split:
    """train/test pixels uint8 ``(N, C, H, W)``, clean int64 labels, and the number of classes."""

    train_px: np.ndarray
    train_y: np.ndarray
    test_px: np.ndarray
    test_y: np.ndarray
    num_classes: int


def split_data(source: str, *, test_fraction: float, seed: int) -> Split:
    """A stratified train/test split of a data source; the same ``seed``, the same split."""
    from sklearn.model_selection import train_test_split

    ds = load_source(source)
    px = ds.decode().pixels
    idx = np.arange(len(ds))
    tr, te = train_test_split(idx, test_size=test_fraction, stratify=ds.labels, random_state=seed)
    tr, te = np.sort(tr), np.sort(te)
    return Split(px[tr], ds.labels[tr], px[te], ds.labels[te], ds.num_classes)


def fit(settings: QualitySettings, px: np.ndarray, y: np.ndarray, *, classes: int, seed: int, device: torch.device):
    """A fresh small CNN (initialised by ``seed``) trained on ``px, y``; final epoch, eval mode."""
    c, h, _ = px.shape[1:]
    model = build_model(settings.model, num_classes=classes, in_channels=c, image_size=h, seed=seed)
    model.set_normalization(*channel_stats(px))
    train(
        model, px, y, epochs=settings.epochs, batch_size=settings.batch_size, lr=settings.lr, seed=seed, device=device
    )
    return model


def predict_probs(model, px: np.ndarray, device: torch.device) -> np.ndarray:
    """Softmax probabilities float64 ``(N, K)``."""
    logits = forward_pass(model, px, device=device).logits.astype(np.float64)
    p = np.exp(logits - logits.max(1, keepdims=True))
    return p / p.sum(1, keepdims=True)


def accuracy(model, px: np.ndarray, y: np.ndarray, device: torch.device) -> float:
    return float((predict_probs(model, px, device).argmax(1) == y).mean())


def cross_val_probs(
    settings: QualitySettings, px: np.ndarray, given: np.ndarray, *, classes: int, seed: int, device: torch.device
) -> np.ndarray:
    """Out-of-sample ``pred_probs (N, K)``: each sample predicted by the model that did not train on it."""
    from sklearn.model_selection import StratifiedKFold

    probs = np.zeros((len(given), classes), dtype=np.float64)
    folds = StratifiedKFold(n_splits=settings.folds, shuffle=True, random_state=seed)
    for tr, ho in folds.split(np.zeros(len(given)), given):
        model = fit(settings, px[tr], given[tr], classes=classes, seed=seed, device=device)
        probs[ho] = predict_probs(model, px[ho], device)
    return probs


def cleanlab_scores(given: np.ndarray, pred_probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """cleanlab on the GIVEN labels: (score ``(N,)`` = 1 - label quality, higher = more suspicious;
    indices ``find_label_issues`` reports, ranked by self-confidence)."""
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores

    quality = get_label_quality_scores(labels=given, pred_probs=pred_probs, method="self_confidence")
    with warnings.catch_warnings():
        # "may not flag all label issues in class k": cleanlab's caution for small classes; the
        # report shows what it did flag, and repeating the warning per class and run adds nothing.
        warnings.filterwarnings("ignore", message="May not flag all label issues", category=UserWarning)
        issues = find_label_issues(
            labels=given, pred_probs=pred_probs, return_indices_ranked_by="self_confidence", n_jobs=1
        )
    return 1.0 - quality, np.asarray(issues, dtype=np.int64)


def _metrics(table: pd.DataFrame, truth: np.ndarray, budget: float) -> dict[str, dict[str, float]]:
    """``{column: {metric: value}}`` with k-dependent names made k-independent (``@5%``, ``@n``)."""
    frame = detection_metrics(table, truth, columns=list(table.columns), budget=budget)
    k_budget, n_bad = max(1, int(round(budget * len(truth)))), int(truth.sum())
    rename = {
        f"precision@{k_budget}": "precision@5%",
        f"recall@{k_budget}": "recall@5%",
        f"precision@{n_bad}": "precision@n",
        f"recall@{n_bad}": "recall@n",
    }
    if k_budget == n_bad:  # the two k coincide: detection_metrics wrote one pair of columns
        frame["precision@n"], frame["recall@n"] = frame[f"precision@{n_bad}"], frame[f"recall@{n_bad}"]
    frame = frame.rename(columns=rename)
    return {row["score"]: {m: float(row[m]) for m in METRICS} for _, row in frame.iterrows()}


def run_setting(
    settings: QualitySettings, split: Split, *, dataset: str, kind: str, rate: float, seed: int, device: torch.device
) -> dict[str, Any]:
    """One (data set, noise kind, rate, seed) run: detection metrics per column and accuracies."""
    start = time.perf_counter()
    k = split.num_classes
    noise = flip_labels(split.train_y, k, rate=rate, kind=kind, seed=seed)
    given, truth = noise.given, noise.noisy
    px = split.train_px

    def retrained_accuracy(keep: np.ndarray) -> float:
        """Final-epoch test accuracy of a fresh model (same seed) trained on the kept samples."""
        model = fit(settings, px[keep], given[keep], classes=k, seed=seed, device=device)
        return accuracy(model, split.test_px, split.test_y, device)

    model = fit(settings, px, given, classes=k, seed=seed, device=device)
    acc_none = accuracy(model, split.test_px, split.test_y, device)
    last = score_columns(gradient_stats(model, px, given, scope="last", device=device), given, seed=seed)
    every = score_columns(gradient_stats(model, px, given, scope="all", device=device), given, seed=seed)
    probs = cross_val_probs(settings, px, given, classes=k, seed=seed, device=device)
    cl_score, cl_issues = cleanlab_scores(given, probs)
    table = pd.DataFrame(
        {
            **{c: last[c] for c in LAST_COLUMNS},
            **{f"{c}_all": every[c] for c in LAST_COLUMNS},
            "loss": last["loss"],
            "el2n": last["el2n"],
            "margin": last["margin"],
            "cleanlab": cl_score,
            "random": np.random.default_rng(10_000 + seed).random(len(given)),
        }
    )
    metrics = _metrics(table, truth, settings.budget)

    accuracies: dict[str, float] = {"none": acc_none}
    for col in settings.retrain:
        accuracies[col] = retrained_accuracy(~flag_top(table[col].to_numpy(), settings.budget))
    accuracies["oracle"] = retrained_accuracy(~truth)

    hits = int(truth[cl_issues].sum())
    return {
        "dataset": dataset,
        "kind": kind,
        "rate": rate,
        "seed": seed,
        "n_train": int(len(given)),
        "n_test": int(len(split.test_y)),
        "n_noisy": int(truth.sum()),
        "k_budget": max(1, int(round(settings.budget * len(given)))),
        "train_accuracy_given": float((predict_probs(model, px, device).argmax(1) == given).mean()),
        "metrics": metrics,
        "test_accuracy": accuracies,
        "cleanlab_find_label_issues": {
            "flagged": int(len(cl_issues)),
            "precision": hits / len(cl_issues) if len(cl_issues) else float("nan"),
            "recall": hits / max(int(truth.sum()), 1),
        },
        "cv_accuracy_given": float((probs.argmax(1) == given).mean()),
        "seconds": round(time.perf_counter() - start, 2),
    }


def run_quality(
    settings: QualitySettings,
    device: torch.device,
    *,
    previous: dict[str, Any] | None = None,
    checkpoint: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Every setting of ``settings``; the runs of an interrupted ``previous`` part (same
    signature, not complete) are reused.

    ``checkpoint(part)`` is called after each run with the part so far (to write it to disk).
    Returns ``{"settings", "machine", "measured_at", "runs": [run dict, ...], "complete"}``.
    """
    part: dict[str, Any] = {
        "settings": {**asdict(settings)},
        "signature": settings.signature(),
        "machine": machine_info(device),
        "measured_at": now_iso(),
        "runs": [],
        "complete": False,
    }
    done = {}
    # Resume an interrupted run of the same settings; a completed one is measured afresh.
    if previous and not previous.get("complete") and previous.get("signature") == _jsonable(settings.signature()):
        done = {(r["dataset"], r["kind"], r["rate"], r["seed"]): r for r in previous.get("runs", [])}
        part["measured_at"] = previous.get("measured_at", part["measured_at"])
        if done:
            log(f"quality: resuming an interrupted run ({len(done)} run(s) already done)")
    todo = [
        (d, k, r, s) for d in settings.datasets for k in settings.kinds for r in settings.rates for s in settings.seeds
    ]
    splits: dict[str, Split] = {}
    started = time.perf_counter()
    fresh = 0
    for i, (dataset, kind, rate, seed) in enumerate(todo):
        if (dataset, kind, rate, seed) in done:
            part["runs"].append(done[(dataset, kind, rate, seed)])
            continue
        if dataset not in splits:
            splits[dataset] = split_data(dataset, test_fraction=settings.test_fraction, seed=settings.split_seed)
        run = run_setting(settings, splits[dataset], dataset=dataset, kind=kind, rate=rate, seed=seed, device=device)
        part["runs"].append(run)
        fresh += 1
        left = (time.perf_counter() - started) / fresh * (len(todo) - i - 1)
        log(
            f"quality {i + 1}/{len(todo)}: {dataset} {kind} {rate:.0%} seed {seed}: AUROC oga_l1 "
            f"{run['metrics']['oga_l1']['auroc']:.3f}, cleanlab {run['metrics']['cleanlab']['auroc']:.3f} "
            f"({run['seconds']:.0f} s; about {left / 60:.0f} min left)"
        )
        if checkpoint:
            checkpoint(part)
    part["complete"] = True
    return part


def _jsonable(obj: Any) -> Any:
    """Tuples become lists, as they do after a JSON round trip (for signature comparison)."""
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    return obj


# -- aggregation (used by the report and the scripts) -----------------------------------------
def setting_label(dataset: str, kind: str, rate: float) -> str:
    """``digits sym 20%``: a short column header."""
    short = {"symmetric": "sym", "pair": "pair"}.get(kind, kind)
    return f"{dataset.removeprefix('demo:')} {short} {rate:.0%}"


def aggregate(
    part: dict[str, Any], value: Callable[[dict[str, Any], str], float | None], columns: tuple[str, ...]
) -> pd.DataFrame:
    """Mean and std over seeds of ``value(run, column)``: a frame indexed by (setting, column) with
    columns mean, std, n (missing values are skipped)."""
    rows = []
    for run in part.get("runs", []):
        for col in columns:
            v = value(run, col)
            if v is not None and np.isfinite(v):
                rows.append({"setting": (run["dataset"], run["kind"], run["rate"]), "column": col, "value": float(v)})
    if not rows:
        return pd.DataFrame(columns=["mean", "std", "n"])
    frame = pd.DataFrame(rows)
    out = frame.groupby(["setting", "column"], sort=False)["value"].agg(["mean", "std", "count"])
    return out.rename(columns={"count": "n"}).fillna({"std": 0.0})


def metric_value(metric: str) -> Callable[[dict[str, Any], str], float | None]:
    """Getter of one detection metric of one column from a run."""
    return lambda run, col: run["metrics"].get(col, {}).get(metric)


def accuracy_value(run: dict[str, Any], col: str) -> float | None:
    return run["test_accuracy"].get(col)


def settings_in_order(part: dict[str, Any]) -> list[tuple[str, str, float]]:
    """The (data set, kind, rate) settings present, in the order they were run."""
    seen: list[tuple[str, str, float]] = []
    for run in part.get("runs", []):
        key = (run["dataset"], run["kind"], run["rate"])
        if key not in seen:
            seen.append(key)
    return seen
