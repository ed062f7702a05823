"""Every judgement the benchmark report makes, computed from the numbers: who is best, who beats
whom and how often, where OGA loses, which speed goal is missed. Nothing here is typed by hand.

Quality verdicts compare means over seeds (:mod:`oga_core.bench.aggregate`) by column family
(:mod:`oga_core.bench.columns`); speed verdicts read the ratios of a speed part.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from oga_core.bench.aggregate import Setting, Stats, metric_value, setting_label, settings_in_order
from oga_core.bench.aggregate import stats as seed_stats
from oga_core.bench.columns import COLUMNS, FAMILY, FINAL_EPOCH, GOAL_PEERS, NAMES, of_family
from oga_core.bench.markdown import fmt_ratio, table
from oga_core.detectors import DETECTORS, detector_column

# -- quality ---------------------------------------------------------------------------------
# Who may be the best of a setting (bold): the scores; random only calibrates.
BEST_FAMILIES = ("oga", "baseline")
# "best OGA - best baseline": the baselines; random is not one.
GAP_RIVALS = ("baseline",)
# "Where OGA does not win": random too (OGA should beat a random ranking).
LOSS_RIVALS = ("baseline", "reference")
TIE = 5e-4  # the tables show 3 decimals: a smaller gap reads as 0.000
# The detection metrics whose losses are listed (recall@5% is precision@5% times a constant).
LOSS_METRICS = (
    ("AUROC", "auroc"),
    ("average precision", "ap"),
    ("precision@5%", "precision@5%"),
    ("precision@n", "precision@n"),
)


def best_means(table: Stats, settings: list[Setting], columns: tuple[str, ...]) -> dict[Setting, float | None]:
    """Per setting, the highest mean among ``columns`` that may be best (None when none is there)."""
    best: dict[Setting, float | None] = {}
    for s in settings:
        means = [table[(s, c)][0] for c in of_family(columns, *BEST_FAMILIES) if (s, c) in table]
        best[s] = max(means) if means else None
    return best


def is_best(table: Stats, best: dict[Setting, float | None], setting: Setting, column: str) -> bool:
    """Whether ``column``'s mean is the best of ``setting`` (ties all count; references never)."""
    cell = table.get((setting, column))
    return (
        cell is not None and FAMILY[column] in BEST_FAMILIES and best[setting] is not None and cell[0] == best[setting]
    )


def gap_cells(table: Stats, settings: list[Setting], columns: tuple[str, ...]) -> list[str] | None:
    """The row "best OGA - best baseline", one cell per setting (``-0.012 **OGA loses**``), so a
    table says by itself where OGA does not win; None when ``columns`` lack either side."""
    oga_cols, rivals = of_family(columns, "oga"), of_family(columns, *GAP_RIVALS)
    if not oga_cols or not rivals:
        return None
    cells = []
    for s in settings:
        oga = [table[(s, c)][0] for c in oga_cols if (s, c) in table]
        base = [table[(s, c)][0] for c in rivals if (s, c) in table]
        if not oga or not base:
            cells.append("-")
            continue
        gap = max(oga) - max(base)
        verdict = "tie" if abs(gap) < TIE else "OGA wins" if gap > 0 else "**OGA loses**"
        cells.append(f"{gap:+.3f} {verdict}")
    return cells


def default_column(part: dict[str, Any]) -> tuple[str, str]:
    """(detector, column) of the default ranking when ``part`` was measured: results from before
    the default was recorded were measured with ``margin_tracin`` as the default."""
    detector = part.get("default_detector", "margin_tracin")
    return detector, detector_column(detector)


def _beaten_lines(
    metric: str,
    table: Stats,
    settings: list[Setting],
    oga_cols: tuple[str, ...],
    rivals: tuple[str, ...],
    *,
    seeds: int,
    default: str,
) -> list[str]:
    """For every OGA score together, and for the default detector's column alone: the rivals whose
    mean beats it in some setting, how often, how often by more than a seed std, the largest gap."""
    lines = []
    for reference, label in ((oga_cols, "every OGA score"), ((default,), f"`{default}` (the default)")):
        beaten: dict[str, list[tuple[float, bool, str]]] = {}
        for s in settings:
            ref = [(table[(s, c)], c) for c in reference if (s, c) in table]
            if not ref:
                continue
            (best_mean, best_std, _), best_col = max(ref, key=lambda t: t[0][0])
            for b in rivals:
                if (s, b) not in table:
                    continue
                mean, std, _ = table[(s, b)]
                if mean > best_mean:
                    clear = mean - best_mean > max(std, best_std)
                    beaten.setdefault(b, []).append((mean - best_mean, clear, f"{setting_label(*s)} vs `{best_col}`"))
        if not beaten:
            lines.append(f"- {metric}: no baseline beats {label} in any setting ({len(settings)} settings).")
            continue
        parts = []
        for b, gaps in sorted(beaten.items(), key=lambda kv: -len(kv[1])):
            gap, _, where = max(gaps)
            name = f"`{b}`"
            clear = f"by more than one seed std in {sum(1 for g in gaps if g[1])}; " if seeds > 1 else ""
            parts.append(f"{name} in {len(gaps)}/{len(settings)} ({clear}largest gap +{gap:.3f}, {where})")
        lines.append(f"- {metric}: beats {label}: " + "; ".join(parts) + ".")
    return lines


