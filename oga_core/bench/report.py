"""``docs/benchmarks.md`` (and its plot, and README's headline block) from the results JSON.

Everything here is a pure function of the results dict that ``oga bench`` writes: no claim in the
report is typed by hand. "Where OGA does not win" lines are computed by comparing means over seeds.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

from oga_core.bench import quality as q
from oga_core.detectors import detector_column
from oga_core.options import DEFAULT_DETECTOR

LAST_LAYER_GOAL = 1.3  # last-layer scoring time / one inference pass, at most (the goal)
README_START = "<!-- oga-bench:start -->"
README_END = "<!-- oga-bench:end -->"
COLUMN_HELP = {
    "oga_l1": "OGA, L1 norm of the last layer's gradient (closed form)",
    "oga_l2": "OGA, L2 norm of the last layer's gradient (closed form)",
    "oga_iforest": "OGA, Isolation Forest on the last layer's gradients",
    "oga_l1_all": "OGA, L1 norm of the gradient over all layers",
    "oga_l2_all": "OGA, L2 norm over all layers (ghost norms)",
    "oga_iforest_all": "OGA, Isolation Forest on a count sketch of the all-layer gradient",
    "loss": "cross-entropy on the given label",
    "el2n": "EL2N, ||p - e_y||_2",
    "margin": "max_{k != y} p_k - p_y",
    "cleanlab": "cleanlab, 1 - label quality (self-confidence) from 5-fold out-of-sample probabilities",
    "random": "uniform random scores (seeded)",
}
ROW_NAMES = {"none": "no trimming", "oracle": "oracle (drop exactly the flipped samples)"}


# -- formatting ------------------------------------------------------------------------------
def fmt_num(x: float | None, digits: int = 3) -> str:
    """A number to ``digits`` significant digits; '-' when missing."""
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "-"
    if x == 0:
        return "0"
    magnitude = math.floor(math.log10(abs(x)))
    decimals = max(0, digits - 1 - magnitude)
    return f"{x:,.{decimals}f}"


def fmt_ratio(x: float | None) -> str:
    return "-" if x is None else f"{fmt_num(x)}x"


def table(header: list[str], rows: Iterable[list[str]]) -> str:
    """A markdown table; the first column left-aligned, the rest right-aligned."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join([":---"] + ["---:"] * (len(header) - 1)) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def _mean_std(cell: Any) -> str:
    if cell is None:
        return "-"
    mean, std, n = cell
    return f"{mean:.3f}" if n <= 1 else f"{mean:.3f} ± {std:.3f}"


# -- quality ---------------------------------------------------------------------------------
def _stat_table(
    part: dict[str, Any], getter: Callable[[dict[str, Any], str], float | None], columns: tuple[str, ...]
) -> dict[tuple, tuple[float, float, int]]:
    frame = q.aggregate(part, getter, columns)
    return {(setting, col): (r["mean"], r["std"], int(r["n"])) for (setting, col), r in frame.iterrows()}


def quality_table(
    part: dict[str, Any], getter, columns: tuple[str, ...], *, names: dict[str, str] | None = None
) -> str:
    """Rows = score columns, columns = settings; mean ± std over seeds; the best mean in bold
    (random, none and oracle are never bold: they are references)."""
    settings = q.settings_in_order(part)
    stats = _stat_table(part, getter, columns)
    best = {}
    for s in settings:
        means = [stats[(s, c)][0] for c in columns if (s, c) in stats and c not in ("random", "none", "oracle")]
        best[s] = max(means) if means else None
    rows = []
    for col in columns:
        if not any((s, col) in stats for s in settings):
            continue
        cells = []
        for s in settings:
            cell = stats.get((s, col))
            text = _mean_std(cell)
            if (
                cell is not None
                and best[s] is not None
                and cell[0] == best[s]
                and col not in ("random", "none", "oracle")
            ):
                text = f"**{text}**"
            cells.append(text)
        rows.append([(names or {}).get(col, f"`{col}`")] + cells)
    # The verdict row: best OGA mean minus best baseline mean (random excluded; "no trimming" is a
    # baseline for accuracy), so a table says by itself where OGA does not win (a negative gap).
    oga_cols = [c for c in columns if c.startswith("oga_")]
    base_cols = [c for c in columns if not c.startswith("oga_") and c not in ("random", "oracle")]
    if oga_cols and base_cols:
        cells = []
        for s in settings:
            oga = [stats[(s, c)][0] for c in oga_cols if (s, c) in stats]
            base = [stats[(s, c)][0] for c in base_cols if (s, c) in stats]
            if not oga or not base:
                cells.append("-")
                continue
            gap = max(oga) - max(base)
            verdict = "tie" if abs(gap) < 5e-4 else "OGA wins" if gap > 0 else "**OGA loses**"  # 3 decimals shown
            cells.append(f"{gap:+.3f} {verdict}")
        rows.append(["best OGA - best baseline"] + cells)
    return table(["score"] + [q.setting_label(*s) for s in settings], rows)


