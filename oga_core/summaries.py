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
def with_decisions(
    scores: pd.DataFrame, decisions: pd.DataFrame, classes: Sequence[str], *, positions: pd.Index | None = None
) -> pd.DataFrame:
    """The score table plus ``decision`` (keep / drop / relabel / undecided), ``new_label``
    (class index after cleaning: the given label unless relabelled) and ``new_label_name``.

    Decisions about ids not in ``scores`` are ignored (they stay in the store). ``positions``:
    :func:`id_positions` of ``scores``, when the caller keeps it (its hash table is built once;
    then joining the decisions costs in the number of decisions, not of samples). The row
    order and index are those of ``scores``; ``scores`` is not modified.
    """
    out = scores.copy(deep=False)  # copy-on-write: the columns added below never reach ``scores``
    decision = np.full(len(out), UNDECIDED, dtype=object)
    new_label = out["label"].to_numpy(dtype=np.int64, copy=True)
    if len(decisions):
        by_id = decisions.drop_duplicates("sample_id", keep="last")
        index = positions if positions is not None else id_positions(scores)
        rows = index.get_indexer(by_id["sample_id"].astype(object))
        known = rows >= 0
        rows = rows[known]
        action = by_id["action"].to_numpy(dtype=object)[known]
        decision[rows] = action
        relabel = action == "relabel"
        new_label[rows[relabel]] = by_id["label"].to_numpy()[known][relabel].astype(np.int64)
    out["decision"] = decision
    out["new_label"] = new_label
    names = np.asarray(list(classes), dtype=object)
    valid = (new_label >= 0) & (new_label < len(names))
    out["new_label_name"] = np.where(valid, names[np.clip(new_label, 0, len(names) - 1)], "?")
    return out


def id_positions(table: pd.DataFrame) -> pd.Index:
    """The table's sample ids as an index: ``get_indexer(ids)`` gives their rows (-1 if absent)."""
    return pd.Index(table["sample_id"].to_numpy(dtype=object), dtype=object)


def score_order(table: pd.DataFrame) -> np.ndarray:
    """Row positions of ``table`` by ``score``, highest first, ties in table order: the order of
    every queue, computed once per ranking by whoever keeps it (:func:`review_order`)."""
    return np.argsort(-table["score"].to_numpy(dtype=np.float64), kind="stable")


def review_progress(table: pd.DataFrame) -> tuple[int, int]:
    """``(reviewed, flagged)``: flagged samples that have a decision, and all flagged samples.

    ``table``: a :func:`with_decisions` frame.
    """
    flagged = table["flagged"].to_numpy(dtype=bool)
    decided = (table["decision"] != UNDECIDED).to_numpy()
    return int((flagged & decided).sum()), int(flagged.sum())


def review_order(
    table: pd.DataFrame,
    *,
    include_unflagged: bool = False,
    given: Sequence[int] | None = None,
    predicted: Sequence[int] | None = None,
    state: str = "all",
    issue: str | None = None,
    order: np.ndarray | None = None,
) -> np.ndarray:
    """Row positions of the samples to review, most suspicious (highest ``score``) first.

    ``table``: a :func:`with_decisions` frame. ``given`` / ``predicted``: keep only these class
    indices (None or empty = all). ``state``: one of ``REVIEW_STATES``. ``issue``: keep only
    samples of this issue type (``oga_core.issues.ISSUES``; None = all). ``order``:
    :func:`score_order` of ``table`` if the caller keeps it; without it the table is sorted here.
    Positions, not a frame: a page takes only the rows it shows (``table.iloc[...]``), so a queue
    of a million samples costs a few masks, never a copy of the table.
    """
    if state not in REVIEW_STATES:
        raise ValueError(f"unknown review state '{state}': use one of {', '.join(REVIEW_STATES)}")
    # A copy: pandas' copy-on-write hands out read-only views, and the filters below are in-place.
    keep = np.ones(len(table), dtype=bool) if include_unflagged else table["flagged"].to_numpy(dtype=bool, copy=True)
    if given:
        keep &= np.isin(table["label"].to_numpy(), list(given))
    if predicted:
        keep &= np.isin(table["pred"].to_numpy(), list(predicted))
    decision = table["decision"].to_numpy()
    if state == UNDECIDED:
        keep &= decision == UNDECIDED
    elif state == "decided":
        keep &= decision != UNDECIDED
    elif state != "all":
        keep &= decision == state
    if issue is not None:
        keep &= issue_mask(table, issue)
    if order is None:
        order = score_order(table)
    return order[keep[order]]


