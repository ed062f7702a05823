"""Speed and memory: OGA's scoring against what it replaces, as ratios measured in one process,
and the report's section on them.

Per model case (:class:`~oga_core.bench.settings.ModelCase`: the small CNN on 1x28x28 images,
ResNet-18 on 3x32x32; synthetic images, so the CPU and GPU columns see identical data and nothing
beyond torch, numpy, pandas and scikit-learn is needed), on ``n`` samples:

* baselines: one inference pass (``model(x)`` in batches, logits to host) and one training epoch;
* OGA: last-layer L1/L2 (closed form: a forward pass), all last-layer scores (+ Isolation Forest
  and the loss baselines), all-layer ghost norms (``want_l1=False``: pure ghost norms), and the
  product's all-layer path (L1 + count sketch + every score);
* references (:mod:`~oga_core.bench.references`): the paper's per-sample autograd loop and
  ``torch.func.vmap(grad)``, each for all parameters and for the head only, timed on ``n_loop`` /
  ``n_vmap`` samples and scaled to ``n`` (they are linear in n), each paired with OGA's
  counterpart timed right after on the same samples;
* whole pipelines: OGA (one training + last-layer scores) vs cleanlab (``folds`` trainings +
  ``find_label_issues``), the same number of epochs each;
* peak memory of a training epoch and of the ghost-norm pass (:mod:`~oga_core.bench.memory`);
* the cache (:mod:`~oga_core.bench.cache_timing`).

Fast steps: median of ``repeats`` runs after a warm-up run. Slow references and pipelines: one
run after the code paths were warmed by the fast steps.
"""

from __future__ import annotations

import copy
from dataclasses import asdict
from typing import Any

import numpy as np
import torch

from oga_core.bench import verdicts
from oga_core.bench.cache_timing import measure_cache
from oga_core.bench.common import log, machine_info, now_iso, ratio, timed
from oga_core.bench.markdown import fmt_num, fmt_ratio, table
from oga_core.bench.memory import measure_memory
from oga_core.bench.references import cleanlab_pipeline, oga_pipeline, reference_seconds
from oga_core.bench.settings import ModelCase, SpeedSettings
from oga_core.bench.workload import case_data, case_model, inference_pass
from oga_core.detectors import score_columns
from oga_core.gradients import (
    all_layer_norms,
    forward_pass,
    gradient_stats,
    last_layer_norms,
    per_sample_gradients_loop,
    per_sample_gradients_vmap,
)
from oga_core.train import train


