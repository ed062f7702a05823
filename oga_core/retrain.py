"""Retrain with a person's decisions applied, and compare with the analysis they reviewed.

``retrain(config, decisions)`` (``oga retrain``; docs/architecture.md, "Retraining"):

1. *before*: the analysis of ``config`` (the workspace's latest; loaded from the cache);
2. the decisions applied: samples decided ``drop`` leave the training data, ``relabel`` changes
   the label; ``keep`` changes nothing;
3. *after*: the same recipe (model, epochs, learning rate, batch, seed, scope, detector, budget)
   on that data, through :func:`oga_core.pipeline.analyze` with the data given, so every step is
   cached; the model's key covers a hash of the decisions that change the data, so a new
   decision retrains and an unchanged table is a cache hit;
4. the comparison: accuracy on the held-out part, flagged samples, the samples whose rank
   changed most, and the estimate of wrong labels left (:mod:`oga_core.remaining`).

The held-out part is the same samples in both runs and is never trained on in either: dropped
held-out samples stay in the data (they are not trained on anyway) and the after-run holds out
exactly as many samples as the before-run, which :func:`oga_core.health.holdout_mask` (the
smallest id hashes) then picks identically; this is checked, not assumed. Held-out accuracy is
measured on the given labels, except for held-out samples the person reviewed: a relabelled one
counts with its new label, a dropped one is left out of both runs' accuracy.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from oga_core import health, remaining
from oga_core.config import AnalysisConfig
from oga_core.errors import OgaError
from oga_core.noise import NoisyLabels
from oga_core.pipeline import Analysis, LoadedData, analyze
from oga_core.pixels import PixelFile
from oga_core.progress import StageProgress
from oga_core.store import Cache, cache_key, write_json
from oga_core.summaries import UNDECIDED, with_decisions

TOP_CHANGED = 20
CHANGED_COLUMNS = (
    "sample_id",
    "label_name",
    "decision",
    "new_label_name",
    "score_before",
    "score_after",
    "rank_before",
    "rank_after",
    "delta_rank",
    "flagged_before",
    "flagged_after",
)


@dataclass
class RetrainResult:
    """``before`` / ``after``: the two analyses (``after`` is of the data with the decisions
    applied: dropped training samples gone, relabels in its labels). ``table``: one row per
    sample of ``before``, with the decisions and both runs' score, rank and flag (``None`` /
    NaN after for dropped samples). ``summary``: what ``retrain.json`` holds."""

    before: Analysis
    after: Analysis
    table: pd.DataFrame
    summary: dict

    def changed(self, k: int = TOP_CHANGED) -> pd.DataFrame:
        """The ``k`` samples in both runs whose rank moved most (``|delta_rank|``)."""
        both = self.table[self.table["rank_after"].notna()]
        order = np.argsort(-np.abs(both["delta_rank"].to_numpy()), kind="stable")[:k]
        return both.iloc[order][list(CHANGED_COLUMNS)].reset_index(drop=True)


def decisions_digest(decisions: pd.DataFrame, ids: list[str]) -> str:
    """A hash of the decisions that change the training data (drops, relabels) of samples in
    ``ids``: part of the after-run's cache key."""
    present = set(ids)
    rows = sorted(
        (str(sid), str(action), int(label))
        for sid, action, label in decisions[["sample_id", "action", "label"]].itertuples(index=False)
        if action in ("drop", "relabel") and sid in present
    )
    h = hashlib.blake2b(digest_size=12)
    for row in rows:
        h.update(("\x1f".join(map(str, row)) + "\x1e").encode())
    return h.hexdigest()


def _mcnemar(gained: int, lost: int) -> float:
    """Two-sided exact McNemar p-value: how often a change at least this lopsided happens when
    retraining alone (a new trajectory) moves held-out samples either way at random."""
    from scipy.stats import binomtest  # lazy: scipy comes with scikit-learn

    return float(binomtest(gained, gained + lost, 0.5).pvalue) if gained + lost else 1.0


def _accuracy(pred: np.ndarray, labels: np.ndarray) -> float | None:
    return float((pred == labels).mean()) if len(labels) else None