def review_queue(
    table: pd.DataFrame,
    *,
    include_unflagged: bool = False,
    given: Sequence[int] | None = None,
    predicted: Sequence[int] | None = None,
    state: str = "all",
    issue: str | None = None,
) -> pd.DataFrame:
    """The rows of :func:`review_order` as a frame (index reset), for callers that want them all."""
    rows = review_order(
        table, include_unflagged=include_unflagged, given=given, predicted=predicted, state=state, issue=issue
    )
    return table.iloc[rows].reset_index(drop=True)


BULK_ACTIONS = ("keep", "drop", "relabel", "clear")


def bulk_items(table: pd.DataFrame, action: str) -> list[tuple[str, str, int, int | None]]:
    """What a bulk action does to the rows of ``table`` (a :func:`with_decisions` slice), as
    ``(sample id, action, original label, new label)``: ``keep`` the undecided ones, ``drop``
    all, ``relabel`` to the prediction those it disagrees with, ``clear`` the decided ones."""
    if action not in BULK_ACTIONS:
        raise ValueError(f"unknown bulk action '{action}': use one of {', '.join(BULK_ACTIONS)}")
    ids = table["sample_id"].to_numpy(dtype=object)
    label = table["label"].to_numpy(dtype=np.int64)
    pred = table["pred"].to_numpy(dtype=np.int64)
    decided = table["decision"].to_numpy() != UNDECIDED
    chosen = {"keep": ~decided, "drop": np.ones(len(ids), bool), "relabel": pred != label, "clear": decided}[action]
    new = pred if action == "relabel" else [None] * len(ids)
    return [
        (str(ids[i]), action, int(label[i]), None if new[i] is None else int(new[i])) for i in np.flatnonzero(chosen)
    ]


def relabel_items(table: pd.DataFrame, new_label: int) -> list[tuple[str, str, int, int | None]]:
    """Relabel every row of ``table`` (a :func:`with_decisions` slice) to class ``new_label``, as
    ``(sample id, action, original label, new label)``: a cluster of look-alikes filed under the
    wrong class fixed at once. Rows given ``new_label`` already are kept instead (their label is
    the one chosen for the cluster: nothing to change, and the decision says it was looked at)."""
    ids = table["sample_id"].to_numpy(dtype=object)
    label = table["label"].to_numpy(dtype=np.int64)
    return [
        (str(sid), "keep", int(old), None) if old == new_label else (str(sid), "relabel", int(old), int(new_label))
        for sid, old in zip(ids, label)
    ]


def bulk_counts(table: pd.DataFrame) -> dict[str, int]:
    """How many rows each of :data:`BULK_ACTIONS` would touch (counted, not listed)."""
    decided = int((table["decision"].to_numpy() != UNDECIDED).sum())
    disagree = int((table["pred"].to_numpy() != table["label"].to_numpy()).sum())
    return {"keep": len(table) - decided, "drop": len(table), "relabel": disagree, "clear": decided}


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


