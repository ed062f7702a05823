"""The result of an analysis, :class:`Analysis`, and the score table it ranks by.

Its own module so that what reads an analysis (more like this, the issue types, the app) can
name it without importing the pipeline that computes it (no import cycle, type-only ones included).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from oga_core import detectors, options
from oga_core.config import AnalysisConfig
from oga_core.data import LabeledImages, index_of
from oga_core.embedding import embed_2d
from oga_core.errors import OgaError
from oga_core.lastlayer import last_layer_gradients, softmax
from oga_core.noise import NoisyLabels
from oga_core.progress import Progress
from oga_core.store import Cache, cache_key, load_array, save_arrays
from oga_core.workspace import Workspace

if TYPE_CHECKING:  # the gradient module imports torch; an analysis holds only its arrays
    from oga_core.gradients import GradientStats


@dataclass
class Analysis:
    """The result of :func:`analyze`.

    dataset: the analysed data with the GIVEN labels (after any injected noise), unreadable files
    dropped if asked. scores: one row per sample, in dataset order (see :func:`score_table`).
    run: what ``run.json`` holds (settings, timings per stage, accuracy, fingerprint, cache hits).
    """

    config: AnalysisConfig
    dataset: LabeledImages
    pixels: np.ndarray
    stats: GradientStats
    scores: pd.DataFrame
    run: dict
    data_id: str
    noise: NoisyLabels | None
    cache: Cache
    keys: dict[str, str] = field(default_factory=dict)

    @property
    def workspace(self) -> Workspace:
        """Where this data set's decisions and latest analysis live (under ``$OGA_HOME``)."""
        return Workspace(self.data_id)

    def rescore(
        self, *, detector: str | None = None, budget: float | None = None, per_class: bool | None = None
    ) -> Analysis:
        """The same analysis ranked by another detector, budget or per-class setting: no recomputation."""
        config = self.config.ranked(detector=detector, budget=budget, per_class=per_class).validate()
        kept = [*detectors.SCORE_COLUMNS, *(c for c in options.ISSUE_COLUMNS if c in self.scores)]
        raw = self.scores[kept].assign(trained=~self.scores["heldout"].to_numpy(dtype=bool))
        table = score_table(self.dataset, self.stats, raw, config, self.noise)
        run = {**self.run, "config": config.to_dict(), "num_flagged": int(table["flagged"].sum())}
        return dataclasses.replace(self, config=config, scores=table, run=run)

    def layer_norms(self, sample_id: str) -> pd.Series | None:
        """The L2 norm of one sample's loss gradient in each layer (``scope="all"`` only, else
        None), indexed by layer name in forward order: which layers the sample pulls hardest on."""
        if self.stats.layer_l2 is None:
            return None
        row = index_of(self.dataset.ids).get(sample_id)
        if row is None:
            raise OgaError(f"no sample '{sample_id}' in {self.config.data}")
        return pd.Series(self.stats.layer_l2[row], index=self.stats.layer_names, name=sample_id)

    def map_coords(
        self, *, method: str = "umap", space: str = "features", progress: Progress | None = None
    ) -> np.ndarray:
        """float32 ``(N, 2)`` map of the model's ``features`` or the last layer's ``gradients``; cached."""
        key = cache_key(stats=self.keys["gradients"], method=method, space=space, seed=self.config.seed)
        hit = self.cache.load("map", key, lambda folder: array_of_rows(folder, "coords", len(self.dataset)))
        if hit is not None:
            return hit
        if space == "features":
            vectors = self.stats.features
        else:
            options.check_choice(space, options.MAP_SPACES, "map space")
            vectors = self.stats.sketch
            if vectors is None:  # projected to 64 dims: a map goes through 50 principal components anyway
                features, logits = self.stats.features, self.stats.logits
                vectors = last_layer_gradients(features, logits, self.dataset.labels, max_dims=0, projected_dims=64)
        coords = embed_2d(vectors, method=method, random_state=self.config.seed, progress=progress)
        with self.cache.entry("map", key) as folder:
            save_arrays(folder, coords=coords)
        return coords


def score_table(
    dataset: LabeledImages,
    stats: GradientStats,
    raw_scores: pd.DataFrame,
    config: AnalysisConfig,
    noise: NoisyLabels | None,
) -> pd.DataFrame:
    """One row per sample: ids, labels, prediction, every score, the ranking score and ``flagged``.

    Columns: sample_id, label, label_name, pred, pred_name, confidence, every detector's column
    (``detectors.SCORE_COLUMNS``), score (what ranks samples), rank (1 = most suspicious), flagged,
    heldout (never trained on: the health check's part), issue and duplicate_of (why a sample
    looks suspicious, :mod:`oga_core.issues`; when ``raw_scores`` holds them); plus noisy and
    clean_label when the truth is known.
    """
    labels = dataset.labels
    probs = softmax(stats.logits)
    pred = probs.argmax(1)
    names = np.asarray(dataset.classes, dtype=object)
    trained = raw_scores["trained"].to_numpy(dtype=bool) if "trained" in raw_scores else None
    score = detectors.ranking_score(
        raw_scores, labels, detector=config.detector, per_class=config.per_class, trained=trained
    )
    order = np.argsort(-score, kind="stable")
    rank = np.empty(len(score), dtype=np.int64)
    rank[order] = np.arange(1, len(score) + 1)
    table = pd.DataFrame(
        {
            "sample_id": dataset.ids,
            "label": labels,
            "label_name": names[labels],
            "pred": pred,
            "pred_name": names[pred],
            "confidence": probs.max(1),
        }
    )
    for col in detectors.SCORE_COLUMNS:
        table[col] = raw_scores[col].to_numpy()
    table["score"] = score
    table["rank"] = rank
    table["flagged"] = detectors.flag_top(score, config.budget)
    table["heldout"] = ~trained if trained is not None else False
    for col in options.ISSUE_COLUMNS:
        if col in raw_scores:
            table[col] = raw_scores[col].to_numpy()
    if noise is not None:
        table["noisy"] = noise.noisy
        table["clean_label"] = noise.clean
    return table


def array_of_rows(folder: Path, name: str, rows: int) -> np.ndarray:
    """``folder/<name>.npy`` with ``rows`` rows; ValueError otherwise (a truncated or foreign file)."""
    array = load_array(folder, name)
    if array is None or len(array) != rows:
        raise ValueError(f"{name}.npy is missing or has the wrong number of rows")
    return array
