"""Small views of an analysis for a person: review queues, confusion of flagged samples, map
frames, thumbnails, precision curves.

Everything here is plain pandas / numpy / PIL on an analysis' score table (one row per sample,
see :func:`oga_core.pipeline.score_table`) and a decisions table
(:meth:`oga_core.decisions.DecisionStore.table`), so the app's pages only lay results out and
these stay testable without a browser.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
import pandas as pd
from PIL import Image

from oga_core.data import LabeledImages
from oga_core.detectors import SCORE_COLUMNS
from oga_core.issues import issue_mask

UNDECIDED = "undecided"
REVIEW_STATES = ("all", UNDECIDED, "decided", "keep", "drop", "relabel")
THUMBNAIL_SIDE = 128


# -- decisions joined onto scores ------------------------------------------------------------
def with_decisions(scores: pd.DataFrame, decisions: pd.DataFrame, classes: Sequence[str]) -> pd.DataFrame:
    """The score table plus ``decision`` (keep / drop / relabel / undecided), ``new_label``
    (class index after cleaning: the given label unless relabelled) and ``new_label_name``.

    Decisions about ids not in ``scores`` are ignored (they stay in the store).
    """
    out = scores.copy()
    out["decision"] = UNDECIDED
    out["new_label"] = out["label"].to_numpy()
    if len(decisions):
        by_id = decisions.drop_duplicates("sample_id", keep="last").set_index("sample_id")
        action = by_id["action"].reindex(out["sample_id"])
        label = by_id["label"].reindex(out["sample_id"])
        known = action.notna().to_numpy()
        out.loc[known, "decision"] = action.to_numpy()[known]
        relabel = (action == "relabel").to_numpy()
        new = out["new_label"].to_numpy().copy()
        new[relabel] = label.to_numpy()[relabel].astype(np.int64)
        out["new_label"] = new
    names = np.asarray(list(classes), dtype=object)
    valid = (out["new_label"] >= 0) & (out["new_label"] < len(names))
    out["new_label_name"] = np.where(valid, names[np.clip(out["new_label"], 0, len(names) - 1)], "?")
    return out


def review_progress(table: pd.DataFrame) -> tuple[int, int]:
    """``(reviewed, flagged)``: flagged samples that have a decision, and all flagged samples.

    ``table``: a :func:`with_decisions` frame.
    """
    flagged = table["flagged"].to_numpy(dtype=bool)
    decided = (table["decision"] != UNDECIDED).to_numpy()
    return int((flagged & decided).sum()), int(flagged.sum())


def review_queue(
    table: pd.DataFrame,
    *,
    include_unflagged: bool = False,
    given: Sequence[int] | None = None,
    predicted: Sequence[int] | None = None,
    state: str = "all",
    issue: str | None = None,
) -> pd.DataFrame:
    """The samples to review, most suspicious (highest ``score``) first.

    ``table``: a :func:`with_decisions` frame. ``given`` / ``predicted``: keep only these class
    indices (None or empty = all). ``state``: one of ``REVIEW_STATES``. ``issue``: keep only
    samples of this issue type (``oga_core.issues.ISSUES``; None = all).
    """
    if state not in REVIEW_STATES:
        raise ValueError(f"unknown review state '{state}': use one of {', '.join(REVIEW_STATES)}")
    # A copy: pandas' copy-on-write hands out read-only views, and the filters below are in-place.
    keep = np.ones(len(table), dtype=bool) if include_unflagged else table["flagged"].to_numpy(dtype=bool, copy=True)
    if given:
        keep &= table["label"].isin(list(given)).to_numpy()
    if predicted:
        keep &= table["pred"].isin(list(predicted)).to_numpy()
    decision = table["decision"].to_numpy()
    if state == UNDECIDED:
        keep &= decision == UNDECIDED
    elif state == "decided":
        keep &= decision != UNDECIDED
    elif state != "all":
        keep &= decision == state
    if issue is not None:
        keep &= issue_mask(table, issue)
    return table[keep].sort_values("score", ascending=False, kind="stable").reset_index(drop=True)


def page_bounds(n_items: int, page: int, page_size: int) -> tuple[int, int, int]:
    """``(start, stop, n_pages)`` of 1-based ``page``; out-of-range pages are clamped."""
    n_pages = max(1, -(-n_items // max(1, page_size)))
    page = min(max(1, page), n_pages)
    start = (page - 1) * page_size
    return start, min(start + page_size, n_items), n_pages


def relabel_choices(num_classes: int, given: int, predicted: int) -> list[int]:
    """Class indices a sample may be relabelled to: the prediction first, never the given label."""
    rest = [k for k in range(num_classes) if k not in (given, predicted)]
    return ([predicted] if predicted != given else []) + rest


def rows_for_ids(table: pd.DataFrame, ids: Sequence[str]) -> pd.DataFrame:
    """Rows of ``table`` whose ``sample_id`` is in ``ids`` (unknown ids are skipped), highest score
    first."""
    wanted = set(map(str, ids))
    rows = table[table["sample_id"].isin(wanted)]
    return rows.sort_values("score", ascending=False, kind="stable").reset_index(drop=True)


# -- summaries of flagged samples ------------------------------------------------------------
def flagged_confusion(scores: pd.DataFrame, classes: Sequence[str]) -> pd.DataFrame:
    """Counts of flagged samples by given label (rows) and predicted label (columns).

    Every class appears on both axes (in class order) plus a ``total`` row and column, so two
    analyses of the same data give tables of the same shape.
    """
    names = list(map(str, classes))
    flagged = scores[scores["flagged"].to_numpy(dtype=bool)]
    counts = np.zeros((len(names), len(names)), dtype=np.int64)
    np.add.at(counts, (flagged["label"].to_numpy(dtype=np.int64), flagged["pred"].to_numpy(dtype=np.int64)), 1)
    table = pd.DataFrame(counts, index=pd.Index(names, name="given"), columns=pd.Index(names, name="predicted"))
    table["total"] = table.sum(axis=1)
    table.loc["total"] = table.sum(axis=0)
    return table


def budget_cut(scores: pd.DataFrame) -> float | None:
    """The lowest ranking score that is still flagged (the budget's threshold), None if none is."""
    flagged = scores["score"][scores["flagged"].to_numpy(dtype=bool)]
    return float(flagged.min()) if len(flagged) else None


def flagged_truth(scores: pd.DataFrame) -> dict[str, int] | None:
    """With known truth (``noisy`` column): flipped samples overall, flagged, and both."""
    if "noisy" not in scores:
        return None
    noisy = scores["noisy"].to_numpy(dtype=bool)
    flagged = scores["flagged"].to_numpy(dtype=bool)
    return {"noisy": int(noisy.sum()), "flagged": int(flagged.sum()), "flagged_noisy": int((noisy & flagged).sum())}


def decisions_vs_truth(table: pd.DataFrame) -> dict[str, int] | None:
    """With known truth: how many flipped samples the person has caught (dropped or relabelled)
    and how many remain unreviewed. ``table``: a :func:`with_decisions` frame."""
    if "noisy" not in table:
        return None
    noisy = table["noisy"].to_numpy(dtype=bool)
    decision = table["decision"].to_numpy()
    caught = noisy & np.isin(decision, ["drop", "relabel"])
    return {
        "noisy": int(noisy.sum()),
        "caught": int(caught.sum()),
        "noisy_undecided": int((noisy & (decision == UNDECIDED)).sum()),
    }


def precision_curve(
    scores: pd.DataFrame, truth: np.ndarray, *, columns: Sequence[str] = SCORE_COLUMNS, k_max: int | None = None
) -> pd.DataFrame:
    """Precision and recall of the top-k of every score column for k = 1..k_max (long format).

    Columns: score, k, precision, recall. ``truth``: boolean ``(N,)``. ``k_max`` defaults to
    twice the number of true positives (at least 10), capped at N.
    """
    truth = np.asarray(truth, dtype=bool)
    positives = int(truth.sum())
    k_max = min(len(truth), k_max or max(10, 2 * positives))
    ks = np.arange(1, k_max + 1)
    frames = []
    for col in columns:
        if col not in scores:
            continue
        s = np.nan_to_num(scores[col].to_numpy(dtype=np.float64), nan=-np.inf)
        hits = np.cumsum(truth[np.argsort(-s, kind="stable")[:k_max]])
        frames.append(
            pd.DataFrame(
                {"score": col, "k": ks, "precision": hits / ks, "recall": hits / positives if positives else np.nan}
            )
        )
    return (
        pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["score", "k", "precision", "recall"])
    )


