"""Writing files so that nothing is half-written or written somewhere it should not be.

Every file oga writes goes through :func:`atomic_path` (or the byte / text shortcuts): the content
is written to a fresh temporary file beside the target (created with ``O_EXCL``, so a planted
symlink at a predictable temporary name is never written through), flushed to disk with
``fsync``, and renamed over the target; the folder is synced after the rename. A crash at any
moment leaves either the old file or the new one, never a torn mix.

Content hashes are computed in chunks (:func:`file_digest`), so fingerprinting a 2 GiB upload
does not hold it in memory.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

CHUNK = 1 << 20


def fsync_path(path: Path) -> None:
    """Flush a file's (or a folder's) content and metadata to disk; a no-op where the platform
    cannot open folders (Windows)."""
    flags = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) if Path(path).is_dir() else os.O_RDONLY
    try:
        fd = os.open(path, flags)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems (e.g. certain network mounts) refuse fsync on folders
    finally:
        os.close(fd)


@contextmanager
def atomic_path(path: Path | str) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` to write; on a clean exit it is synced and renamed
    over ``path``. On an exception the temporary file is removed and ``path`` is untouched.

    ``path`` itself, if it is a symbolic link, is replaced by the new file: the link's target is
    never written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        fsync_path(tmp)
        os.replace(tmp, path)
        fsync_path(path.parent)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def atomic_write_bytes(path: Path | str, data: bytes) -> Path:
    """Replace ``path`` with ``data`` atomically (see :func:`atomic_path`); returns the path."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def atomic_write_text(path: Path | str, text: str) -> Path:
    """UTF-8 text version of :func:`atomic_write_bytes`."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_copy_stream(source: BinaryIO, path: Path | str) -> Path:
    """Copy a readable binary stream to ``path`` atomically, a chunk at a time."""
    with atomic_path(path) as tmp, open(tmp, "wb") as out:
        while block := source.read(CHUNK):
            out.write(block)
    return Path(path)


def stream_digest(source: BinaryIO, *, digest_size: int = 16) -> str:
    """blake2b hex digest of a binary stream read in chunks (the stream is left at its end)."""
    h = hashlib.blake2b(digest_size=digest_size)
    while block := source.read(CHUNK):
        h.update(block)
    return h.hexdigest()


def file_digest(path: Path | str, *, digest_size: int = 16) -> str:
    """Content hash of a file, read in chunks: same bytes, same digest."""
    with open(path, "rb") as f:
        return stream_digest(f, digest_size=digest_size)


def is_within(path: Path, folder: Path) -> bool:
    """True if resolved ``path`` is ``folder`` or lies inside it (both resolved first)."""
    path, folder = Path(path).resolve(), Path(folder).resolve()
    return path == folder or folder in path.parents
