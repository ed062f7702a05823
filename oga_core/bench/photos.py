"""The colour data of the photo benchmark: real CIFAR-10 photos read from the project's shared
data (never copied into the repository), the emoji demo, and their human-like label flips.

``photos:cifar10-3k`` names 3,000 CIFAR-10 test photos (300 per class, 32 px JPEG) from the
tarball ``cifar10-test-3k.tar.gz``, looked for at ``$OGA_PHOTOS`` or in ``shared/data/`` beside
the checkout; it is unpacked once (safely: no links, no paths out of the folder) under
``$OGA_HOME/bench-data/`` and analysed as a ``folder:`` source.
"""

from __future__ import annotations

import os
import shutil
import tarfile
import tempfile
from pathlib import Path

import numpy as np

from oga_core.errors import DataError
from oga_core.store import oga_home

CIFAR_ALIAS = "photos:cifar10-3k"
CIFAR_TARBALL = "cifar10-test-3k.tar.gz"
CIFAR_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
EMOJI_CLASSES = (
    "Activities",
    "Animals & Nature",
    "Flags",
    "Food & Drink",
    "Objects",
    "People & Body",
    "Smileys & Emotion",
    "Symbols",
    "Travel & Places",
)


def _pairs(classes: tuple[str, ...], pairs: dict[str, str]) -> np.ndarray:
    return np.array([classes.index(pairs[c]) for c in classes])


# Human-like noise: each class is flipped to the class people (and models) confuse it with most,
# as in CIFAR-10N's human annotations and the classic CIFAR "asymmetric" noise of Patrini et al.
# 2017 (truck <-> automobile, cat <-> dog, deer <-> horse, ...), not to a uniformly random class.
HUMAN_FLIPS = {
    CIFAR_ALIAS: _pairs(
        CIFAR_CLASSES,
        {
            "airplane": "ship",
            "ship": "airplane",
            "automobile": "truck",
            "truck": "automobile",
            "cat": "dog",
            "dog": "cat",
            "deer": "horse",
            "horse": "deer",
            "bird": "frog",
            "frog": "bird",
        },
    ),
    "demo:emoji": _pairs(
        EMOJI_CLASSES,
        {
            "Smileys & Emotion": "People & Body",
            "People & Body": "Smileys & Emotion",
            "Animals & Nature": "Food & Drink",
            "Food & Drink": "Animals & Nature",
            "Objects": "Activities",
            "Activities": "Objects",
            "Symbols": "Flags",
            "Flags": "Symbols",
            "Travel & Places": "Objects",
        },
    ),
}


def tarball() -> Path:
    """The CIFAR tarball: ``$OGA_PHOTOS``, else ``shared/data/`` beside the checkout; DataError if absent."""
    named = os.environ.get("OGA_PHOTOS")
    candidates = [Path(named)] if named else []
    repo = Path(__file__).resolve().parents[2]
    candidates += [repo.parent / "shared" / "data" / CIFAR_TARBALL, repo / "shared" / "data" / CIFAR_TARBALL]
    for path in candidates:
        if path.is_file():
            return path
    raise DataError(
        f"{CIFAR_ALIAS} needs {CIFAR_TARBALL}: set OGA_PHOTOS to its path (looked in "
        + ", ".join(str(c) for c in candidates)
        + ")"
    )


def cifar_folder() -> Path:
    """The unpacked photos' class folder (``<class>/<NNNN>.jpg``), unpacked on first use."""
    source = tarball()
    target = oga_home() / "bench-data" / "cifar10-test-3k"
    if (target / ".complete").is_file():
        return target / "test"
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".cifar-", dir=target.parent))
    try:
        with tarfile.open(source) as archive:
            members = [m for m in archive.getmembers() if m.isfile() or m.isdir()]  # no links, no devices
            archive.extractall(staging, members=members, filter="data")  # "data": nothing outside staging
        (staging / ".complete").write_text("")
        if target.exists():  # an earlier, interrupted unpacking (no .complete): ours, replace it
            shutil.rmtree(target)
        staging.rename(target)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    if not (target / "test").is_dir():
        raise DataError(f"{source} holds no test/<class>/ folders")
    return target / "test"


def resolve(source: str) -> str:
    """A bench data name as a data source oga reads (``photos:cifar10-3k`` -> ``folder:...``)."""
    if source == CIFAR_ALIAS:
        return f"folder:{cifar_folder()}"
    return source