# -- the map ---------------------------------------------------------------------------------
def map_frame(table: pd.DataFrame, coords: np.ndarray) -> pd.DataFrame:
    """What the 2-D map draws, one row per sample: x, y, sample_id, label_name, pred_name, score,
    rank, flagged, decision. ``coords``: ``(N, 2)`` in the table's row order."""
    coords = np.asarray(coords)
    if coords.shape != (len(table), 2):
        raise ValueError(f"coords have shape {coords.shape}, expected ({len(table)}, 2)")
    cols = ["sample_id", "label_name", "pred_name", "score", "rank", "flagged"]
    out = table[cols].copy()
    out["decision"] = table.get("decision", UNDECIDED)
    out.insert(0, "y", coords[:, 1])
    out.insert(0, "x", coords[:, 0])
    return out.reset_index(drop=True)


def density_grid(coords: np.ndarray, *, bins: int = 200) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A 2-D histogram of the map for data sets too large to draw point by point.

    Returns ``(counts (bins, bins) indexed [y, x], x centres (bins,), y centres (bins,))``;
    counts are float with empty cells as NaN so they draw transparent.
    """
    coords = np.asarray(coords, dtype=np.float64)
    counts, xe, ye = np.histogram2d(coords[:, 0], coords[:, 1], bins=bins)
    grid = counts.T.astype(np.float64)
    grid[grid == 0] = np.nan
    return grid, (xe[:-1] + xe[1:]) / 2, (ye[:-1] + ye[1:]) / 2


# -- thumbnails ------------------------------------------------------------------------------
def thumbnail(dataset: LabeledImages, index: int, *, side: int = THUMBNAIL_SIDE) -> Image.Image:
    """The sample as a person should see it, about ``side`` pixels on its long edge.

    Small images (8 px digits, 28 px MNIST) are enlarged by a whole factor without smoothing so
    pixels stay sharp; large ones are shrunk. Raises DataError for an unreadable file.
    """
    im = dataset.original(index)
    if im.mode not in ("L", "RGB", "RGBA"):
        im = im.convert("RGB")
    long_edge = max(im.size)
    if long_edge < side:
        factor = max(1, side // long_edge)
        return im.resize((im.width * factor, im.height * factor), Image.Resampling.NEAREST)
    im = im.copy()
    im.thumbnail((side, side), Image.Resampling.LANCZOS)
    return im


def thumbnail_png(dataset: LabeledImages, index: int, *, side: int = THUMBNAIL_SIDE) -> bytes:
    """:func:`thumbnail` encoded as PNG bytes."""
    buf = io.BytesIO()
    thumbnail(dataset, index, side=side).save(buf, format="PNG")
    return buf.getvalue()
