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

import platform
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from oga_core import detectors, health, issues, options, transition
from oga_core.analysis import Analysis, array_of_rows, score_table
from oga_core.config import AnalysisConfig
from oga_core.data import LabeledImages, default_workers, load_source
from oga_core.distributed import World
from oga_core.errors import DataError, OgaError
from oga_core.files import atomic_path, file_digest
from oga_core.gradients import GradientStats, forward_pass, gradient_stats
from oga_core.lastlayer import Trajectory
from oga_core.models import Classifier, FeatureHead, build_model, load_checkpoint, load_weights, pretrained_weights
from oga_core.noise import NoisyLabels, flip_labels
from oga_core.pixels import PixelFile, Pixels, open_pixels, sample_rows
from oga_core.progress import Progress, StageProgress, Stages
from oga_core.store import Cache, cache_key, load_array, read_json, save_arrays, write_json
from oga_core.train import channel_stats, feature_stats, resolve_device, train

# Bumped whenever a step's output changes for the same inputs, so old cache entries are not reused.
CACHE_VERSION = 6


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
    """The content fingerprint; for files, reused while no file's size or times changed, so a
    repeated analysis of 100 k images does not re-read every byte."""
    signature = dataset.stat_signature()
    if signature is None:
        return dataset.fingerprint()
    hit = cache.load("fingerprint", signature, lambda folder: _read_fingerprint(folder / "fingerprint.txt"))
    if hit is not None:
        return hit
    fingerprint = dataset.fingerprint()
    with cache.entry("fingerprint", signature) as folder:
        (folder / "fingerprint.txt").write_text(fingerprint)
    return fingerprint


def _read_fingerprint(path: Path) -> str:
    text = path.read_text().strip()
    if len(text) != 32 or any(c not in "0123456789abcdef" for c in text):
        raise ValueError("not a fingerprint")
    return text


def load_data(
    config: AnalysisConfig, cache: Cache, stages: Stages | None = None, *, workers: int | None = None
) -> LoadedData:
    """Open, fingerprint and decode the source (``workers`` processes; default: the cores, at
    most 8, from 2,000 files), drop unreadable files if asked, inject noise."""
    stages = stages or Stages()
    stages.begin("data")
    dataset = load_source(
        config.data,
        image_size=config.resolved_image_size,
        grayscale=config.grayscale,
        skip_unreadable=config.skip_unreadable,
    )
    fingerprint = _memoised_fingerprint(dataset, cache)
    stages.end()

    report = stages.begin("decode")
    key = cache_key(fp=fingerprint, size=dataset.image_shape)

    def read(folder: Path) -> tuple[Pixels, dict[int, str]]:
        pixels = open_pixels(folder / "pixels.npy")
        if len(pixels) != len(dataset) or tuple(pixels.shape[1:]) != dataset.image_shape:
            raise ValueError("pixels.npy does not match the data")
        unreadable = {int(k): str(v) for k, v in read_json(folder / "unreadable.json").items()}
        return pixels, unreadable

    hit = cache.load("decode", key, read)
    if hit is None:
        # Decoded straight into the cache entry, a row at a time: a large set never sits in memory.
        with cache.entry("decode", key) as folder:
            jobs = default_workers(len(dataset)) if workers is None else workers
            result = dataset.decode(progress=report, workers=jobs, out=folder / "pixels.npy")
            write_json(folder / "unreadable.json", {str(k): v for k, v in result.unreadable.items()})
        hit = cache.load("decode", key, read)
        if hit is None:  # the cache could not keep it (a read-only home): decode into memory
            result = dataset.decode(progress=report, workers=jobs)
            hit = result.pixels, result.unreadable
        stages.end()
    else:
        stages.end(hit=True)
    pixels, unreadable = hit

    data_id = fingerprint
    if unreadable:
        listed = "; ".join(f"{dataset.file_path(i)}: {why}" for i, why in list(unreadable.items())[:3])
        more = f" (+{len(unreadable) - 3} more)" if len(unreadable) > 3 else ""
        if not config.skip_unreadable:
            raise DataError(f"{len(unreadable)} unreadable image(s): {listed}{more}. Fix or remove them, or skip them")
        keep = np.array([i for i in range(len(dataset)) if i not in unreadable])
        if len(keep) == 0:
            raise DataError(f"no readable images in {config.data}")
        dataset = dataset.subset(keep)
        pixels = pixels.subset(keep) if isinstance(pixels, PixelFile) else pixels[keep]
        data_id = cache_key(fp=fingerprint, dropped=sorted(unreadable))

    noise = None
    if config.noise > 0:
        noise = flip_labels(
            dataset.labels, dataset.num_classes, rate=config.noise, kind=config.noise_kind, seed=config.seed
        )
        dataset = dataset.with_labels(noise.given)
        data_id = cache_key(fp=data_id, noise=config.noise, kind=config.noise_kind, seed=config.seed)
    return LoadedData(dataset, pixels, fingerprint, data_id, noise)


