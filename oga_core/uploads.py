"""Data sets that arrive as files rather than paths: a .zip of ``<class>/<image>`` folders in, a
.zip of the cleaned image folder out.

An archive is unpacked once per content (the folder is named by its hash) into a temporary
sibling and renamed into place, so an interrupted upload leaves nothing half unpacked. Entries
that would escape the folder (absolute paths, ``..``), links, and archives that inflate beyond a
size limit (zip bombs) are refused with a DataError.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import shutil
import stat
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import pandas as pd

from oga_core.data import LabeledImages, safe_relative_path
from oga_core.errors import DataError, OgaError
from oga_core.export import EXPORT_MARKER, export_image_folder
from oga_core.files import atomic_copy_stream, stream_digest
from oga_core.store import oga_home

MAX_UNPACKED_BYTES = 8 << 30
_SKIPPED_PARTS = ("__MACOSX",)


def archive_digest(data: bytes) -> str:
    """A short content hash naming an archive's folder."""
    return hashlib.blake2b(data, digest_size=10).hexdigest()


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


def extract_image_archive(data: bytes, parent: Path, *, max_bytes: int = MAX_UNPACKED_BYTES) -> Path:
    """Unpack zip ``data`` under ``parent/<digest>`` (once) and return its data root.

    Load the result with ``folder:<returned path>``. DataError for a file that is not a zip, an
    unsafe entry or an archive larger than ``max_bytes`` once unpacked.
    """
    dest = Path(parent) / archive_digest(data)
    if (dest / ".complete").is_file():
        return data_root(dest)
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile:
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
        if not members:
            raise DataError("the archive holds no files")
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
        except (OSError, zipfile.BadZipFile, EOFError, RuntimeError, NotImplementedError) as exc:
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


def zip_folder(folder: Path, zip_path: Path) -> Path:
    """Pack ``folder`` (e.g. an exported image folder) into ``zip_path`` atomically; returns it."""
    folder, zip_path = Path(folder), Path(zip_path)
    if not folder.is_dir():
        raise OgaError(f"{folder} is not a folder")
    zip_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = zip_path.with_name(f".{zip_path.name}.tmp")
    try:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
            for path in sorted(folder.rglob("*")):
                if path.is_file() and path.name != EXPORT_MARKER:  # the record is about this folder only
                    archive.write(path, Path(folder.name) / path.relative_to(folder))
        os.replace(tmp, zip_path)
    except OSError as exc:
        raise OgaError(f"cannot write {zip_path}: {exc.strerror or exc}") from None
    finally:
        tmp.unlink(missing_ok=True)
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
