"""``analyze(config) -> Analysis``: data -> model -> per-sample gradients -> scores, cached.

Each step's result is stored under a key that hashes everything it depends on, so a second
identical run loads everything, and changing only the detector, the budget or per-class ranking
re-ranks stored scores without touching a gradient. Steps and what their keys cover:

    decode     data fingerprint, image size, channels
    model      data id (fingerprint + label noise), model, checkpoint bytes, training settings, device type
    gradients  model key, scope
    scores     gradients key, seed (the Isolation Forest's)
    map        gradients key, method, vector space

The analysed data (``data_id``) also names the workspace that holds the person's decisions.
"""

from __future__ import annotations

import dataclasses
import math
import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from oga_core import detectors
from oga_core.data import DEFAULT_IMAGE_SIZE, LabeledImages, load_source
from oga_core.errors import DataError, ModelError, OgaError
from oga_core.gradients import SCOPES, GradientStats, gradient_stats
from oga_core.models import Classifier, build_model, file_digest, load_checkpoint
from oga_core.noise import NOISE_KINDS, NoisyLabels, flip_labels
from oga_core.store import Cache, cache_key, load_array, oga_home, read_json, save_arrays, write_json
from oga_core.train import channel_stats, resolve_device, train

StageProgress = Callable[[str, int, int], None]
STAGES = ("data", "decode", "train", "gradients", "scores")
DEFAULT_EPOCHS = {"small_cnn": 12}
FALLBACK_EPOCHS = 8
# Bumped whenever a step's output changes for the same inputs, so old cache entries are not reused.
CACHE_VERSION = 2


@dataclass(frozen=True)
class AnalysisConfig:
    """Everything that decides an analysis. ``epochs=None``: 0 with a checkpoint (score it as it
    is), else the model's default. ``noise`` > 0 flips that fraction of labels on purpose and keeps
    the truth, for demos and benchmarks."""

    data: str = "demo:digits"
    model: str = "small_cnn"
    checkpoint: str | None = None
    epochs: int | None = None
    batch_size: int = 128
    lr: float = 2e-3
    scope: str = "last"
    detector: str = detectors.DEFAULT_DETECTOR
    budget: float = detectors.DEFAULT_BUDGET
    per_class: bool = False
    noise: float = 0.0
    noise_kind: str = "symmetric"
    seed: int = 0
    device: str = "auto"
    image_size: int = DEFAULT_IMAGE_SIZE
    grayscale: bool = False
    skip_unreadable: bool = False

    def resolved_epochs(self) -> int:
        if self.epochs is not None:
            return self.epochs
        return 0 if self.checkpoint else DEFAULT_EPOCHS.get(self.model, FALLBACK_EPOCHS)

    def validate(self) -> None:
        if self.scope not in SCOPES:
            raise OgaError(f"unknown scope '{self.scope}': use {' or '.join(SCOPES)}")
        detectors.detector_column(self.detector)
        if not 0 <= self.budget <= 1:
            raise OgaError(f"budget must be a fraction in [0, 1], got {self.budget}")
        if self.noise_kind not in NOISE_KINDS:
            raise OgaError(f"unknown noise kind '{self.noise_kind}': use {' or '.join(NOISE_KINDS)}")
        if not 0 <= self.noise < 1:
            raise OgaError(f"noise rate must be in [0, 1), got {self.noise}")
        if self.epochs is not None and self.epochs < 0:
            raise OgaError("epochs must be 0 or more")
        if self.batch_size < 2:
            raise OgaError("batch size must be at least 2 (a batch of one cannot be normalised by BatchNorm)")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise OgaError(f"learning rate must be a positive number, got {self.lr}")
        if not 0 <= self.seed < 2**32:
            raise OgaError(f"seed must be between 0 and 2**32 - 1, got {self.seed}")
        if self.checkpoint is not None and not Path(self.checkpoint).is_file():
            # checked here, before any cache key: a mistyped path must not quietly score an untrained model
            raise ModelError(f"checkpoint {self.checkpoint} does not exist or is not a file")
        if not 4 <= self.image_size <= 1024:
            raise OgaError(f"image size must be between 4 and 1024 pixels, got {self.image_size}")


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
    def workspace(self) -> Path:
        return workspace_dir(self.data_id)

    def rescore(
        self, *, detector: str | None = None, budget: float | None = None, per_class: bool | None = None
    ) -> Analysis:
        """The same analysis ranked by another detector, budget or per-class setting: no recomputation."""
        config = dataclasses.replace(
            self.config,
            detector=self.config.detector if detector is None else detector,
            budget=self.config.budget if budget is None else budget,
            per_class=self.config.per_class if per_class is None else per_class,
        )
        config.validate()
        raw = self.scores[list(detectors.SCORE_COLUMNS)]
        table = score_table(self.dataset, self.stats, raw, config, self.noise)
        run = {**self.run, "config": dataclasses.asdict(config), "num_flagged": int(table["flagged"].sum())}
        return dataclasses.replace(self, config=config, scores=table, run=run)

    def map_coords(
        self, *, method: str = "umap", space: str = "features", progress: Callable[[int, int], None] | None = None
    ) -> np.ndarray:
        """float32 ``(N, 2)`` map of the model's ``features`` or the last layer's ``gradients``; cached."""
        from oga_core.embedding import embed_2d

        key = cache_key(stats=self.keys["gradients"], method=method, space=space, seed=self.config.seed)
        hit = self.cache.get("map", key)
        if hit is not None:
            return load_array(hit, "coords")  # type: ignore[return-value]
        if space == "features":
            vectors = self.stats.features
        elif space == "gradients":
            vectors = detectors.iforest_input(self.stats, self.dataset.labels, seed=self.config.seed)
        else:
            raise OgaError(f"unknown map space '{space}': use features or gradients")
        coords = embed_2d(vectors, method=method, random_state=self.config.seed, progress=progress)
        with self.cache.entry("map", key) as folder:
            save_arrays(folder, coords=coords)
        return coords