@dataclass
class FittedModel:
    """The trained (or loaded) model, its cache key, its training record (``train.json``), the
    per-sample training trajectory (None when nothing was trained) and whether it came from the
    cache."""

    model: Classifier
    key: str
    record: dict
    trajectory: Trajectory | None
    hit: bool


def fit_model(
    config: AnalysisConfig,
    dataset: LabeledImages,
    pixels: np.ndarray,
    data_id: str,
    cache: Cache,
    device: torch.device,
    report: Progress | None = None,
    world: World | None = None,
    weights: Path | None = None,
) -> FittedModel:
    """Build, load and/or train the model, holding out ``config.holdout`` of the samples
    (:func:`oga_core.health.holdout_mask`) when it trains; ``world``: data-parallel across its
    processes (every rank returns the same model). ``weights``: the pretrained weights to start
    from (fine-tuning); with a frozen backbone ``pixels`` are its features ``(N, D)`` and the
    model is a :class:`~oga_core.models.FeatureHead`."""
    recipe = config.recipe()
    holdout = health.holdout_mask(dataset.ids, config.holdout)
    epochs = config.resolved_epochs(int((~holdout).sum()))
    if epochs == 0:  # a checkpoint scored as it is: nothing is trained, nothing need be held out
        holdout = np.zeros(len(dataset), dtype=bool)
    checkpoint_digest = file_digest(config.checkpoint) if config.checkpoint else None
    weights_digest = file_digest(weights) if weights is not None else None
    key = cache_key(
        data=data_id,
        model=config.model,
        checkpoint=checkpoint_digest,
        weights=weights_digest,
        backbone=config.backbone if weights is not None else None,
        augment=recipe.augment,
        epochs=epochs,
        batch=recipe.batch_size,
        lr=recipe.lr,
        weight_decay=recipe.weight_decay,
        seed=config.seed,
        holdout=config.holdout if epochs > 0 else 0,
        shape=dataset.image_shape,
        classes=dataset.num_classes,
        device=device.type,
        version=CACHE_VERSION,
    )
    c, h, _ = dataset.image_shape
    frozen = config.frozen_backbone

    def build() -> Classifier:
        if frozen:  # ``pixels`` are the frozen backbone's features (N, D)
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(config.seed)
                return FeatureHead(pixels.shape[1], dataset.num_classes)
        return build_model(config.model, num_classes=dataset.num_classes, in_channels=c, image_size=h, seed=config.seed)

    def read(folder: Path) -> FittedModel:
        cached = build()
        cached.load_state_dict(torch.load(folder / "model.pt", map_location="cpu", weights_only=True))
        record = read_json(folder / "train.json")
        trajectory = None
        if record["epochs"] > 0:
            values = load_array(folder, "trajectory")
            if values is None or values.shape[:2] != (record["epochs"], len(dataset)):
                raise ValueError("trajectory.npy is missing or does not match the data")
            quality = load_array(folder, "trajectory_quality")
            if quality is not None and len(quality) != record["epochs"] + 1:
                raise ValueError("trajectory_quality.npy does not match the epochs")
            trajectory = Trajectory(
                values,
                array_of_rows(folder, "trajectory_lr", record["epochs"]),
                ~holdout,
                probs=array_of_rows(folder, "trajectory_probs", len(dataset)),
                probs_quality=None
                if quality is None
                else array_of_rows(folder, "trajectory_probs_quality", len(dataset)),
                quality=quality,
            )
        return FittedModel(cached.eval(), key, record, trajectory, True)

    hit = cache.load("model", key, read)
    if world is not None and not world.broadcast_object(hit is not None):
        hit = None  # rank 0 trains, so every rank trains: DDP needs them all
    if hit is not None:
        return hit
    model = build()
    if frozen:
        model.set_normalization(*feature_stats(pixels[~holdout]))
    else:
        mean, std = channel_stats(pixels)
        model.set_normalization(mean, std)
    head_replaced = False
    if config.checkpoint:
        head_replaced = load_checkpoint(model, Path(config.checkpoint), new_head=epochs > 0)
    elif weights is not None and not frozen:
        head_replaced = load_weights(model, weights, pretrained=config.pretrained)
    result = train(
        model,
        pixels,
        dataset.labels,
        epochs=epochs,
        batch_size=recipe.batch_size,
        lr=recipe.lr,
        weight_decay=recipe.weight_decay,
        seed=config.seed,
        device=device,
        holdout=holdout,
        progress=report,
        augment=recipe.augment and not frozen,
        world=world,
    )
    model.cpu().eval()
    record = {
        "epochs": epochs,
        "seconds": round(result.seconds, 3),
        "history": result.history,
        "holdout_size": int(holdout.sum()),
    }
    if head_replaced:
        record["checkpoint_head_replaced"] = True  # fine-tuned with a new head for these classes
    with cache.entry("model", key) as folder:
        torch.save(model.state_dict(), folder / "model.pt")
        write_json(folder / "train.json", record)
        if result.trajectory is not None:
            saved = result.trajectory
            save_arrays(
                folder,
                trajectory=saved.values,
                trajectory_lr=saved.lr,
                trajectory_probs=saved.probs,
                trajectory_probs_quality=saved.probs_quality,
                trajectory_quality=saved.quality,
            )
    return FittedModel(model, key, record, result.trajectory, False)


