"""``hf:PATH``: Hugging Face datasets on disk, read and written with pyarrow (``datasets`` is
optional; oga never downloads).

What ``PATH`` may hold (docs/architecture.md, "Hugging Face datasets"):

    dataset_dict.json + <split>/...             a DatasetDict written by ``save_to_disk``: every split
    state.json + dataset_info.json + *.arrow    one Dataset written by ``save_to_disk``
    *.parquet (any depth), or one .parquet file  Parquet files, e.g. the Hub's ``data/train-00000-of-00001.parquet``

The image column is the one whose feature is ``Image`` (a struct of ``bytes`` and ``path``; raw
``binary`` also works), else a column named ``image`` or ``img``. The label column is a
``ClassLabel`` (its ``names`` are the classes; ``label`` preferred when there are several), else a
column named ``label``, ``labels``, ``target`` or ``class`` of strings (classes: the sorted
distinct names) or whole numbers (classes ``0 .. max``). Features come from
``dataset_info.json`` or the files' ``huggingface`` schema metadata.

Sample ids: the ``oga_id`` column when present (oga's own exports write it), else
``<split>/<id>`` from an ``id`` column, else ``<split>/<row>`` (zero-padded to at least 5
digits). The split is the DatasetDict's key, a Dataset's own ``_split`` (or its folder's name
inside a DatasetDict; ``train`` otherwise), or a Parquet file's name prefix (``train-00000-of-...``)
or folder.

:func:`write_save_to_disk` writes the same layout back (``oga export --hf DIR``; the cleaned set
is built by :func:`cleaned_tables` from the original rows, all columns kept, labels replaced,
``oga_id`` added), loadable by ``datasets.load_from_disk`` and by ``hf:DIR``.

This module knows the format only; :class:`oga_core.data.EncodedImages` holds the images and
:func:`oga_core.export.export_hf` writes an export, so that neither imports the other in a circle.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from oga_core.errors import DataError
from oga_core.roots import check_allowed

IMAGE_NAMES = ("image", "img")
LABEL_NAMES = ("label", "labels", "fine_label", "target", "class")
ID_COLUMN = "oga_id"
_SHARD = re.compile(r"^(?P<split>[A-Za-z0-9_.]+?)-\d+-of-\d+\.parquet$")
ARROW_NAME = "data-00000-of-00001.arrow"


def hub_hint(text: str) -> str:
    """The one line for a name that is not on disk (perhaps a Hub name)."""
    return (
        f"hf:{text}: no such folder or file on this machine; oga never downloads. If it is a dataset on the "
        f'Hugging Face Hub, save it once with datasets.load_dataset("{text}").save_to_disk(PATH) and use hf:PATH'
    )


@dataclass
class HFSplit:
    name: str
    table: Any  # pyarrow.Table
    files: list[Path]
    folder: Path


@dataclass
class HFContainer:
    """One Hugging Face dataset opened from disk: its splits' tables, the chosen columns, the
    features, and per sample (all splits in order) the id, the label index and the split row.

    ``read(row)`` gives the encoded image bytes of global row ``row``; ``files()`` the files
    that hold the content (for fingerprints)."""

    root: Path
    layout: str  # "dict", "dataset" or "parquet"
    splits: list[HFSplit]
    image_column: str
    label_column: str
    label_kind: str  # "classlabel", "string" or "int"
    features: dict | None
    info: dict
    classes: list[str]
    ids: list[str]
    labels: np.ndarray
    offsets: np.ndarray = field(default_factory=lambda: np.zeros(1, np.int64))
    path_images: list[Path] = field(default_factory=list)

    def locate(self, row: int) -> tuple[HFSplit, int]:
        s = int(np.searchsorted(self.offsets, row, side="right")) - 1
        return self.splits[s], int(row - self.offsets[s])

    def read(self, row: int) -> bytes:
        """The encoded image of global row ``row``; OSError / ValueError with the reason when it
        cannot be had (no bytes, a missing file)."""
        split, local = self.locate(row)
        value = split.table.column(self.image_column)[local].as_py()
        return self._bytes_of(value, split)

    def read_many(self, start: int, stop: int) -> list[bytes | Exception]:
        """``read`` for rows ``start .. stop - 1`` of one split at a time (cheaper than row by row)."""
        out: list[bytes | Exception] = []
        row = start
        while row < stop:
            split, local = self.locate(row)
            n = min(stop - row, len(split.table) - local)
            for value in split.table.column(self.image_column).slice(local, n).to_pylist():
                try:
                    out.append(self._bytes_of(value, split))
                except (OSError, ValueError) as exc:
                    out.append(exc)
            row += n
        return out

    def _bytes_of(self, value: Any, split: HFSplit) -> bytes:
        if isinstance(value, (bytes, bytearray)):
            return bytes(value)
        if isinstance(value, dict):
            if value.get("bytes") is not None:
                return bytes(value["bytes"])
            if value.get("path"):
                path = _image_path(value["path"], split.folder)
                with open(path, "rb") as f:
                    return f.read()
        raise ValueError("the image cell holds neither bytes nor a path")

    def files(self) -> list[Path]:
        return [f for s in self.splits for f in s.files] + self.path_images


def _image_path(text: str, folder: Path) -> Path:
    path = Path(text)
    if not path.is_absolute():
        path = folder / path
    check_allowed(path, "the image")
    if not path.is_file():
        raise FileNotFoundError(f"the image file {path} (the dataset stores only its path) does not exist")
    return path


# -- reading ---------------------------------------------------------------------------------
def _pa():
    import pyarrow as pa  # lazy: a dependency, but not every command needs it

    return pa


def _read_json(path: Path) -> dict:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read {path}: {exc}") from None
    if not isinstance(value, dict):
        raise DataError(f"{path} does not hold a JSON object")
    return value


def _read_arrow(path: Path):
    pa = _pa()
    check_allowed(path, "the data file")
    try:
        source = pa.memory_map(str(path), "r")
        try:
            return pa.ipc.open_stream(source).read_all()
        except pa.ArrowInvalid:
            return pa.ipc.open_file(source).read_all()
    except (OSError, pa.ArrowException) as exc:
        raise DataError(f"cannot read {path} as Arrow data: {exc}") from None


def _read_parquet(path: Path):
    import pyarrow.parquet as pq

    pa = _pa()
    check_allowed(path, "the data file")
    try:
        return pq.read_table(path)
    except (OSError, pa.ArrowException) as exc:
        raise DataError(f"cannot read {path} as Parquet: {exc}") from None


def _concat(tables: list, where: Path):
    pa = _pa()
    try:
        return tables[0] if len(tables) == 1 else pa.concat_tables(tables)
    except pa.ArrowInvalid as exc:
        raise DataError(f"the data files of {where} do not share one schema: {exc}") from None


def _schema_features(table) -> dict | None:
    meta = table.schema.metadata or {}
    raw = meta.get(b"huggingface")
    if not raw:
        return None
    try:
        features = json.loads(raw)["info"]["features"]
    except (ValueError, KeyError, TypeError):
        return None
    return features if isinstance(features, dict) else None


def _dataset_folder(folder: Path, split: str | None) -> tuple[HFSplit, dict]:
    """One ``save_to_disk`` Dataset folder: its split and its ``dataset_info.json``."""
    state = _read_json(folder / "state.json")
    info = _read_json(folder / "dataset_info.json") if (folder / "dataset_info.json").is_file() else {}
    names = []
    for entry in state.get("_data_files") or []:
        name = str(entry.get("filename", "")) if isinstance(entry, dict) else ""
        if not name or "/" in name or "\\" in name or name.startswith("."):
            raise DataError(f"{folder / 'state.json'} lists a data file '{name}' that is not a plain file name")
        names.append(name)
    if not names:
        raise DataError(f"{folder / 'state.json'} lists no data files")
    files = [folder / name for name in names]
    for f in files:
        if not f.is_file():
            raise DataError(f"{f} (listed in {folder / 'state.json'}) does not exist")
    name = split or state.get("_split") or "train"
    return HFSplit(str(name), _concat([_read_arrow(f) for f in files], folder), files, folder), info


def _parquet_splits(root: Path) -> list[HFSplit]:
    files = (
        [root]
        if root.is_file()
        else sorted(
            p
            for p in root.rglob("*.parquet")
            if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts)
        )
    )
    by_split: dict[str, list[Path]] = {}
    for f in files:
        match = _SHARD.match(f.name)
        split = match["split"] if match else (f.parent.name if root.is_dir() and f.parent != root else "train")
        by_split.setdefault(split, []).append(f)
    order = sorted(by_split, key=lambda s: (s != "train", s))  # train first, as the Hub lists it
    return [
        HFSplit(s, _concat([_read_parquet(f) for f in by_split[s]], root), by_split[s], by_split[s][0].parent)
        for s in order
    ]


def _choose(names: list[str], features: dict, table, what: str, root: Path) -> tuple[str, str]:
    """The (image column, label column) names."""
    pa = _pa()
    schema = table.schema

    def kind(col: str) -> str | None:
        f = features.get(col)
        return f.get("_type") if isinstance(f, dict) else None

    def bytes_like(col: str) -> bool:
        t = schema.field(col).type
        return (
            pa.types.is_binary(t)
            or pa.types.is_large_binary(t)
            or (pa.types.is_struct(t) and t.get_field_index("bytes") >= 0)
        )

    images = [c for c in names if kind(c) == "Image"] or [c for c in IMAGE_NAMES if c in names and bytes_like(c)]
    images.sort(key=lambda c: (c not in IMAGE_NAMES, names.index(c)))
    labels = [c for c in names if kind(c) == "ClassLabel"]
    labels.sort(key=lambda c: (c not in LABEL_NAMES, LABEL_NAMES.index(c) if c in LABEL_NAMES else 0, names.index(c)))
    if not labels:
        labels = [c for c in LABEL_NAMES if c in names]
    listed = ", ".join(names) or "none"
    if not images:
        raise DataError(
            f"{root}: no image column in {what} (an Image feature, or a column named image or img; found: {listed})"
        )
    if not labels:
        raise DataError(
            f"{root}: no label column in {what} (a ClassLabel feature, or a column named label; found: {listed})"
        )
    return images[0], labels[0]


def open_hf(text: str) -> HFContainer:
    """Open the dataset at ``text`` (what follows ``hf:``); DataError with what to do otherwise."""
    if not text:
        raise DataError("data source 'hf:' names no path")
    root = Path(os.path.expanduser(text))
    if not root.exists():
        raise DataError(hub_hint(text))
    root = check_allowed(root, "the data")
    info: dict = {}
    if root.is_dir() and (root / "dataset_dict.json").is_file():
        listed = _read_json(root / "dataset_dict.json").get("splits")
        if (
            not isinstance(listed, list)
            or not listed
            or not all(isinstance(s, str) and s and "/" not in s and not s.startswith(".") for s in listed)
        ):
            raise DataError(f"{root / 'dataset_dict.json'} does not list its splits")
        splits = []
        for s in listed:
            split, info = _dataset_folder(root / s, s)
            splits.append(split)
        layout = "dict"
    elif root.is_dir() and (root / "state.json").is_file():
        parent = root.parent / "dataset_dict.json"
        inside = parent.is_file() and root.name in (_read_json(parent).get("splits") or [])
        split, info = _dataset_folder(root, root.name if inside else None)
        splits, layout = [split], "dataset"
    elif (root.is_file() and root.suffix == ".parquet") or (root.is_dir() and any(root.rglob("*.parquet"))):
        splits, layout = _parquet_splits(root), "parquet"
    else:
        raise DataError(
            f"no Hugging Face dataset in {root}: expected a folder written by save_to_disk (dataset_dict.json, or "
            "state.json with dataset_info.json and .arrow files) or Parquet files"
        )
    features = info.get("features") if isinstance(info.get("features"), dict) else _schema_features(splits[0].table)
    names = splits[0].table.schema.names
    for s in splits[1:]:
        if s.table.schema.names != names:
            raise DataError(f"{root}: split {s.name} has other columns than split {splits[0].name}")
    image_col, label_col = _choose(names, features or {}, splits[0].table, f"split {splits[0].name}", root)
    classes, labels, label_kind = _labels(splits, label_col, (features or {}).get(label_col), root)
    ids = _ids(splits, root)
    offsets = np.cumsum([0] + [len(s.table) for s in splits])
    return HFContainer(
        root=root if root.is_dir() else root.parent,
        layout=layout,
        splits=splits,
        image_column=image_col,
        label_column=label_col,
        label_kind=label_kind,
        features=features,
        info=info,
        classes=classes,
        ids=ids,
        labels=labels,
        offsets=offsets,
        path_images=_path_images(splits, image_col),
    )


def _labels(splits: list[HFSplit], col: str, feature: Any, root: Path) -> tuple[list[str], np.ndarray, str]:
    values = [v for s in splits for v in s.table.column(col).to_pylist()]
    where = f"{root}, column {col}"
    if any(v is None for v in values):
        raise DataError(
            f"{where}: {sum(v is None for v in values)} row(s) have no label; point hf: at a labelled split"
        )
    if isinstance(feature, dict) and feature.get("_type") == "ClassLabel":
        classes = [str(n) for n in feature.get("names") or []] or [str(k) for k in range(max(values, default=0) + 1)]
        kind = "classlabel"
    elif all(isinstance(v, str) for v in values):
        distinct = set(values)
        if any(any(ord(c) < 32 or ord(c) == 127 for c in v) for v in distinct):
            raise DataError(f"{where}: a label holds a control character")
        numeric = all(v.lstrip("-").isdigit() for v in distinct)
        classes = sorted(distinct, key=int) if numeric else sorted(distinct)
        index = {name: i for i, name in enumerate(classes)}
        return classes, np.array([index[v] for v in values], dtype=np.int64), "string"
    elif all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in values):
        classes = [str(k) for k in range(max(values) + 1)] if values else []
        kind = "int"
    else:
        raise DataError(f"{where}: labels must be class indices or names")
    labels = np.asarray(values, dtype=np.int64)
    bad = np.flatnonzero((labels < 0) | (labels >= max(len(classes), 1)))
    if bad.size:
        raise DataError(
            f"{where}: label {int(labels[bad[0]])} in {bad.size} row(s) is not a class (0..{len(classes) - 1}); "
            "-1 marks an unlabelled row (a test split?): point hf: at a labelled split's folder"
        )
    return classes, labels, kind


def _ids(splits: list[HFSplit], root: Path) -> list[str]:
    names = splits[0].table.schema.names
    ids: list[str] = []
    for s in splits:
        if ID_COLUMN in names:
            part = [str(v) for v in s.table.column(ID_COLUMN).to_pylist()]
        elif "id" in names:
            part = [f"{s.name}/{v}" for v in s.table.column("id").to_pylist()]
        else:
            width = max(5, len(str(len(s.table) - 1)))
            part = [f"{s.name}/{i:0{width}d}" for i in range(len(s.table))]
        ids.extend(part)
    bad = next((i for i in ids if not i or not i.isprintable() or i == "None"), None)
    if bad is not None:
        raise DataError(f"{root}: sample id {bad!r} (from the id column) is empty or not printable")
    if len(set(ids)) != len(ids):
        twice = next(i for i, n in Counter(ids).items() if n > 1)
        raise DataError(f"{root}: sample id '{twice}' occurs twice; the id column must be unique")
    return ids


def _path_images(splits: list[HFSplit], col: str) -> list[Path]:
    """Image files that rows reference by path only (their bytes are not in the data files)."""
    pa = _pa()
    out = []
    for s in splits:
        column = s.table.column(col)
        if not pa.types.is_struct(column.type) or column.type.get_field_index("path") < 0:
            continue
        for value in column.to_pylist():
            if isinstance(value, dict) and value.get("bytes") is None and value.get("path"):
                p = Path(value["path"])
                out.append(p if p.is_absolute() else s.folder / p)
    return out


# -- writing ---------------------------------------------------------------------------------
def image_features(classes: list[str]) -> dict:
    """The features of a table built by :func:`image_table`."""
    return {
        "image": {"_type": "Image"},
        "label": {"names": list(classes), "_type": "ClassLabel"},
        ID_COLUMN: {"dtype": "string", "_type": "Value"},
    }


def image_table(images: list[bytes], paths: list[str | None], labels: list[int], ids: list[str]):
    """A table of encoded images with ClassLabel indices and oga's ids (for sources that are not
    Hugging Face datasets)."""
    pa = _pa()
    image_type = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    return pa.table(
        {
            "image": pa.array([{"bytes": b, "path": p} for b, p in zip(images, paths)], type=image_type),
            "label": pa.array(labels, type=pa.int64()),
            ID_COLUMN: pa.array(ids, type=pa.string()),
        }
    )


def cleaned_tables(
    container: HFContainer, rows: np.ndarray, labels: np.ndarray, ids: list[str]
) -> tuple[dict[str, Any], dict | None]:
    """The kept ``rows`` (global, in order) of ``container`` per split, every column as it was
    except the label column (``labels``: class indices, written as the column's own kind) and
    ``oga_id`` (``ids``). Returns ``({split: table}, features)``; splits left empty are kept empty."""
    pa = _pa()
    rows = np.asarray(rows, dtype=np.int64)
    labels = np.asarray(labels, dtype=np.int64)
    which = np.searchsorted(container.offsets, rows, side="right") - 1
    out = {}
    for s, split in enumerate(container.splits):
        mine = which == s
        table = split.table.take(pa.array(rows[mine] - container.offsets[s], type=pa.int64()))
        field_type = table.schema.field(container.label_column).type
        if container.label_kind == "string":
            values = [container.classes[k] for k in labels[mine]]
        else:  # classlabel, int: the class index is the value (classes of "int" are 0..max)
            values = labels[mine].tolist()
        i = table.schema.get_field_index(container.label_column)
        table = table.set_column(i, container.label_column, pa.array(values, type=field_type))
        kept_ids = pa.array([ids[j] for j in np.flatnonzero(mine)], type=pa.string())
        if ID_COLUMN in table.schema.names:
            table = table.set_column(table.schema.get_field_index(ID_COLUMN), ID_COLUMN, kept_ids)
        else:
            table = table.append_column(ID_COLUMN, kept_ids)
        out[split.name] = table
    features = dict(container.features) if container.features is not None else None
    if features is not None:
        features[ID_COLUMN] = {"dtype": "string", "_type": "Value"}
    return out, features


def _with_features(table, features: dict | None):
    meta = dict(table.schema.metadata or {})
    if features is not None:
        meta[b"huggingface"] = json.dumps({"info": {"features": features}}).encode()
    return table.replace_schema_metadata(meta)


def write_save_to_disk(
    folder: Path, tables: dict[str, Any], features: dict | None, *, single: bool, info: dict | None = None
) -> None:
    """Write ``tables`` into ``folder`` as ``save_to_disk`` does: one Dataset (``single``, one
    split) or a DatasetDict (``dataset_dict.json`` and a folder per split)."""
    pa = _pa()
    info = {k: v for k, v in (info or {}).items() if k not in ("features", "splits", "dataset_size", "download_size")}
    info = {"citation": "", "description": "", "homepage": "", "license": "", **info}
    if features is not None:
        info["features"] = features
    if single and len(tables) != 1:
        raise ValueError("a single Dataset holds one split")
    for name, table in tables.items():
        where = folder if single else folder / name
        where.mkdir(parents=True, exist_ok=True)
        table = _with_features(table, features)
        with pa.OSFile(str(where / ARROW_NAME), "wb") as sink, pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
        digest = hashlib.blake2b((where / ARROW_NAME).read_bytes(), digest_size=8).hexdigest()
        state = {
            "_data_files": [{"filename": ARROW_NAME}],
            "_fingerprint": digest,
            "_format_columns": None,
            "_format_kwargs": {},
            "_format_type": None,
            "_output_all_columns": False,
            "_split": name,
        }
        (where / "state.json").write_text(json.dumps(state, indent=2), encoding="utf-8")
        (where / "dataset_info.json").write_text(json.dumps(info, indent=2), encoding="utf-8")
    if not single:
        (folder / "dataset_dict.json").write_text(json.dumps({"splits": list(tables)}), encoding="utf-8")
