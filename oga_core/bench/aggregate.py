"""The quality part's runs summarised over seeds: what the tables, the plot and the verdicts read.

A setting is ``(data set, noise kind, rate)``; a run is one setting at one seed (see
:func:`oga_core.bench.quality.run_setting` for its dict). :data:`Stats` maps ``(setting, column)``
to ``(mean, std, n)`` over the seeds that have a finite value (std 0 for one seed).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

Setting = tuple[str, str, float]
Stats = dict[tuple[Setting, str], tuple[float, float, int]]
Getter = Callable[[dict[str, Any], str], "float | None"]


def settings_in_order(part: dict[str, Any]) -> list[Setting]:
    """The (data set, kind, rate) settings present, in the order they were run."""
    seen: list[Setting] = []
    for run in part.get("runs", []):
        key = (run["dataset"], run["kind"], run["rate"])
        if key not in seen:
            seen.append(key)
    return seen


def setting_label(dataset: str, kind: str, rate: float) -> str:
    """``digits sym 20%``: a short column header."""
    short = {"symmetric": "sym", "pair": "pair"}.get(kind, kind)
    return f"{dataset.removeprefix('demo:')} {short} {rate:.0%}"


def metric_value(metric: str) -> Getter:
    """Getter of one detection metric (a key of ``METRICS``) of one column from a run."""
    return lambda run, col: run["metrics"].get(col, {}).get(metric)


def aggregate(part: dict[str, Any], value: Getter, columns: tuple[str, ...]) -> pd.DataFrame:
    """Mean and std over seeds of ``value(run, column)``: a frame indexed by (setting, column) with
    columns mean, std, n (missing and non-finite values are skipped)."""
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


def stats(part: dict[str, Any], value: Getter, columns: tuple[str, ...]) -> Stats:
    """:func:`aggregate` as a dict ``{(setting, column): (mean, std, n)}``."""
    frame = aggregate(part, value, columns)
    return {(setting, col): (r["mean"], r["std"], int(r["n"])) for (setting, col), r in frame.iterrows()}


def mean_over_settings(table: Stats, settings: list[Setting], columns: tuple[str, ...]) -> dict[str, float]:
    """Each column's mean over the settings where it was measured (the README's one number)."""
    return {
        c: float(np.mean([table[(s, c)][0] for s in settings if (s, c) in table]))
        for c in columns
        if any((s, c) in table for s in settings)
    }
