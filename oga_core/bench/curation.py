"""What closing the curation loop gains: held-out accuracy after retraining with decisions.

For each setting (data set, noise kind, seed; 20% injected noise) of :class:`CurationSettings`,
through the product's own path (:func:`oga_core.pipeline.analyze`, then
:func:`oga_core.retrain.retrain` with decisions made from the analysis, in a throw-away cache):

* ``before``: the analysis' model (nothing cleaned);
* ``drop top k``: the flagged samples (top ``budget`` of the default detector) dropped;
* ``relabel top k``: the flagged samples relabelled to the model's prediction (kept where the
  prediction is the given label): what a person who trusts the model would do;
* ``oracle``: exactly the flipped samples dropped.

Accuracy is measured on the analysis' held-out part (never trained on in any run) against the
TRUE labels, the same samples for every row. Every retraining uses the same recipe and seed.
Nothing here writes outside its temporary cache; ``benchmarks/curation.py`` prints the table.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from oga_core.bench.markdown import fmt_mean_std, table

VARIANTS = ("before", "drop top k", "relabel top k", "oracle")
COLUMNS = ["sample_id", "action", "label", "original_label"]


@dataclass(frozen=True)
class CurationSettings:
    datasets: tuple[str, ...] = ("demo:digits", "demo:mnist5k")
    kinds: tuple[str, ...] = ("symmetric", "pair")
    rate: float = 0.2
    seeds: tuple[int, ...] = (0, 1, 2)
    epochs: int | None = None  # None: the default model's recipe
    budget: float = 0.05

    @classmethod
    def for_run(cls, *, quick: bool) -> CurationSettings:
        """Quick (CI): digits, symmetric, seed 0, 4 epochs: a few seconds per training."""
        return cls(datasets=("demo:digits",), kinds=("symmetric",), seeds=(0,), epochs=4) if quick else cls()

    def grid(self) -> list[tuple[str, str, int]]:
        return [(d, k, s) for d in self.datasets for k in self.kinds for s in self.seeds]


def decisions_for(scores: pd.DataFrame, variant: str) -> pd.DataFrame:
    """The decisions a variant makes on an analysis' score table (with the truth known)."""
    flagged = scores[scores["flagged"].to_numpy(dtype=bool)]
    if variant == "drop top k":
        rows = [(sid, "drop", int(y), int(y)) for sid, y in zip(flagged["sample_id"], flagged["label"])]
    elif variant == "relabel top k":
        rows = [
            (sid, "relabel" if p != y else "keep", int(p), int(y))
            for sid, y, p in zip(flagged["sample_id"], flagged["label"], flagged["pred"])
        ]
    elif variant == "oracle":
        noisy = scores[scores["noisy"].to_numpy(dtype=bool)]
        rows = [(sid, "drop", int(y), int(y)) for sid, y in zip(noisy["sample_id"], noisy["label"])]
    else:
        raise ValueError(f"unknown variant {variant}")
    return pd.DataFrame(rows, columns=COLUMNS)


def run_setting(settings: CurationSettings, dataset: str, kind: str, seed: int, cache) -> dict[str, Any]:
    from oga_core.config import AnalysisConfig
    from oga_core.pipeline import analyze
    from oga_core.retrain import retrain

    start = time.perf_counter()
    config = AnalysisConfig(
        data=dataset, noise=settings.rate, noise_kind=kind, seed=seed, epochs=settings.epochs, budget=settings.budget
    )
    before = analyze(config, cache=cache)
    s = before.scores
    held = s["heldout"].to_numpy(dtype=bool)
    held_ids = s.loc[held, "sample_id"]
    clean = s.loc[held, "clean_label"].to_numpy()
    accuracy = {"before": float((s.loc[held, "pred"].to_numpy() == clean).mean())}
    product = {}
    for variant in VARIANTS[1:]:
        result = retrain(config, decisions_for(s, variant), cache=cache, top=0)
        pred = result.after.scores.set_index("sample_id").loc[held_ids, "pred"].to_numpy()
        accuracy[variant] = float((pred == clean).mean())
        product[variant] = {
            k: result.summary["heldout_accuracy"][k] for k in ("before", "after", "samples", "reviewed")
        } | {k: result.summary["flagged"].get(k) for k in ("wrong_before", "wrong_after")}
    flagged = s["flagged"].to_numpy(dtype=bool)
    return {
        "dataset": dataset,
        "kind": kind,
        "rate": settings.rate,
        "seed": seed,
        "n": len(s),
        "n_heldout": int(held.sum()),
        "k": int(flagged.sum()),
        "precision_top_k": float(s.loc[flagged, "noisy"].mean()),
        "heldout_accuracy_true_labels": accuracy,
        "product_summary": product,
        "seconds": round(time.perf_counter() - start, 1),
    }


def run_curation(settings: CurationSettings, *, log=print) -> dict[str, Any]:
    """Every setting, in a temporary cache (nothing of the person's ``$OGA_HOME`` is touched)."""
    from oga_core.store import Cache

    runs = []
    with tempfile.TemporaryDirectory(prefix="oga-curation-") as tmp:
        cache = Cache(Path(tmp) / "cache")
        for dataset, kind, seed in settings.grid():
            run = run_setting(settings, dataset, kind, seed, cache)
            runs.append(run)
            acc = run["heldout_accuracy_true_labels"]
            log(
                f"curation: {dataset} {kind} {settings.rate:.0%} seed {seed}: "
                + ", ".join(f"{v} {acc[v]:.3f}" for v in VARIANTS)
                + f" ({run['seconds']:.0f} s)"
            )
    return {"settings": asdict(settings), "runs": runs}


def render(part: dict[str, Any]) -> str:
    """Rows = variants, columns = settings; mean ± std over seeds of the held-out accuracy on the
    true labels; then the precision of the top k and the gain of each variant over ``before``."""
    runs = part["runs"]
    settings = list(dict.fromkeys((r["dataset"], r["kind"]) for r in runs))
    label = {s: f"{s[0].split(':')[-1]} {s[1]} {part['settings']['rate']:.0%}" for s in settings}

    def cell(values: list[float]) -> str:
        return fmt_mean_std((float(np.mean(values)), float(np.std(values)), len(values))) if values else "-"

    rows = []
    for variant in VARIANTS:
        rows.append(
            [variant]
            + [
                cell([r["heldout_accuracy_true_labels"][variant] for r in runs if (r["dataset"], r["kind"]) == s])
                for s in settings
            ]
        )
    for variant in VARIANTS[1:]:
        rows.append(
            [f"gain: {variant}"]
            + [
                cell(
                    [
                        r["heldout_accuracy_true_labels"][variant] - r["heldout_accuracy_true_labels"]["before"]
                        for r in runs
                        if (r["dataset"], r["kind"]) == s
                    ]
                )
                for s in settings
            ]
        )
    rows.append(
        ["precision of the top k"]
        + [cell([r["precision_top_k"] for r in runs if (r["dataset"], r["kind"]) == s]) for s in settings]
    )
    seeds = sorted({r["seed"] for r in runs})
    heldout = {label[s]: next(r["n_heldout"] for r in runs if (r["dataset"], r["kind"]) == s) for s in settings}
    head = (
        "Held-out accuracy on the TRUE labels (the same never-trained samples in every row: "
        + ", ".join(f"{k}: {v}" for k, v in heldout.items())
        + f"), seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, seeds))}, mean ± std; k = the top {part['settings']['budget']:.0%} "
        "flagged by the default detector; every run retrains the analysis' recipe from scratch."
    )
    return head + "\n\n" + table(["variant"] + [label[s] for s in settings], rows)
