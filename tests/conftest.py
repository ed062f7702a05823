"""Shared test set-up: an isolated app home, deliberate thread counts, small real data."""

from __future__ import annotations

import os
import zlib

import numpy as np
import pytest
import torch

# CI runs pytest beside a Streamlit server and a browser on 2 cores; two processes each spinning
# 2 OpenMP threads ran small ops 25-170x slower (docs/architecture.md, "Threads"). One thread per process.
torch.set_num_threads(1)
os.environ.setdefault("OGA_THREADS", "1")
# The app starts Explore's UMAP map in the background after every analysis; in AppTest runs that is a
# UMAP fit per analysis competing for the cores. The browser tests turn it back on for their server.
os.environ.setdefault("OGA_PREFETCH_MAP", "0")


@pytest.fixture(autouse=True, scope="session")
def _isolated_home(tmp_path_factory: pytest.TempPathFactory):
    """Every test session gets its own OGA_HOME, so tests never read or write ~/.oga."""
    home = tmp_path_factory.mktemp("oga_home")
    old = os.environ.get("OGA_HOME")
    os.environ["OGA_HOME"] = str(home)
    yield home
    if old is None:
        os.environ.pop("OGA_HOME", None)
    else:
        os.environ["OGA_HOME"] = old


# -- engine fixtures (tests/test_<module>.py for oga_core/<module>.py) ------------------------
DIGITS_NOISE = 0.2
DIGITS_SEED = 0


def write_image(path, rng, *, size: int = 8, mode: str = "RGB"):
    """A random ``size`` x ``size`` PNG (or any format PIL infers from the suffix) at ``path``."""
    import numpy as np
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    shape = (size, size) if mode == "L" else (size, size, 3)
    Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode=mode).save(path)
    return path


@pytest.fixture
def make_images():
    """``make(root, {"cat": 3, "dog": 2}, size=8, mode="RGB", seed=None)`` writes
    ``root/<class>/<class>_<i>.png`` with distinct random pixels and returns ``root``."""
    import numpy as np

    def make(root, counts: dict[str, int], *, size: int = 8, mode: str = "RGB", seed: int | None = None):
        # By default the pixels depend on the folder's path: two tests never share a data id (and so
        # a workspace and its decisions) under the session's app home by accident.
        rng = np.random.default_rng(zlib.crc32(str(root).encode()) if seed is None else seed)
        for name, n in counts.items():
            for i in range(n):
                write_image(root / name / f"{name}_{i}.png", rng, size=size, mode=mode)
        return root

    return make


@pytest.fixture(scope="session")
def digits_config(_isolated_home):
    from oga_core.config import AnalysisConfig

    return AnalysisConfig(data="demo:digits", noise=DIGITS_NOISE, seed=DIGITS_SEED)


@pytest.fixture(scope="session")
def digits_analysis(digits_config):
    """The one trained analysis the engine tests share: small CNN, 12 epochs, digits with 20%
    symmetric label noise (seed 0); ~10 s on one core. Later analyze calls of the same data hit
    its cache entries under the session's OGA_HOME."""
    from oga_core.pipeline import analyze

    return analyze(digits_config)


@pytest.fixture(scope="session")
def cifar_photos(_isolated_home):
    """The shared real CIFAR-10 photos (``photos:cifar10-3k``), as uint8 (N, 3, 32, 32) and labels."""
    from oga_core.bench import photos
    from oga_core.data import load_source

    # The project's shared data lies beside every checkout, CI's included: missing, it is a failure.
    dataset = load_source(photos.resolve(photos.CIFAR_ALIAS))
    return np.asarray(dataset.decode().pixels), dataset.labels


# -- app fixtures (tests/test_app*.py, tests/test_hostile_input.py) ---------------------------
@pytest.fixture(scope="session")
def demo(_isolated_home):
    """The app's default demo analysis, trained once into the session's cache (~15 s on 2 cores)."""
    from oga_app.state import DEFAULT_CONFIG
    from oga_core.pipeline import analyze

    return analyze(DEFAULT_CONFIG)


@pytest.fixture
def home(tmp_path, demo, monkeypatch: pytest.MonkeyPatch):
    """A fresh app home for one test, sharing the trained models through its cache folder."""
    path = tmp_path / "home"
    path.mkdir()
    (path / "cache").symlink_to(demo.cache.root, target_is_directory=True)
    monkeypatch.setenv("OGA_HOME", str(path))
    return path