def quality_losses(part: dict[str, Any], retrained: tuple[str, ...]) -> list[str]:
    """Computed "where OGA does not win" lines: per metric, the baselines whose mean beats the best
    OGA column (and the product's default detector column) in a setting, with the largest gap."""
    settings = q.settings_in_order(part)
    several_seeds = len({r["seed"] for r in part.get("runs", [])}) > 1
    lines = []
    checks: list[tuple[str, Callable, tuple[str, ...], tuple[str, ...]]] = [
        ("AUROC", q.metric_value("auroc"), q.OGA_COLUMNS, q.BASELINE_COLUMNS),
        ("average precision", q.metric_value("ap"), q.OGA_COLUMNS, q.BASELINE_COLUMNS),
        ("precision@5%", q.metric_value("precision@5%"), q.OGA_COLUMNS, q.BASELINE_COLUMNS),
        ("precision@n", q.metric_value("precision@n"), q.OGA_COLUMNS, q.BASELINE_COLUMNS),
        (
            "test accuracy after trimming",
            q.accuracy_value,
            tuple(c for c in retrained if c.startswith("oga_")),
            tuple(c for c in retrained if not c.startswith("oga_")) + ("none",),
        ),
    ]
    for metric, getter, oga_cols, base_cols in checks:
        stats = _stat_table(part, getter, oga_cols + base_cols)
        default = detector_column(DEFAULT_DETECTOR)
        for reference, label in ((oga_cols, "every OGA score"), ((default,), f"`{default}` (the default)")):
            beaten: dict[str, list[tuple[float, bool, str]]] = {}
            for s in settings:
                ref = [(stats[(s, c)], c) for c in reference if (s, c) in stats]
                if not ref:
                    continue
                (best_mean, best_std, _), best_col = max(ref, key=lambda t: t[0][0])
                for b in base_cols:
                    if (s, b) not in stats:
                        continue
                    mean, std, _ = stats[(s, b)]
                    if mean > best_mean:
                        clear = mean - best_mean > max(std, best_std)
                        beaten.setdefault(b, []).append(
                            (mean - best_mean, clear, f"{q.setting_label(*s)} vs `{best_col}`")
                        )
            if not beaten:
                lines.append(f"- {metric}: no baseline beats {label} in any setting ({len(settings)} settings).")
                continue
            parts = []
            for b, gaps in sorted(beaten.items(), key=lambda kv: -len(kv[1])):
                gap, _, where = max(gaps)
                name = "no trimming" if b == "none" else f"`{b}`"
                clear = f"by more than one seed std in {sum(1 for g in gaps if g[1])}; " if several_seeds else ""
                parts.append(f"{name} in {len(gaps)}/{len(settings)} ({clear}largest gap +{gap:.3f}, {where})")
            lines.append(f"- {metric}: beats {label}: " + "; ".join(parts) + ".")
    return lines


