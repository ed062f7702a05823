"""Detection quality: the paper's mislabeled-sample experiment at small scale, and its report.

For every run (data set, regime, noise kind, noise rate, seed) of :class:`QualitySettings`:

1. split the data once, stratified (subsampled to ``max_samples``), ``test_fraction`` held out as
   a clean test split (fixed ``split_seed``);
2. flip labels of the training part only (the seed is the noise seed), and train the product's
   default model from scratch by its recipe on the GIVEN labels (the seed is also the model seed),
   holding out of training what the product holds out, and recording the training trajectory;
   the ``memorise`` regime trains ``memorise_factor`` times the recipe's epochs;
3. score every training sample with every column of :mod:`oga_core.bench.columns` as the product
   ranks it (held-out samples put on the trained samples' scale): the final model's scores (last
   layer, closed form, and all layers), the trajectory scores, and the peers — cleanlab's three
   rankings on out-of-sample ``pred_probs`` from ``folds``-fold cross-validation of the same model
   and recipe, fed the GIVEN labels as its docs require — and seeded random;
4. detection metrics against the truly flipped samples (AUROC, AP, precision/recall at 5% and at
   the true noise count), and the cost of each family of columns as a multiple of one training
   run without trajectory bookkeeping.

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

from oga_core import health, options
from oga_core.bench import verdicts
from oga_core.bench.aggregate import (
    Getter,
    mean_over_settings,
    metric_value,
    setting_label,
    settings_in_order,
    stats,
)
from oga_core.bench.columns import COLUMNS, FAMILY, NAMES
from oga_core.bench.common import log, machine_info, now_iso
from oga_core.bench.markdown import code, fmt_mean_std, table
from oga_core.bench.peers import PEERS, PeerInputs, cleanlab_issues
from oga_core.bench.settings import QualitySettings
from oga_core.bench.training import (
    Split,
    accuracy,
    cross_val_probs,
    fit,
    noisy_labels,
    predict_probs,
    pretrained_features,
    split_data,
)
from oga_core.detectors import DETECTORS, ScoreInputs, on_trained_scale, score_columns
from oga_core.evaluate import detection_metrics
from oga_core.gradients import gradient_stats
from oga_core.options import DEFAULT_DETECTOR

RUN_SCHEMA = 2  # the keys of one run dict (see run_setting); bump when they change
# Keys of one run's "metrics" entry per column.
METRICS = ("auroc", "ap", "precision@5%", "recall@5%", "precision@n", "recall@n")
# What each family of columns costs beyond one training run (see run_setting's "seconds").
COST_OF = {"last": "final", "all": "all_layers", "trajectory": "trajectory", "peer": "cross_validation"}


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


def dataset_label(source: str, regime: str, factor: float) -> str:
    """The run's ``dataset`` as the tables show it: the memorising and pretrained-features regimes
    are data sets of their own."""
    if regime == "features":
        return f"{source} ImageNet features"
    return source if regime == "usual" else f"{source} x{factor:g} epochs"


def run_setting(
    settings: QualitySettings,
    split: Split,
    *,
    source: str,
    regime: str,
    kind: str,
    rate: float,
    seed: int,
    device: torch.device,
) -> dict[str, Any]:
    """One (data set, regime, noise kind, rate, seed) run: detection metrics per column, the
    model's health, and the seconds of each step (``train_plain``, training without trajectory
    bookkeeping, is filled in by :func:`run_quality`)."""
    start = time.perf_counter()
    k = split.num_classes
    factor = settings.memorise_factor if regime == "memorise" else 1.0
    noise = noisy_labels(source, split.train_y, k, kind=kind, rate=rate, seed=seed)
    given, truth = noise.given, noise.noisy
    px = split.train_px

    fitted = fit(settings, px, given, classes=k, seed=seed, device=device, factor=factor, ids=split.train_ids)
    trained = ~fitted.holdout
    t0 = time.perf_counter()
    last = gradient_stats(fitted.model, px, given, scope="last", device=device)
    t_last = time.perf_counter() - t0
    t0 = time.perf_counter()
    every = gradient_stats(fitted.model, px, given, scope="all", device=device)
    t_all = time.perf_counter() - t0
    by_source = {
        "last": score_columns(last, given, seed=seed, trajectory=fitted.trajectory),
        "all": score_columns(every, given, seed=seed),
    }
    t0 = time.perf_counter()  # what the trajectory scores cost on their own, beyond training
    inputs = ScoreInputs(last, given, seed, fitted.trajectory)
    for detector in DETECTORS.values():
        if detector.trajectory:
            detector.score(inputs)
    t_scores = time.perf_counter() - t0
    t0 = time.perf_counter()
    cv = cross_val_probs(settings, px, given, classes=k, seed=seed, device=device, factor=factor)
    t_cv = time.perf_counter() - t0
    peer = PeerInputs(given, cv, seed)
    scores = pd.DataFrame(
        {
            # the product's ranking of each detector: held-out samples on the trained samples' scale
            c.name: PEERS[c.key](peer) if c.source == "peer" else on_trained_scale(by_source[c.source][c.key], trained)
            for c in COLUMNS
        }
    )
    metrics = _metrics(scores, truth, settings.budget)
    pred = predict_probs(fitted.model, px, device).argmax(1)
    checkup = health.check(
        train_accuracy=float((pred == given)[trained].mean()),
        holdout_accuracy=float((pred == given)[~trained].mean()) if (~trained).any() else None,
        holdout_size=int((~trained).sum()),
        epochs=fitted.epochs,
        expected_noise=rate,
    )
    issues = cleanlab_issues(peer)
    hits = int(truth[issues].sum())
    return {
        "schema": RUN_SCHEMA,
        "dataset": dataset_label(source, regime, settings.memorise_factor),
        "source": source,
        "regime": regime,
        "kind": kind,
        "rate": rate,
        "seed": seed,
        "epochs": fitted.epochs,
        "n_train": int(len(given)),
        "n_heldout": int((~trained).sum()),
        "n_test": int(len(split.test_y)),
        "n_noisy": int(truth.sum()),
        "k_budget": max(1, int(round(settings.budget * len(given)))),
        "train_accuracy_given": checkup.train_accuracy,
        "train_accuracy_clean": float((pred == noise.clean)[trained].mean()),
        "flipped_memorised": float((pred == given)[truth & trained].mean()) if (truth & trained).any() else None,
        "test_accuracy": accuracy(fitted.model, split.test_px, split.test_y, device),
        "health": checkup.to_dict(),
        "metrics": metrics,
        "cleanlab_find_label_issues": {
            "flagged": int(len(issues)),
            "precision": hits / len(issues) if len(issues) else float("nan"),
            "recall": hits / max(int(truth.sum()), 1),
        },
        "cv_accuracy_given": float((cv.argmax(1) == given).mean()),
        "seconds": {
            "train_recording": round(fitted.seconds, 3),
            "train_plain": None,
            "last_layer_pass": round(t_last, 3),
            "all_layer_pass": round(t_all, 3),
            "trajectory_scores": round(t_scores, 3),
            "cross_validation": round(t_cv, 3),
            "total": round(time.perf_counter() - start, 2),
        },
    }


# -- the part --------------------------------------------------------------------------------
def _jsonable(obj: Any) -> Any:
    """Tuples become lists, as they do after a JSON round trip (for signature comparison)."""
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    return obj


def _warm_up(settings: QualitySettings, device: torch.device) -> None:
    """A tiny training run first: a process's first training pays one-off costs (allocator, kernel
    choice) that would otherwise inflate the first run's seconds and every cost multiple."""
    rng = np.random.default_rng(0)
    px = rng.integers(0, 256, (256, 1, 28, 28), dtype=np.uint8)
    fit(settings, px, np.arange(256) % 10, classes=10, seed=0, device=device)