def workspace_dir(data_id: str) -> Path:
    """Where the decisions and latest analysis of one data set live."""
    return oga_home() / "workspaces" / data_id


def score_table(
    dataset: LabeledImages,
    stats: GradientStats,
    raw_scores: pd.DataFrame,
    config: AnalysisConfig,
    noise: NoisyLabels | None,
) -> pd.DataFrame:
    """One row per sample: ids, labels, prediction, every score, the ranking score and ``flagged``.

    Columns: sample_id, label, label_name, pred, pred_name, confidence, loss, el2n, margin,
    oga_l1, oga_l2, oga_iforest, score (what ranks samples), rank (1 = most suspicious),
    flagged; plus noisy and clean_label when the truth is known.
    """
    labels = dataset.labels
    logits = stats.logits.astype(np.float64)
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    pred = probs.argmax(1)
    names = np.asarray(dataset.classes, dtype=object)
    score = detectors.ranking_score(raw_scores, labels, detector=config.detector, per_class=config.per_class)
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
    for col in ("loss", "el2n", "margin", "oga_l1", "oga_l2", "oga_iforest"):
        table[col] = raw_scores[col].to_numpy()
    table["score"] = score
    table["rank"] = rank
    table["flagged"] = detectors.flag_top(score, config.budget)
    if noise is not None:
        table["noisy"] = noise.noisy
        table["clean_label"] = noise.clean
    return table


class _Stages:
    """Timings per stage and the progress callback, in one place."""

    def __init__(self, progress: StageProgress | None) -> None:
        self.progress = progress
        self.timings: dict[str, float] = {}
        self.cache_hits: list[str] = []
        self._start = 0.0
        self._name = ""

    def begin(self, name: str) -> Callable[[int, int], None]:
        self._name, self._start = name, time.perf_counter()
        if self.progress:
            self.progress(name, 0, 1)
        return lambda done, total: self.progress(name, done, total) if self.progress else None

    def end(self, *, hit: bool = False) -> None:
        self.timings[self._name] = round(time.perf_counter() - self._start, 4)
        if hit:
            self.cache_hits.append(self._name)
        if self.progress:
            self.progress(self._name, 1, 1)