# -- measuring -------------------------------------------------------------------------------
def measure_case(case: ModelCase, settings: SpeedSettings, device: torch.device) -> dict[str, Any]:
    """Every timing of one model case: ``{"case", "rows": {name: {...}}, "ratios", "memory"}``;
    a row has ``seconds`` (scaled to ``n``) and, when measured on fewer, ``measured_seconds`` and
    ``measured_on``."""
    pixels, labels = case_data(case)
    model = case_model(case, pixels)
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
            seconds = reference_seconds(fn, model, pixels, labels, n_ref=n_ref, chunk=chunk, device=device)
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
            "seconds": oga_pipeline(case, pixels, labels, settings, device),
            "n": case.n,
            "epochs": settings.pipeline_epochs,
        }
        rows["cleanlab_pipeline"] = {
            **cleanlab_pipeline(case, pixels, labels, settings, device),
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


# -- the report section ----------------------------------------------------------------------
DEVICES = {"cpu": "CPU", "cuda": "GPU (CUDA)"}  # the section's columns, in order
ROWS: list[tuple[str, str, str | None]] = [
    # (label, row key, ratio key shown beside it)
    ("one inference pass (baseline)", "inference", None),
    ("one training epoch (baseline)", "train_epoch", None),
    (
        f"last layer L1 + L2, closed form / inference (goal <= {verdicts.LAST_LAYER_GOAL})",
        "last_norms",
        "last_norms_over_inference",
    ),
    (
        "last layer, every score (+ iForest, loss, el2n, margin) / inference",
        "last_scores",
        "last_scores_over_inference",
    ),
    ("all layers, ghost norms (L2) / training epoch", "ghost_all", "ghost_all_over_train_epoch"),
    (
        "all layers, product path (L1 + sketch + every score) / training epoch",
        "all_scores",
        "all_scores_over_train_epoch",
    ),
    ("per-sample autograd loop, all layers (paper's code): ghost norms' speed-up", "loop_all", "speedup_ghost_vs_loop"),
    ("torch.func vmap, all layers: ghost norms' speed-up", "vmap_all", "speedup_ghost_vs_vmap"),
    ("per-sample autograd loop, last layer: closed form's speed-up", "loop_last", "speedup_last_vs_loop"),
    ("torch.func vmap, last layer: closed form's speed-up", "vmap_last", "speedup_last_vs_vmap"),
    ("OGA pipeline: 1 training + last-layer scores", "oga_pipeline", None),
    (
        "cleanlab pipeline: K trainings on (K-1)/K + find_label_issues: OGA pipeline's speed-up",
        "cleanlab_pipeline",
        "speedup_pipeline_vs_cleanlab",
    ),
    ("  ... and OGA last-layer scoring alone vs the cleanlab pipeline: speed-up", "", "speedup_scoring_vs_cleanlab"),
]


def _cell(part: dict[str, Any] | None, model: str, key: str, ratio_key: str | None) -> str:
    """``1.23 s (scaled from m) · **0.9x**`` for one device, one row."""
    case = None if part is None else part["models"].get(model)
    if case is None:
        return "not measured"
    text = []
    if key:
        r = case["rows"].get(key)
        if r is None:
            return "-"
        if r.get("seconds") is None:
            return f"failed: {r.get('error', '?')}"
        extra = f" (scaled from {r['measured_on']})" if "measured_on" in r else ""
        text.append(f"{fmt_num(r['seconds'])} s{extra}")
    if ratio_key:
        value = case["ratios"].get(ratio_key)
        text.append(f"**{fmt_ratio(value)}**{verdicts.ratio_verdict(ratio_key, value)}")
    return " · ".join(text)


def _memory_cells(part: dict[str, Any] | None, model: str) -> tuple[str, str, str]:
    """(training epoch MiB, ghost norms MiB, their ratio) for one device."""
    if part is None or model not in part["models"]:
        return ("not measured",) * 3  # type: ignore[return-value]
    case = part["models"][model]
    mem = case.get("memory", {})

    def one(kind: str) -> str:
        m = mem.get(kind)
        if m is None:
            return "-"
        if "error" in m:
            return f"failed: {m['error']}"
        return f"{fmt_num(m['extra_mib'])} MiB"

    return (
        one("train_epoch"),
        one("ghost_all"),
        f"**{fmt_ratio(case['ratios'].get('ghost_all_memory_over_train_epoch'))}**",
    )


def _method(st: dict[str, Any], parts: dict[str, dict[str, Any] | None]) -> list[str]:
    """What was measured and how; a line per device that was not measured or measured unpaired."""
    out = [
        "Same process, same data, ratios against a baseline measured right before (the time ratios "
        "are the numbers to compare across machines; seconds are for scale). Synthetic images (learnable "
        "class templates + noise), 10 classes, models trained one epoch first so that scores are not "
        "degenerate. Fast steps: median of "
        f"{st['repeats']} run(s) after a warm-up on a slice. Per-sample references (loop, vmap) run on "
        "the first `m` samples ('scaled from m', seconds scaled linearly to n); their speed-ups are paired: "
        "OGA's counterpart is timed right after each reference on the same `m` samples, so a shared "
        "machine's drift between rows does not enter them. Pipelines: the same "
        f"number of epochs each ({st['pipeline_epochs']}), {st['folds']}-fold cross-validation for cleanlab, "
        "one run each. Time ratios below 1 and speed-ups above 1 favour OGA.",
        "",
    ]
    for d, name in DEVICES.items():
        if parts[d] is None:
            out.append(f"- {name}: not measured in the runs merged into this report.")
        elif not any(
            "oga_seconds_same_samples" in row for case in parts[d]["models"].values() for row in case["rows"].values()
        ):  # a run from before the pairing: its speed-ups divide the rows' seconds
            out.append(
                f"- {name}: measured before the pairing: its reference speed-ups are the ratio of the "
                "rows' seconds as shown."
            )
    return [*out, ""]


def _model_table(model: str, parts: dict[str, dict[str, Any] | None]) -> list[str]:
    """One model's heading, its table (a column per device) and any per-device notes."""
    measured = {d: p for d, p in parts.items() if p and model in p["models"]}
    case = next(iter(measured.values()))["models"][model]
    shape = "x".join(map(str, case["case"]["shape"]))
    ns = ", ".join(f"{DEVICES[d]} n = {p['models'][model]['case']['n']:,}" for d, p in measured.items())
    rows = [[label] + [_cell(parts[d], model, key, rk) for d in DEVICES] for label, key, rk in ROWS]
    mems = {d: _memory_cells(parts[d], model) for d in DEVICES}
    rows.append(["peak extra memory, one training epoch (batch 128)"] + [mems[d][0] for d in DEVICES])
    rows.append(["peak extra memory, all-layer ghost norms (batch 128)"] + [mems[d][1] for d in DEVICES])
    rows.append(["ghost norms' peak memory / training's"] + [mems[d][2] for d in DEVICES])
    out = [f"### `{model}`, {shape} inputs ({ns})", "", table(["measure", *DEVICES.values()], rows), ""]
    for d, p in measured.items():
        note = p["models"][model]["rows"].get("cleanlab_pipeline", {}).get("note")
        if note:
            out += [f"{DEVICES[d]}: {note}", ""]
    return out


def _cache_table(parts: dict[str, dict[str, Any] | None]) -> str:
    rows = []
    for d, name in DEVICES.items():
        c = (parts[d] or {}).get("cache")
        if not c:
            continue
        if "error" in c:
            rows.append([name, f"failed: {c['error']}", "", "", ""])
            continue
        cold = c["cold_seconds"]
        rows.append(
            [
                f"{name}: `{c['data']}`, {c['n']:,} samples, {c['epochs']} epochs, 20% noise",
                f"{fmt_num(cold)} s",
                f"{fmt_num(c['hit_seconds'])} s ({fmt_ratio(c['hit_seconds'] / cold)})",
                f"{fmt_num(c['rescore_seconds'])} s",
                f"{fmt_num(c['detector_change_seconds'])} s ({fmt_ratio(c['detector_change_seconds'] / cold)})",
            ]
        )
    header = [
        "analysis",
        "first (cold)",
        "identical second (cache hit)",
        "detector change, in memory (`rescore`)",
        "detector change, new `analyze` (from cache)",
    ]
    return table(header, rows)


def render(speed: dict[str, dict[str, Any]] | None) -> str:
    """The "Speed and memory" section from ``{device type: speed part}``."""
    if not speed:
        return "## Speed and memory\n\nNot measured in this run.\n"
    parts = {d: speed.get(d) for d in DEVICES}
    some = next(p for p in parts.values() if p is not None)
    out = ["## Speed and memory", "", *_method(some["settings"], parts)]
    for model in dict.fromkeys(m for p in parts.values() if p for m in p["models"]):
        out += _model_table(model, parts)
    out += [
        "Memory: CPU = peak resident set of a fresh process doing only that step, minus its resident "
        "set after loading the model and data; GPU = `torch.cuda.max_memory_allocated` minus the "
        "allocation before the step.",
        "",
        "### The cache: a second identical analysis and a change of detector",
        "",
        _cache_table(parts),
        "",
        "### Where OGA does not win (speed, computed)",
        "",
        *verdicts.speed_losses({d: p for d, p in parts.items() if p}),
        "",
    ]
    return "\n".join(out)


# -- README ----------------------------------------------------------------------------------
def headline(speed: dict[str, dict[str, Any]] | None) -> list[str]:
    """README's speed lines: per device and model the main ratios, then the cache."""
    lines = []
    for device, sp in (speed or {}).items():
        for model, case in sp["models"].items():
            r = case["ratios"]
            lines.append(
                f"- Speed, {device}, `{model}`: last-layer scoring = {fmt_ratio(r.get('last_norms_over_inference'))} an "
                f"inference pass; all-layer ghost norms = {fmt_ratio(r.get('ghost_all_over_train_epoch'))} a training "
                f"epoch; {fmt_ratio(r.get('speedup_ghost_vs_loop'))} faster than the per-sample loop, "
                f"{fmt_ratio(r.get('speedup_ghost_vs_vmap'))} than vmap; whole pipeline "
                f"{fmt_ratio(r.get('speedup_pipeline_vs_cleanlab'))} faster than cleanlab's."
            )
        c = sp.get("cache")
        if c and "error" not in c:
            lines.append(
                f"- Cache, {device}: a second identical analysis {fmt_num(c['hit_seconds'])} s (first: "
                f"{fmt_num(c['cold_seconds'])} s); a change of detector {fmt_num(c['rescore_seconds'])} s."
            )
    return lines
