"""Why a sample looks suspicious: one issue type per sample, next to its score.

Every sample gets exactly one ``issue`` (docs/architecture.md, "Issue types"), the first that
applies in this order:

``near_duplicate``
    another sample with (almost) the same content has a different given label: a classic label
    error, since at most one of the two labels can be right. Exact duplicates are found by a
    hash of the decoded pixels; near ones among each sample's ``NEIGHBOURS`` nearest in the
    outlier space below, confirmed in the full standardised feature space: distance at most
    ``DUPLICATE_FRACTION`` of the median nearest-neighbour distance there. ``duplicate_of`` names
    the nearest such sample (each of a pair names the other).
``outlier``
    unlike the rest of the data, in either of two views, each a robust z-score (of a log
    distance: median and MAD) above ``OUTLIER_Z``: in feature space, the mean distance to its
    ``NEIGHBOURS`` nearest samples in the standardised features whitened by PCA to ``max(10, K)``
    components (capped by D and N - 1); in pixel space, the distance of its grey thumbnail (at
    most ``THUMB`` px a side) from the data's ``PIXEL_COMPONENTS`` principal components. The second
    view is what catches a corrupt or unrelated image: a model with BatchNorm maps uniform noise
    close to some class in feature space (z about 2-3 on digits with the default cnn), while its
    pixels sit far off the data's manifold (z about 6-7; no digit above 3.6).
``mislabeled``
    the model is confident in another class: the predicted class is not the given one, its
    probability is at least ``CONFIDENT`` and it leads the runner-up by ``AMBIGUOUS_MARGIN`` or
    more.
``ambiguous``
    the probability is spread over several classes: the top class has less than ``CONFIDENT``, or
    leads the runner-up by less than ``AMBIGUOUS_MARGIN``.

When the model was trained here, "the model" of the last two is its whole training run: the
probabilities of the given class and of the best other class averaged over epochs with TracIn's
learning-rate weights (as ``margin_tracin``), not the final model's. A model that ends up
memorising a flipped label no longer disagrees with it; its training run did (on digits with 20%
flips and the default cnn: 286 samples typed mislabeled, all flipped, and no flipped label among
the ``none``, against 188 and 2% from the final model).
``none``
    none of the above (most samples: the model agrees with the given label).

All thresholds are fixed constants (below), so the same analysis always gives the same types.
:func:`filter_issue` keeps the samples of one type; :func:`duplicate_pairs` lists the pairs.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
import torch

from oga_core import options
from oga_core.errors import OgaError
from oga_core.lastlayer import Trajectory, softmax
from oga_core.neighbors import ExactIndex, knn_graph

ISSUES = options.names(options.ISSUE_TYPES)  # in the order the rules apply
COLUMNS = options.ISSUE_COLUMNS
CONFIDENT = 0.5
AMBIGUOUS_MARGIN = 0.2
OUTLIER_Z = 4.0
NEIGHBOURS = 10
DUPLICATE_FRACTION = 0.1
_SCALE_SAMPLE = 2_000  # samples whose nearest-neighbour distance sets the duplicate scale
THUMB = 12  # px a side of the grey thumbnails of the pixel view
PIXEL_COMPONENTS = 20
_PCA_FIT_ROWS = 4_096  # the principal components are fitted on at most this many thumbnails (bounded memory)
VERSION = 4  # part of the scores' cache key: bump when a rule or threshold changes


def _standardised(features: np.ndarray, *, block: int = 4_096) -> np.ndarray:
    """float32 ``(N, D)`` features with zero mean and unit variance per dimension, computed a block
    of rows at a time: whole-array float64 temporaries made the peak grow with N (four copies)."""
    n, d = features.shape
    total, squares = np.zeros(d), np.zeros(d)
    for lo in range(0, n, block):
        part = np.asarray(features[lo : lo + block], dtype=np.float64)
        total += part.sum(0)
        squares += (part**2).sum(0)
    mean = total / n
    sd = np.sqrt(np.maximum(squares / n - mean**2, 0.0))
    sd = np.where(sd > 1e-12 * np.maximum(np.abs(mean), 1.0), sd, 1.0)
    out = np.empty((n, d), dtype=np.float32)
    for lo in range(0, n, block):
        out[lo : lo + block] = (np.asarray(features[lo : lo + block], dtype=np.float64) - mean) / sd
    return out


def _robust_z(values: np.ndarray) -> np.ndarray:
    med = np.median(values)
    mad = 1.4826 * np.median(np.abs(values - med))
    return (values - med) / mad if mad > 0 else np.zeros_like(values)


# Bytes of pixels read per block of the pixel pass: a block of 4,096 rows was 50 MB of 64 px RGB
# images and 200 MB as float32, so the pass's peak grew with the data up to that many rows.
PIXEL_BLOCK_BYTES = 8 << 20


def _pixel_pass(pixels: np.ndarray, *, block_bytes: int = PIXEL_BLOCK_BYTES) -> tuple[np.ndarray, np.ndarray]:
    """One read of ``pixels`` ``(N, C, H, W)`` uint8, about ``block_bytes`` at a time (it may be a
    streamed :class:`~oga_core.pixels.PixelFile` larger than memory): ``(N,)`` group number of each
    sample's exact content (equal pixels, equal group) and ``(N, t*t)`` uint8 grey thumbnails."""
    n, c, h, w = pixels.shape
    side = min(THUMB, h, w)
    batch = max(1, block_bytes // max(1, c * h * w))
    digests = np.empty(n, dtype="S16")  # fixed-width bytes: no Python object per sample
    thumbs = np.empty((n, side * side), dtype=np.uint8)
    for lo in range(0, n, batch):
        block = np.ascontiguousarray(pixels[lo : lo + batch])
        digests[lo : lo + len(block)] = [hashlib.blake2b(row.tobytes(), digest_size=16).digest() for row in block]
        grey = torch.from_numpy(
            block.mean(1, keepdims=True, dtype=np.float32)
        )  # (B, 1, H, W): a third of float(B, C, H, W)
        thumbs[lo : lo + len(block)] = (
            torch.nn.functional.adaptive_avg_pool2d(grey, side).round().to(torch.uint8).reshape(len(block), -1).numpy()
        )
    _, group = np.unique(digests, return_inverse=True)
    return group, thumbs


def _pair_distances(z: np.ndarray, rows: np.ndarray, cols: np.ndarray, *, block: int = 16_384) -> np.ndarray:
    """``(P,)`` Euclidean distances between rows ``rows[i]`` and ``cols[i]`` of ``z``, a block of
    pairs at a time: gathering every pair at once held three ``(P, D)`` float64 copies, with P up
    to ten pairs a sample (400 MB at 20,000 samples of 128 features; tens of GB at a million)."""
    dist = np.empty(len(rows), dtype=np.float64)
    for lo in range(0, len(rows), block):
        diff = z[rows[lo : lo + block]] - z[cols[lo : lo + block]]
        dist[lo : lo + len(diff)] = np.sqrt(np.einsum("ij,ij->i", diff, diff))
    return dist


def _off_manifold(thumbs: np.ndarray, *, seed: int) -> np.ndarray:
    """``(N,)`` robust z of the log distance of each thumbnail from the data's principal subspace."""
    from sklearn.decomposition import PCA  # lazy: sklearn.decomposition is slow to import

    n = len(thumbs)
    components = int(min(PIXEL_COMPONENTS, thumbs.shape[1] - 1, n - 1))
    if components < 1:
        return np.zeros(n)
    rng = np.random.default_rng(seed)
    fit_rows = np.sort(rng.choice(n, _PCA_FIT_ROWS, replace=False)) if n > _PCA_FIT_ROWS else slice(None)
    pca = PCA(components, random_state=seed).fit(thumbs[fit_rows].astype(np.float32) / 255.0)
    residual = np.empty(n, dtype=np.float64)
    # 4,096 rows at a time, converted per block: 65,536 rows held five float64 copies of their
    # thumbnails at once (over 100 MB for 12,000 samples), so the peak grew with the data.
    for lo in range(0, n, 4_096):
        part = thumbs[lo : lo + 4_096].astype(np.float32) / 255.0
        residual[lo : lo + len(part)] = ((part - pca.inverse_transform(pca.transform(part))) ** 2).sum(1)
    return _robust_z(np.log(residual + 1e-12))


def issue_columns(
    features: np.ndarray,
    logits: np.ndarray,
    labels: np.ndarray,
    ids: list[str],
    pixels: np.ndarray | None = None,
    *,
    seed: int = 0,
    trajectory: Trajectory | None = None,
) -> pd.DataFrame:
    """``issue`` and ``duplicate_of`` (the conflicting duplicate's sample id, "" for none) of every
    sample, in row order.

    features ``(N, D)`` and logits ``(N, K)`` of the final model, the GIVEN labels ``(N,)``, the
    sample ids, the decoded pixels ``(N, C, H, W)`` (None: no exact-content check), the training
    trajectory (None: the final model decides mislabeled / ambiguous).
    """
    labels = np.asarray(labels, dtype=np.int64)
    n = len(labels)
    issue = np.full(n, "none", dtype=object)
    dup = np.full(n, -1, dtype=np.int64)
    if n < 3:
        return pd.DataFrame({"issue": issue, "duplicate_of": np.full(n, "", dtype=object)})
    z = _standardised(features)

    # outliers: kNN distance in the whitened principal components
    from sklearn.decomposition import PCA  # lazy: sklearn.decomposition is slow to import

    k_classes = int(logits.shape[1])
    components = int(min(z.shape[1], n - 1, max(10, k_classes)))
    # Fitted on at most _PCA_FIT_ROWS samples and applied a block at a time: a full SVD of N rows
    # held several (N, D) float64 copies, a peak that grew with the data.
    rng_fit = np.random.default_rng(seed)
    fit_rows = np.sort(rng_fit.choice(n, _PCA_FIT_ROWS, replace=False)) if n > _PCA_FIT_ROWS else slice(None)
    space = np.empty((n, components), dtype=np.float32)
    with np.errstate(divide="ignore", invalid="ignore"):  # constant features: zero variance to whiten
        pca = PCA(components, whiten=True, random_state=seed).fit(z[fit_rows])
        for lo in range(0, n, 4_096):
            space[lo : lo + 4_096] = pca.transform(z[lo : lo + 4_096])
    space = np.nan_to_num(space, nan=0.0, posinf=0.0, neginf=0.0)
    graph_i, graph_d = knn_graph(space, NEIGHBOURS, seed=seed)
    spread = _robust_z(np.log(graph_d.mean(1).astype(np.float64) + 1e-12))
    outlier = spread > OUTLIER_Z

    # near duplicates with another label: exact pixels, then close neighbours in full features
    if pixels is not None:
        group, thumbs = _pixel_pass(pixels)
        outlier |= _off_manifold(thumbs, seed=seed) > OUTLIER_Z
        order = np.argsort(group, kind="stable")
        starts = np.flatnonzero(np.r_[True, group[order][1:] != group[order][:-1]])
        for members in np.split(order, starts[1:]):
            if len(members) < 2:
                continue
            first = members[0]
            other = members[labels[members] != labels[first]]
            if len(other):  # each member names the first member with another label
                dup[members] = np.where(labels[members] != labels[first], first, other[0])
    index = ExactIndex(z)
    rng = np.random.default_rng(seed)
    probe = rng.choice(n, min(n, _SCALE_SAMPLE), replace=False)
    _, nearest = index.query(z[probe], 1, exclude=probe)
    scale = float(np.median(nearest[:, 0])) if nearest.size else 0.0
    limit = DUPLICATE_FRACTION * scale
    rows = np.repeat(np.arange(n), graph_i.shape[1])
    cols = graph_i.ravel()
    conflict = (labels[rows] != labels[cols]) & (dup[rows] < 0)
    rows, cols = rows[conflict], cols[conflict]
    if len(rows):
        dist = _pair_distances(z, rows, cols)
        close = dist <= limit
        order = np.argsort(dist[close], kind="stable")  # nearest first: the first hit per row wins
        for r, c in zip(rows[close][order], cols[close][order]):
            if dup[r] < 0:
                dup[r] = c
            if dup[c] < 0:
                dup[c] = r

    if trajectory is not None and trajectory.epochs > 0:
        weights = (trajectory.lr / trajectory.lr.sum())[:, None]
        given = (weights * np.exp(trajectory.field("log_p_given"))).sum(0)
        other = (weights * trajectory.field("p_other")).sum(0)
        top = np.maximum(given, other)
        spread_out = (top < CONFIDENT) | (np.abs(other - given) < AMBIGUOUS_MARGIN)
        confident_other = (other > given) & ~spread_out
    else:
        probs = softmax(logits)
        top2 = np.sort(probs, axis=1)[:, -2:]
        top, second = top2[:, 1], top2[:, 0]
        spread_out = (top < CONFIDENT) | (top - second < AMBIGUOUS_MARGIN)
        confident_other = (probs.argmax(1) != labels) & ~spread_out
    issue[spread_out] = "ambiguous"
    issue[confident_other] = "mislabeled"
    issue[outlier] = "outlier"
    issue[dup >= 0] = "near_duplicate"
    named = np.asarray(ids, dtype=object)[np.clip(dup, 0, n - 1)]
    return pd.DataFrame({"issue": issue, "duplicate_of": np.where(dup >= 0, named, "")})


def check_issue(issue: str) -> str:
    if issue not in ISSUES:
        raise OgaError(f"unknown issue type '{issue}': choose one of {', '.join(ISSUES)}")
    return issue


def issue_mask(table: pd.DataFrame, issue: str) -> np.ndarray:
    """bool ``(N,)``: the rows of ``table`` (a score table) whose ``issue`` is ``issue``."""
    check_issue(issue)
    if "issue" not in table:
        raise OgaError("this analysis has no issue types (analysed by an older oga): analyse it again")
    return table["issue"].to_numpy() == issue


def filter_issue(table: pd.DataFrame, issue: str | None) -> pd.DataFrame:
    """The rows of ``table`` whose ``issue`` is ``issue`` (all rows for None), most suspicious first."""
    rows = table if issue is None else table[issue_mask(table, issue)]
    return rows.sort_values("score", ascending=False, kind="stable") if "score" in rows else rows


def duplicate_pairs(table: pd.DataFrame) -> pd.DataFrame:
    """Each conflicting duplicate pair once: ``sample_id``, ``duplicate_of``, both labels."""
    if "duplicate_of" not in table:
        return pd.DataFrame(columns=["sample_id", "label_name", "duplicate_of", "duplicate_label_name"])
    rows = table[table["duplicate_of"].astype(str) != ""]
    names = table.set_index("sample_id")["label_name"]
    pairs = rows[["sample_id", "label_name", "duplicate_of"]].copy()
    pairs["duplicate_label_name"] = names.reindex(pairs["duplicate_of"]).to_numpy()
    key = [tuple(sorted(p)) for p in zip(pairs["sample_id"], pairs["duplicate_of"])]
    return pairs[~pd.Series(key, index=pairs.index).duplicated()].reset_index(drop=True)
