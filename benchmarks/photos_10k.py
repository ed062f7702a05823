"""Wall time of one analysis of 10,000 32-px colour photos, from scratch and with the frozen ImageNet
backbone, beside cleanlab's 5-fold pipeline on the same model, in one process.

    python benchmarks/photos_10k.py [--quick] [--device cpu] [--json photos_10k.json]

The photos: the 3,000 real CIFAR-10 photos of the project's shared data (``$OGA_PHOTOS`` or
``shared/data/`` beside the checkout; never copied into the repository) and 7,000 copies of them
shifted by up to 3 px (reflected at the border) or mirrored, written as PNG files to a temporary
folder and analysed as ``folder:``, 20% pair flips. Each path starts from an empty cache (its own
``$OGA_HOME``): decoding, the backbone's pass and training are all paid. cleanlab's pipeline:
``folds`` trainings of the same model and recipe (or linear heads on the same backbone's features,
whose pass it pays too), out-of-sample probabilities, ``find_label_issues``; its AUROC is that of
its normalised-margin ranking (its stronger one). ``--quick``: 1,000 photos, 3 folds. Prints a
markdown table with the ratios.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

from _common import parse, save


def make_photos(root: Path, total: int) -> Path:
    """``root/<class>/<id>.png``: the CIFAR photos and shifted or mirrored copies, ``total`` in all."""
    import numpy as np
    from PIL import Image

    from oga_core.bench import photos

    source = photos.cifar_folder()
    files = sorted(p for p in source.rglob("*.jpg"))
    rng = np.random.default_rng(0)
    for i in range(total):
        path = files[i % len(files)]
        image = np.asarray(Image.open(path).convert("RGB"))
        if i >= len(files):  # a copy: shifted by up to 3 px (reflected), or mirrored
            if rng.random() < 0.5:
                image = image[:, ::-1]
            dy, dx = rng.integers(-3, 4, 2)
            padded = np.pad(image, ((3, 3), (3, 3), (0, 0)), mode="reflect")
            image = padded[3 + dy : 3 + dy + image.shape[0], 3 + dx : 3 + dx + image.shape[1]]
        target = root / path.parent.name / f"{i:05d}.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.ascontiguousarray(image)).save(target)
    return root


def fresh_home(base: Path, name: str) -> None:
    """An empty ``$OGA_HOME`` for the next path, so nothing is served from a cache."""
    home = base / name
    home.mkdir(parents=True, exist_ok=True)
    os.environ["OGA_HOME"] = str(home)


def oga_path(data: str, *, device: str, **model: object) -> dict:
    from sklearn.metrics import roc_auc_score

    from oga_core.config import AnalysisConfig
    from oga_core.pipeline import analyze

    config = AnalysisConfig(data=data, noise=0.2, noise_kind="pair", device=device, **model)
    start = time.perf_counter()
    analysis = analyze(config)
    wall = time.perf_counter() - start
    return {
        "seconds": round(wall, 1),
        "timings": analysis.run["timings"],
        "epochs": analysis.run["epochs"],
        "model": analysis.config.model,
        "auroc": round(float(roc_auc_score(analysis.noise.noisy, analysis.scores["score"])), 4),
        "holdout_accuracy": analysis.run["holdout_accuracy"],
    }


def cleanlab_path(data: str, *, device: str, folds: int, frozen: bool) -> dict:
    """cleanlab's pipeline on the same model: K-fold out-of-sample probabilities, then
    ``find_label_issues``; with ``frozen`` the backbone's pass over the photos is paid first."""
    import numpy as np
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores
    from sklearn.metrics import roc_auc_score

    from oga_core.bench.settings import QualitySettings
    from oga_core.bench.training import cross_val_probs
    from oga_core.config import AnalysisConfig
    from oga_core.gradients import forward_pass
    from oga_core.models import build_model, load_weights, pretrained_weights
    from oga_core.pipeline import load_data
    from oga_core.store import Cache
    from oga_core.train import resolve_device

    dev = resolve_device(device)
    model = "efficientnet_lite0" if frozen else "auto"
    config = AnalysisConfig(data=data, noise=0.2, noise_kind="pair", model=model, pretrained=frozen)
    start = time.perf_counter()
    loaded = load_data(config, Cache())
    inputs = np.asarray(loaded.pixels)
    if frozen:
        backbone = build_model(model, num_classes=loaded.dataset.num_classes, in_channels=3, image_size=inputs.shape[2])
        load_weights(backbone, pretrained_weights(model), pretrained=True)
        inputs = forward_pass(backbone.eval(), inputs, device=dev).features
    given = loaded.dataset.labels
    probs = cross_val_probs(
        QualitySettings(model="auto", folds=folds),
        inputs,
        given,
        classes=loaded.dataset.num_classes,
        seed=0,
        device=dev,
    )
    issues = find_label_issues(given, probs, return_indices_ranked_by="normalized_margin")
    wall = time.perf_counter() - start
    quality = get_label_quality_scores(given, probs, method="normalized_margin")  # its stronger ranking
    return {
        "seconds": round(wall, 1),
        "flagged": int(len(issues)),
        "auroc": round(float(roc_auc_score(loaded.noise.noisy, 1.0 - quality)), 4),
    }


if __name__ == "__main__":
    args = parse(__doc__.splitlines()[0])
    total, folds = (1_000, 3) if args.quick else (10_000, 5)
    scratch = Path(tempfile.mkdtemp(prefix="oga-photos-10k-"))
    try:
        fresh_home(scratch, "home-data")
        root = make_photos(scratch / "photos", total)
        data = f"folder:{root}"
        part: dict = {"photos": total, "folds": folds}
        fresh_home(scratch, "home-scratch")
        part["oga_scratch"] = oga_path(data, device=args.device)
        fresh_home(scratch, "home-frozen")
        part["oga_frozen"] = oga_path(data, device=args.device, model="efficientnet_lite0", pretrained=True)
        fresh_home(scratch, "home-cleanlab-frozen")
        part["cleanlab_frozen"] = cleanlab_path(data, device=args.device, folds=folds, frozen=True)
        fresh_home(scratch, "home-cleanlab-scratch")
        part["cleanlab_scratch"] = cleanlab_path(data, device=args.device, folds=folds, frozen=False)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    save(part, args.json)
    rows = [
        ("oga, from scratch (`photo_resnet`)", part["oga_scratch"], part["cleanlab_scratch"]),
        (
            "oga, frozen ImageNet backbone (`efficientnet_lite0 --pretrained`)",
            part["oga_frozen"],
            part["cleanlab_frozen"],
        ),
        (f"cleanlab, {folds}-fold on `photo_resnet`", part["cleanlab_scratch"], None),
        (f"cleanlab, {folds}-fold on the frozen backbone's features", part["cleanlab_frozen"], None),
    ]
    print(f"| path ({total:,} photos, 20% pair flips) | wall s | AUROC | x cleanlab's time on the same model |")
    print("|---|---:|---:|---:|")
    for name, result, base in rows:
        ratio = f"{result['seconds'] / base['seconds']:.2f}x" if base else ""
        print(f"| {name} | {result['seconds']:.1f} | {result['auroc']:.3f} | {ratio} |")