# Said once per analysis of colour photos trained from scratch (docs/benchmarks.md, "Detection
# quality on colour photos": the frozen ImageNet backbone ranks better in a fraction of the time).
PHOTO_HINT = (
    "colour photos, trained from scratch: the ImageNet backbone that comes with oga usually ranks their labels "
    "better in less time (--model efficientnet_lite0 --pretrained; in the app: Model, Start from ImageNet weights)"
)


def is_colour(pixels: Pixels) -> bool:
    """True when the images have three channels that differ somewhere (grayscale files read as
    RGB repeat one channel three times: they are not photos), judged on at most 256 images."""
    if pixels.shape[1] != 3:
        return False
    sample = sample_rows(pixels, 256).astype(np.int16)
    return bool(np.abs(sample[:, 0] - sample[:, 1]).max() > 0 or np.abs(sample[:, 1] - sample[:, 2]).max() > 0)


def backbone_features(
    config: AnalysisConfig,
    loaded: LoadedData,
    weights: Path,
    cache: Cache,
    device: torch.device,
    report: Progress | None = None,
) -> np.ndarray:
    """float32 ``(N, D)`` features of the frozen backbone ``config.model`` loaded from ``weights``
    (its classifier set aside), from one inference pass over the images; cached, so re-training
    the head, another seed or a retrain with decisions costs no pass over the images."""
    dataset = loaded.dataset
    c, h, _ = dataset.image_shape
    key = cache_key(
        data=loaded.data_id,
        model=config.model,
        weights=file_digest(weights),
        pretrained=config.pretrained,
        shape=dataset.image_shape,
        version=CACHE_VERSION,
    )
    hit = cache.load("features", key, lambda folder: array_of_rows(folder, "features", len(dataset)))
    if hit is not None:
        return hit
    backbone = build_model(config.model, num_classes=dataset.num_classes, in_channels=c, image_size=h, seed=config.seed)
    backbone.set_normalization(*channel_stats(loaded.pixels))
    load_weights(backbone, weights, pretrained=config.pretrained)
    features = forward_pass(
        backbone, loaded.pixels, batch_size=config.recipe().batch_size, device=device, progress=report
    ).features
    if not np.isfinite(features).all():
        raise OgaError(f"the backbone loaded from {weights} gives non-finite features: the weights are broken")
    with cache.entry("features", key) as folder:
        save_arrays(folder, features=features)
    return features


