"""The cleaned data set: a manifest CSV and an image-folder copy in torchvision's layout.

The manifest has one row per sample: ``sample_id, path, original_label, label, action, score``
(labels as class names; ``action`` is keep, drop, relabel or undecided). Dropped samples are left
out or kept and marked, by choice. Text cells that a spreadsheet would run as a formula (starting
with ``= + - @`` or a tab / carriage return) are prefixed with a quote (OWASP's CSV-injection rule).

The folder copy writes ``DEST/<label>/<file>`` for every sample not dropped, plus
``DEST/manifest.csv`` with paths relative to DEST, so ``folder:DEST`` and ``csv:DEST/manifest.csv``
both load the cleaned set. It is written to a temporary sibling and renamed into place, so an
interrupted export leaves no half-written folder behind.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from oga_core.data import LabeledImages, array_to_image
from oga_core.errors import OgaError

MANIFEST_COLUMNS = ("sample_id", "path", "original_label", "label", "action", "score")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def cleaned_manifest(
    dataset: LabeledImages,
    decisions: pd.DataFrame,
    *,
    scores: pd.DataFrame | None = None,
    dropped: str = "exclude",
) -> pd.DataFrame:
    """The manifest of the cleaned data set, in dataset order.

    decisions: a :meth:`DecisionStore.table` frame (sample_id, action, label). scores: an
    analysis' score table (its ``score`` column fills ``score``; NaN without it). dropped:
    ``exclude`` leaves dropped samples out, ``mark`` keeps them with action ``drop``.
    """
    if dropped not in ("exclude", "mark"):
        raise OgaError(f"dropped must be 'exclude' or 'mark', not '{dropped}'")
    names = np.asarray(dataset.classes, dtype=object)
    action = np.full(len(dataset), "undecided", dtype=object)
    label = dataset.labels.copy()
    if len(decisions):
        position = {sid: i for i, sid in enumerate(dataset.ids)}
        for sid, act, lab in decisions[["sample_id", "action", "label"]].itertuples(index=False):
            i = position.get(sid)
            if i is None:
                continue  # a decision about a sample no longer in the data: kept in the store, not exported
            action[i] = act
            if act == "relabel":
                if not 0 <= int(lab) < len(names):
                    raise OgaError(f"decision for {sid} relabels to class {lab}, which this data set does not have")
                label[i] = int(lab)
    score = np.full(len(dataset), np.nan)
    if scores is not None and "score" in scores:
        by_id = scores.set_index("sample_id")["score"]
        score = by_id.reindex(dataset.ids).to_numpy(dtype=np.float64)
    paths = [str(dataset.file_path(i)) if dataset.is_files else "" for i in range(len(dataset))]
    table = pd.DataFrame(
        {
            "sample_id": dataset.ids,
            "path": paths,
            "original_label": names[dataset.labels],
            "label": names[label],
            "action": action,
            "score": score,
        }
    )
    if dropped == "exclude":
        table = table[table["action"] != "drop"].reset_index(drop=True)
    return table


def _neutralise(value: object) -> object:
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def safe_csv_frame(table: pd.DataFrame) -> pd.DataFrame:
    """A copy whose text cells cannot run as spreadsheet formulas; numbers are left as numbers."""
    out = table.copy()
    for col in out.columns:
        if out[col].dtype == object or pd.api.types.is_string_dtype(out[col]):
            out[col] = out[col].map(_neutralise)
    out.columns = [_neutralise(str(c)) for c in out.columns]
    return out


def manifest_csv_bytes(table: pd.DataFrame) -> bytes:
    """The guarded CSV as UTF-8 bytes (for a download button)."""
    buf = io.StringIO()
    safe_csv_frame(table).to_csv(buf, index=False)
    return buf.getvalue().encode("utf-8")


def write_manifest(table: pd.DataFrame, path: Path) -> Path:
    """Write the guarded CSV atomically; returns the path."""
    path = Path(path)
    if path.exists() and path.is_dir():
        raise OgaError(f"{path} is a folder; give a file name such as {path / 'cleaned.csv'}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_bytes(manifest_csv_bytes(table))
        os.replace(tmp, path)
    except OSError as exc:
        raise OgaError(f"cannot write {path}: {exc.strerror or exc}") from None
    return path


def safe_name(text: str) -> str:
    """A file or folder name that cannot climb out of its parent or hide: no separators, no
    leading dots, no control characters; empty becomes '_'."""
    name = re.sub(r"[\x00-\x1f/\\:*?\"<>|]", "_", str(text)).strip()
    name = name.lstrip(".") or "_"
    return name[:200]


def check_destination(dest: Path, dataset: LabeledImages, *, overwrite: bool = False) -> Path:
    """Resolve ``dest`` and refuse places an export must not write to; returns the resolved path.

    A non-empty folder is replaced only with ``overwrite`` AND when it is an earlier oga export
    (it holds the ``manifest.csv`` an export writes): oga never deletes a folder it did not make.
    """
    dest = Path(os.path.expanduser(str(dest))).resolve()
    if dest == Path(dest.anchor) or dest == Path.home().resolve():
        raise OgaError(f"refusing to export into {dest}: choose a dedicated folder")
    from oga_core.store import oga_home

    home = oga_home().resolve()
    if dest == home or home in dest.parents:
        raise OgaError(f"refusing to export into {dest}: it is inside oga's own folder {home}")
    if dataset.root is not None:
        root = dataset.root.resolve()
        if dest == root or root in dest.parents or dest in root.parents:
            raise OgaError(f"refusing to export into {dest}: it overlaps the source data in {root}")
    if dest.exists() and not dest.is_dir():
        raise OgaError(f"{dest} exists and is not a folder")
    if dest.is_dir() and any(dest.iterdir()):
        if not overwrite:
            raise OgaError(f"{dest} is not empty; choose an empty folder or allow overwriting an earlier export")
        if not (dest / "manifest.csv").is_file():
            raise OgaError(
                f"{dest} is not empty and not an earlier oga export (no manifest.csv); choose an empty folder"
            )
    return dest


def check_manifest_path(path: Path, dataset: LabeledImages) -> Path:
    """Refuse a manifest path inside the source data (it could overwrite an image or the source
    manifest); returns the resolved path."""
    path = Path(os.path.expanduser(str(path))).resolve()
    if path.is_dir():
        raise OgaError(f"{path} is a folder; give a file name such as {path / 'cleaned.csv'}")
    if dataset.root is not None:
        root = dataset.root.resolve()
        if root in path.parents:
            raise OgaError(f"refusing to write {path}: it is inside the source data in {root}")
    return path


def class_folders(classes: list[str]) -> dict[str, str]:
    """A distinct, safe folder name per class name. Names that collide once made safe (``a/b``
    and ``a_b``), or that differ only in case (one folder on macOS and Windows), get a suffix."""
    folders: dict[str, str] = {}
    taken: set[str] = set()
    for name in classes:
        base = folder = safe_name(name)
        k = 1
        while folder.lower() in taken:
            folder, k = f"{base}__{k}", k + 1
        taken.add(folder.lower())
        folders[name] = folder
    return folders


def export_image_folder(
    dataset: LabeledImages,
    manifest: pd.DataFrame,
    dest: Path,
    *,
    overwrite: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, int]:
    """Copy every non-dropped sample of ``manifest`` to ``dest/<label>/<file>``.

    Files are copied byte for byte (built-in arrays are written as PNG). Everything is written to
    a temporary sibling first and swapped in at the end, so ``dest`` always holds one complete
    export: an earlier export being overwritten is replaced whole (no stale files stay behind).
    Returns counts per class name. OgaError for an unsafe or non-empty destination.
    """
    dest = check_destination(dest, dataset, overwrite=overwrite)
    rows = manifest[manifest["action"] != "drop"]
    position = {sid: i for i, sid in enumerate(dataset.ids)}
    folders = class_folders(dataset.classes)
    counts: dict[str, int] = {}
    written: list[tuple[str, str, str, str, str]] = []
    used: set[str] = set()
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=f".{dest.name}-", dir=dest.parent))
    except OSError as exc:
        raise OgaError(f"export to {dest} failed: {exc.strerror or exc}") from None
    old: Path | None = None
    try:
        for n, (sid, label, action) in enumerate(
            rows[["sample_id", "label", "action"]].itertuples(index=False), start=1
        ):
            i = position[sid]
            folder = folders.get(str(label)) or safe_name(label)
            src = dataset.file_path(i)
            stem = safe_name(Path(sid).name if src is not None else sid.replace("/", "_"))
            if src is None:
                stem += ".png"
            rel = f"{folder}/{stem}"
            k = 1
            while rel.lower() in used:  # two classes' "1.png" relabelled into one folder
                base, ext = os.path.splitext(stem)
                rel, k = f"{folder}/{base}__{k}{ext}", k + 1
            used.add(rel.lower())
            target = work / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            if src is not None:
                shutil.copyfile(src, target)
            else:
                array_to_image(dataset.image(i)).save(target)
            counts[str(label)] = counts.get(str(label), 0) + 1
            original = str(dataset.classes[int(dataset.labels[i])])
            written.append((sid, rel, original, str(label), str(action)))
            if progress:
                progress(n, len(rows))
        inner = pd.DataFrame(written, columns=["sample_id", "path", "original_label", "label", "action"])
        write_manifest(inner, work / "manifest.csv")
        if dest.exists():
            if any(dest.iterdir()):  # an earlier export (checked above): moved aside, deleted after the swap
                old = Path(tempfile.mkdtemp(prefix=f".{dest.name}-old-", dir=dest.parent))
                os.replace(dest, old / "export")
            else:
                dest.rmdir()
        os.replace(work, dest)
    except OSError as exc:
        raise OgaError(f"export to {dest} failed: {exc.strerror or exc}") from None
    finally:
        if work.exists():
            shutil.rmtree(work, ignore_errors=True)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    return counts
