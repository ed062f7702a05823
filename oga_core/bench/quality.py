"""Detection quality: the paper's mislabeled-sample experiment at small scale, and its report.

For every setting (data set, noise kind, noise rate, seed) of :class:`QualitySettings`:

1. split the data once, stratified, ``test_fraction`` held out (fixed ``split_seed``: every seed
   and setting sees the same test images);
2. flip labels of the training part only (``oga_core.noise.flip_labels``, the seed is the noise
   seed), train the small CNN from scratch on the GIVEN labels (the seed is also the model seed);
3. score every training sample with every column of :mod:`oga_core.bench.columns`: OGA on the
   last layer (closed form) and on all layers (hooks), the loss-based baselines, and the peers
   (cleanlab's confident learning on out-of-sample ``pred_probs`` from ``folds``-fold
   cross-validation of the same CNN, fed the GIVEN labels as its docs require; seeded random);
4. detection metrics against the truly flipped samples (AUROC, AP, precision/recall at 5% and at
   the true noise count);
5. drop the top ``budget`` of each retrained score, retrain from scratch with the same seed,
   report the FINAL-epoch test accuracy; plus "none" (no trimming: the model of step 2) and
   "oracle" (drop exactly the flipped samples).

Every run is one dict (:data:`RUN_SCHEMA`); runs are written as they finish, so an interrupted
full run resumes. :func:`render`, :func:`plot` and :func:`headline` turn a finished part into the
report's section, its AUROC figure and README's lines.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from oga_core.bench import verdicts
from oga_core.bench.aggregate import (
    Getter,
    accuracy_value,
    mean_over_settings,
    metric_value,
    setting_label,
    settings_in_order,
    stats,
)
from oga_core.bench.columns import COLUMNS, FAMILY, NAMES, ROW_NAMES
from oga_core.bench.common import log, machine_info, now_iso
from oga_core.bench.markdown import code, fmt_mean_std, table
from oga_core.bench.peers import PEERS, PeerInputs, cleanlab_issues
from oga_core.bench.settings import QualitySettings
from oga_core.bench.training import Split, accuracy, cross_val_probs, fit, predict_probs, split_data
from oga_core.detectors import flag_top, score_columns
from oga_core.evaluate import detection_metrics
from oga_core.gradients import gradient_stats
from oga_core.noise import flip_labels

RUN_SCHEMA = 1  # the keys of one run dict (see run_setting); bump when they change
# Keys of one run's "metrics" entry per column.
METRICS = ("auroc", "ap", "precision@5%", "recall@5%", "precision@n", "recall@n")


# -- one run ---------------------------------------------------------------------------------
def _metrics(scores: pd.DataFrame, truth: np.ndarray, budget: float) -> dict[str, dict[str, float]]:
    """``{column: {metric: value}}`` with k-dependent names made k-independent (``@5%``, ``@n``)."""
    frame = detection_metrics(scores, truth, columns=list(scores.columns), budget=budget)
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
    by_source = {
        scope: score_columns(gradient_stats(model, px, given, scope=scope, device=device), given, seed=seed)
        for scope in ("last", "all")
    }
    peer = PeerInputs(given, cross_val_probs(settings, px, given, classes=k, seed=seed, device=device), seed)
    scores = pd.DataFrame(
        {c.name: PEERS[c.key](peer) if c.source == "peer" else by_source[c.source][c.key] for c in COLUMNS}
    )
    metrics = _metrics(scores, truth, settings.budget)

    accuracies: dict[str, float] = {"none": acc_none}
    for col in settings.retrain:
        accuracies[col] = retrained_accuracy(~flag_top(scores[col].to_numpy(), settings.budget))
    accuracies["oracle"] = retrained_accuracy(~truth)

    issues = cleanlab_issues(peer)
    hits = int(truth[issues].sum())
    return {
        "schema": RUN_SCHEMA,
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
            "flagged": int(len(issues)),
            "precision": hits / len(issues) if len(issues) else float("nan"),
            "recall": hits / max(int(truth.sum()), 1),
        },
        "cv_accuracy_given": float((peer.cv_probs.argmax(1) == given).mean()),
        "seconds": round(time.perf_counter() - start, 2),
    }


# -- the part --------------------------------------------------------------------------------
def _jsonable(obj: Any) -> Any:
    """Tuples become lists, as they do after a JSON round trip (for signature comparison)."""
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    return obj


def signature(settings: QualitySettings) -> dict[str, Any]:
    """What a resumed run must share with the interrupted one: settings, columns, run schema."""
    return _jsonable({**settings.signature(), "columns": NAMES, "run_schema": RUN_SCHEMA})


def run_quality(
    settings: QualitySettings,
    device: torch.device,
    *,
    previous: dict[str, Any] | None = None,
    checkpoint: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Every setting of ``settings``; the runs of an interrupted ``previous`` part (same
    :func:`signature`, not complete) are reused.

    ``checkpoint(part)`` is called after each run with the part so far (to write it to disk).
    Returns ``{"settings", "signature", "machine", "measured_at", "runs": [run dict, ...], "complete"}``.
    """
    part: dict[str, Any] = {
        "settings": asdict(settings),
        "signature": signature(settings),
        "machine": machine_info(device),
        "measured_at": now_iso(),
        "runs": [],
        "complete": False,
    }
    done = {}
    # Resume an interrupted run of the same settings; a completed one is measured afresh.
    if previous and not previous.get("complete") and previous.get("signature") == part["signature"]:
        done = {(r["dataset"], r["kind"], r["rate"], r["seed"]): r for r in previous.get("runs", [])}
        part["measured_at"] = previous.get("measured_at", part["measured_at"])
        if done:
            log(f"quality: resuming an interrupted run ({len(done)} run(s) already done)")
    todo = settings.grid()
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


