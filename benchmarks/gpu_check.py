"""Correctness of the engine on a CUDA GPU: the checks the CPU test suite makes, run on the device.

    PYTHONPATH=. python3 benchmarks/gpu_check.py [OUT.json]

1. Last-layer closed form and all-layer norms (materialised and ghost) against torch.func
   per-sample gradients, on small_cnn and resnet18 (3x32x32), computed on the GPU.
2. ``analyze`` on demo:digits with 20% noise on cuda, last and all scopes: AUROC of every score
   against the flipped labels, next to the same run on the CPU (same seed).

Needs torch, numpy, pandas, scikit-learn and pyarrow (all on the lent H200 image); no mlxtend,
umap or cleanlab. Prints one JSON object and writes it to OUT.json when given.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time

import numpy as np
import torch


def gradient_agreement(device: torch.device) -> dict[str, float]:
    from oga_core.gradients import all_layer_norms, forward_pass, last_layer_norms, norms_of, per_sample_gradients_vmap
    from oga_core.models import build_model

    out: dict[str, float] = {}
    for name, channels, size in (("small_cnn", 1, 16), ("resnet18", 3, 32)):
        model = build_model(name, num_classes=10, in_channels=channels, image_size=size, seed=0)
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):  # non-trivial running stats
                module.running_mean.normal_(0, 0.1)
                module.running_var.uniform_(0.5, 1.5)
        model.to(device).eval()
        rng = np.random.default_rng(0)
        pixels = rng.integers(0, 256, (16, channels, size, size), dtype=np.uint8)
        labels = rng.integers(0, 10, 16)
        x = torch.from_numpy(pixels).float().div(255).to(device)
        y = torch.from_numpy(labels).to(device)
        ref_l1, ref_l2 = (t.double().cpu().numpy() for t in norms_of(per_sample_gradients_vmap(model, x, y)))
        full = all_layer_norms(model, pixels, labels, batch_size=8, device=device)
        ghost = all_layer_norms(model, pixels, labels, want_l1=False, batch_size=8, device=device)
        head_l1, head_l2 = (
            t.double().cpu().numpy() for t in norms_of(per_sample_gradients_vmap(model, x, y, only_head=True))
        )
        fwd = forward_pass(model, pixels, device=device)
        l1, l2 = last_layer_norms(fwd.features, fwd.logits, labels)
        out[f"{name}_all_l2_rel_err"] = float(np.max(np.abs(full.l2 - ref_l2) / ref_l2))
        out[f"{name}_all_l1_rel_err"] = float(np.max(np.abs(full.l1 - ref_l1) / ref_l1))
        out[f"{name}_ghost_l2_rel_err"] = float(np.max(np.abs(ghost.l2 - ref_l2) / ref_l2))
        out[f"{name}_last_l2_rel_err"] = float(np.max(np.abs(l2 - head_l2) / head_l2))
        out[f"{name}_last_l1_rel_err"] = float(np.max(np.abs(l1 - head_l1) / head_l1))
    return out


def digits_runs() -> dict[str, dict]:
    from oga_core.config import AnalysisConfig
    from oga_core.evaluate import detection_metrics
    from oga_core.pipeline import analyze
    from oga_core.store import Cache

    runs = {}
    for device in ("cuda", "cpu"):
        for scope in ("last", "all"):
            config = AnalysisConfig(data="demo:digits", noise=0.2, seed=0, scope=scope, device=device)
            start = time.perf_counter()
            analysis = analyze(config, cache=Cache(tempfile.mkdtemp()))
            seconds = time.perf_counter() - start
            metrics = detection_metrics(analysis.scores, analysis.noise.noisy)
            runs[f"{device}_{scope}"] = {
                "seconds": round(seconds, 2),
                "timings": analysis.run["timings"],
                "train_accuracy_clean_labels": round(analysis.run["train_accuracy_clean_labels"], 4),
                "auroc": {r.score: round(float(r.auroc), 4) for r in metrics.itertuples()},
            }
    return runs


def main() -> None:
    if not torch.cuda.is_available():
        raise SystemExit("gpu_check: no CUDA device")
    device = torch.device("cuda")
    report = {
        "gpu": torch.cuda.get_device_name(0),
        "torch": torch.__version__,
        "gradients_vs_torch_func": gradient_agreement(device),
        "digits": digits_runs(),
    }
    text = json.dumps(report, indent=2)
    print(text)
    if len(sys.argv) > 1:
        with open(sys.argv[1], "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
