"""Data sets that arrive as files rather than paths: a .zip of ``<class>/<image>`` folders in, a
.zip of the cleaned image folder out.

An archive is unpacked once per content (the folder is named by its hash) into a temporary
sibling and renamed into place, so an interrupted upload leaves nothing half unpacked. Entries
that would escape the folder (absolute paths, ``..``), links, and archives that inflate beyond a
size limit (zip bombs) are refused with a DataError.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shutil
import stat
import tempfile
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import pandas as pd

from oga_core.data import LabeledImages, safe_relative_path
from oga_core.errors import DataError, OgaError
from oga_core.export import EXPORT_MARKER, export_image_folder
from oga_core.files import atomic_copy_stream, atomic_path, stream_digest
from oga_core.store import oga_home

MAX_UNPACKED_BYTES = 8 << 30
# A zip bomb inflates a small file a thousandfold; image archives compress little (PNG and JPEG
# are compressed already), so a high overall ratio on a large archive is refused.
MAX_RATIO = 100
RATIO_CHECKED_FROM = 64 << 20  # small archives may compress well (a folder of BMPs): not checked
MAX_FILES = 200_000
_SKIPPED_PARTS = ("__MACOSX",)


def archive_digest(data: BinaryIO) -> str:
    """A short content hash naming an archive's folder, read in chunks."""
    data.seek(0)
    digest = stream_digest(data, digest_size=10)
    data.seek(0)
    return digest


def data_root(folder: Path) -> Path:
    """The folder that holds the class folders: descend through single wrapping folders
    (``pets.zip`` usually holds ``pets/<class>/...``)."""
    folder = Path(folder)
    while True:
        entries = [p for p in folder.iterdir() if not p.name.startswith(".")]
        if len(entries) == 1 and entries[0].is_dir() and any(q.is_dir() for q in entries[0].iterdir()):
            folder = entries[0]
        else:
            return folder


def extract_image_archive(
    data: BinaryIO | bytes,
    parent: Path,
    *,
    max_bytes: int = MAX_UNPACKED_BYTES,
    max_ratio: float = MAX_RATIO,
    max_files: int = MAX_FILES,
) -> Path:
    """Unpack a zip (a seekable binary stream, e.g. Streamlit's UploadedFile, or bytes) under
    ``parent/<digest>`` (once) and return its data root.

    Load the result with ``folder:<returned path>``. DataError for a file that is not a zip, an
    unsafe entry (absolute, ``..``, a link), more than ``max_files`` files, more than ``max_bytes``
    unpacked, or (beyond 64 MiB unpacked) more than ``max_ratio`` times the archive's size.
    """
    if isinstance(data, bytes):
        data = io.BytesIO(data)
    dest = Path(parent) / archive_digest(data)
    if (dest / ".complete").is_file():
        return data_root(dest)
    packed = data.seek(0, io.SEEK_END)
    data.seek(0)
    try:
        archive = zipfile.ZipFile(data)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        raise DataError("the uploaded file is not a .zip archive") from None
    with archive:
        members = []
        total = 0
        for info in archive.infolist():
            if info.is_dir() or any(part in _SKIPPED_PARTS for part in info.filename.split("/")):
                continue
            if stat.S_ISLNK(info.external_attr >> 16):
                raise DataError(f"the archive holds a link ({info.filename}); links are not unpacked")
            try:
                rel = safe_relative_path(info.filename)
            except ValueError as exc:
                raise DataError(f"unsafe entry in the archive: {exc}") from None
            if any(part.startswith(".") for part in rel.split("/")):
                continue  # hidden files (.DS_Store, ._resource forks) are not images
            total += info.file_size
            if total > max_bytes:
                raise DataError(
                    f"the archive unpacks to more than {max_bytes / 2**30:.0f} GiB; unpack it on disk and give the folder"
                )
            members.append((info, rel))
            if len(members) > max_files:
                raise DataError(
                    f"the archive holds more than {max_files:,} files; unpack it on disk and give the folder"
                )
        if not members:
            raise DataError("the archive holds no files")
        if total > RATIO_CHECKED_FROM and total > max_ratio * max(packed, 1):
            raise DataError(
                f"the archive would unpack to {total / 2**20:,.0f} MiB from {packed / 2**20:,.1f} MiB (over "
                f"{max_ratio:.0f} times its size): refused as a likely zip bomb; unpack it on disk and give the folder"
            )
        dest.parent.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=f".{dest.name}-", dir=dest.parent))
        try:
            for info, rel in members:
                target = work / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                with archive.open(info) as src, open(target, "wb") as out:
                    shutil.copyfileobj(src, out, 1 << 20)
            (work / ".complete").touch()
            if dest.exists():
                shutil.rmtree(dest, ignore_errors=True)  # an incomplete leftover
            os.replace(work, dest)
        except (OSError, zipfile.BadZipFile, EOFError, RuntimeError, NotImplementedError, ValueError) as exc:
            # RuntimeError: an encrypted entry; NotImplementedError: Deflate64 and other methods
            # zipfile cannot read (Windows Explorer writes Deflate64 for large archives)
            raise DataError(f"cannot unpack the archive: {exc}") from None
        finally:
            if work.exists():
                shutil.rmtree(work, ignore_errors=True)
    return data_root(dest)