# -- the report section ----------------------------------------------------------------------
TABLES = (  # (heading, metric key) of the detection tables, in page order
    ("AUROC", "auroc"),
    ("Average precision", "ap"),
    ("Precision at k = 5% of the training set", "precision@5%"),
    ("Recall at k = 5% of the training set", "recall@5%"),
    ("Precision at k = the true noise count (equals recall at that k)", "precision@n"),
)
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


def score_table(part: dict[str, Any], value: Getter, columns: tuple[str, ...]) -> str:
    """Rows = score columns, columns = settings; mean ± std over seeds; the best mean of each
    setting in bold; last, the verdict row "best OGA - best baseline"."""
    settings = settings_in_order(part)
    cells = stats(part, value, columns)
    best = verdicts.best_means(cells, settings, columns)
    rows = []
    for col in columns:
        if not any((s, col) in cells for s in settings):
            continue
        row = []
        for s in settings:
            text = fmt_mean_std(cells.get((s, col)))
            row.append(f"**{text}**" if verdicts.is_best(cells, best, s, col) else text)
        rows.append([ROW_NAMES.get(col, code(col))] + row)
    gaps = verdicts.gap_cells(cells, settings, columns)
    if gaps is not None:
        rows.append(["best OGA - best baseline"] + gaps)
    return table(["score"] + [setting_label(*s) for s in settings], rows)


