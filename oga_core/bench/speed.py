"""Speed and memory: OGA's scoring against what it replaces, as ratios measured in one process.

Per model (the small CNN on 1x28x28 images, ResNet-18 on 3x32x32; synthetic images, so the CPU
and GPU columns see identical data and nothing beyond torch, numpy, pandas and scikit-learn is
needed), on ``n`` samples:

* baselines: one inference pass (``model(x)`` in batches, logits to host) and one training epoch;
* OGA: last-layer L1/L2 (closed form: a forward pass), all last-layer scores (+ Isolation Forest
  and the loss baselines), all-layer ghost norms (``want_l1=False``: pure ghost norms), and the
  product's all-layer path (L1 + count sketch + every score);
* references: the paper's per-sample autograd loop (``torch.autograd.grad`` one sample at a time)
  and ``torch.func.vmap(grad)``, each for all parameters and for the head only, timed on
  ``n_loop`` / ``n_vmap`` samples and scaled to ``n`` (they are linear in n);
* whole pipelines: OGA (one training + last-layer scores) vs cleanlab (``folds`` trainings on
  ``(folds-1)/folds`` of the data for out-of-sample probabilities + ``find_label_issues``), the same
  number of epochs each;
* peak memory of a training epoch and of the ghost-norm pass (CPU: a fresh subprocess per
  measurement, peak RSS above the RSS after set-up; CUDA: ``max_memory_allocated`` above the
  allocation before);
* the cache: a cold ``analyze``, the identical second call, and a change of detector only.

Fast steps: median of ``repeats`` runs after a warm-up run. Slow references and pipelines: one
run after the code paths were warmed by the fast steps.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from oga_core.bench.common import log, machine_info, now_iso, peak_memory, ratio, sync, synthetic_images, timed
from oga_core.gradients import (
    all_layer_norms,
    forward_pass,
    gradient_stats,
    last_layer_norms,
    norms_of,
    per_sample_gradients_loop,
    per_sample_gradients_vmap,
)
from oga_core.models import Classifier, build_model
from oga_core.train import channel_stats, to_float, train

MEMORY_KINDS = ("train_epoch", "ghost_all", "inference", "last_norms")


@dataclass(frozen=True)
class ModelCase:
    """One model's speed case: ``n`` samples of ``shape``; references on ``n_loop`` / ``n_vmap``."""

    model: str
    shape: tuple[int, int, int]
    n: int
    n_loop: int
    n_vmap: int
    vmap_chunk: int
    all_scores: bool = True  # time the product's all-layer path (L1 + sketch + every score) too
    n_all: int | None = None  # ... on this many samples (scaled to n; it is the slowest path), None: n
    pipelines: bool = True  # time OGA's and cleanlab's whole pipelines (K + 1 trainings)


@dataclass(frozen=True)
class SpeedSettings:
    cases: tuple[ModelCase, ...] = (
        ModelCase("small_cnn", (1, 28, 28), n=5000, n_loop=1000, n_vmap=1000, vmap_chunk=125),
        # ResNet-18 runs at ~20 ms per sample forward on one busy CPU core: 512 samples keep the CPU
        # part to minutes; the materialised all-layer path (L1 + sketch) is timed on 128 of them.
        ModelCase("resnet18", (3, 32, 32), n=512, n_loop=128, n_vmap=32, vmap_chunk=16, n_all=128),
    )
    repeats: int = 3
    batch_size: int = 256  # inference and last-layer scoring
    grad_batch_size: int = 128  # training and all-layer passes (what gradient_stats uses)
    pipeline_epochs: int = 2
    folds: int = 5
    memory_kinds: tuple[str, ...] = MEMORY_KINDS
    memory_models: tuple[str, ...] | None = None  # None: every case
    cache_data: str = "demo:mnist5k"
    cache_epochs: int | None = None  # None: the product default (12 for the small CNN)

    @classmethod
    def full(cls, device_type: str = "cpu") -> SpeedSettings:
        """The full run. On a GPU the data are larger (a few hundred samples are a handful of
        batches there, all launch overhead); the per-sample references keep their sample counts."""
        if device_type != "cuda":
            return cls()
        return cls(
            cases=(
                ModelCase("small_cnn", (1, 28, 28), n=10_000, n_loop=1000, n_vmap=2000, vmap_chunk=500),
                ModelCase("resnet18", (3, 32, 32), n=2500, n_loop=256, n_vmap=256, vmap_chunk=32),
            )
        )

    @classmethod
    def quick(cls) -> SpeedSettings:
        """A few hundred small-CNN samples and 64 ResNet-18 samples (at least 5 per class, for 5
        folds): about a minute on a CPU."""
        return cls(
            cases=(
                ModelCase("small_cnn", (1, 28, 28), n=384, n_loop=64, n_vmap=64, vmap_chunk=64),
                ModelCase(
                    "resnet18", (3, 32, 32), n=64, n_loop=8, n_vmap=4, vmap_chunk=4, all_scores=False, pipelines=False
                ),
            ),
            repeats=1,
            pipeline_epochs=1,
            memory_kinds=("train_epoch", "ghost_all"),
            memory_models=("small_cnn",),
            cache_data="demo:digits",
            cache_epochs=2,
        )