def rows_for_ids(table: pd.DataFrame, ids: Sequence[str], *, positions: pd.Index | None = None) -> pd.DataFrame:
    """Rows of ``table`` whose ``sample_id`` is in ``ids`` (unknown ids are skipped), highest score
    first, with the table's index kept. ``positions``: :func:`id_positions` of ``table`` if the
    caller keeps it (then the cost is in the number of ids, not of rows)."""
    index = positions if positions is not None else id_positions(table)
    rows = np.unique(index.get_indexer(pd.Index(list(map(str, ids)), dtype=object)))
    rows = rows[rows >= 0]
    score = table["score"].to_numpy(dtype=np.float64)[rows]
    return table.iloc[rows[np.argsort(-score, kind="stable")]]


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
    rank, flagged, decision, and issue when the analysis has issue types. ``coords``: ``(N, 2)``
    in the table's row order."""
    coords = np.asarray(coords)
    if coords.shape != (len(table), 2):
        raise ValueError(f"coords have shape {coords.shape}, expected ({len(table)}, 2)")
    cols = ["sample_id", "label_name", "pred_name", "score", "rank", "flagged"] + (
        ["issue"] if "issue" in table else []
    )
    out = table[cols].copy()
    out["decision"] = table.get("decision", UNDECIDED)
    out.insert(0, "y", coords[:, 1])
    out.insert(0, "x", coords[:, 0])
    return out.reset_index(drop=True)


def rows_in_region(
    coords: np.ndarray, *, box: Sequence[float] | None = None, lasso: np.ndarray | None = None
) -> np.ndarray:
    """Row positions of the map's points inside a selected region: ``box`` ``(x0, x1, y0, y1)``
    (either order) or ``lasso``, a polygon ``(M, 2)`` (even-odd rule). Vectorised over the
    points, so a region of a million-point map is found in well under a second."""
    coords = np.asarray(coords, dtype=np.float64)
    x, y = coords[:, 0], coords[:, 1]
    if box is not None:
        x0, x1, y0, y1 = (float(v) for v in box)
        inside = (x >= min(x0, x1)) & (x <= max(x0, x1)) & (y >= min(y0, y1)) & (y <= max(y0, y1))
        return np.flatnonzero(inside)
    if lasso is None:
        raise ValueError("give a box or a lasso")
    poly = np.asarray(lasso, dtype=np.float64).reshape(-1, 2)
    if len(poly) < 3:
        return np.zeros(0, dtype=np.int64)
    # Only points inside the polygon's bounding box are tested edge by edge.
    near = np.flatnonzero(
        (x >= poly[:, 0].min()) & (x <= poly[:, 0].max()) & (y >= poly[:, 1].min()) & (y <= poly[:, 1].max())
    )
    px, py = x[near], y[near]
    inside = np.zeros(len(near), dtype=bool)
    for (ax, ay), (bx, by) in zip(poly, np.roll(poly, -1, axis=0)):
        crosses = (ay > py) != (by > py)
        with np.errstate(divide="ignore", invalid="ignore"):
            at = ax + (py - ay) * (bx - ax) / (by - ay)
        inside ^= crosses & (px < at)
    return near[inside]


def top_rows(table: pd.DataFrame, rows: np.ndarray, limit: int) -> np.ndarray:
    """The ``limit`` rows of ``rows`` with the highest ``score``, highest first (``argpartition``:
    no sort of the whole set)."""
    rows = np.asarray(rows, dtype=np.int64)
    score = table["score"].to_numpy(dtype=np.float64)[rows]
    if len(rows) > limit:
        keep = np.argpartition(-score, limit - 1)[:limit]
        rows, score = rows[keep], score[keep]
    return rows[np.argsort(-score, kind="stable")]


def score_bins(scores: pd.DataFrame, *, bins: int = 60) -> pd.DataFrame:
    """The score histogram counted here, not in the browser: one row per bin with ``left``,
    ``right``, ``not_flagged`` and ``flagged`` counts (a million scores become ``bins`` rows)."""
    values = scores["score"].to_numpy(dtype=np.float64)
    flagged = scores["flagged"].to_numpy(dtype=bool)
    finite = np.isfinite(values)
    lo, hi = (float(values[finite].min()), float(values[finite].max())) if finite.any() else (0.0, 1.0)
    if hi <= lo:
        hi = lo + 1.0
    edges = np.linspace(lo, hi, bins + 1)
    counts = [np.histogram(values[finite & part], bins=edges)[0] for part in (~flagged, flagged)]
    return pd.DataFrame({"left": edges[:-1], "right": edges[1:], "not_flagged": counts[0], "flagged": counts[1]})


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