def quality_losses(part: dict[str, Any]) -> list[str]:
    """The lines of "Where OGA does not win": per detection metric over every column, and for the
    test accuracy over the ``retrained`` columns (plus no trimming)."""
    settings = settings_in_order(part)
    seeds = len({r["seed"] for r in part.get("runs", [])})
    lines = []
    for metric, key in LOSS_METRICS:
        oga, rivals = of_family(NAMES, "oga"), of_family(NAMES, *LOSS_RIVALS)
        table = seed_stats(part, metric_value(key), oga + rivals)
        lines += _beaten_lines(metric, table, settings, oga, rivals, seeds=seeds, default=default_column(part)[1])
    return lines


# -- the goal of the default ranking (issue 9) -----------------------------------------------
GOAL_SHARE = 0.8  # AUROC >= every peer's in at least this share of the usual settings
GOAL_DEFICIT = 0.01  # ... and never more than this below the best peer
GOAL_COST = 1.2  # ... at most this many training runs
GOAL_MEMORISE = 0.05  # in the memorising regime, at least this far above the final model's scores
GOAL_FINAL = 0.005  # in every setting, at most this far below the best of final margin / EL2N / loss (issue 16)


def final_shortfall(part: dict[str, Any], column: str) -> float | None:
    """The largest shortfall of ``column``'s mean AUROC below the best of the final model's
    margin, EL2N and loss, over every setting of ``part`` (None: not measured)."""
    finals = ("margin", "el2n", "loss")
    table = seed_stats(part, metric_value("auroc"), (column, *finals))
    gaps = [
        max(table[(s, f)][0] for f in finals if (s, f) in table) - table[(s, column)][0]
        for s in settings_in_order(part)
        if (s, column) in table and any((s, f) in table for f in finals)
    ]
    return max(gaps) if gaps else None


@dataclass(frozen=True)
class Goal:
    """How one column fares against the goal. ``wins`` of ``settings`` usual settings where its
    mean AUROC is at least every peer's; ``deficit``: its largest shortfall below the best peer
    (negative: always above); ``memorise``: its smallest lead over the best final-model score in
    the memorising regime (None: not measured); ``cost``: training runs (None: unknown)."""

    column: str
    wins: int
    settings: int
    deficit: float
    memorise: float | None
    cost: float | None

    def met(self) -> dict[str, bool | None]:
        return {
            "share": self.settings > 0 and self.wins >= GOAL_SHARE * self.settings,
            "deficit": self.deficit <= GOAL_DEFICIT,
            "cost": None if self.cost is None else self.cost <= GOAL_COST,
            "memorise": None if self.memorise is None else self.memorise >= GOAL_MEMORISE,
        }


def _cost_of(column: str, costs: dict[str, float]) -> float | None:
    source = next(c.source for c in COLUMNS if c.name == column)
    if source == "peer":
        return None if "cross_validation" not in costs else 1.0 + costs["cross_validation"]
    if source == "all":
        return costs.get("all_layers")
    trajectory = any(d.trajectory for d in DETECTORS.values() if d.column == column)
    return costs.get("trajectory" if trajectory else "final")


def goal_of(part: dict[str, Any], column: str, costs: dict[str, float]) -> Goal:
    """The goal's numbers for ``column`` (see :class:`Goal`)."""
    settings = settings_in_order(part)
    regime = {(r["dataset"], r["kind"], r["rate"]): r.get("regime", "usual") for r in part.get("runs", [])}
    table = seed_stats(part, metric_value("auroc"), (column, *GOAL_PEERS, *FINAL_EPOCH))
    # the pretrained-features regime is a usual training run of its own model (a linear head)
    usual = [s for s in settings if regime[s] in ("usual", "features") and (s, column) in table]
    wins, deficit = 0, -1.0
    for s in usual:
        peers = [table[(s, p)][0] for p in GOAL_PEERS if (s, p) in table and p != column]
        if not peers:
            continue
        gap = max(peers) - table[(s, column)][0]
        wins += gap <= TIE
        deficit = max(deficit, gap)
    leads = [
        table[(s, column)][0] - max(table[(s, f)][0] for f in FINAL_EPOCH if (s, f) in table)
        for s in settings
        if regime[s] == "memorise" and (s, column) in table
    ]
    return Goal(column, wins, len(usual), deficit, min(leads) if leads else None, _cost_of(column, costs))


