"""Detection quality against known truth (injected noise), and of a person's decisions.

Metrics per score column (higher score = predicted bad): AUROC, average precision, and
precision / recall among the top k for k = the budget and k = the true number of bad samples
(at which precision equals recall: the "R-precision").
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, roc_auc_score

from oga_core.detectors import SCORE_COLUMNS


def precision_recall_at_k(scores: np.ndarray, truth: np.ndarray, k: int) -> tuple[float, float]:
    """Precision and recall of the ``k`` highest scores against boolean ``truth``."""
    k = int(min(max(k, 0), len(scores)))
    positives = int(truth.sum())
    if k == 0:
        return float("nan"), 0.0
    top = np.argsort(-np.asarray(scores), kind="stable")[:k]
    hits = int(truth[top].sum())
    return hits / k, (hits / positives if positives else float("nan"))


def detection_metrics(
    table: pd.DataFrame,
    truth: np.ndarray,
    *,
    columns: Sequence[str] = SCORE_COLUMNS,
    budget: float = 0.05,
) -> pd.DataFrame:
    """One row per score column: auroc, ap, precision/recall at the budget and at the true count.

    ``truth``: boolean ``(N,)``, True for a bad (e.g. flipped) sample. Rows are sorted by AUROC.
    """
    truth = np.asarray(truth, dtype=bool)
    n_bad = int(truth.sum())
    k_budget = max(1, int(round(budget * len(truth))))
    rows = []
    for col in columns:
        if col not in table:
            continue
        s = table[col].to_numpy(dtype=np.float64)
        finite = s[np.isfinite(s)]
        low, high = (finite.min() - 1.0, finite.max() + 1.0) if finite.size else (0.0, 0.0)
        # NaN (no score) ranks least suspicious; finite stand-ins, as sklearn refuses infinities
        s = np.nan_to_num(s, nan=low, neginf=low, posinf=high)
        both = 0 < n_bad < len(truth)
        p_b, r_b = precision_recall_at_k(s, truth, k_budget)
        p_n, r_n = precision_recall_at_k(s, truth, n_bad)
        rows.append(
            {
                "score": col,
                "auroc": roc_auc_score(truth, s) if both else float("nan"),
                "ap": average_precision_score(truth, s) if both else float("nan"),
                f"precision@{k_budget}": p_b,
                f"recall@{k_budget}": r_b,
                f"precision@{n_bad}": p_n,
                f"recall@{n_bad}": r_n,
            }
        )
    return pd.DataFrame(rows).sort_values("auroc", ascending=False, ignore_index=True)


def decision_quality(decisions: pd.DataFrame, table: pd.DataFrame) -> dict[str, float | int]:
    """How right the person's decisions are, where the truth is known.

    decisions: rows with sample_id, action (keep / drop / relabel) and label (the new class index
    for relabel). table: the analysis scores with ``noisy`` and ``clean_label``. Returns counts and
    the precision of "this sample is bad" (drop or relabel) decisions, the share of kept samples
    that were clean, and the share of relabels that restored the true class.
    """
    if decisions.empty or "noisy" not in table:
        return {"decided": int(len(decisions))}
    truth = table.set_index("sample_id")[["noisy", "clean_label"]]
    merged = decisions.join(truth, on="sample_id", how="inner")
    bad = merged[merged["action"].isin(["drop", "relabel"])]
    kept = merged[merged["action"] == "keep"]
    relabeled = merged[merged["action"] == "relabel"]
    return {
        "decided": int(len(merged)),
        "marked_bad": int(len(bad)),
        "precision_of_bad_calls": float(bad["noisy"].mean()) if len(bad) else float("nan"),
        "kept": int(len(kept)),
        "kept_clean_rate": float((~kept["noisy"].astype(bool)).mean()) if len(kept) else float("nan"),
        "relabeled": int(len(relabeled)),
        "relabel_accuracy": float((relabeled["label"].astype(int) == relabeled["clean_label"]).mean())
        if len(relabeled)
        else float("nan"),
    }
