"""Property-based fuzzing (hypothesis) of the two readers that take a stranger's bytes: the CSV
manifest reader and the zip importer. The only outcomes allowed are a loaded data set or an
OgaError with a one-line message; anything else (a traceback) is a bug."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from oga_core.data import load_source
from oga_core.errors import OgaError
from oga_core.uploads import extract_image_archive

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _png(seed: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (6, 6), dtype=np.uint8), "L").save(buf, "PNG")
    return buf.getvalue()


def _one_line(exc: OgaError) -> None:
    assert str(exc) and "\n" not in str(exc).strip() and "Traceback" not in str(exc)


def _load_or_refuse(spec: str) -> None:
    try:
        ds = load_source(spec, image_size=6)
    except OgaError as exc:
        _one_line(exc)
        return
    assert len(ds) > 0 and ds.num_classes >= 2
    assert len(ds.ids) == len(set(ds.ids)) == len(ds.labels)
    ds.fingerprint()
    decoded = ds.decode()  # unreadable files are reported, never raised
    assert decoded.pixels.shape[0] == len(ds)


_cells = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=30)
_paths = st.one_of(
    st.sampled_from(["a/0.png", "a/1.png", "b/0.png", "b/1.png", "../x.png", "/etc/passwd", "a\\0.png", "", "a/"]),
    _cells,
)


@FUZZ
@given(
    rows=st.lists(st.tuples(_paths, _cells), max_size=12),
    header=st.sampled_from(["path,label", "label,path", "PATH , Label", "x,y", ""]),
)
def test_csv_manifest_rows(tmp_path_factory, rows, header):
    folder = tmp_path_factory.mktemp("csv")
    for name in ("a/0.png", "a/1.png", "b/0.png", "b/1.png"):
        (folder / name).parent.mkdir(exist_ok=True)
        (folder / name).write_bytes(_png(len(name)))
    lines = [header] + [",".join('"' + c.replace('"', '""') + '"' for c in row) for row in rows]
    (folder / "m.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    _load_or_refuse(f"csv:{folder / 'm.csv'}")


@FUZZ
@given(data=st.binary(max_size=600))
def test_csv_manifest_random_bytes(tmp_path_factory, data):
    folder = tmp_path_factory.mktemp("csvbytes")
    (folder / "m.csv").write_bytes(b"path,label\n" + data)
    _load_or_refuse(f"csv:{folder / 'm.csv'}")


_names = st.one_of(
    st.sampled_from(["cat/1.png", "dog/2.png", "pets/cat/3.png", "../evil.png", "/abs.png", "cat/.hidden.png",
                     "__MACOSX/cat/._1.png", "dog/", "a\\b.png", "c:/x.png"]),
    st.text(min_size=1, max_size=24),
)  # fmt: skip


@pytest.mark.filterwarnings("ignore:Duplicate name")  # zipfile's own note while building an archive
@FUZZ
@given(entries=st.lists(st.tuples(_names, st.one_of(st.integers(0, 5).map(_png), st.binary(max_size=64))), max_size=10))
def test_zip_importer_random_entries(tmp_path_factory, entries):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        for name, payload in entries:
            try:
                archive.writestr(name, payload)
            except (ValueError, UnicodeEncodeError, IndexError):
                continue  # a name zipfile itself cannot store (IndexError: a name that is only a NUL)
    parent = tmp_path_factory.mktemp("zip")
    try:
        root = extract_image_archive(io.BytesIO(buf.getvalue()), parent)
    except OgaError as exc:
        _one_line(exc)
        return
    assert root.resolve().is_relative_to(parent.resolve())  # nothing lands outside
    assert not any(p.is_symlink() for p in Path(parent).rglob("*"))
    _load_or_refuse(f"folder:{root}")


@FUZZ
@given(data=st.binary(max_size=2000))
def test_zip_importer_random_bytes(tmp_path_factory, data):
    parent = tmp_path_factory.mktemp("zipbytes")
    try:
        extract_image_archive(io.BytesIO(data), parent)
    except OgaError as exc:
        _one_line(exc)