def signature(settings: QualitySettings) -> dict[str, Any]:
    """What a resumed run must share with the interrupted one: settings, columns, run schema."""
    return _jsonable({**settings.signature(), "columns": NAMES, "run_schema": RUN_SCHEMA})


def run_quality(
    settings: QualitySettings,
    device: torch.device,
    *,
    previous: dict[str, Any] | None = None,
    checkpoint: Callable[[dict[str, Any]], None] | None = None,
    shard: tuple[int, int] = (0, 1),
) -> dict[str, Any]:
    """Every setting of ``settings``; the runs of an interrupted ``previous`` part (same
    :func:`signature`, not complete) are reused.

    ``checkpoint(part)`` is called after each run with the part so far (to write it to disk).
    ``shard=(k, n)``: only every n-th run of the grid from the k-th (the part is complete when its
    slice is; merging the slices' results makes the whole, see ``results.merge_results``).
    Returns ``{"settings", "signature", "machine", "measured_at", "runs": [run dict, ...], "complete"}``.
    """
    part: dict[str, Any] = {
        "settings": asdict(settings),
        "signature": signature(settings),
        "machine": machine_info(device),
        "measured_at": now_iso(),
        "runs": [],
        "complete": False,
        "default_detector": DEFAULT_DETECTOR,
    }
    done = {}
    # Resume an interrupted run of the same settings; a completed one is measured afresh.
    if previous and not previous.get("complete") and previous.get("signature") == part["signature"]:
        done = {(r["dataset"], r["kind"], r["rate"], r["seed"]): r for r in previous.get("runs", [])}
        part["measured_at"] = previous.get("measured_at", part["measured_at"])
        if done:
            log(f"quality: resuming an interrupted run ({len(done)} run(s) already done)")
    _warm_up(settings, device)
    grid = settings.grid()
    part["grid"] = [[dataset_label(d, r, settings.memorise_factor), k, rate, seed] for d, r, k, rate, seed in grid]
    todo = grid[shard[0] :: shard[1]]
    splits: dict[str, Split] = {}
    backbones: dict[str, dict[str, float]] = {}
    plain: dict[tuple[str, str], float] = {}
    started = time.perf_counter()
    fresh = 0
    for i, (source, regime, kind, rate, seed) in enumerate(todo):
        label = dataset_label(source, regime, settings.memorise_factor)
        if (label, kind, rate, seed) in done:
            part["runs"].append(done[(label, kind, rate, seed)])
            continue
        if regime == "features":
            if label not in splits:
                # decoded at the size the product decodes for the backbone (128 px for efficientnet_lite0)
                pixels = split_data(
                    source,
                    test_fraction=settings.test_fraction,
                    seed=settings.split_seed,
                    max_samples=settings.max_samples,
                    image_size=options.default_image_size(settings.backbone),
                )
                splits[label], backbones[label] = pretrained_features(pixels, model=settings.backbone, device=device)
            split = splits[label]
        else:
            if source not in splits:
                splits[source] = split_data(
                    source,
                    test_fraction=settings.test_fraction,
                    seed=settings.split_seed,
                    max_samples=settings.max_samples,
                )
            split = splits[source]
        run = run_setting(settings, split, source=source, regime=regime, kind=kind, rate=rate, seed=seed, device=device)
        if (source, regime) not in plain:
            # Once per data set and regime, right after a run (warm, as that run's training was):
            # training without trajectory bookkeeping, the unit of every cost multiple.
            bare = fit(
                settings,
                split.train_px,
                split.train_y,
                classes=split.num_classes,
                seed=seed,
                device=device,
                factor=settings.memorise_factor if regime == "memorise" else 1.0,
                ids=split.train_ids,
                record=False,
            )
            plain[(source, regime)] = bare.seconds
        run["seconds"]["train_plain"] = round(plain[(source, regime)], 3)
        if regime == "features":
            run["backbone"] = backbones[label]
        part["runs"].append(run)
        fresh += 1
        left = (time.perf_counter() - started) / fresh * (len(todo) - i - 1)
        m = run["metrics"]
        log(
            f"quality {i + 1}/{len(todo)}: {label} {kind} {rate:.0%} seed {seed}: AUROC "
            f"noise_aware {m['noise_aware']['auroc']:.3f}, margin_adaptive {m['margin_adaptive']['auroc']:.3f}, margin_tracin {m['margin_tracin']['auroc']:.3f}, aum {m['aum']['auroc']:.3f}, "
            f"cleanlab_nm {m['cleanlab_nm']['auroc']:.3f}, margin {m['margin']['auroc']:.3f} "
            f"({run['seconds']['total']:.0f} s; about {left / 60:.0f} min left)"
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
        rows.append([code(col)] + row)
    gaps = verdicts.gap_cells(cells, settings, columns)
    if gaps is not None:
        rows.append(["best OGA - best baseline"] + gaps)
    return table(["score"] + [setting_label(*s) for s in settings], rows)


def _method(part: dict[str, Any]) -> list[str]:
    """The paragraphs that say what was run: data, noise, seeds, model, cleanlab, the columns."""
    s, runs = part["settings"], part["runs"]
    sizes: dict[str, tuple[int, int, int]] = {}
    for r in runs:
        sizes.setdefault(r["source"], (r["n_train"], r["n_heldout"], r["n_test"]))
    data_text = ", ".join(
        f"`{d}` ({tr:,} train of which {ho:,} held out of training / {te:,} test)" for d, (tr, ho, te) in sizes.items()
    )
    epochs = sorted({(r["dataset"], r["epochs"]) for r in runs})
    epochs_text = ", ".join(f"{d.removeprefix('demo:')} {e}" for d, e in epochs)
    seeds = ", ".join(
        f"{regime} {', '.join(map(str, sorted({r['seed'] for r in runs if r.get('regime') == regime})))}"
        for regime in dict.fromkeys(r.get("regime", "usual") for r in runs)
    )
    regimes = {r.get("regime", "usual") for r in runs}
    kinds = {r["kind"] for r in runs}
    noise = ["symmetric = a uniformly random other class", "pair = class k -> k+1"]
    if "lookalike" in kinds:
        noise.append("lookalike = each shape to its look-alike, e.g. disc -> ring")
    if "human" in kinds:
        noise.append(
            "human = each class to the one people confuse it with (`oga_core.bench.photos.HUMAN_FLIPS`: "
            "cat <-> dog, automobile <-> truck, deer <-> horse, airplane <-> ship, bird <-> frog; for emoji "
            "Smileys <-> People, Animals <-> Food, ...)"
        )
    text = (
        f"The paper's mislabeled-sample experiment at small scale. Data: {data_text}; larger sets are "
        f"subsampled (stratified) to {s['max_samples']:,} images and split once (stratified, "
        f"{s['test_fraction']:.0%} test, split seed {s['split_seed']}). Noise on the training labels only "
        f"(`oga_core.noise.flip_labels`: {'; '.join(noise)}). Seeds ({seeds}): each seed is the noise seed "
        f"and the model seed. Model: the product's default `{s['model']}` trained from scratch by its recipe "
        f"(Adam, cosine schedule; epochs: {epochs_text}), holding out {s['holdout']:.0%} of the training "
        "samples as the product does (their scores are put on the trained samples' scale, as the product "
        "ranks them), final epoch, no early stopping."
    )
    if "memorise" in regimes:
        text += (
            f" The memorising regime (`x{s['memorise_factor']:g} epochs`) trains {s['memorise_factor']:g} times "
            "as long, so the model fits the flipped labels too."
        )
    # Runs from before the backbone was recorded (an older results file) get the older wording.
    backbone = next(
        (r["backbone"] for r in runs if r.get("regime") == "features" and "backbone" in (r.get("backbone") or {})),
        None,
    )
    if "features" in regimes and backbone is None:
        text += (
            " The pretrained-features regime: a linear head on the frozen features of a pretrained network "
            "(these runs predate the record of which one)."
        )
    elif "features" in regimes:
        text += (
            " The pretrained-features regime (`ImageNet features`): every photo goes once through "
            f"`{backbone['backbone']}` with its published ImageNet weights (`{backbone['backbone_weights']}`, "
            f"installed with oga), frozen, as `oga analyze --model {backbone['backbone']} --pretrained` loads it; "
            f"a linear head is trained on its cached {backbone['feature_dim']}-value features (the head's recipe: "
            "Adam with weight decay on standardised features), and the peers' cross-validation trains the same "
            "head on the same features."
        )
    if part.get("default_detector", "margin_tracin") != DEFAULT_DETECTOR:
        text += (
            f" These runs were measured when the default ranking was `{part.get('default_detector', 'margin_tracin')}`; "
            f"the default is now `{DEFAULT_DETECTOR}`, whose column they do not have."
        )
    return [
        text
        + f" Completed runs: {len(runs)}"
        + ("" if part.get("complete") else " (the run was interrupted: partial)")
        + ".",
        "",
        "cleanlab: `cleanlab.rank.get_label_quality_scores` (self_confidence, normalized_margin) and "
        "`cleanlab.filter.find_label_issues` fed the GIVEN (noisy) labels and out-of-sample `pred_probs` "
        f"from {s['folds']}-fold stratified cross-validation of the same model and recipe, as cleanlab's "
        "documentation requires. The paper's code fed cleanlab the model's PREDICTED labels instead "
        '(`docs/architecture.md`, "Benchmarks"), which makes confident learning look worse than it is.',
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


def _health_table(part: dict[str, Any]) -> str:
    """Per setting: what the model fitted, on what it did not train, and the health verdicts."""
    rows = []
    for setting in settings_in_order(part):
        picked = [r for r in part["runs"] if (r["dataset"], r["kind"], r["rate"]) == setting]
        memorised = [r["flipped_memorised"] for r in picked if r["flipped_memorised"] is not None]
        verdict_counts: dict[str, int] = {}
        for r in picked:
            verdict_counts[r["health"]["verdict"]] = verdict_counts.get(r["health"]["verdict"], 0) + 1
        rows.append(
            [
                setting_label(*setting),
                f"{np.mean([r['epochs'] for r in picked]):.0f}",
                f"{np.mean([r['train_accuracy_given'] for r in picked]):.3f}",
                f"{np.mean([r['train_accuracy_clean'] for r in picked]):.3f}",
                f"{np.mean([r['health']['holdout_accuracy'] or np.nan for r in picked]):.3f}",
                f"{np.mean(memorised):.2f}" if memorised else "-",
                f"{np.mean([r['test_accuracy'] for r in picked]):.3f}",
                ", ".join(f"{v} {n}" for v, n in sorted(verdict_counts.items())),
            ]
        )
    return table(
        [
            "setting",
            "epochs",
            "train acc. (given)",
            "train acc. (clean)",
            "held-out acc. (given)",
            "flipped labels fitted",
            "test acc. (clean)",
            "health",
        ],
        rows,
    )


def cost_multiples(part: dict[str, Any]) -> dict[str, float]:
    """Each family of columns' cost as a multiple of one training run without trajectory
    bookkeeping, the median over runs: the final model's scores (training + a last-layer pass), the
    all-layer scores, the trajectory scores (training with bookkeeping), cleanlab (training's
    peers: the cross-validation alone). In the pretrained-features regime an analysis also pays
    the backbone's one pass over the photos, so every term, the unit's too, includes it (a linear
    head alone trains in about a second, which made bookkeeping look large)."""
    out: dict[str, list[float]] = {}
    for run in part.get("runs", []):
        t = run["seconds"]
        if not t.get("train_plain"):
            continue
        backbone = float(run.get("backbone", {}).get("backbone_seconds", 0.0))
        plain = t["train_plain"] + backbone
        out.setdefault("final", []).append((backbone + t["train_recording"] + t["last_layer_pass"]) / plain)
        out.setdefault("all_layers", []).append((backbone + t["train_recording"] + t["all_layer_pass"]) / plain)
        out.setdefault("trajectory", []).append((backbone + t["train_recording"] + t["trajectory_scores"]) / plain)
        out.setdefault("cross_validation", []).append(t["cross_validation"] / plain)
    return {k: float(np.median(v)) for k, v in out.items()}  # the median: robust to a busy machine


def render(part: dict[str, Any] | None, *, plot_name: str | None, title: str = "Detection quality") -> str:
    """The "Detection quality" section (``title``: the photo part's is its own); ``plot_name`` is
    the AUROC figure beside the page, if any."""
    if not part or not part.get("runs"):
        return f"## {title}\n\nNot measured in this run.\n"
    schemas = {r.get("schema") for r in part["runs"]}
    if schemas != {RUN_SCHEMA}:
        return (
            f"## {title}\n\nThe stored results were measured by an earlier oga (run schema "
            f"{', '.join(map(str, sorted(s for s in schemas if s is not None)))}); run `oga bench --parts quality` "
            "to measure them again.\n"
        )
    costs = cost_multiples(part)
    out = [f"## {title}", "", *_method(part)]
    out += ["### The default ranking against its peers (computed from the AUROC table below)", ""]
    out += verdicts.goal_lines(part, costs)
    out += ["", "### Every score against the same goal", ""]
    out += [verdicts.goal_table(part, costs), ""]
    if plot_name:
        out += [f"![AUROC against noise rate, per score]({plot_name})", ""]
    for title, metric in TABLES:
        out += [f"### {title}", "", score_table(part, metric_value(metric), NAMES), ""]
    cost_text = ", ".join(f"{name.replace('_', ' ')} {value:.2f}x" for name, value in costs.items())
    out += [
        "### Cost",
        "",
        "Seconds of each step as a multiple of one training run of the same set-up without trajectory "
        f"bookkeeping (median over runs): {cost_text or 'not measured'}. The trajectory scores need no pass "
        "of their own; cleanlab's cross-validation trains the model once per fold. With a frozen backbone "
        "one run includes the backbone's pass over the photos (an analysis pays it once).",
        "",
        "### The model: what it fitted, and its health check",
        "",
        "Accuracies of the final model: on its training samples (given and clean labels), on the "
        "samples held out of training (given labels), the share of flipped training labels it predicts "
        "as given (memorised), and on the clean test split; the product's health verdicts over seeds.",
        "",
        _health_table(part),
        "",
        "### cleanlab's own choice (`find_label_issues`, default `prune_by_noise_rate`)",
        "",
        "It picks its own number of issues, so it is not a top-k: how many it flags and how right they are.",
        "",
        _cleanlab_choice(part),
        "",
        "### Where OGA does not win (computed from the tables above)",
        "",
        *verdicts.quality_losses(part),
        "",
    ]
    return "\n".join(out)


# -- the figure ------------------------------------------------------------------------------
# The columns drawn (every column would be 21 lines per panel): the default, its strongest rivals
# and the paper's score. tab20 entries: OGA warm/purple, baselines blue/green/grey.
PLOT_COLORS = {
    "oga_l2": 6,
    "oga_l2_traj": 2,
    "oga_l2n_tracin": 8,
    "margin_tracin": 3,
    "margin": 4,
    "aum": 0,
    "cleanlab_nm": 16,
    "cleanlab_sc": 18,
    "random": 14,
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
    if not settings or {r.get("schema") for r in part["runs"]} != {RUN_SCHEMA}:
        return False
    drawn = tuple(c for c in NAMES if c in PLOT_COLORS)
    cells = stats(part, metric_value("auroc"), drawn)
    datasets = list(dict.fromkeys(d for d, _, _ in settings))
    kinds = list(dict.fromkeys(k for _, k, _ in settings))
    fig, axes = plt.subplots(
        len(datasets), len(kinds), figsize=(4.6 * len(kinds) + 2.2, 3.4 * len(datasets)), squeeze=False, sharex=True
    )
    palette = plt.get_cmap("tab20").colors
    for row, dataset in enumerate(datasets):
        for col_i, kind in enumerate(kinds):
            ax = axes[row][col_i]
            rates = [r for d, k, r in settings if (d, k) == (dataset, kind)]
            for col in drawn:
                pts = [(r, cells[((dataset, kind, r), col)]) for r in rates if ((dataset, kind, r), col) in cells]
                if not pts:
                    continue
                color = "0.5" if FAMILY[col] == "reference" else palette[PLOT_COLORS[col]]
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
def headline(part: dict[str, Any] | None, *, prefix: str = "") -> list[str]:
    """README's quality lines: the goal verdict and the mean AUROC per column (``prefix``: what
    the part is, e.g. "Colour photos: ")."""
    if not part or not part.get("runs") or {r.get("schema") for r in part["runs"]} != {RUN_SCHEMA}:
        return []
    settings = settings_in_order(part)
    auroc = mean_over_settings(stats(part, metric_value("auroc"), NAMES), settings, NAMES)
    goal = verdicts.goal_lines(part, cost_multiples(part), short=True)
    return [
        *[f"- {prefix}{line[2:]}" for line in goal],
        f"- {prefix}Detection of flipped labels, AUROC averaged over {len(settings)} settings "
        f"({len(part['runs'])} runs): " + ", ".join(f"{code(c)} {v:.3f}" for c, v in verdicts.ranked(auroc)) + ".",
    ]
