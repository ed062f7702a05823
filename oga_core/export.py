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

import contextlib
import io
import json
import os
import re
import shutil
import stat
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from oga_core.data import LabeledImages, index_of, safe_relative_path
from oga_core.errors import OgaError
from oga_core.files import atomic_write_bytes, atomic_write_text, fsync_path, is_within
from oga_core.roots import check_allowed

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


MANIFEST_HEADER = ",".join(MANIFEST_COLUMNS)


def is_oga_manifest(path: Path) -> bool:
    """True if ``path`` is a regular file whose first line is the header oga's manifests start
    with: a file oga wrote, safe to replace with a newer manifest."""
    path = Path(path)
    if path.is_symlink() or not path.is_file():
        return False
    try:
        with open(path, "rb") as f:
            first = f.readline(4096)
    except OSError:
        return False
    return first.decode("utf-8", "replace").lstrip("\ufeff").strip() == MANIFEST_HEADER


def check_manifest_path(path: Path, dataset: LabeledImages, *, overwrite: bool = False) -> Path:
    """Refuse manifest paths that could destroy something; returns the resolved path.

    Refused always: a folder, a symbolic link (oga never writes through one), anything inside
    oga's own folder (``$OGA_HOME``: the decisions live there) or inside the source data. Refused
    unless ``overwrite``: an existing file that is not a manifest oga wrote.
    """
    from oga_core.store import oga_home

    given = Path(os.path.expanduser(str(path)))
    check_allowed(given, "the manifest")
    if given.is_symlink():
        raise OgaError(f"refusing to write {given}: it is a symbolic link, and oga never writes through one")
    resolved = given.resolve()
    if resolved.is_dir():
        raise OgaError(f"{resolved} is a folder; give a file name such as {resolved / 'cleaned.csv'}")
    home = oga_home()
    if is_within(resolved, home):
        raise OgaError(f"refusing to write {resolved}: it is inside oga's own folder {home.resolve()}")
    for root in dataset.data_roots():
        if is_within(resolved, root):
            raise OgaError(f"refusing to write {resolved}: it is inside the source data in {root.resolve()}")
    if resolved.exists() and not overwrite and not is_oga_manifest(resolved):
        raise OgaError(
            f"refusing to overwrite {resolved}: it exists and is not a manifest oga wrote; choose another "
            "file name, or allow replacing it explicitly (oga export --overwrite-out; in the app, 'Replace "
            "an existing file')"
        )
    return resolved


def write_manifest(table: pd.DataFrame, path: Path) -> Path:
    """Write the guarded CSV atomically; returns the path. Check the place first with
    :func:`check_manifest_path`."""
    path = Path(path)
    if path.exists() and path.is_dir():
        raise OgaError(f"{path} is a folder; give a file name such as {path / 'cleaned.csv'}")
    try:
        atomic_write_bytes(path, manifest_csv_bytes(table))
    except OSError as exc:
        raise OgaError(f"cannot write {path}: {exc.strerror or exc}") from None
    return path


def safe_name(text: str) -> str:
    """A file or folder name that cannot climb out of its parent or hide: no separators, no
    leading dots, no control characters; empty becomes '_'."""
    name = re.sub(r"[\x00-\x1f/\\:*?\"<>|]", "_", str(text)).strip()
    name = name.lstrip(".") or "_"
    return name[:200]


# -- the image-folder copy -------------------------------------------------------------------
EXPORT_MARKER = ".oga-export.json"
_MARKER_FORMAT = "oga-export"


@dataclass(frozen=True)
class ExportRecord:
    """What one image-folder export wrote, as stored in ``DEST/.oga-export.json``.

    files: relative path -> ``[size, mtime_ns]`` when written (a file changed since is no longer
    oga's to replace); folders: the class folders it created.
    """

    export_id: str
    files: dict[str, tuple[int, int]]
    folders: tuple[str, ...]

    def to_json(self) -> dict:
        return {
            "format": _MARKER_FORMAT,
            "version": 1,
            "export_id": self.export_id,
            "written_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "files": {k: list(v) for k, v in sorted(self.files.items())},
            "folders": sorted(self.folders),
        }


def read_export_record(dest: Path) -> ExportRecord | None:
    """The record of the oga export in ``dest``, or None if there is none (or it is not one oga
    could have written: every listed path must be a plain relative path inside ``dest``)."""
    marker = Path(dest) / EXPORT_MARKER
    if marker.is_symlink() or not marker.is_file():
        return None
    try:
        raw = json.loads(marker.read_text(encoding="utf-8"))
        if raw.get("format") != _MARKER_FORMAT:
            return None
        files = {}
        for rel, (size, mtime) in raw["files"].items():
            if safe_relative_path(rel) != rel:
                return None
            files[rel] = (int(size), int(mtime))
        folders = tuple(str(f) for f in raw.get("folders", []))
        if any(safe_relative_path(f) != f for f in folders):
            return None
        return ExportRecord(str(raw["export_id"]), files, folders)
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return None