def _model(case: ModelCase, pixels: np.ndarray, seed: int = 0) -> Classifier:
    c, h, _ = case.shape
    model = build_model(case.model, num_classes=10, in_channels=c, image_size=h, seed=seed)
    model.set_normalization(*channel_stats(pixels))
    return model.eval()


@torch.no_grad()
def inference_pass(model: Classifier, pixels: np.ndarray, *, batch_size: int, device: torch.device) -> np.ndarray:
    """The baseline: predictions for every sample (logits ``(N, K)`` on the host), nothing else."""
    model.eval().to(device)
    x_all = torch.from_numpy(pixels)
    out = [
        model(to_float(x_all[lo : lo + batch_size], device)).float().cpu() for lo in range(0, len(x_all), batch_size)
    ]
    return torch.cat(out).numpy()


def _reference_seconds(
    fn, model: Classifier, pixels: np.ndarray, labels: np.ndarray, n_ref: int, chunk: int, device: torch.device
) -> float:
    """Seconds for ``fn`` (a per-sample-gradient reference) + norms over the first ``n_ref`` samples,
    in chunks of ``chunk`` (the loop takes any chunk; vmap's memory is chunk x parameters)."""
    model.eval().to(device)
    x = to_float(torch.from_numpy(pixels[:n_ref]), device)
    y = torch.from_numpy(labels[:n_ref]).to(device)
    fn(model, x[:2], y[:2])  # warm-up: first-call compilation of the functional transforms
    sync(device)
    start = time.perf_counter()
    for lo in range(0, n_ref, chunk):
        norms_of(fn(model, x[lo : lo + chunk], y[lo : lo + chunk]))
    sync(device)
    return time.perf_counter() - start


def _cleanlab_pipeline(
    case: ModelCase, pixels: np.ndarray, labels: np.ndarray, settings: SpeedSettings, device: torch.device
) -> dict[str, Any]:
    """cleanlab's whole pipeline: K trainings for out-of-sample probabilities, then find_label_issues."""
    from sklearn.model_selection import StratifiedKFold

    start = time.perf_counter()
    probs = np.zeros((len(labels), 10))
    for fold, (tr, ho) in enumerate(
        StratifiedKFold(settings.folds, shuffle=True, random_state=0).split(pixels, labels)
    ):
        model = _model(case, pixels[tr], seed=fold)
        train(
            model,
            pixels[tr],
            labels[tr],
            epochs=settings.pipeline_epochs,
            batch_size=settings.grad_batch_size,
            device=device,
        )
        logits = inference_pass(model, pixels[ho], batch_size=settings.batch_size, device=device).astype(np.float64)
        p = np.exp(logits - logits.max(1, keepdims=True))
        probs[ho] = p / p.sum(1, keepdims=True)
    trainings = time.perf_counter() - start
    try:
        from cleanlab.filter import find_label_issues
    except ImportError:
        return {
            "seconds": trainings,
            "note": "cleanlab not installed: the K trainings only (find_label_issues takes well under a second here)",
        }
    find_label_issues(labels=labels, pred_probs=probs, return_indices_ranked_by="self_confidence", n_jobs=1)
    return {"seconds": time.perf_counter() - start, "trainings_seconds": trainings}


def _oga_pipeline(
    case: ModelCase, pixels: np.ndarray, labels: np.ndarray, settings: SpeedSettings, device: torch.device
) -> float:
    """OGA's whole pipeline: one training on all samples, then every last-layer score."""
    from oga_core.detectors import score_columns

    start = time.perf_counter()
    model = _model(case, pixels)
    train(model, pixels, labels, epochs=settings.pipeline_epochs, batch_size=settings.grad_batch_size, device=device)
    score_columns(
        gradient_stats(model, pixels, labels, scope="last", batch_size=settings.batch_size, device=device), labels
    )
    sync(device)
    return time.perf_counter() - start