def retrain(
    config: AnalysisConfig,
    decisions: pd.DataFrame,
    *,
    cache: Cache | None = None,
    progress: StageProgress | None = None,
    top: int = TOP_CHANGED,
    seed: int = 0,
) -> RetrainResult:
    """Analyse ``config`` (before), retrain with ``decisions`` (a :meth:`DecisionStore.table`
    frame) applied (after), and compare. OgaError when nothing would change or too little data
    would be left."""
    config = config.validate()
    if config.resolved_epochs(1) == 0:  # a checkpoint scored as it is, whatever the data's size
        raise OgaError(
            "the analysis scored a checkpoint as it is (0 epochs): there is no training recipe to repeat; analyse "
            "with --epochs N (fine-tuning the checkpoint) to retrain with the decisions"
        )
    cache = cache or Cache()
    before = analyze(config, cache=cache, progress=progress)
    dataset = before.dataset
    table = with_decisions(before.scores, decisions, dataset.classes)
    decision = table["decision"].to_numpy()
    new_label = table["new_label"].to_numpy(dtype=np.int64)
    held = table["heldout"].to_numpy(dtype=bool)
    dropped = decision == "drop"
    if not (dropped | (new_label != dataset.labels)).any():
        raise OgaError(
            "no decision drops or relabels a sample of this data: retraining would repeat the analysis; "
            "review the flagged samples first (the app's Review page, or oga decide)"
        )
    keep = ~(dropped & ~held)  # dropped held-out samples stay: never trained on, left out of the accuracy
    rows = np.flatnonzero(keep)
    if keep.sum() < 2 or (~held[rows]).sum() < 2:
        raise OgaError(f"the decisions drop {int((dropped & ~held).sum())} samples: too few would be left to train on")

    after_data = dataset.subset(rows).with_labels(new_label[rows])
    noise = None
    if before.noise is not None:
        clean = before.noise.clean[rows]
        noise = NoisyLabels(given=after_data.labels, clean=clean, noisy=after_data.labels != clean)
    digest = decisions_digest(decisions, dataset.ids)
    after_loaded = LoadedData(
        dataset=after_data,
        # a streamed PixelFile stays streamed: a view of the kept rows, nothing read yet
        pixels=before.pixels.subset(rows) if isinstance(before.pixels, PixelFile) else before.pixels[rows],
        fingerprint=before.run["data_fingerprint"],
        data_id=cache_key(data=before.data_id, decisions=digest),
        noise=noise,
    )
    n_held = int(held.sum())
    # The same number of epochs as before, not the recipe's count for the smaller data: the comparison
    # then differs by the decisions alone.
    after_config = dataclasses.replace(config, epochs=int(before.run["epochs"]))
    if n_held:
        # the same number of held-out samples: holdout_mask then picks the same ones (smallest id hashes)
        after_config = dataclasses.replace(after_config, holdout=n_held / len(rows))
        same = health.holdout_mask(after_data.ids, after_config.holdout)
        if not np.array_equal(same, held[rows]):
            raise OgaError(
                "the held-out part could not be kept the same in the retrained run (too many samples dropped)"
            )
    after = analyze(after_config, cache=cache, progress=progress, loaded=after_loaded)

    # one row per sample of before, with the after-run joined by id
    a = after.scores.set_index("sample_id").reindex(table["sample_id"])
    table = table.assign(
        score_before=table["score"],
        rank_before=table["rank"],
        flagged_before=table["flagged"].to_numpy(dtype=bool),
        score_after=a["score"].to_numpy(dtype=np.float64),
        rank_after=a["rank"].to_numpy(dtype=np.float64),
        flagged_after=a["flagged"].fillna(False).to_numpy(dtype=bool),
        pred_after=a["pred"].to_numpy(dtype=np.float64),
    )
    table["delta_rank"] = table["rank_after"] - table["rank_before"]
    table["delta_score"] = table["score_after"] - table["score_before"]
    result = RetrainResult(before, after, table, {})
    result.summary = _summary(result, config, digest, top=top, seed=seed)
    return result