@dataclass
class LoadedData:
    """dataset with the given labels; pixels uint8 ``(N, C, H, W)``; fingerprint of the source's
    content; data_id = fingerprint plus injected noise and dropped files (names the workspace)."""

    dataset: LabeledImages
    pixels: np.ndarray
    fingerprint: str
    data_id: str
    noise: NoisyLabels | None


def _memoised_fingerprint(dataset: LabeledImages, cache: Cache) -> str:
    """The content fingerprint; for files, reused while no file's size or mtime changed, so a
    repeated analysis of 100 k images does not re-read every byte."""
    signature = dataset.stat_signature()
    if signature is None:
        return dataset.fingerprint()
    hit = cache.get("fingerprint", signature)
    if hit is not None:
        dataset._fingerprint = (hit / "fingerprint.txt").read_text().strip()
        return dataset._fingerprint
    fingerprint = dataset.fingerprint()
    with cache.entry("fingerprint", signature) as folder:
        (folder / "fingerprint.txt").write_text(fingerprint)
    return fingerprint


def load_data(config: AnalysisConfig, cache: Cache, stages: _Stages | None = None) -> LoadedData:
    """Open, fingerprint and decode the source, drop unreadable files if asked, inject noise."""
    stages = stages or _Stages(None)
    stages.begin("data")
    dataset = load_source(config.data, image_size=config.image_size, grayscale=config.grayscale)
    fingerprint = _memoised_fingerprint(dataset, cache)
    stages.end()

    report = stages.begin("decode")
    key = cache_key(fp=fingerprint, size=dataset.image_shape)
    hit = cache.get("decode", key)
    if hit is not None:
        pixels = load_array(hit, "pixels")
        unreadable = {int(k): v for k, v in read_json(hit / "unreadable.json").items()}
    else:
        result = dataset.decode(progress=report)
        pixels, unreadable = result.pixels, result.unreadable
        with cache.entry("decode", key) as folder:
            save_arrays(folder, pixels=pixels)
            write_json(folder / "unreadable.json", {str(k): v for k, v in unreadable.items()})
    stages.end(hit=hit is not None)

    if unreadable:
        listed = "; ".join(f"{dataset.file_path(i)}: {why}" for i, why in list(unreadable.items())[:3])
        more = f" (+{len(unreadable) - 3} more)" if len(unreadable) > 3 else ""
        if not config.skip_unreadable:
            raise DataError(f"{len(unreadable)} unreadable image(s): {listed}{more}. Fix or remove them, or skip them")
        keep = np.array([i for i in range(len(dataset)) if i not in unreadable])
        if len(keep) == 0:
            raise DataError(f"no readable images in {config.data}")
        dataset, pixels = dataset.subset(keep), pixels[keep]
        dataset._fingerprint = cache_key(fp=fingerprint, dropped=sorted(unreadable))

    noise = None
    data_id = dataset.fingerprint()
    if config.noise > 0:
        noise = flip_labels(
            dataset.labels, dataset.num_classes, rate=config.noise, kind=config.noise_kind, seed=config.seed
        )
        dataset = dataset.with_labels(noise.given)
        data_id = cache_key(fp=data_id, noise=config.noise, kind=config.noise_kind, seed=config.seed)
    return LoadedData(dataset, np.asarray(pixels), fingerprint, data_id, noise)