def _mark(ok: bool | None) -> str:
    return "" if ok is None else " (met)" if ok else " (**missed**)"


def goal_lines(part: dict[str, Any], costs: dict[str, float], *, short: bool = False) -> list[str]:
    """The default detector's column against the goal, in words."""
    detector, column = default_column(part)
    if column not in NAMES:
        return [f"- The default detector's column `{column}` is not measured here."]
    goal = goal_of(part, column, costs)
    met = goal.met()
    cost = f"{goal.cost:.2f}x one training run{_mark(met['cost'])}" if goal.cost is not None else "cost not measured"
    memorise = (
        f"memorising regime: at least {goal.memorise:+.3f} over the best final-model score (goal "
        f">= +{GOAL_MEMORISE}){_mark(met['memorise'])}"
        if goal.memorise is not None
        else "memorising regime not measured"
    )
    text = (
        f"- Default ranking `{column}` (detector `{detector}`): AUROC at least every peer's "
        f"({', '.join(f'`{p}`' for p in GOAL_PEERS)}) in {goal.wins} of {goal.settings} settings "
        f"(goal {GOAL_SHARE:.0%}){_mark(met['share'])}; at most {max(goal.deficit, 0):.3f} below the best "
        f"peer (goal {GOAL_DEFICIT}){_mark(met['deficit'])}; {cost}; {memorise}."
    )
    final_gap = final_shortfall(part, column)
    if final_gap is not None:
        text += (
            f" Over every setting at most {max(final_gap, 0):.3f} below the best of the final model's "
            f"`margin`, `el2n` and `loss` (goal {GOAL_FINAL}){_mark(final_gap <= GOAL_FINAL)}."
        )
    return [text] if short else [text, "", "The same numbers for every score are in the next table."]


def goal_table(part: dict[str, Any], costs: dict[str, float]) -> str:
    """Every non-reference column against the goal, most wins first."""
    goals = [goal_of(part, c, costs) for c in NAMES if FAMILY[c] in BEST_FAMILIES]
    goals = [g for g in goals if g.settings or g.memorise is not None]  # columns these runs measured
    goals.sort(key=lambda g: (-g.wins, g.deficit))
    rows = []
    default = default_column(part)[1]
    for g in goals:
        met = g.met()
        rows.append(
            [
                f"`{g.column}`" + (" (default)" if g.column == default else ""),
                FAMILY[g.column],
                f"{g.wins}/{g.settings}{_mark(met['share'])}",
                f"{g.deficit:+.3f}{_mark(met['deficit'])}",
                "-" if g.memorise is None else f"{g.memorise:+.3f}{_mark(met['memorise'])}",
                "-" if g.cost is None else f"{g.cost:.2f}x{_mark(met['cost'])}",
            ]
        )
    return table(
        [
            "score",
            "family",
            f">= every peer (goal {GOAL_SHARE:.0%})",
            f"largest shortfall below the best peer (goal <= {GOAL_DEFICIT})",
            f"memorising: lead over final-model scores (goal >= {GOAL_MEMORISE})",
            f"cost, training runs (goal <= {GOAL_COST})",
        ],
        rows,
    )


def ranked(means: dict[str, float]) -> list[tuple[str, float]]:
    """Columns from the highest mean to the lowest."""
    return sorted(means.items(), key=lambda kv: -kv[1])


# -- speed -----------------------------------------------------------------------------------
LAST_LAYER_GOAL = 1.3  # last-layer scoring time / one inference pass, at most (the goal)
GOALS = {"last_norms_over_inference": LAST_LAYER_GOAL}


def ratio_verdict(key: str, value: float | None) -> str:
    """What a ratio of a speed case says beside its number: a slower OGA or a missed goal."""
    if value is None:
        return ""
    if key.startswith("speedup_") and value < 1:
        return " (the baseline is faster)"
    if key in GOALS and value > GOALS[key]:
        return " (misses the goal)"
    return ""


def speed_losses(speed: dict[str, dict[str, Any]]) -> list[str]:
    """One line per speed-up below 1 and per missed goal, over ``{device: speed part}``."""
    lines = []
    for device, part in speed.items():
        for model, case in part["models"].items():
            for key, value in case["ratios"].items():
                if value is None:
                    continue
                if key.startswith("speedup_") and value < 1:
                    lines.append(f"- {device} / {model}: `{key}` = {fmt_ratio(value)}: the baseline is faster here.")
                if key in GOALS and value > GOALS[key]:
                    lines.append(
                        f"- {device} / {model}: `{key}` = {fmt_ratio(value)} misses the goal of {GOALS[key]}x."
                    )
    return lines or [
        "- OGA is faster than every per-sample baseline and meets the scoring goal on every measured device."
    ]