def _ours(dest: Path, rel: str, record: ExportRecord) -> bool:
    """True if ``dest/rel`` is the very file the earlier export wrote: listed, a regular file
    reached through no symbolic link, unchanged in size and modification time."""
    path = dest / rel
    walk = dest
    for part in rel.split("/")[:-1]:
        walk = walk / part
        if walk.is_symlink() or not walk.is_dir():
            return False
    try:
        st = path.lstat()
    except OSError:
        return False
    return stat.S_ISREG(st.st_mode) and record.files.get(rel) == (st.st_size, st.st_mtime_ns)


def check_destination(dest: Path, dataset: LabeledImages, *, overwrite: bool = False) -> Path:
    """Resolve ``dest`` and refuse places an export must not write to; returns the resolved path.

    A non-empty folder is written into only with ``overwrite`` AND when it holds the record of an
    earlier oga export (``.oga-export.json``); even then only the files that export wrote, still
    unchanged, are replaced or removed. Anything else in the folder stays as it is.
    """
    dest = check_allowed(Path(os.path.expanduser(str(dest))), "the export folder")
    if dest == Path(dest.anchor) or dest == Path.home().resolve():
        raise OgaError(f"refusing to export into {dest}: choose a dedicated folder")
    from oga_core.store import oga_home

    home = oga_home().resolve()
    if dest == home or home in dest.parents:
        raise OgaError(f"refusing to export into {dest}: it is inside oga's own folder {home}")
    for root in dataset.data_roots():
        root = root.resolve()
        if dest == root or root in dest.parents or dest in root.parents:
            raise OgaError(f"refusing to export into {dest}: it overlaps the source data in {root}")
    if dest.exists() and not dest.is_dir():
        raise OgaError(f"{dest} exists and is not a folder")
    if dest.is_dir() and any(dest.iterdir()):
        if not overwrite:
            raise OgaError(f"{dest} is not empty; choose an empty folder or allow replacing an earlier oga export")
        if read_export_record(dest) is None:
            raise OgaError(
                f"{dest} is not empty and holds no record of an earlier oga export ({EXPORT_MARKER}); oga "
                "replaces only folders it wrote itself: choose an empty folder"
            )
    return dest


def export_slug(data: str, data_id: str) -> str:
    """A folder name for a data set's exports: readable source name + short data id."""
    kind, _, rest = data.partition(":")
    name = Path(rest.rstrip("/")).name if kind in ("folder", "csv") else rest.replace(":", "-").split("/")[-1]
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", f"{kind}-{name}").strip("-.") or "data"
    return f"{name}-{data_id[:8]}"


