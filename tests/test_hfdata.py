"""hf:PATH (oga_core/hfdata.py, data.EncodedImages, export.export_hf) with the real `datasets`
library: save_to_disk folders and Parquet files in, the cleaned set out, loaded back by both
`hf:` and `datasets.load_from_disk`; the errors a person can make."""

from __future__ import annotations

import io
import json
import zlib

import numpy as np
import pytest
from PIL import Image

from oga_core.cli import main
from oga_core.data import EncodedImages, load_source
from oga_core.errors import DataError

from helpers import cli_fails

datasets = pytest.importorskip("datasets")

CLASSES = ["cat", "dog", "owl"]


def png(rng: np.random.Generator, size: int = 8) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def make_split(rng, n: int, tag: str):
    features = datasets.Features(
        {"image": datasets.Image(), "label": datasets.ClassLabel(names=CLASSES), "note": datasets.Value("string")}
    )
    return datasets.Dataset.from_dict(
        {
            "image": [{"bytes": png(rng), "path": None} for _ in range(n)],
            "label": [i % 3 for i in range(n)],
            "note": [f"{tag}{i}" for i in range(n)],
        },
        features=features,
    )


@pytest.fixture
def dataset_dict(tmp_path):
    """A DatasetDict (train 12, test 6) saved with save_to_disk; pixels unique to the test's folder."""
    rng = np.random.default_rng(zlib.crc32(str(tmp_path).encode()))
    dd = datasets.DatasetDict({"train": make_split(rng, 12, "a"), "test": make_split(rng, 6, "b")})
    dd.save_to_disk(str(tmp_path / "dd"))
    return tmp_path / "dd", dd


def test_a_dataset_dict_loads_with_stable_ids(dataset_dict):
    path, dd = dataset_dict
    ds = load_source(f"hf:{path}", image_size=8)
    assert isinstance(ds, EncodedImages) and ds.classes == CLASSES and len(ds) == 18
    assert ds.ids[:2] == ["train/00000", "train/00001"] and ds.ids[-1] == "test/00005"
    assert ds.labels.tolist() == list(dd["train"]["label"]) + list(dd["test"]["label"])
    decoded = ds.decode()
    assert decoded.pixels.shape == (18, 3, 8, 8) and not decoded.unreadable
    first = np.asarray(dd["test"][1]["image"].convert("RGB")).transpose(2, 0, 1)
    np.testing.assert_array_equal(decoded.pixels[13], first)
    np.testing.assert_array_equal(ds.image(13), first)
    assert ds.original(13).size == (8, 8)
    # a subset with other labels keeps the images (noise injection, unreadable files left out)
    sub = ds.subset([13, 0]).with_labels(np.array([2, 2]))
    assert isinstance(sub, EncodedImages) and sub.ids == ["test/00001", "train/00000"]
    np.testing.assert_array_equal(sub.image(0), first)
    # one split's folder alone gives the same ids; the fingerprint follows content and labels
    alone = load_source(f"hf:{path / 'test'}", image_size=8)
    assert alone.ids == ds.ids[12:] and alone.labels.tolist() == ds.labels[12:].tolist()
    assert ds.fingerprint() == load_source(f"hf:{path}").fingerprint() != ds.with_labels(ds.labels[::-1]).fingerprint()
    assert ds.stat_signature() is not None