def measure_case(case: ModelCase, settings: SpeedSettings, device: torch.device) -> dict[str, Any]:
    """Every timing of one model case: ``{"rows": {name: {...}}, "ratios": {...}, "memory": {...}}``."""
    from oga_core.detectors import score_columns

    pixels, labels = synthetic_images(case.n, case.shape, seed=0)
    model = _model(case, pixels)
    # A model that has seen the data (one epoch) so probabilities and norms are not degenerate.
    train(model, pixels, labels, epochs=1, batch_size=settings.grad_batch_size, device=device)
    model.eval()
    bs, gbs, reps = settings.batch_size, settings.grad_batch_size, settings.repeats
    rows: dict[str, dict[str, Any]] = {}

    def last_norms(px: np.ndarray, y: np.ndarray) -> None:
        out = forward_pass(model, px, batch_size=bs, device=device)
        last_layer_norms(out.features, out.logits, y)

    steps = {
        "inference": lambda px, y: inference_pass(model, px, batch_size=bs, device=device),
        "last_norms": last_norms,
        "last_scores": lambda px, y: score_columns(
            gradient_stats(model, px, y, scope="last", batch_size=bs, device=device), y
        ),
        # Each ratio's two steps are measured back to back: a shared machine's speed drifts.
        "train_epoch": lambda px, y: train(copy.deepcopy(model), px, y, epochs=1, batch_size=gbs, device=device),
        "ghost_all": lambda px, y: all_layer_norms(model, px, y, want_l1=False, batch_size=gbs, device=device),
        "all_scores": lambda px, y: score_columns(
            gradient_stats(model, px, y, scope="all", batch_size=2 * gbs, device=device), y
        ),
    }
    for name, step in steps.items():
        if name == "all_scores" and not case.all_scores:
            continue
        n_sub = min(case.n_all or case.n, case.n) if name == "all_scores" else case.n
        px, y = pixels[:n_sub], labels[:n_sub]
        # Warm-up on a slice (at most one batch, a quarter of the measured samples): it pays the
        # one-off costs (allocator, kernel choice, lazy imports) without doubling the run.
        warm = min(bs, max(2, n_sub // 4))
        timing = timed(
            lambda step=step, px=px, y=y: step(px, y),
            device,
            repeats=reps,
            warmup=lambda step=step, px=px, y=y, warm=warm: step(px[:warm], y[:warm]),
        )
        rows[name] = {**timing.as_dict(), "n": case.n}
        if n_sub < case.n:  # linear in n: scale like the references
            rows[name].update(
                seconds=timing.seconds * case.n / n_sub, measured_seconds=timing.seconds, measured_on=n_sub
            )
        log(f"speed {device.type} {case.model} {name}: {timing.seconds:.3f} s on {n_sub} samples")

    # Each reference is paired with OGA's counterpart timed right after it on the same samples, so
    # the speed-up does not depend on how the machine's speed drifted since the step rows above.
    counterpart = {"last": steps["last_norms"], "all": steps["ghost_all"]}
    refs = {
        "loop_all": (lambda m, x, y: per_sample_gradients_loop(m, x, y), case.n_loop, case.n_loop),
        "loop_last": (lambda m, x, y: per_sample_gradients_loop(m, x, y, only_head=True), case.n_loop, case.n_loop),
        "vmap_all": (lambda m, x, y: per_sample_gradients_vmap(m, x, y), case.n_vmap, case.vmap_chunk),
        "vmap_last": (lambda m, x, y: per_sample_gradients_vmap(m, x, y, only_head=True), case.n_vmap, case.vmap_chunk),
    }
    for name, (fn, n_ref, chunk) in refs.items():
        n_ref = min(n_ref, case.n)
        try:
            seconds = _reference_seconds(fn, model, pixels, labels, n_ref, chunk, device)
        except (RuntimeError, MemoryError) as exc:  # e.g. vmap out of memory: say so, go on
            rows[name] = {
                "seconds": None,
                "n": case.n,
                "error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}",
            }
            continue
        px, y = pixels[:n_ref], labels[:n_ref]
        oga = counterpart[name.split("_")[1]]
        paired = timed(lambda oga=oga, px=px, y=y: oga(px, y), device, repeats=reps)
        rows[name] = {
            "seconds": seconds * case.n / n_ref,
            "measured_seconds": seconds,
            "measured_on": n_ref,
            "oga_seconds_same_samples": paired.seconds,
            "n": case.n,
        }
        log(f"speed {device.type} {case.model} {name}: {seconds:.2f} s on {n_ref} samples")

    if case.pipelines:
        rows["oga_pipeline"] = {
            "seconds": _oga_pipeline(case, pixels, labels, settings, device),
            "n": case.n,
            "epochs": settings.pipeline_epochs,
        }
        rows["cleanlab_pipeline"] = {
            **_cleanlab_pipeline(case, pixels, labels, settings, device),
            "n": case.n,
            "epochs": settings.pipeline_epochs,
        }
        log(
            f"speed {device.type} {case.model} pipelines: oga {rows['oga_pipeline']['seconds']:.1f} s, "
            f"cleanlab {rows['cleanlab_pipeline']['seconds']:.1f} s"
        )

    memory = {}
    if settings.memory_models is None or case.model in settings.memory_models:
        memory = {kind: measure_memory(case, kind, settings, device) for kind in settings.memory_kinds}
    return {"case": asdict(case), "rows": rows, "ratios": case_ratios(rows, memory), "memory": memory}


def case_ratios(rows: dict[str, dict[str, Any]], memory: dict[str, dict[str, Any]]) -> dict[str, float | None]:
    """The headline ratios of one case (time ratios < 1 and speed-ups > 1 favour OGA)."""

    def s(name: str) -> float | None:
        return rows.get(name, {}).get("seconds")

    def speedup(reference: str, oga: str) -> float | None:
        """Paired on the same samples when measured so (see ``measure_case``), else from the rows."""
        row = rows.get(reference, {})
        if row.get("oga_seconds_same_samples") is not None:
            return ratio(row.get("measured_seconds"), row["oga_seconds_same_samples"])
        return ratio(s(reference), s(oga))

    def mem(name: str) -> float | None:
        return memory.get(name, {}).get("extra_mib")

    return {
        "last_norms_over_inference": ratio(s("last_norms"), s("inference")),
        "last_scores_over_inference": ratio(s("last_scores"), s("inference")),
        "ghost_all_over_train_epoch": ratio(s("ghost_all"), s("train_epoch")),
        "all_scores_over_train_epoch": ratio(s("all_scores"), s("train_epoch")),
        "ghost_all_memory_over_train_epoch": ratio(mem("ghost_all"), mem("train_epoch")),
        "speedup_last_vs_loop": speedup("loop_last", "last_norms"),
        "speedup_last_vs_vmap": speedup("vmap_last", "last_norms"),
        "speedup_ghost_vs_loop": speedup("loop_all", "ghost_all"),
        "speedup_ghost_vs_vmap": speedup("vmap_all", "ghost_all"),
        "speedup_pipeline_vs_cleanlab": ratio(s("cleanlab_pipeline"), s("oga_pipeline")),
        "speedup_scoring_vs_cleanlab": ratio(s("cleanlab_pipeline"), s("last_scores")),
    }


# -- memory ------------------------------------------------------------------------------------
def measure_memory(case: ModelCase, kind: str, settings: SpeedSettings, device: torch.device) -> dict[str, Any]:
    """Extra memory of one step (``MEMORY_KINDS``) over the set-up (model + data) that precedes it.

    CPU: a fresh Python process per measurement, so one step's peak is not hidden by an earlier
    one. CUDA: in this process, with the peak counter reset.
    """
    if device.type == "cuda":
        return _memory_step(case, kind, settings, device)
    spec = {
        "case": asdict(case),
        "kind": kind,
        "settings": {"batch_size": settings.batch_size, "grad_batch_size": settings.grad_batch_size},
        "threads": torch.get_num_threads(),
    }
    cmd = [sys.executable, "-m", "oga_core.bench.speed", "probe", json.dumps(spec)]
    try:
        done = subprocess.run(
            cmd, capture_output=True, text=True, timeout=1800, env={**os.environ, "OGA_THREADS": str(spec["threads"])}
        )
    except subprocess.TimeoutExpired:
        return {"error": "timed out"}
    if done.returncode != 0:
        return {"error": (done.stderr.strip().splitlines() or ["failed"])[-1][:300]}
    result = json.loads(done.stdout.strip().splitlines()[-1])
    log(f"memory {device.type} {case.model} {kind}: +{result.get('extra_mib')} MiB")
    return result


def _memory_step(case: ModelCase, kind: str, settings: SpeedSettings, device: torch.device) -> dict[str, Any]:
    """Set up (data, model on ``device``), then measure ``kind``'s extra peak memory."""
    pixels, labels = synthetic_images(case.n, case.shape, seed=0)
    model = _model(case, pixels).to(device)
    bs, gbs = settings.batch_size, settings.grad_batch_size
    steps = {
        "train_epoch": lambda: train(model, pixels, labels, epochs=1, batch_size=gbs, device=device),
        "ghost_all": lambda: all_layer_norms(model, pixels, labels, want_l1=False, batch_size=gbs, device=device),
        "inference": lambda: inference_pass(model, pixels, batch_size=bs, device=device),
        "last_norms": lambda: last_layer_norms(*_features_logits(model, pixels, bs, device), labels),
    }
    with peak_memory(device) as mem:
        steps[kind]()
    return {**mem, "how": "max_memory_allocated" if device.type == "cuda" else "peak RSS of a fresh process"}


def _features_logits(
    model: Classifier, pixels: np.ndarray, bs: int, device: torch.device
) -> tuple[np.ndarray, np.ndarray]:
    out = forward_pass(model, pixels, batch_size=bs, device=device)
    return out.features, out.logits


def _probe_main(spec_text: str) -> None:
    """Child process of :func:`measure_memory`: one step, its memory as one JSON line on stdout."""
    spec = json.loads(spec_text)
    torch.set_num_threads(int(spec["threads"]))
    case = ModelCase(**{**spec["case"], "shape": tuple(spec["case"]["shape"])})
    settings = SpeedSettings(**spec["settings"])
    print(json.dumps(_memory_step(case, spec["kind"], settings, torch.device("cpu"))))


# -- the cache -------------------------------------------------------------------------------
@contextmanager
def _temporary_home() -> Iterator[Path]:
    """A throw-away OGA_HOME, so the bench neither reads nor pollutes the person's cache."""
    old = os.environ.get("OGA_HOME")
    with tempfile.TemporaryDirectory(prefix="oga-bench-") as home:
        os.environ["OGA_HOME"] = home
        try:
            yield Path(home)
        finally:
            if old is None:
                os.environ.pop("OGA_HOME", None)
            else:
                os.environ["OGA_HOME"] = old


def measure_cache(settings: SpeedSettings, device: torch.device) -> dict[str, Any]:
    """Seconds of a cold ``analyze``, an identical second one (cache hit), and a detector change
    (in memory with ``Analysis.rescore``; from the disk cache with a new ``analyze``)."""
    import dataclasses

    try:
        from oga_core.config import AnalysisConfig
        from oga_core.pipeline import analyze
    except ImportError as exc:
        return {"error": f"pipeline unavailable: {exc}"}
    data = settings.cache_data
    with _temporary_home():
        for candidate in (data, "demo:digits"):
            config = AnalysisConfig(
                data=candidate, noise=0.2, epochs=settings.cache_epochs, device=device.type, detector="l1"
            )
            try:
                start = time.perf_counter()
                first = analyze(config)
                cold = time.perf_counter() - start
                data = candidate
                break
            except Exception as exc:  # e.g. mlxtend or pyarrow missing on a bare GPU machine
                error = f"{type(exc).__name__}: {exc}"
                log(f"cache part: {candidate} failed ({error})")
        else:
            return {"error": error}
        start = time.perf_counter()
        second = analyze(config)
        hit = time.perf_counter() - start
        start = time.perf_counter()
        first.rescore(detector="iforest")
        rescore = time.perf_counter() - start
        start = time.perf_counter()
        analyze(dataclasses.replace(config, detector="iforest"))
        new_detector = time.perf_counter() - start
    out = {
        "data": data,
        "n": int(len(first.dataset)),
        "epochs": config.resolved_epochs(),
        "cold_seconds": cold,
        "hit_seconds": hit,
        "rescore_seconds": rescore,
        "detector_change_seconds": new_detector,
        "hit_stages": second.run["cache_hits"],
        "cold_timings": first.run["timings"],
    }
    log(f"cache: cold {cold:.1f} s, hit {hit:.2f} s, rescore {rescore:.3f} s, new detector {new_detector:.2f} s")
    return out


def run_speed(settings: SpeedSettings, device: torch.device) -> dict[str, Any]:
    """The speed part on one device: ``{"machine", "measured_at", "settings", "models": {...}, "cache"}``."""
    part: dict[str, Any] = {
        "machine": machine_info(device),
        "measured_at": now_iso(),
        "settings": asdict(settings),
        "models": {},
    }
    for case in settings.cases:
        part["models"][case.model] = measure_case(case, settings, device)
    part["cache"] = measure_cache(settings, device)
    return part


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "probe":
        _probe_main(sys.argv[2])
    else:
        print(
            "usage: python -m oga_core.bench.speed probe SPEC_JSON (internal: one memory measurement)", file=sys.stderr
        )
        raise SystemExit(2)