def _method(part: dict[str, Any]) -> list[str]:
    """The paragraphs that say what was run: data, noise, seeds, model, cleanlab, the columns."""
    s, runs = part["settings"], part["runs"]
    sizes: dict[str, tuple[int, int]] = {}
    for r in runs:
        sizes.setdefault(r["dataset"], (r["n_train"], r["n_test"]))
    data_text = ", ".join(f"`{d}` ({tr:,} train / {te:,} test)" for d, (tr, te) in sizes.items())
    return [
        f"The paper's mislabeled-sample experiment at small scale. Data: {data_text}, split once "
        f"(stratified, {s['test_fraction']:.0%} held out, split seed {s['split_seed']}). Noise: "
        f"{', '.join(s['kinds'])} at {', '.join(f'{r:.0%}' for r in s['rates'])} of the training labels "
        f"(`oga_core.noise.flip_labels`: symmetric = a uniformly random other class, pair = class k -> "
        f"k+1), the test labels stay clean. Seeds {', '.join(map(str, s['seeds']))}: each seed is both the "
        f"noise seed and the model seed. Model: `{s['model']}` trained from scratch for {s['epochs']} "
        f"epochs (Adam, lr {s['lr']}, batch {s['batch_size']}, cosine schedule), final epoch, no "
        f"early stopping. Completed runs: {len(runs)}"
        + ("" if part.get("complete") else " (the run was interrupted: partial)")
        + ".",
        "",
        f"cleanlab: `cleanlab.filter.find_label_issues` / `cleanlab.rank.get_label_quality_scores` fed the "
        f"GIVEN (noisy) labels and out-of-sample `pred_probs` from {s['folds']}-fold stratified "
        f"cross-validation of the same CNN (same epochs), as cleanlab's documentation requires; the "
        f"score column is 1 - label quality (self-confidence). The paper's code fed cleanlab the model's "
        f'PREDICTED labels instead (`docs/architecture.md`, "Benchmarks"), which makes confident learning '
        f"look worse than it is.",
        "",
        "Scores (higher = more suspicious): "
        + "; ".join(f"{code(c.name)} {c.help}" for c in COLUMNS)
        + ". Every metric is against the truly flipped samples; mean ± std over seeds; the best "
        "non-reference mean of each setting in bold.",
        "",
    ]


def _cleanlab_choice(part: dict[str, Any]) -> str:
    """How many samples cleanlab's own ``find_label_issues`` flags per setting, and how right."""
    rows = []
    for setting in settings_in_order(part):
        picked = [r for r in part["runs"] if (r["dataset"], r["kind"], r["rate"]) == setting]
        fl = [r["cleanlab_find_label_issues"] for r in picked]
        rows.append(
            [
                setting_label(*setting),
                f"{np.mean([r['n_noisy'] for r in picked]):,.0f}",
                f"{np.mean([f['flagged'] for f in fl]):,.0f}",
                f"{np.nanmean([f['precision'] for f in fl]):.3f}",
                f"{np.mean([f['recall'] for f in fl]):.3f}",
                f"{np.mean([r['cv_accuracy_given'] for r in picked]):.3f}",
            ]
        )
    return table(["setting", "flipped", "flagged", "precision", "recall", "CV accuracy on given labels"], rows)


def render(part: dict[str, Any] | None, *, plot_name: str | None) -> str:
    """The "Detection quality" section; ``plot_name`` is the AUROC figure beside the page, if any."""
    if not part or not part.get("runs"):
        return "## Detection quality\n\nNot measured in this run.\n"
    s = part["settings"]
    retrained = tuple(s["retrain"])
    out = ["## Detection quality", "", *_method(part)]
    if plot_name:
        out += [f"![AUROC against noise rate, per score]({plot_name})", ""]
    for title, metric in TABLES:
        out += [f"### {title}", "", score_table(part, metric_value(metric), NAMES), ""]
    out += [
        f"### Test accuracy after dropping the top {s['budget']:.0%} and retraining from scratch",
        "",
        f"Final-epoch accuracy on the clean test split; same seed, epochs and settings as the first "
        f"model. Retrained columns: {', '.join(code(c) for c in retrained)}. Why not every column: "
        f"{RETRAIN_REASON}",
        "",
        score_table(part, accuracy_value, ("none", *retrained, "oracle")),
        "",
        "### cleanlab's own choice (`find_label_issues`, default `prune_by_noise_rate`)",
        "",
        "It picks its own number of issues, so it is not a top-k: how many it flags and how right they are.",
        "",
        _cleanlab_choice(part),
        "",
        "### Where OGA does not win (computed from the tables above)",
        "",
        *verdicts.quality_losses(part, retrained=retrained),
        "",
    ]
    return "\n".join(out)