def test_analyse_decide_export_and_load_back_with_both(dataset_dict, tmp_path, capsys):
    path, dd = dataset_dict
    data = ["--data", f"hf:{path}", "--image-size", "8"]
    assert main(["analyze", *data, "--out", str(tmp_path / "a"), "--epochs", "1", "--quiet"]) == 0
    assert main(["decide", *data, "--sample", "train/00000", "--sample", "test/00003", "--drop"]) == 0
    assert main(["decide", *data, "--sample", "train/00001", "--relabel", "owl"]) == 0
    assert main(["decide", *data, "--sample", "test/00002", "--relabel", "cat"]) == 0
    out = tmp_path / "clean"
    assert main(["export", *data, "--out", str(tmp_path / "m.csv"), "--hf", str(out)]) == 0
    assert "wrote a Hugging Face dataset of 16 samples (train 11, test 5)" in capsys.readouterr().out
    expected = {f"train/{i:05d}": i % 3 for i in range(12)} | {f"test/{i:05d}": i % 3 for i in range(6)}
    del expected["train/00000"], expected["test/00003"]
    expected["train/00001"], expected["test/00002"] = 2, 0

    back = datasets.load_from_disk(str(out))
    assert list(back) == ["train", "test"]
    got = {i: y for split in back.values() for i, y in zip(list(split["oga_id"]), list(split["label"]))}
    assert got == expected
    assert back["train"].features["label"].names == CLASSES
    assert list(back["train"]["note"]) == [f"a{i}" for i in range(1, 12)]  # every other column kept
    np.testing.assert_array_equal(  # the very same image bytes
        np.asarray(back["test"][0]["image"]), np.asarray(dd["test"][0]["image"])
    )
    again = load_source(f"hf:{out}")
    assert dict(zip(again.ids, again.labels.tolist())) == expected and again.classes == CLASSES
    record = json.loads((out / ".oga-export.json").read_text())
    assert "train/data-00000-of-00001.arrow" in record["files"]
    # the same rules as the image-folder export: a second export needs --overwrite, then replaces
    cli_fails(capsys, ["export", *data, "--out", str(tmp_path / "m.csv"), "--hf", str(out)], "is not empty")
    assert main(["export", *data, "--out", str(tmp_path / "m.csv"), "--hf", str(out), "--overwrite"]) == 0
    (tmp_path / "theirs").mkdir()
    (tmp_path / "theirs" / "notes.txt").write_text("mine")
    cli_fails(
        capsys,
        ["export", *data, "--out", str(tmp_path / "m.csv"), "--hf", str(tmp_path / "theirs"), "--overwrite"],
        "holds no record of an earlier oga export",
    )
    cli_fails(
        capsys, ["export", *data, "--out", str(tmp_path / "m.csv"), "--hf", str(path / "x")], "overlaps the source"
    )


def test_parquet_files(tmp_path):
    rng = np.random.default_rng(5)
    (tmp_path / "pq" / "data").mkdir(parents=True)
    make_split(rng, 9, "a").to_parquet(str(tmp_path / "pq" / "data" / "train-00000-of-00001.parquet"))
    make_split(rng, 3, "b").to_parquet(str(tmp_path / "pq" / "data" / "test-00000-of-00001.parquet"))
    ds = load_source(f"hf:{tmp_path / 'pq'}", image_size=8)
    assert ds.ids[0] == "train/00000" and ds.ids[9:] == ["test/00000", "test/00001", "test/00002"]
    assert ds.classes == CLASSES and ds.labels.tolist() == [i % 3 for i in range(9)] + [0, 1, 2]
    assert ds.decode().pixels.shape == (12, 3, 8, 8)
    single = load_source(f"hf:{tmp_path / 'pq' / 'data' / 'test-00000-of-00001.parquet'}")
    assert single.ids == ["test/00000", "test/00001", "test/00002"]
    import pandas as pd

    from oga_core.export import cleaned_manifest, export_hf

    decisions = pd.DataFrame(
        [("train/00004", "drop", 1), ("test/00000", "relabel", 2)], columns=["sample_id", "action", "label"]
    )
    counts = export_hf(ds, cleaned_manifest(ds, decisions), tmp_path / "out")
    assert counts == {"train": 8, "test": 3}
    back = datasets.load_from_disk(str(tmp_path / "out"))
    assert "train/00004" not in list(back["train"]["oga_id"]) and list(back["test"]["label"])[0] == 2
    assert load_source(f"hf:{tmp_path / 'out'}").ids == [i for i in ds.ids if i != "train/00004"]