def _gradient_stats(
    config: AnalysisConfig,
    model: Classifier,
    loaded: LoadedData,
    model_key: str,
    cache: Cache,
    device: torch.device,
    report: Progress,
    world: World | None = None,
    inputs: Pixels | np.ndarray | None = None,
) -> tuple[GradientStats, str, bool]:
    """The per-sample gradient stats of the trained model (cached); (stats, key, cache hit).
    ``world``: each rank computes its shard of the samples, and the shards are gathered.
    ``inputs``: what the model reads (default the pixels; a frozen backbone's features)."""
    inputs = loaded.pixels if inputs is None else inputs
    key = cache_key(model=model_key, scope=config.scope, version=CACHE_VERSION)
    n = len(loaded.dataset)

    def read(folder: Path) -> GradientStats:
        layer_l2 = load_array(folder, "layer_l2")
        sketch = load_array(folder, "sketch")
        return GradientStats(
            scope=config.scope,
            features=array_of_rows(folder, "features", n),
            logits=array_of_rows(folder, "logits", n),
            l1=array_of_rows(folder, "l1", n),
            l2=array_of_rows(folder, "l2", n),
            layer_l2=layer_l2,
            layer_names=read_json(folder / "layers.json")["names"],
            sketch=sketch,
        )

    stats = cache.load("gradients", key, read)
    if stats is not None:
        return stats, key, True
    # The training batch size: a convolution may unfold its input (B x Cin k k x H W floats), so
    # a larger scoring batch would raise the peak memory above training's.
    batch = config.recipe().batch_size
    if world is None:
        stats = gradient_stats(
            model,
            inputs,
            loaded.dataset.labels,
            scope=config.scope,
            batch_size=batch,
            device=device,
            progress=report,
        )
    else:
        mine = world.shard(n)
        pixels = inputs.subset(mine) if isinstance(inputs, PixelFile) else inputs[mine]
        part = gradient_stats(
            model,
            pixels,
            loaded.dataset.labels[mine],
            scope=config.scope,
            batch_size=batch,
            device=device,
            progress=report,
        )
        stats = GradientStats(
            scope=part.scope,
            features=world.gather_rows(part.features, n),
            logits=world.gather_rows(part.logits, n),
            l1=world.gather_rows(part.l1, n),
            l2=world.gather_rows(part.l2, n),
            layer_l2=None if part.layer_l2 is None else world.gather_rows(part.layer_l2, n),
            layer_names=part.layer_names,
            sketch=None if part.sketch is None else world.gather_rows(part.sketch, n),
        )
    with cache.entry("gradients", key) as folder:
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
    return stats, key, False