def fit_model(
    config: AnalysisConfig,
    dataset: LabeledImages,
    pixels: np.ndarray,
    data_id: str,
    cache: Cache,
    device: torch.device,
    report: Callable[[int, int], None] | None = None,
) -> tuple[Classifier, str, dict, bool]:
    """Build, load and/or train the model; returns (model, key, training record, cache hit)."""
    epochs = config.resolved_epochs()
    checkpoint_digest = (
        file_digest(Path(config.checkpoint)) if config.checkpoint and Path(config.checkpoint).is_file() else None
    )
    key = cache_key(
        data=data_id,
        model=config.model,
        checkpoint=checkpoint_digest,
        epochs=epochs,
        batch=config.batch_size,
        lr=config.lr,
        seed=config.seed,
        shape=dataset.image_shape,
        classes=dataset.num_classes,
        device=device.type,
        version=CACHE_VERSION,
    )
    c, h, _ = dataset.image_shape
    model = build_model(config.model, num_classes=dataset.num_classes, in_channels=c, image_size=h, seed=config.seed)
    hit = cache.get("model", key)
    if hit is not None:
        model.load_state_dict(torch.load(hit / "model.pt", map_location="cpu", weights_only=True))
        return model.eval(), key, read_json(hit / "train.json"), True
    mean, std = channel_stats(pixels)
    model.set_normalization(mean, std)
    head_replaced = False
    if config.checkpoint:
        head_replaced = load_checkpoint(model, Path(config.checkpoint), new_head=epochs > 0)
    result = train(
        model,
        pixels,
        dataset.labels,
        epochs=epochs,
        batch_size=config.batch_size,
        lr=config.lr,
        seed=config.seed,
        device=device,
        progress=report,
    )
    model.cpu().eval()
    record = {"epochs": epochs, "seconds": round(result.seconds, 3), "history": result.history}
    if head_replaced:
        record["checkpoint_head_replaced"] = True  # fine-tuned with a new head for these classes
    with cache.entry("model", key) as folder:
        torch.save(model.state_dict(), folder / "model.pt")
        write_json(folder / "train.json", record)
    return model, key, record, False


def analyze(config: AnalysisConfig, *, cache: Cache | None = None, progress: StageProgress | None = None) -> Analysis:
    """Run (or load from the cache) every step for ``config``.

    ``progress(stage, done, total)`` is called as each stage in ``STAGES`` advances. Raises
    :class:`~oga_core.errors.OgaError` for anything a person must fix.
    """
    config.validate()
    cache = cache or Cache()
    device = resolve_device(config.device)
    stages = _Stages(progress)
    wall = time.perf_counter()
    loaded = load_data(config, cache, stages)
    dataset, pixels, data_id, noise = loaded.dataset, loaded.pixels, loaded.data_id, loaded.noise

    report = stages.begin("train")
    model, model_key, train_record, hit = fit_model(config, dataset, pixels, data_id, cache, device, report)
    stages.end(hit=hit)

    report = stages.begin("gradients")
    stats_key = cache_key(model=model_key, scope=config.scope, version=CACHE_VERSION)
    hit = cache.get("gradients", stats_key)
    if hit is not None:
        layer_names = read_json(hit / "layers.json")["names"]
        stats = GradientStats(
            scope=config.scope,
            features=load_array(hit, "features"),
            logits=load_array(hit, "logits"),  # type: ignore[arg-type]
            l1=load_array(hit, "l1"),
            l2=load_array(hit, "l2"),
            layer_l2=load_array(hit, "layer_l2"),  # type: ignore[arg-type]
            layer_names=layer_names,
            sketch=load_array(hit, "sketch"),
        )
    else:
        batch = 512 if config.scope == "last" else config.batch_size
        stats = gradient_stats(
            model, pixels, dataset.labels, scope=config.scope, batch_size=batch, device=device, progress=report
        )
        with cache.entry("gradients", stats_key) as folder:
            save_arrays(
                folder,
                features=stats.features,
                logits=stats.logits,
                l1=stats.l1,
                l2=stats.l2,
                layer_l2=stats.layer_l2,
                sketch=stats.sketch,
            )
            write_json(folder / "layers.json", {"names": stats.layer_names})
    model.cpu()
    stats.check_finite(dataset.ids)
    stages.end(hit=hit is not None)

    stages.begin("scores")
    scores_key = cache_key(stats=stats_key, seed=config.seed, version=CACHE_VERSION)
    hit = cache.get("scores", scores_key)
    if hit is not None:
        raw = pd.read_parquet(hit / "scores.parquet")
    else:
        raw = detectors.score_columns(stats, dataset.labels, seed=config.seed)
        with cache.entry("scores", scores_key) as folder:
            raw.to_parquet(folder / "scores.parquet")
    table = score_table(dataset, stats, raw, config, noise)
    stages.end(hit=hit is not None)

    pred = table["pred"].to_numpy()
    run = {
        "config": dataclasses.asdict(config),
        "source": dataset.source,
        "data_fingerprint": loaded.fingerprint,
        "data_id": data_id,
        "num_samples": len(dataset),
        "num_classes": dataset.num_classes,
        "classes": dataset.classes,
        "image_shape": list(dataset.image_shape),
        "device": str(device),
        "epochs": train_record["epochs"],
        "train_seconds": train_record["seconds"],
        "train_history": train_record["history"],
        "checkpoint_head_replaced": bool(train_record.get("checkpoint_head_replaced", False)),
        "train_accuracy": float((pred == dataset.labels).mean()),
        "num_flagged": int(table["flagged"].sum()),
        "timings": {**stages.timings, "total": round(time.perf_counter() - wall, 4)},
        "cache_hits": stages.cache_hits,
        "cache_keys": {"model": model_key, "gradients": stats_key, "scores": scores_key},
        "versions": {"torch": torch.__version__, "python": platform.python_version()},
    }
    if noise is not None:
        run["noisy_samples"] = int(noise.noisy.sum())
        run["train_accuracy_clean_labels"] = float((pred == noise.clean).mean())
    analysis = Analysis(
        config=config,
        dataset=dataset,
        pixels=pixels,
        stats=stats,
        scores=table,
        run=run,
        data_id=data_id,
        noise=noise,
        cache=cache,
        keys={"model": model_key, "gradients": stats_key, "scores": scores_key},
    )
    record_latest(analysis)
    return analysis