def default_export_dir(data: str, data_id: str) -> Path:
    """Where exports go unless the person says otherwise: ``~/oga-exports/<slug>`` (never inside
    the app home or the source data, which :func:`check_destination` refuses)."""
    return Path.home() / "oga-exports" / export_slug(data, data_id)


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

    Files are copied byte for byte (built-in arrays are written as PNG), plus ``manifest.csv``
    and the export record ``.oga-export.json``. The copy is built in a temporary sibling first: a
    new or empty ``dest`` receives it in one rename. Replacing an earlier oga export (``overwrite``)
    removes exactly the files that export wrote and that are unchanged since, then moves the new
    files in; a file of someone else's where the new export needs to write stops it before
    anything changes. Returns counts per class name. OgaError for an unsafe destination.
    """
    dest = check_destination(dest, dataset, overwrite=overwrite)
    rows = manifest[manifest["action"] != "drop"]
    position = index_of(dataset.ids)
    folders = class_folders(dataset.classes)
    counts: dict[str, int] = {}
    written: list[tuple[str, str, str, str, str]] = []
    used: set[str] = set()
    work = _staging_folder(dest)
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
                _png_ready(dataset.original(i)).save(target)  # arrays, or images inside container files (full size)
            counts[str(label)] = counts.get(str(label), 0) + 1
            original = str(dataset.classes[int(dataset.labels[i])])
            written.append((sid, rel, original, str(label), str(action)))
            if progress:
                progress(n, len(rows))
        inner = pd.DataFrame(written, columns=["sample_id", "path", "original_label", "label", "action"])
        write_manifest(inner, work / "manifest.csv")
        install_export(work, dest)
    except OSError as exc:
        raise OgaError(f"export to {dest} failed: {exc.strerror or exc}") from None
    finally:
        if work.exists():
            shutil.rmtree(work, ignore_errors=True)
    return counts


def _png_ready(im):
    """``im`` in a mode PNG can store (CMYK, YCbCr and the like become RGB)."""
    return im if im.mode in ("1", "L", "LA", "P", "RGB", "RGBA", "I", "I;16") else im.convert("RGB")


def _staging_folder(dest: Path) -> Path:
    """A new hidden folder beside ``dest`` to write an export into before it is installed (a
    rename on the same filesystem); OgaError when it cannot be made."""
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=f".{dest.name}-", dir=dest.parent))
    except OSError as exc:
        raise OgaError(f"export to {dest} failed: {exc.strerror or exc}") from None


def install_export(work: Path, dest: Path) -> None:
    """Move a finished export in ``work`` (a temporary sibling of ``dest``) into ``dest``, with its
    record ``.oga-export.json``: in one rename into a new or empty ``dest``, else over the earlier
    oga export there (:func:`_replace_export`). ``dest`` must have passed :func:`check_destination`."""
    files = {}
    for path in work.rglob("*"):
        if path.is_file():
            st = path.stat()
            files[path.relative_to(work).as_posix()] = (st.st_size, st.st_mtime_ns)
    record = ExportRecord(uuid.uuid4().hex, files, tuple(sorted({rel.split("/")[0] for rel in files if "/" in rel})))
    atomic_write_text(work / EXPORT_MARKER, json.dumps(record.to_json(), indent=1))
    previous = read_export_record(dest) if dest.is_dir() else None
    if previous is None:  # a new or empty folder (check_destination refused any other)
        if dest.exists():
            dest.rmdir()
        os.replace(work, dest)
    else:
        _replace_export(work, dest, previous, record)
    fsync_path(dest.parent)


def _replace_export(work: Path, dest: Path, previous: ExportRecord, record: ExportRecord) -> None:
    """Swap the new export in ``work`` into ``dest``, which holds the earlier export ``previous``.

    Only paths the earlier export wrote, unchanged since, are removed or replaced; a path the new
    export needs that holds anything else stops the export before ``dest`` changes. While files
    move, the record in ``dest`` lists both exports' files, so an interruption leaves a folder
    that a later overwrite can still clean up (and nothing of anyone else's in its list).
    """
    ours = {rel for rel in previous.files if _ours(dest, rel, previous)}
    for rel in record.files:
        target = dest / rel
        blocked = (target.exists() or target.is_symlink()) and rel not in ours
        parent = dest
        for part in rel.split("/")[:-1]:
            parent = parent / part
            if parent.is_symlink() or (parent.exists() and not parent.is_dir()):
                blocked = True
        if blocked:
            raise OgaError(
                f"{target} exists and was not written by oga's earlier export (or was changed since); move it "
                "away or choose another folder. Nothing was changed."
            )
    both = ExportRecord(record.export_id, {**{r: previous.files[r] for r in ours}, **record.files}, ())
    atomic_write_text(dest / EXPORT_MARKER, json.dumps(both.to_json(), indent=1))
    for rel in ours - set(record.files):
        (dest / rel).unlink()
    for rel in record.files:
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        os.replace(work / rel, dest / rel)
    for folder in sorted(set(previous.folders) - set(record.folders), reverse=True):
        with contextlib.suppress(OSError):  # only if empty: anything else in it is someone's
            (dest / folder).rmdir()


# -- the Hugging Face copy -------------------------------------------------------------------
def export_hf(dataset: LabeledImages, manifest: pd.DataFrame, dest: Path, *, overwrite: bool = False) -> dict[str, int]:
    """Write every non-dropped sample of ``manifest`` to ``dest`` as a Hugging Face dataset
    (``save_to_disk``'s layout, loadable by ``datasets.load_from_disk`` and ``hf:DEST``), labels
    as cleaned, the sample ids in an ``oga_id`` column (docs/architecture.md, "Hugging Face
    datasets").

    From an ``hf:`` source: the original rows with all their columns, the label column replaced,
    in the source's layout (a DatasetDict with every split, or one Dataset). From any other source:
    one ``train`` split of the image files' bytes (built-in arrays as PNG) with a ClassLabel.
    Same destination rules, temporary sibling and record as :func:`export_image_folder`. Returns
    the number of samples per split.
    """
    from oga_core import hfdata

    dest = check_destination(dest, dataset, overwrite=overwrite)
    rows = manifest[manifest["action"] != "drop"]
    position = index_of(dataset.ids)
    index = np.array([position[sid] for sid in rows["sample_id"]], dtype=np.int64)
    class_of = {name: k for k, name in enumerate(dataset.classes)}
    labels = np.array([class_of[str(name)] for name in rows["label"]], dtype=np.int64)
    ids = [dataset.ids[i] for i in index]
    container = getattr(dataset, "container", None)
    if isinstance(container, hfdata.HFContainer):
        tables, features = hfdata.cleaned_tables(container, dataset.rows[index], labels, ids)  # type: ignore[attr-defined]
        single, info = (
            container.layout == "dataset" or (container.layout == "parquet" and len(tables) == 1),
            container.info,
        )
    else:
        images, names = [], []
        for i in index:
            src = dataset.file_path(int(i))
            if src is not None:
                images.append(src.read_bytes())
                names.append(Path(dataset.ids[i]).name)
            else:
                buf = io.BytesIO()
                _png_ready(dataset.original(int(i))).save(buf, format="PNG")
                images.append(buf.getvalue())
                names.append(None)
        tables = {"train": hfdata.image_table(images, names, labels.tolist(), ids)}
        features, single, info = hfdata.image_features(dataset.classes), True, {}
    work = _staging_folder(dest)
    try:
        hfdata.write_save_to_disk(work, tables, features, single=single, info=info)
        install_export(work, dest)
    except OSError as exc:
        raise OgaError(f"export to {dest} failed: {exc.strerror or exc}") from None
    finally:
        if work.exists():
            shutil.rmtree(work, ignore_errors=True)
    return {name: len(table) for name, table in tables.items()}