def save_upload(data: BinaryIO, name: str, parent: Path | None = None) -> Path:
    """Keep an uploaded file (a readable binary stream, e.g. Streamlit's UploadedFile) under
    ``parent`` (default ``$OGA_HOME/uploads``), named by its content hash, and return the path.
    The stream is hashed and copied in chunks, never held whole in memory."""
    parent = Path(parent) if parent is not None else oga_home() / "uploads"
    data.seek(0)
    digest = stream_digest(data, digest_size=8)
    data.seek(0)
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(name).name).lstrip(".") or "upload"
    path = parent / f"{digest}-{safe}"
    if not path.is_file():
        atomic_copy_stream(data, path)
    return path


def _referenced_uploads(home: Path) -> set[str]:
    """Names of upload entries (first path part under ``home/uploads``) that a workspace's data
    source or latest analysis (its checkpoint) points to."""
    uploads = (home / "uploads").resolve()
    used = set()
    for ws in (home / "workspaces").glob("*"):
        texts = []
        for name in ("source.json", "latest_run.json"):
            with contextlib.suppress(OSError, ValueError):
                texts.append(json.loads((ws / name).read_text(encoding="utf-8")))
        for obj in texts:
            config = obj.get("config", obj) if isinstance(obj, dict) else {}
            for value in (config.get("data", ""), config.get("checkpoint") or ""):
                path = str(value).split(":", 1)[-1] if str(value).startswith(("folder:", "csv:")) else str(value)
                with contextlib.suppress(OSError, ValueError):
                    rel = Path(path).resolve().relative_to(uploads)
                    used.add(rel.parts[0])
    return used


def clean_uploads(home: Path | None = None, *, min_age_s: float = 3600) -> list[Path]:
    """Remove uploaded archives and checkpoints (oga's own copies under ``home/uploads``) that no
    workspace uses and that are older than ``min_age_s`` (one just uploaded, not yet analysed,
    stays). Returns what was removed."""
    home = Path(home) if home is not None else oga_home()
    folder = home / "uploads"
    if not folder.is_dir():
        return []
    used = _referenced_uploads(home)
    now = time.time()
    removed = []
    for entry in folder.iterdir():
        if entry.name in used or entry.is_symlink():
            continue
        try:
            if now - entry.stat().st_mtime < min_age_s:
                continue
        except OSError:
            continue
        if entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        removed.append(entry)
    return removed


def zip_folder(folder: Path, zip_path: Path) -> Path:
    """Pack ``folder`` (e.g. an exported image folder) into ``zip_path`` atomically; returns it."""
    folder, zip_path = Path(folder), Path(zip_path)
    if not folder.is_dir():
        raise OgaError(f"{folder} is not a folder")
    try:
        with (
            atomic_path(zip_path) as tmp,
            zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as archive,
        ):
            for path in sorted(folder.rglob("*")):
                if path.is_file() and path.name != EXPORT_MARKER:  # the record is about this folder only
                    archive.write(path, Path(folder.name) / path.relative_to(folder))
    except OSError as exc:
        raise OgaError(f"cannot write {zip_path}: {exc.strerror or exc}") from None
    return zip_path


def export_image_zip(
    dataset: LabeledImages,
    manifest: pd.DataFrame,
    zip_path: Path,
    *,
    name: str = "cleaned",
    progress: Callable[[int, int], None] | None = None,
) -> tuple[Path, dict[str, int]]:
    """The image-folder copy of :func:`oga_core.export.export_image_folder`, packed as
    ``zip_path`` holding ``<name>/<label>/<file>`` (for a download); returns the path and the
    counts per class. The unpacked copy is written to a temporary folder and removed."""
    zip_path = Path(zip_path)
    # The unpacked copy goes to the system's temporary folder: exports may not write inside the
    # app home (where the .zip itself may live) nor inside the source data.
    work = Path(tempfile.mkdtemp(prefix="oga-zip-"))
    try:
        counts = export_image_folder(dataset, manifest, work / name, progress=progress)
        return zip_folder(work / name, zip_path), counts
    finally:
        shutil.rmtree(work, ignore_errors=True)