def test_strings_ints_an_id_column_and_raw_bytes(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(1)
    images = [png(rng) for _ in range(4)]
    (tmp_path / "src").mkdir()
    pq.write_table(
        pa.table({"img": pa.array(images, pa.binary()), "label": ["b", "a", "b", "10"], "id": [7, 3, 9, 1]}),
        tmp_path / "src" / "s.parquet",
    )
    ds = load_source(f"hf:{tmp_path / 'src' / 's.parquet'}")
    assert ds.classes == ["10", "a", "b"] and ds.labels.tolist() == [2, 1, 2, 0]
    assert ds.ids == ["train/7", "train/3", "train/9", "train/1"] and ds.image(0).shape == (3, 32, 32)
    pq.write_table(
        pa.table({"image": pa.array(images, pa.binary()), "target": [0, 4, 2, 4]}), tmp_path / "src" / "i.parquet"
    )
    ints = load_source(f"hf:{tmp_path / 'src' / 'i.parquet'}")
    assert ints.classes == ["0", "1", "2", "3", "4"] and ints.labels.tolist() == [0, 4, 2, 4]
    from oga_core.export import cleaned_manifest, export_hf

    export_hf(ints, cleaned_manifest(ints, _decisions([("train/00001", "relabel", 3)])), tmp_path / "o")
    back = datasets.load_from_disk(str(tmp_path / "o"))
    assert list(back["target"]) == [0, 3, 2, 4] and list(back["oga_id"]) == ints.ids


def _decisions(rows):
    import pandas as pd

    return pd.DataFrame(rows, columns=["sample_id", "action", "label"])


def test_images_stored_by_path(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(2)
    (tmp_path / "d" / "imgs").mkdir(parents=True)
    (tmp_path / "d" / "imgs" / "a.png").write_bytes(png(rng))
    struct = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    cells = [
        {"bytes": None, "path": "imgs/a.png"},
        {"bytes": None, "path": "imgs/missing.png"},
        {"bytes": png(rng), "path": None},
    ]
    pq.write_table(pa.table({"image": pa.array(cells, struct), "label": [0, 1, 0]}), tmp_path / "d" / "t.parquet")
    ds = load_source(f"hf:{tmp_path / 'd'}")
    decoded = ds.decode()
    assert list(decoded.unreadable) == [1] and "missing.png" in decoded.unreadable[1]
    assert decoded.pixels[0].any() and decoded.pixels[2].any()
    with pytest.raises(DataError, match="cannot read the image of train/00001"):
        ds.image(1)
    assert tmp_path / "d" / "imgs" / "a.png" in ds.container.files()  # its bytes count in the fingerprint


def test_export_of_another_source_as_a_hugging_face_dataset(tmp_path, make_images):
    from oga_core.export import cleaned_manifest, export_hf

    root = make_images(tmp_path / "imgs", {"cat": 3, "dog": 2})
    ds = load_source(f"folder:{root}")
    export_hf(ds, cleaned_manifest(ds, _decisions([("dog/dog_0.png", "relabel", 0)])), tmp_path / "o")
    back = datasets.load_from_disk(str(tmp_path / "o"))
    assert back.features["label"].names == ["cat", "dog"] and list(back["oga_id"]) == ds.ids
    assert list(back["label"]) == [0, 0, 0, 0, 1]
    assert back[0]["image"].tobytes() == Image.open(root / "cat" / "cat_0.png").tobytes()
    demo = load_source("demo:digits").subset(range(5))
    export_hf(demo, cleaned_manifest(demo, _decisions([])), tmp_path / "d")
    assert list(datasets.load_from_disk(str(tmp_path / "d"))["oga_id"]) == demo.ids


def test_what_a_person_gets_wrong(tmp_path, capsys, monkeypatch):
    for name in ("cifar10", "someone/their-set"):
        line = cli_fails(
            capsys, ["export", "--data", f"hf:{name}", "--out", str(tmp_path / "m.csv")], "oga never downloads"
        )
        assert f'datasets.load_dataset("{name}").save_to_disk(PATH)' in line
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no Hugging Face dataset in"):
        load_source(f"hf:{tmp_path / 'empty'}")
    with pytest.raises(DataError, match="names no path"):
        load_source("hf:")
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(3)
    pq.write_table(pa.table({"image": pa.array([png(rng)] * 2, pa.binary()), "label": [0, -1]}), tmp_path / "u.parquet")
    with pytest.raises(DataError, match="-1 marks an unlabelled row"):
        load_source(f"hf:{tmp_path / 'u.parquet'}")
    pq.write_table(pa.table({"pixels": [1, 2], "label": [0, 1]}), tmp_path / "n.parquet")
    with pytest.raises(DataError, match="no image column"):
        load_source(f"hf:{tmp_path / 'n.parquet'}")
    pq.write_table(
        pa.table({"image": pa.array([png(rng)] * 2, pa.binary()), "label": [0, 1], "oga_id": ["x", "x"]}),
        tmp_path / "d.parquet",
    )
    with pytest.raises(DataError, match="'x' occurs twice"):
        load_source(f"hf:{tmp_path / 'd.parquet'}")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "state.json").write_text(json.dumps({"_data_files": [{"filename": "../../etc/passwd"}]}))
    with pytest.raises(DataError, match="not a plain file name"):
        load_source(f"hf:{bad}")
    (bad / "state.json").write_text(json.dumps({"_data_files": [{"filename": "data.arrow"}]}))
    (bad / "data.arrow").write_bytes(b"not arrow")
    with pytest.raises(DataError, match="cannot read .* as Arrow data"):
        load_source(f"hf:{bad}")
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    monkeypatch.setenv("OGA_ROOTS", str(allowed))
    with pytest.raises(Exception, match="outside the folders"):
        load_source(f"hf:{tmp_path / 'u.parquet'}")