def record_latest(analysis: Analysis) -> None:
    """Keep the workspace's latest scores and run record, for ``oga export`` and the app."""
    folder = analysis.workspace
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / ".latest_scores.parquet.tmp"
    analysis.scores.to_parquet(tmp)
    os.replace(tmp, folder / "latest_scores.parquet")  # a crash mid-write leaves the previous file
    carried = adopt_earlier_decisions(analysis.config, analysis.dataset, analysis.data_id)
    if carried:
        analysis.run["decisions_carried_over"] = carried
    write_json(folder / "latest_run.json", analysis.run)


def data_settings(config: AnalysisConfig) -> dict:
    """What, besides the content, names the analysed data: the source and any injected noise."""
    noisy = config.noise > 0
    return {
        "data": config.data,
        "noise": config.noise,
        "noise_kind": config.noise_kind if noisy else None,
        "noise_seed": config.seed if noisy else None,
        "skip_unreadable": config.skip_unreadable,
    }


def adopt_earlier_decisions(config: AnalysisConfig, dataset: LabeledImages, data_id: str) -> int:
    """Carry decisions over when the same source changed on disk. Returns how many were carried.

    Adding, fixing or removing one file changes the data id and so the workspace. When the new
    workspace has no decision history and an earlier workspace holds decisions for the same source
    with the same noise settings, the most recently changed one is copied over, sample by sample,
    for every sample still present with the same given label (a decision about another label is
    not carried). The copy is one batch in the event log: one undo takes it back.
    """
    from oga_core.decisions import Decision, DecisionStore

    folder = workspace_dir(data_id)
    folder.mkdir(parents=True, exist_ok=True)
    settings = data_settings(config)
    write_json(folder / "source.json", {**settings, "data_id": data_id, "classes": dataset.classes})
    store = DecisionStore(folder / "decisions.sqlite")
    if not store.is_new():
        return 0
    earlier = []
    for other in (oga_home() / "workspaces").iterdir():
        db = other / "decisions.sqlite"
        if other == folder or not db.is_file() or not (other / "source.json").is_file():
            continue
        try:
            same = {k: v for k, v in read_json(other / "source.json").items() if k in settings} == settings
        except (OSError, ValueError):
            continue
        if same:
            earlier.append((db.stat().st_mtime, db))
    if not earlier:
        return 0
    table = DecisionStore(max(earlier)[1]).table()
    position = {sid: i for i, sid in enumerate(dataset.ids)}
    carried = [
        Decision(sid, action, int(original), int(label))
        for sid, action, label, original in table[["sample_id", "action", "label", "original_label"]].itertuples(
            index=False
        )
        if sid in position
        and int(dataset.labels[position[sid]]) == int(original)
        and 0 <= int(label) < dataset.num_classes
    ]
    return store.decide_many(carried)