def analyze(
    config: AnalysisConfig,
    *,
    cache: Cache | None = None,
    progress: StageProgress | None = None,
    workers: int | None = None,
    world: World | None = None,
    loaded: LoadedData | None = None,
) -> Analysis:
    """Run (or load from the cache) every step for ``config``; records nothing in a workspace
    (callers do, with :meth:`Workspace.record`).

    ``progress(stage, done, total)`` is called as each stage in ``options.STAGES`` advances;
    ``workers``: image-decoding processes (default: from the cores, see ``data.default_workers``).
    ``world``: the processes of a ``torchrun`` launch (``oga_core.distributed``): every rank
    returns the whole analysis; only rank 0 writes the cache. ``loaded``: analyse this data
    instead of opening ``config.data`` (e.g. the data with a person's decisions applied,
    :mod:`oga_core.retrain`); its ``data_id`` keys the model. Raises
    :class:`~oga_core.errors.OgaError` for anything a person must fix.
    """
    config.validate()
    stages = Stages(progress)
    cache = cache or Cache(notice=stages.notice, writable=world is None or world.leader)
    device = resolve_device(config.device)
    if world is not None and device.type == "cuda":
        device = torch.device("cuda", world.local_rank)
    wall = time.perf_counter()
    if loaded is None and world is None:
        loaded = load_data(config, cache, stages, workers=workers)
    elif loaded is None:  # rank 0 decodes into the (shared) cache, then the others read it
        loaded = world.leader_first(lambda: load_data(config, cache, stages, workers=workers))
    dataset, pixels, data_id, noise = loaded.dataset, loaded.pixels, loaded.data_id, loaded.noise
    from_scratch_photos = (
        config.model == options.AUTO_MODEL and not config.starts_from_weights and config.checkpoint is None
    )
    config = config.for_input(colour=is_colour(pixels))
    from_scratch_photos = from_scratch_photos and config.model == options.auto_model(colour=True)

    report = stages.begin("train")
    weights = None
    if config.weights is not None:
        weights = Path(config.weights)
    elif config.pretrained:
        weights = pretrained_weights(config.model, notice=stages.notice)
    inputs: Pixels | np.ndarray = pixels
    if config.frozen_backbone:
        assert weights is not None
        inputs = backbone_features(config, loaded, weights, cache, device, report)
    fitted = fit_model(config, dataset, inputs, data_id, cache, device, report, world=world, weights=weights)
    model, model_key, train_record, trajectory = fitted.model, fitted.key, fitted.record, fitted.trajectory
    stages.end(hit=fitted.hit)
    if from_scratch_photos:
        stages.notice(PHOTO_HINT)
    if trajectory is None and detectors.get(config.detector).trajectory:
        stages.notice(
            f"{config.detector} reads the training trajectory, and this model was loaded, not trained: "
            "ranked by the loaded model's values alone (train for at least one epoch for the trajectory)"
        )

    report = stages.begin("gradients")
    stats, stats_key, hit = _gradient_stats(
        config, model, loaded, model_key, cache, device, report, world=world, inputs=inputs
    )
    model.cpu()
    stats.check_finite(dataset.ids)
    stages.end(hit=hit)

    stages.begin("scores")
    scores_key = cache_key(stats=stats_key, seed=config.seed, version=CACHE_VERSION, issues=issues.VERSION)

    def read(folder: Path) -> tuple[pd.DataFrame, dict | None]:
        raw = pd.read_parquet(folder / "scores.parquet")
        if len(raw) != len(dataset) or not {*detectors.SCORE_COLUMNS, *issues.COLUMNS, "trained"} <= set(raw.columns):
            raise ValueError("the cached scores do not match the data")
        saved = folder / "noise_estimate.json"  # absent in entries written before it was kept
        return raw, read_json(saved) if saved.is_file() else None

    def estimate_noise() -> dict:
        # The default's probabilities over the whole trajectory: kept with the scores, so that
        # re-ranking from the cache does not recompute them.
        probs = detectors.adaptive_probs(detectors.ScoreInputs(stats, dataset.labels, config.seed, trajectory))
        return transition.describe(transition.estimate(probs, dataset.labels), dataset.classes)

    cached = cache.load("scores", scores_key, read)
    hit = cached is not None
    raw, noise_estimate = cached if cached is not None else (None, None)
    if raw is None:
        raw = detectors.score_columns(stats, dataset.labels, seed=config.seed, trajectory=trajectory)
        raw["trained"] = trajectory.trained if trajectory is not None else True
        raw = raw.join(
            issues.issue_columns(
                stats.features,
                stats.logits,
                dataset.labels,
                dataset.ids,
                pixels,
                seed=config.seed,
                trajectory=trajectory,
            )
        )
        noise_estimate = estimate_noise()
        with cache.entry("scores", scores_key) as folder:
            raw.to_parquet(folder / "scores.parquet")
            write_json(folder / "noise_estimate.json", noise_estimate)
    if noise_estimate is None:
        noise_estimate = estimate_noise()
    table = score_table(dataset, stats, raw, config, noise)
    stages.end(hit=hit)

    pred = table["pred"].to_numpy()
    held = table["heldout"].to_numpy(dtype=bool)
    correct = pred == dataset.labels
    checkup = health.check(
        train_accuracy=float(correct[~held].mean()),
        holdout_accuracy=float(correct[held].mean()) if held.any() else None,
        holdout_size=int(held.sum()),
        epochs=int(train_record["epochs"]),
        expected_noise=config.noise if noise is not None else None,
        holdout_curve=[h["holdout_accuracy"] for h in train_record["history"] if "holdout_accuracy" in h],
        frozen_backbone=config.frozen_backbone,
    )
    if checkup.verdict in ("underfit", "memorise"):
        stages.notice(f"health: {checkup.advice}")
    run = {
        "config": config.to_dict(),
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
        "train_accuracy": checkup.train_accuracy,
        "holdout_accuracy": checkup.holdout_accuracy,
        "health": checkup.to_dict(),
        "noise_estimate": noise_estimate,
        "num_flagged": int(table["flagged"].sum()),
        "timings": {**stages.timings, "total": round(time.perf_counter() - wall, 4)},
        "cache_hits": stages.cache_hits,
        "cache_keys": {"model": model_key, "gradients": stats_key, "scores": scores_key},
        "world_size": 1 if world is None else world.size,
        "notices": stages.notices,
        "versions": {"torch": torch.__version__, "python": platform.python_version()},
    }
    if world is not None:
        run["timings_per_rank"] = world.gather_objects(run["timings"])
    if noise is not None:
        run["noisy_samples"] = int(noise.noisy.sum())
        run["train_accuracy_clean_labels"] = float((pred == noise.clean).mean())
    return Analysis(
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


def write_results(analysis: Analysis, out: Path) -> dict:
    """``out/scores.csv`` (text cells guarded against spreadsheet formulas), ``out/run.json`` (with
    detection metrics when the truth is known) and ``out/model.pt``; returns the run record written.
    The one place results leave oga: ``oga analyze`` and the benchmarks both call it."""
    from oga_core.evaluate import detection_metrics  # sklearn.metrics: only when results are written
    from oga_core.export import safe_csv_frame

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / "scores.csv") as tmp:
        safe_csv_frame(analysis.scores).to_csv(tmp, index=False)
    run = dict(analysis.run)
    if analysis.noise is not None:
        metrics = detection_metrics(analysis.scores, analysis.noise.noisy, budget=analysis.config.budget)
        run["detection"] = metrics.set_index("score").to_dict(orient="index")
    write_json(out / "run.json", run)
    model_dir = analysis.cache.get("model", analysis.keys["model"])
    if model_dir is not None:
        with atomic_path(out / "model.pt") as tmp:
            tmp.write_bytes((model_dir / "model.pt").read_bytes())
    return run
