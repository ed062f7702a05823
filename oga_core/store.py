"""The on-disk cache of analysis steps, and where oga keeps its files.

Layout under the app home (``$OGA_HOME``, default ``~/.oga``)::

    cache/<step>/<key>/...       one folder per computed step; key = hash of all its inputs
    workspaces/<data id>/        per data set: decisions.sqlite, the latest analysis

An entry is written into a temporary folder and renamed into place, so a crash mid-write leaves
no half entry: a later run either finds the whole result or recomputes it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np


def oga_home() -> Path:
    """``$OGA_HOME`` or ``~/.oga``."""
    return Path(os.environ.get("OGA_HOME") or Path.home() / ".oga").expanduser()


def cache_key(**parts: object) -> str:
    """A short hex digest of JSON-serialisable ``parts`` (order of keywords does not matter)."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.blake2b(text.encode(), digest_size=12).hexdigest()


class Cache:
    """Step results keyed by content hash: ``get`` returns a folder, ``entry`` writes one."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = Path(root) if root is not None else oga_home() / "cache"

    def path(self, step: str, key: str) -> Path:
        return self.root / step / key

    def get(self, step: str, key: str) -> Path | None:
        """The folder of a complete entry, or None."""
        path = self.path(step, key)
        return path if (path / ".complete").is_file() else None

    @contextmanager
    def entry(self, step: str, key: str) -> Iterator[Path]:
        """Yield a fresh folder to fill; it becomes the entry only if the block ends cleanly."""
        final = self.path(step, key)
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=final.parent))
        try:
            yield tmp
            (tmp / ".complete").touch()
            if final.exists():  # an incomplete leftover, or a racing writer's equal result
                shutil.rmtree(final, ignore_errors=True)
            try:
                os.replace(tmp, final)
            except OSError:
                if not (final / ".complete").is_file():
                    raise
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)

    def clear(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


def save_arrays(folder: Path, **arrays: np.ndarray | None) -> None:
    """One ``.npy`` per array (None values are skipped); loadable with memory mapping."""
    for name, arr in arrays.items():
        if arr is not None:
            np.save(folder / f"{name}.npy", np.asarray(arr), allow_pickle=False)


def load_array(folder: Path, name: str, *, mmap: bool = False) -> np.ndarray | None:
    path = folder / f"{name}.npy"
    if not path.is_file():
        return None
    return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)


def write_json(path: Path, obj: object) -> None:
    """Write JSON atomically (temp file + rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=_json_default))
    os.replace(tmp, path)


def read_json(path: Path) -> dict:
    return json.loads(Path(path).read_text())


def _json_default(obj: object) -> object:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