def _summary(result: RetrainResult, config: AnalysisConfig, digest: str, *, top: int, seed: int) -> dict:
    t = result.table
    decision = t["decision"].to_numpy()
    held = t["heldout"].to_numpy(dtype=bool)
    counted = held & (decision != "drop")
    reviewed = held & (decision != UNDECIDED)
    labels = t["new_label"].to_numpy(dtype=np.int64)[counted]
    pred_before = t["pred"].to_numpy()[counted]
    pred_after = t["pred_after"].to_numpy()[counted]
    n_held = int(held.sum())
    if not n_held:
        held_text = "no held-out part (the analysis trained on every sample)"
    elif not reviewed.any():
        held_text = f"held-out labels: given (0 reviewed of {n_held})"
    else:
        n_drop = int((reviewed & (decision == "drop")).sum())
        held_text = (
            f"held-out labels: given, except {int(reviewed.sum())} reviewed of {n_held} (their decided labels"
            + (f"; {n_drop} dropped, left out" if n_drop else "")
            + ")"
        )
    gained = int(((pred_after == labels) & (pred_before != labels)).sum())
    lost = int(((pred_after != labels) & (pred_before == labels)).sum())
    accuracy = {
        "before": _accuracy(pred_before, labels),
        "after": _accuracy(pred_after, labels),
        "samples": int(counted.sum()),
        "reviewed": int(reviewed.sum()),
        "labels": held_text,
        "gained": gained,  # held-out samples right after and wrong before
        "lost": lost,
        "p_value": _mcnemar(gained, lost),
    }
    if "clean_label" in t:  # injected noise: the truth is known
        clean = t["clean_label"].to_numpy(dtype=np.int64)[counted]
        accuracy["before_true_labels"] = _accuracy(pred_before, clean)
        accuracy["after_true_labels"] = _accuracy(pred_after, clean)
    fb, fa = t["flagged_before"].to_numpy(dtype=bool), t["flagged_after"].to_numpy(dtype=bool)
    cut = float(t.loc[fb, "score_before"].min()) if fb.any() else None
    flagged = {
        "before": int(fb.sum()),
        "after": int(fa.sum()),
        "still_flagged": int((fb & fa).sum()),
        "newly_flagged": int((fa & ~fb).sum()),
        "after_undecided": int((fa & (decision == UNDECIDED)).sum()),
        "after_above_before_cut": int((t["score_after"].to_numpy() >= cut).sum()) if cut is not None else 0,
    }
    if "clean_label" in t:
        clean_all = t["clean_label"].to_numpy(dtype=np.int64)
        flagged["wrong_before"] = int((fb & (t["label"].to_numpy() != clean_all)).sum())
        flagged["wrong_after"] = int((fa & (t["new_label"].to_numpy() != clean_all)).sum())
    noise_left = remaining.estimate(t, seed=seed)
    summary = {
        "config": config.to_dict(),
        "detector": config.detector,
        "budget": config.budget,
        "decisions": {
            "digest": digest,
            "dropped": int((decision == "drop").sum()),
            "relabelled": int((decision == "relabel").sum()),
            "kept": int((decision == "keep").sum()),
            "trained_before": int((~held).sum()),
            "trained_after": int((~held & (decision != "drop")).sum()),
        },
        "heldout_accuracy": accuracy,
        "flagged": flagged,
        "changed": result.changed(top).to_dict(orient="records"),
        "noise_left": noise_left.to_dict(),
        "cache_keys": {"before": result.before.keys, "after": result.after.keys},
        "train_seconds": {"before": result.before.run["train_seconds"], "after": result.after.run["train_seconds"]},
    }
    return summary


def lines(summary: dict) -> list[str]:
    """What ``oga retrain`` prints: the comparison in a few lines."""
    acc, fl, dec = summary["heldout_accuracy"], summary["flagged"], summary["decisions"]
    out = [
        f"applied {dec['dropped']} drop(s) and {dec['relabelled']} relabel(s); trained on {dec['trained_after']} "
        f"samples (before: {dec['trained_before']})"
    ]
    if acc["before"] is not None:
        text = (
            f"held-out accuracy {acc['before']:.3f} -> {acc['after']:.3f} on {acc['samples']} samples (right now "
            f"{acc['gained']}, wrong now {acc['lost']}: "
            + ("a clear change" if acc["p_value"] < 0.05 else "no clear change")
            + f", McNemar p = {acc['p_value']:.2g}); {acc['labels']}"
        )
        if "before_true_labels" in acc:
            text += f"; on the true labels {acc['before_true_labels']:.3f} -> {acc['after_true_labels']:.3f}"
        out.append(text)
    else:
        out.append(acc["labels"])
    text = (
        f"flagged by {summary['detector']} at {summary['budget']:g}: {fl['before']} -> {fl['after']}; still flagged "
        f"{fl['still_flagged']}, newly flagged {fl['newly_flagged']} ({fl['after_undecided']} not yet reviewed)"
    )
    if "wrong_before" in fl:
        text += f"; truly wrong among the flagged {fl['wrong_before']} -> {fl['wrong_after']}"
    out.append(text)
    moved = summary["changed"][:5]
    if moved:
        out.append(
            "moved most: "
            + ", ".join(f"{r['sample_id']} {int(r['rank_before'])}->{int(r['rank_after'])}" for r in moved)
        )
    left = summary["noise_left"]
    out.append(remaining.NoiseLeft(**left).line())
    return out


def write_retrain(result: RetrainResult, out: Path) -> Path:
    """``out/retrain.json`` (the summary) and ``out/scores_after.csv`` (the after-run's score
    table, text cells guarded against spreadsheet formulas); returns ``out``."""
    from oga_core.export import safe_csv_frame
    from oga_core.files import atomic_path

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "retrain.json", result.summary)
    with atomic_path(out / "scores_after.csv") as tmp:
        safe_csv_frame(result.after.scores).to_csv(tmp, index=False)
    return out