def render_quality(part: dict[str, Any], plot_name: str | None) -> str:
    s = part["settings"]
    runs = part.get("runs", [])
    if not runs:
        return "## Detection quality\n\nNot measured in this run.\n"
    sizes = {}
    for r in runs:
        sizes.setdefault(r["dataset"], (r["n_train"], r["n_test"]))
    retrained = tuple(s["retrain"])
    out = ["## Detection quality", ""]
    data_text = ", ".join(f"`{d}` ({tr:,} train / {te:,} test)" for d, (tr, te) in sizes.items())
    out += [
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
        f"PREDICTED labels instead (DESIGN.md), which makes confident learning look worse than it is.",
        "",
        "Scores (higher = more suspicious): "
        + "; ".join(f"`{c}` {COLUMN_HELP[c]}" for c in q.COLUMNS)
        + ". Every metric is against the truly flipped samples; mean ± std over seeds; the best "
        "non-reference mean of each setting in bold.",
        "",
    ]
    if plot_name:
        out += [f"![AUROC against noise rate, per score]({plot_name})", ""]
    for title, metric in (
        ("AUROC", "auroc"),
        ("Average precision", "ap"),
        ("Precision at k = 5% of the training set", "precision@5%"),
        ("Recall at k = 5% of the training set", "recall@5%"),
        ("Precision at k = the true noise count (equals recall at that k)", "precision@n"),
    ):
        out += [f"### {title}", "", quality_table(part, q.metric_value(metric), q.COLUMNS), ""]
    acc_cols = ("none",) + retrained + ("oracle",)
    out += [
        f"### Test accuracy after dropping the top {s['budget']:.0%} and retraining from scratch",
        "",
        f"Final-epoch accuracy on the clean test split; same seed, epochs and settings as the first "
        f"model. Retrained columns: {', '.join(f'`{c}`' for c in retrained)}. Why not every column: "
        f"{q.RETRAIN_REASON}",
        "",
        quality_table(part, q.accuracy_value, acc_cols, names=dict(ROW_NAMES)),
        "",
        "### cleanlab's own choice (`find_label_issues`, default `prune_by_noise_rate`)",
        "",
        "It picks its own number of issues, so it is not a top-k: how many it flags and how right they are.",
        "",
    ]
    rows = []
    for setting in q.settings_in_order(part):
        picked = [r for r in runs if (r["dataset"], r["kind"], r["rate"]) == setting]
        fl = [r["cleanlab_find_label_issues"] for r in picked]
        rows.append(
            [
                q.setting_label(*setting),
                f"{np.mean([r['n_noisy'] for r in picked]):,.0f}",
                f"{np.mean([f['flagged'] for f in fl]):,.0f}",
                f"{np.nanmean([f['precision'] for f in fl]):.3f}",
                f"{np.mean([f['recall'] for f in fl]):.3f}",
                f"{np.mean([r['cv_accuracy_given'] for r in picked]):.3f}",
            ]
        )
    out += [table(["setting", "flipped", "flagged", "precision", "recall", "CV accuracy on given labels"], rows), ""]
    out += ["### Where OGA does not win (computed from the tables above)", ""]
    out += quality_losses(part, retrained) + [""]
    return "\n".join(out)