# -- the figure ------------------------------------------------------------------------------
# tab20 entries per column: OGA warm/purple (darker = all layers), baselines blue/green/grey.
PLOT_COLORS = {
    "oga_l1": 6,
    "oga_l2": 2,
    "oga_iforest": 8,
    "oga_l1_all": 7,
    "oga_l2_all": 3,
    "oga_iforest_all": 9,
    "loss": 0,
    "el2n": 18,
    "margin": 4,
    "cleanlab": 16,
}
PLOT_STYLES = {"oga": "-", "reference": ":"}  # baselines dashed


def plot(part: dict[str, Any], path: Path) -> bool:
    """AUROC against noise rate, one panel per (data set, noise kind), one line per column; PNG.
    False (and no file) when matplotlib is missing or there is nothing to plot."""
    try:  # lazy: matplotlib is optional (the bench extra) and slow to import
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    settings = settings_in_order(part)
    if not settings:
        return False
    cells = stats(part, metric_value("auroc"), NAMES)
    datasets = list(dict.fromkeys(d for d, _, _ in settings))
    kinds = list(dict.fromkeys(k for _, k, _ in settings))
    fig, axes = plt.subplots(
        len(datasets), len(kinds), figsize=(4.6 * len(kinds) + 2.2, 3.4 * len(datasets)), squeeze=False, sharex=True
    )
    palette = plt.get_cmap("tab20").colors
    unused = [i for i in (10, 12, 14, 1, 5, 11, 13, 15, 17, 19) if i not in PLOT_COLORS.values()]
    for row, dataset in enumerate(datasets):
        for col_i, kind in enumerate(kinds):
            ax = axes[row][col_i]
            rates = [r for d, k, r in settings if (d, k) == (dataset, kind)]
            for n_col, col in enumerate(NAMES):
                pts = [(r, cells[((dataset, kind, r), col)]) for r in rates if ((dataset, kind, r), col) in cells]
                if not pts:
                    continue
                if FAMILY[col] == "reference":
                    color = "0.5"
                else:  # a column added later gets a free colour
                    color = palette[PLOT_COLORS.get(col, unused[n_col % len(unused)])]
                ax.errorbar(
                    [100 * r for r, _ in pts],
                    [m for _, (m, _, _) in pts],
                    yerr=[sd for _, (_, sd, _) in pts],
                    marker="o",
                    ms=3,
                    capsize=2,
                    linestyle=PLOT_STYLES.get(FAMILY[col], "--"),
                    color=color,
                    label=col,
                )
            ax.set_title(f"{dataset.removeprefix('demo:')}, {kind} noise", fontsize=10)
            ax.grid(alpha=0.3)
            if row == len(datasets) - 1:
                ax.set_xlabel("flipped training labels (%)")
            if col_i == 0:
                ax.set_ylabel("AUROC (mean ± std)")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="center right", fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0, 1 - 1.6 / fig.get_figwidth(), 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


# -- README ----------------------------------------------------------------------------------
HEADLINE_ACCURACY = ("none", "oga_l1", "oga_l2", "cleanlab", "oracle")


def headline(part: dict[str, Any] | None) -> list[str]:
    """README's quality lines: mean AUROC per column, mean accuracy after trimming."""
    if not part or not part.get("runs"):
        return []
    settings = settings_in_order(part)
    auroc = mean_over_settings(stats(part, metric_value("auroc"), NAMES), settings, NAMES)
    acc = mean_over_settings(stats(part, accuracy_value, HEADLINE_ACCURACY), settings, HEADLINE_ACCURACY)
    return [
        f"- Detection of flipped labels, AUROC averaged over {len(settings)} settings "
        f"({len(part['runs'])} runs): " + ", ".join(f"{code(c)} {v:.3f}" for c, v in verdicts.ranked(auroc)) + ".",
        f"- Test accuracy after dropping the top {part['settings']['budget']:.0%} and retraining, averaged over "
        "settings: " + ", ".join(f"{ROW_NAMES.get(c, code(c))} {v:.3f}" for c, v in acc.items()) + ".",
    ]
