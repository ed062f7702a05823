"""Peak memory of one step of a speed case, over the set-up (model + data) that precedes it.

CPU: a fresh Python process per measurement (``python -m oga_core.bench.memory probe SPEC``), so
one step's peak is not hidden by an earlier one; peak RSS above the RSS after set-up, MiB. CUDA:
in this process, ``max_memory_allocated`` above the allocation before, MiB.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import asdict
from typing import Any

import numpy as np
import torch

from oga_core.bench.common import child_env, log, peak_memory
from oga_core.bench.settings import ModelCase, SpeedSettings
from oga_core.bench.workload import case_data, case_model, inference_pass
from oga_core.gradients import all_layer_norms, forward_pass, last_layer_norms
from oga_core.models import Classifier
from oga_core.train import train


def measure_memory(case: ModelCase, kind: str, settings: SpeedSettings, device: torch.device) -> dict[str, Any]:
    """Extra memory of step ``kind`` (one of ``oga_core.bench.settings.MEMORY_KINDS``):
    ``{"base_mib", "peak_mib", "extra_mib", "how"}``, or ``{"error"}``."""
    if device.type == "cuda":
        return memory_step(case, kind, settings, device)
    spec = {
        "case": asdict(case),
        "kind": kind,
        "settings": {"batch_size": settings.batch_size, "grad_batch_size": settings.grad_batch_size},
        "threads": torch.get_num_threads(),
    }
    cmd = [sys.executable, "-m", "oga_core.bench.memory", "probe", json.dumps(spec)]
    try:
        done = subprocess.run(
            cmd, capture_output=True, text=True, timeout=1800, env=child_env(OGA_THREADS=str(spec["threads"]))
        )
    except subprocess.TimeoutExpired:
        return {"error": "timed out"}
    if done.returncode != 0:
        return {"error": (done.stderr.strip().splitlines() or ["failed"])[-1][:300]}
    result = json.loads(done.stdout.strip().splitlines()[-1])
    log(f"memory {device.type} {case.model} {kind}: +{result.get('extra_mib')} MiB")
    return result


def memory_step(case: ModelCase, kind: str, settings: SpeedSettings, device: torch.device) -> dict[str, Any]:
    """Set up (data, model on ``device``), then measure ``kind``'s extra peak memory."""
    pixels, labels = case_data(case)
    model = case_model(case, pixels).to(device)
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
    print(json.dumps(memory_step(case, spec["kind"], settings, torch.device("cpu"))))


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "probe":
        _probe_main(sys.argv[2])
    else:
        print(
            "usage: python -m oga_core.bench.memory probe SPEC_JSON (internal: one memory measurement)", file=sys.stderr
        )
        raise SystemExit(2)
