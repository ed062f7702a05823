"""The on-disk cache of analysis steps, and where oga keeps its files.

Layout under the app home (``$OGA_HOME``, default ``~/.oga``; docs/architecture.md, "Files")::

    cache/<step>/<key>/...       one folder per computed step; key = hash of all its inputs
    workspaces/<data id>/        per data set: decisions.sqlite, the latest analysis
    uploads/                     archives and checkpoints uploaded in the app

An entry is written into a temporary folder, every file synced to disk, and the folder renamed
into place with a ``.complete`` marker, so a crash mid-write leaves no half entry. An entry that
is complete but cannot be read (a truncated file, a disk error) is dropped and recomputed by
:meth:`Cache.load`, with a one-line notice: the cache heals itself, and nothing in it is ever
the only copy of a person's work.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import numpy as np

from oga_core.errors import OgaError
from oga_core.files import atomic_write_text, fsync_path
from oga_core.progress import LOG

T = TypeVar("T")


def oga_home() -> Path:
    """``$OGA_HOME`` or ``~/.oga``."""
    return Path(os.environ.get("OGA_HOME") or Path.home() / ".oga").expanduser()


def check_home() -> Path:
    """The app home, if it is usable: OgaError (one line) when ``$OGA_HOME`` names a file."""
    home = oga_home()
    if home.exists() and not home.is_dir():
        raise OgaError(f"oga's home {home} ($OGA_HOME) is not a folder; point OGA_HOME at a folder")
    return home


def cache_key(**parts: object) -> str:
    """A short hex digest of JSON-serialisable ``parts`` (order of keywords does not matter)."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.blake2b(text.encode(), digest_size=12).hexdigest()


class Cache:
    """Step results keyed by content hash: ``load`` reads one (or says it is missing), ``entry``
    writes one."""

    def __init__(
        self, root: Path | None = None, *, notice: Callable[[str], None] | None = None, writable: bool = True
    ) -> None:
        self.root = Path(root) if root is not None else oga_home() / "cache"
        self.notice = notice or LOG.warning
        self.writable = writable  # False: entries are computed but not kept (the non-leading ranks)

    def path(self, step: str, key: str) -> Path:
        return self.root / step / key

    def get(self, step: str, key: str) -> Path | None:
        """The folder of a complete entry, or None."""
        path = self.path(step, key)
        return path if (path / ".complete").is_file() else None

    def load(self, step: str, key: str, reader: Callable[[Path], T]) -> T | None:
        """``reader(folder)`` of the complete entry, or None when there is none or it cannot be
        read; an unreadable entry is removed (with a notice) so that the step is recomputed."""
        folder = self.get(step, key)
        if folder is None:
            return None
        try:
            return reader(folder)
        except Exception as exc:  # any failure to read a cache entry means: compute it again
            self.drop(step, key)
            first = (str(exc).strip().splitlines() or [""])[0][:160]
            self.notice(f"the cached {step} result was unreadable ({type(exc).__name__}: {first}); recomputing it")
            return None

    def drop(self, step: str, key: str) -> None:
        """Remove one entry (oga's own file: safe to delete)."""
        shutil.rmtree(self.path(step, key), ignore_errors=True)

    @contextmanager
    def entry(self, step: str, key: str) -> Iterator[Path]:
        """Yield a fresh folder to fill; it becomes the entry only if the block ends cleanly."""
        final = self.path(step, key)
        if not self.writable:
            with tempfile.TemporaryDirectory(prefix="oga-unkept-") as scratch:
                yield Path(scratch)
            return
        try:
            final.parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=final.parent))
        except OSError as exc:  # a read-only or full home: work on, uncached
            self.notice(f"cannot write the cache in {self.root} ({exc.strerror or exc}); continuing without it")
            with tempfile.TemporaryDirectory(prefix="oga-uncached-") as scratch:
                yield Path(scratch)
            return
        try:
            yield tmp
            for path in tmp.rglob("*"):
                if path.is_file():
                    fsync_path(path)
            (tmp / ".complete").touch()
            fsync_path(tmp)
            if final.exists():  # an incomplete leftover, or a racing writer's equal result
                shutil.rmtree(final, ignore_errors=True)
            try:
                os.replace(tmp, final)
            except OSError:
                if not (final / ".complete").is_file():
                    raise
            fsync_path(final.parent)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)

    def info(self) -> dict[str, dict[str, int]]:
        """``{step: {"entries": n, "bytes": size}}`` of everything in the cache."""
        out: dict[str, dict[str, int]] = {}
        if not self.root.is_dir():
            return out
        for step in sorted(p for p in self.root.iterdir() if p.is_dir()):
            entries = [e for e in step.iterdir() if e.is_dir() and not e.name.startswith(".")]
            size = sum(f.stat().st_size for e in entries for f in e.rglob("*") if f.is_file() and not f.is_symlink())
            out[step.name] = {"entries": len(entries), "bytes": size}
        return out

    def clear(self, steps: list[str] | None = None) -> dict[str, int]:
        """Remove every entry of ``steps`` (all steps if None); returns bytes freed per step.
        Only the cache folder is touched: decisions live in the workspaces and stay."""
        freed = {}
        for step, info in self.info().items():
            if steps is None or step in steps:
                shutil.rmtree(self.root / step, ignore_errors=True)
                freed[step] = info["bytes"]
        return freed


def save_arrays(folder: Path, **arrays: np.ndarray | None) -> None:
    """One ``.npy`` per array (None values are skipped); loadable with memory mapping."""
    for name, arr in arrays.items():
        if arr is not None:
            np.save(folder / f"{name}.npy", np.asarray(arr), allow_pickle=False)


def load_array(folder: Path, name: str, *, mmap: bool = False) -> np.ndarray | None:
    """``folder/<name>.npy``, None if absent; ``mmap`` maps it instead of reading it (for arrays
    larger than memory)."""
    path = folder / f"{name}.npy"
    if not path.is_file():
        return None
    return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)


def write_json(path: Path, obj: object) -> None:
    """Write JSON atomically (temp file, fsync, rename)."""
    atomic_write_text(path, json.dumps(obj, indent=2, default=_json_default))


def read_json(path: Path) -> dict:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def _json_default(obj: object) -> object:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