def plot_quality(part: dict[str, Any], path: Path) -> bool:
    """AUROC against noise rate, one panel per (data set, noise kind), one line per score; PNG.
    False (and no file) when matplotlib is missing or there is nothing to plot."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    settings = q.settings_in_order(part)
    if not settings:
        return False
    stats = _stat_table(part, q.metric_value("auroc"), q.COLUMNS)
    datasets = list(dict.fromkeys(d for d, _, _ in settings))
    kinds = list(dict.fromkeys(k for _, k, _ in settings))
    fig, axes = plt.subplots(
        len(datasets), len(kinds), figsize=(4.6 * len(kinds) + 2.2, 3.4 * len(datasets)), squeeze=False, sharex=True
    )
    # OGA in solid warm/purple lines (darker = all layers), baselines dashed, random grey dotted.
    palette = plt.get_cmap("tab20").colors
    colors = dict(zip(q.COLUMNS, [palette[i] for i in (6, 2, 8, 7, 3, 9, 0, 18, 4, 16)] + ["0.5"]))
    styles = {c: "-" if c.startswith("oga_") else (":" if c == "random" else "--") for c in q.COLUMNS}
    for row, dataset in enumerate(datasets):
        for col_i, kind in enumerate(kinds):
            ax = axes[row][col_i]
            rates = [r for d, k, r in settings if (d, k) == (dataset, kind)]
            for col in q.COLUMNS:
                pts = [(r, stats[((dataset, kind, r), col)]) for r in rates if ((dataset, kind, r), col) in stats]
                if not pts:
                    continue
                ax.errorbar(
                    [100 * r for r, _ in pts],
                    [m for _, (m, _, _) in pts],
                    yerr=[sd for _, (_, sd, _) in pts],
                    marker="o",
                    ms=3,
                    capsize=2,
                    linestyle=styles[col],
                    color=colors[col],
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


# -- speed -----------------------------------------------------------------------------------
SPEED_ROWS: list[tuple[str, str, str | None]] = [
    # (label, row key, ratio key shown beside it)
    ("one inference pass (baseline)", "inference", None),
    ("one training epoch (baseline)", "train_epoch", None),
    ("last layer L1 + L2, closed form / inference (goal <= 1.3)", "last_norms", "last_norms_over_inference"),
    (
        "last layer, every score (+ iForest, loss, el2n, margin) / inference",
        "last_scores",
        "last_scores_over_inference",
    ),
    ("all layers, ghost norms (L2) / training epoch", "ghost_all", "ghost_all_over_train_epoch"),
    (
        "all layers, product path (L1 + sketch + every score) / training epoch",
        "all_scores",
        "all_scores_over_train_epoch",
    ),
    ("per-sample autograd loop, all layers (paper's code): ghost norms' speed-up", "loop_all", "speedup_ghost_vs_loop"),
    ("torch.func vmap, all layers: ghost norms' speed-up", "vmap_all", "speedup_ghost_vs_vmap"),
    ("per-sample autograd loop, last layer: closed form's speed-up", "loop_last", "speedup_last_vs_loop"),
    ("torch.func vmap, last layer: closed form's speed-up", "vmap_last", "speedup_last_vs_vmap"),
    ("OGA pipeline: 1 training + last-layer scores", "oga_pipeline", None),
    (
        "cleanlab pipeline: K trainings on (K-1)/K + find_label_issues: OGA pipeline's speed-up",
        "cleanlab_pipeline",
        "speedup_pipeline_vs_cleanlab",
    ),
    ("  ... and OGA last-layer scoring alone vs the cleanlab pipeline: speed-up", "", "speedup_scoring_vs_cleanlab"),
]


def _speed_cell(part: dict[str, Any] | None, model: str, key: str, ratio_key: str | None) -> str:
    if part is None:
        return "not measured"
    case = part["models"].get(model)
    if case is None:
        return "not measured"
    text = []
    if key:
        r = case["rows"].get(key)
        if r is None:
            return "-"
        if r.get("seconds") is None:
            return f"failed: {r.get('error', '?')}"
        extra = f" (scaled from {r['measured_on']})" if "measured_on" in r else ""
        text.append(f"{fmt_num(r['seconds'])} s{extra}")
    if ratio_key:
        value = case["ratios"].get(ratio_key)
        verdict = ""
        if value is not None and ratio_key.startswith("speedup_") and value < 1:
            verdict = " (the baseline is faster)"
        elif value is not None and ratio_key == "last_norms_over_inference" and value > LAST_LAYER_GOAL:
            verdict = " (misses the goal)"
        text.append(f"**{fmt_ratio(value)}**{verdict}")
    return " · ".join(text)


def _memory_cell(part: dict[str, Any] | None, model: str) -> tuple[str, str, str]:
    if part is None or model not in part["models"]:
        return ("not measured",) * 3  # type: ignore[return-value]
    case = part["models"][model]
    mem = case.get("memory", {})

    def one(kind: str) -> str:
        m = mem.get(kind)
        if m is None:
            return "-"
        if "error" in m:
            return f"failed: {m['error']}"
        return f"{fmt_num(m['extra_mib'])} MiB"

    return (
        one("train_epoch"),
        one("ghost_all"),
        f"**{fmt_ratio(case['ratios'].get('ghost_all_memory_over_train_epoch'))}**",
    )


def speed_losses(speed: dict[str, Any]) -> list[str]:
    """Computed lines: every speed-up below 1 and every missed goal."""
    lines = []
    goals = {"last_norms_over_inference": LAST_LAYER_GOAL}
    for device, part in speed.items():
        for model, case in part["models"].items():
            for key, value in case["ratios"].items():
                if value is None:
                    continue
                if key.startswith("speedup_") and value < 1:
                    lines.append(f"- {device} / {model}: `{key}` = {fmt_ratio(value)}: the baseline is faster here.")
                if key in goals and value > goals[key]:
                    lines.append(
                        f"- {device} / {model}: `{key}` = {fmt_ratio(value)} misses the goal of {goals[key]}x."
                    )
    return lines or [
        "- OGA is faster than every per-sample baseline and meets the scoring goal on every measured device."
    ]


def render_speed(speed: dict[str, Any]) -> str:
    if not speed:
        return "## Speed and memory\n\nNot measured in this run.\n"
    devices = ["cpu", "cuda"]
    parts = {d: speed.get(d) for d in devices}
    header_names = {"cpu": "CPU", "cuda": "GPU (CUDA)"}
    some = next(p for p in parts.values() if p is not None)
    st = some["settings"]
    out = [
        "## Speed and memory",
        "",
        "Same process, same data, ratios against a baseline measured right before (the time ratios "
        "are the numbers to compare across machines; seconds are for scale). Synthetic images (learnable "
        "class templates + noise), 10 classes, models trained one epoch first so that scores are not "
        "degenerate. Fast steps: median of "
        f"{st['repeats']} run(s) after a warm-up on a slice. Per-sample references (loop, vmap) run on "
        "the first `m` samples ('scaled from m', seconds scaled linearly to n); their speed-ups are paired: "
        "OGA's counterpart is timed right after each reference on the same `m` samples, so a shared "
        "machine's drift between rows does not enter them. Pipelines: the same "
        f"number of epochs each ({st['pipeline_epochs']}), {st['folds']}-fold cross-validation for cleanlab, "
        "one run each. Time ratios below 1 and speed-ups above 1 favour OGA.",
        "",
    ]
    for d in devices:
        if parts[d] is None:
            out.append(f"- {header_names[d]}: not measured in the runs merged into this report.")
        elif not any(
            "oga_seconds_same_samples" in row for case in parts[d]["models"].values() for row in case["rows"].values()
        ):  # a run from before the pairing: its speed-ups divide the rows' seconds
            out.append(
                f"- {header_names[d]}: measured before the pairing: its reference speed-ups are the ratio of the "
                "rows' seconds as shown."
            )
    out.append("")
    models = list(dict.fromkeys(m for p in parts.values() if p for m in p["models"]))
    for model in models:
        case = some["models"].get(model) or next(
            p["models"][model] for p in parts.values() if p and model in p["models"]
        )
        shape = "x".join(map(str, case["case"]["shape"]))
        ns = ", ".join(
            f"{header_names[d]} n = {parts[d]['models'][model]['case']['n']:,}"
            for d in devices
            if parts[d] and model in parts[d]["models"]
        )
        out += [f"### `{model}`, {shape} inputs ({ns})", ""]
        rows = [[label] + [_speed_cell(parts[d], model, key, rk) for d in devices] for label, key, rk in SPEED_ROWS]
        mems = {d: _memory_cell(parts[d], model) for d in devices}
        rows.append(["peak extra memory, one training epoch (batch 128)"] + [mems[d][0] for d in devices])
        rows.append(["peak extra memory, all-layer ghost norms (batch 128)"] + [mems[d][1] for d in devices])
        rows.append(["ghost norms' peak memory / training's"] + [mems[d][2] for d in devices])
        out += [table(["measure", *(header_names[d] for d in devices)], rows), ""]
        for d in devices:
            p = parts[d]
            if p and model in p["models"]:
                note = p["models"][model]["rows"].get("cleanlab_pipeline", {}).get("note")
                if note:
                    out += [f"{header_names[d]}: {note}", ""]
    out += [
        "Memory: CPU = peak resident set of a fresh process doing only that step, minus its resident "
        "set after loading the model and data; GPU = `torch.cuda.max_memory_allocated` minus the "
        "allocation before the step.",
        "",
        "### The cache: a second identical analysis and a change of detector",
        "",
    ]
    rows = []
    for d in devices:
        c = (parts[d] or {}).get("cache")
        if not c:
            continue
        if "error" in c:
            rows.append([header_names[d], f"failed: {c['error']}", "", "", ""])
            continue
        cold = c["cold_seconds"]
        rows.append(
            [
                f"{header_names[d]}: `{c['data']}`, {c['n']:,} samples, {c['epochs']} epochs, 20% noise",
                f"{fmt_num(cold)} s",
                f"{fmt_num(c['hit_seconds'])} s ({fmt_ratio(c['hit_seconds'] / cold)})",
                f"{fmt_num(c['rescore_seconds'])} s",
                f"{fmt_num(c['detector_change_seconds'])} s ({fmt_ratio(c['detector_change_seconds'] / cold)})",
            ]
        )
    out += [
        table(
            [
                "analysis",
                "first (cold)",
                "identical second (cache hit)",
                "detector change, in memory (`rescore`)",
                "detector change, new `analyze` (from cache)",
            ],
            rows,
        ),
        "",
        "### Where OGA does not win (speed, computed)",
        "",
        *speed_losses({d: p for d, p in parts.items() if p}),
        "",
    ]
    return "\n".join(out)


# -- scaling ---------------------------------------------------------------------------------
def render_scaling(part: dict[str, Any] | None) -> str:
    if not part or not part.get("sizes"):
        return "## Scaling\n\nNot measured in this run.\n"
    st = part["settings"]
    rows = []
    first = next((s for s in part["sizes"] if "error" not in s), None)
    for s in part["sizes"]:
        if "error" in s:
            rows.append([f"{s['n']:,}", f"failed: {s['error']}"] + [""] * 8)
            continue
        g = s["stages"]
        per_k = s["analyze_wall_seconds"] / s["n"] * 1000
        growth = s["analyze_wall_seconds"] / first["analyze_wall_seconds"] if first else None
        rows.append(
            [
                f"{s['n']:,}",
                f"{fmt_num(s['analyze_wall_seconds'])} s",
                f"{fmt_ratio(growth)} for {s['n'] / first['n']:.3g}x data" if first else "-",
                f"{fmt_num(per_k)} s",
                " / ".join(
                    fmt_num(x)
                    for x in (
                        g.get("data", 0) + g.get("decode", 0),
                        g.get("train"),
                        g.get("gradients"),
                        g.get("scores"),
                    )
                ),
                f"{fmt_num(s['analyze_peak_rss_mib'])} MiB",
                f"{fmt_num(s.get('umap_seconds'))} s" if "umap_seconds" in s else s.get("umap_error", "not measured"),
                f"{fmt_num(s.get('umap_extra_mib'))} MiB" if "umap_extra_mib" in s else "-",
            ]
        )
    return "\n".join(
        [
            "## Scaling",
            "",
            f"`oga analyze --data torchvision:MNIST:ROOT --epochs {st['epochs']}` on synthetic 1x28x28 "
            "images written as MNIST files, one fresh process per size (so the wall time includes "
            "starting Python and importing torch). Stage seconds come from the command's `run.json`; "
            "peak memory is the process's peak RSS. Training is "
            f"{st['epochs']} epoch(s) of the small CNN (linear in epochs). The UMAP map of the model's "
            "features is timed in a separate process after a warm-up fit that pays numba's JIT; its "
            "memory is the peak RSS above the process's resident set before the map.",
            "",
            table(
                [
                    "samples",
                    "`oga analyze` wall",
                    "growth",
                    "per 1k samples",
                    "data / train / gradients / scores (s)",
                    "peak RSS",
                    "UMAP map",
                    "UMAP extra memory",
                ],
                rows,
            ),
            "",
        ]
    )


# -- the whole report ------------------------------------------------------------------------
def _machine_rows(results: dict[str, Any]) -> list[list[str]]:
    rows = []
    items = (
        [("quality", results.get("quality"))]
        + [(f"speed ({d})", p) for d, p in results.get("speed", {}).items()]
        + [("scaling", results.get("scaling"))]
    )
    for name, part in items:
        if not part:
            continue
        m = part["machine"]
        rows.append(
            [
                name,
                part["measured_at"],
                m.get("cpu", "?"),
                str(m.get("cores", "?")),
                str(m.get("torch_threads", "?")),
                str(m.get("memory_gib", "?")),
                m.get("torch", "?"),
                m.get("gpu", "-"),
                str(m.get("load_average_1min", "?")),
            ]
        )
    return rows


def render(results: dict[str, Any], *, plot_name: str | None, json_name: str) -> str:
    """The whole markdown report."""
    quick = results.get("mode") == "quick"
    head = [
        "# Benchmarks",
        "",
        f"Generated by `oga bench{' --quick' if quick else ''}` from its own output ([`{json_name}`]({json_name})); "
        "never edited by hand. Regenerate with `oga bench` (all parts) or `oga bench --parts PART` "
        "(merges into the existing results); a GPU speed run is added with `oga bench --merge FILE.json` "
        "(see `benchmarks/gpu_speed.sh`).",
        "",
    ]
    if quick:
        head += ["**Quick mode** (one small setting, for CI): the numbers below only show that every part runs.", ""]
    head += [
        "## Machine",
        "",
        table(
            [
                "part",
                "measured at (UTC)",
                "CPU",
                "cores",
                "torch threads",
                "memory (GiB)",
                "torch",
                "GPU",
                "load (1 min)",
            ],
            _machine_rows(results),
        ),
        "",
        "The machine's load average is recorded because other work on the same cores slows torch "
        "down non-uniformly; the ratios are measured back to back to limit that.",
        "",
    ]
    body = []
    if results.get("quality"):
        body.append(render_quality(results["quality"], plot_name))
    body.append(render_speed(results.get("speed", {})))
    body.append(render_scaling(results.get("scaling")))
    return "\n".join(head) + "\n" + "\n".join(body)


# -- README ----------------------------------------------------------------------------------
def headline(results: dict[str, Any], report_link: str) -> str:
    """The short block README quotes: a few numbers, each from the results JSON."""
    lines = [f"Measured by `oga bench` (full tables, machine and method: [{report_link}]({report_link})):", ""]
    part = results.get("quality")
    if part and part.get("runs"):
        stats = _stat_table(part, q.metric_value("auroc"), q.COLUMNS)
        settings = q.settings_in_order(part)
        mean_over = {
            c: float(np.mean([stats[(s, c)][0] for s in settings if (s, c) in stats]))
            for c in q.COLUMNS
            if any((s, c) in stats for s in settings)
        }
        ranked = sorted(mean_over.items(), key=lambda kv: -kv[1])
        lines.append(
            f"- Detection of flipped labels, AUROC averaged over {len(settings)} settings "
            f"({len(part['runs'])} runs): " + ", ".join(f"`{c}` {v:.3f}" for c, v in ranked) + "."
        )
        acc = _stat_table(part, q.accuracy_value, ("none", "oga_l1", "oga_l2", "cleanlab", "oracle"))
        mean_acc = {
            c: float(np.mean([acc[(s, c)][0] for s in settings if (s, c) in acc]))
            for c in ("none", "oga_l1", "oga_l2", "cleanlab", "oracle")
            if any((s, c) in acc for s in settings)
        }
        lines.append(
            "- Test accuracy after dropping the top 5% and retraining, averaged over settings: "
            + ", ".join(f"{ROW_NAMES.get(c, '`' + c + '`')} {v:.3f}" for c, v in mean_acc.items())
            + "."
        )
    for device, sp in results.get("speed", {}).items():
        for model, case in sp["models"].items():
            r = case["ratios"]
            lines.append(
                f"- Speed, {device}, `{model}`: last-layer scoring = {fmt_ratio(r.get('last_norms_over_inference'))} an "
                f"inference pass; all-layer ghost norms = {fmt_ratio(r.get('ghost_all_over_train_epoch'))} a training "
                f"epoch; {fmt_ratio(r.get('speedup_ghost_vs_loop'))} faster than the per-sample loop, "
                f"{fmt_ratio(r.get('speedup_ghost_vs_vmap'))} than vmap; whole pipeline "
                f"{fmt_ratio(r.get('speedup_pipeline_vs_cleanlab'))} faster than cleanlab's."
            )
        c = sp.get("cache")
        if c and "error" not in c:
            lines.append(
                f"- Cache, {device}: a second identical analysis {fmt_num(c['hit_seconds'])} s (first: "
                f"{fmt_num(c['cold_seconds'])} s); a change of detector {fmt_num(c['rescore_seconds'])} s."
            )
    sc = results.get("scaling")
    if sc:
        done = [s for s in sc.get("sizes", []) if "error" not in s]
        if done:
            lines.append(
                "- `oga analyze` (1 epoch): "
                + "; ".join(
                    f"{s['n']:,} samples {fmt_num(s['analyze_wall_seconds'])} s, {fmt_num(s['analyze_peak_rss_mib'])} MiB"
                    for s in done
                )
                + "."
            )
    return "\n".join(lines)


def update_readme(readme: Path, block: str) -> bool:
    """Replace the text between README's bench markers with ``block``; False if no markers."""
    if not readme.is_file():
        return False
    text = readme.read_text()
    pattern = re.compile(re.escape(README_START) + r".*?" + re.escape(README_END), re.S)
    if not pattern.search(text):
        return False
    readme.write_text(pattern.sub(lambda _: f"{README_START}\n{block}\n{README_END}", text))
    return True
