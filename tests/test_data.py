"""oga_core/data.py: every source on small files the tests write, ids, labels, fingerprints."""

from __future__ import annotations

import pickle
import struct

import numpy as np
import pytest
from PIL import Image

from oga_core.data import LabeledImages, load_source, safe_relative_path
from oga_core.errors import DataError


def _png(path, pixels: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)


# -- folder: ---------------------------------------------------------------------------------
def test_folder_ids_are_relative_paths_and_classes_sorted(tmp_path, make_images):
    root = make_images(tmp_path / "data", {"zebra": 2, "ant": 3, "moth": 1}, size=8)
    # a nested image counts for its top-level class; hidden and non-image files do not count
    _png(root / "ant" / "sub" / "deep.png", np.full((8, 8, 3), 7, np.uint8))
    (root / "ant" / "notes.txt").write_text("not an image")
    _png(root / "ant" / ".hidden.png", np.zeros((8, 8, 3), np.uint8))
    (root / "empty_class").mkdir()

    ds = load_source(f"folder:{root}", image_size=8)
    assert ds.classes == ["ant", "moth", "zebra"]  # sorted; the empty folder is no class
    assert ds.ids == [
        "ant/ant_0.png",
        "ant/ant_1.png",
        "ant/ant_2.png",
        "ant/sub/deep.png",
        "moth/moth_0.png",
        "zebra/zebra_0.png",
        "zebra/zebra_1.png",
    ]
    assert ds.labels.tolist() == [0, 0, 0, 0, 1, 2, 2]
    assert ds.is_files and ds.file_path(3) == root / "ant" / "sub" / "deep.png"
    assert ds.image_shape == (3, 8, 8)
    assert ds.source == f"folder:{root}"


def test_folder_decodes_exact_pixels_resizes_and_converts(tmp_path):
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
    b = rng.integers(0, 256, (12, 6, 3), dtype=np.uint8)  # not square: resized to 8x8
    _png(tmp_path / "d" / "x" / "a.png", a)
    _png(tmp_path / "d" / "y" / "b.png", b)

    rgb = load_source(f"folder:{tmp_path / 'd'}", image_size=8)
    decoded = rgb.decode()
    assert decoded.unreadable == {} and decoded.pixels.shape == (2, 3, 8, 8) and decoded.pixels.dtype == np.uint8
    np.testing.assert_array_equal(decoded.pixels[0], a.transpose(2, 0, 1))
    resized = np.asarray(Image.fromarray(b).resize((8, 8), Image.Resampling.BILINEAR))
    np.testing.assert_array_equal(decoded.pixels[1], resized.transpose(2, 0, 1))
    np.testing.assert_array_equal(rgb.image(0), a.transpose(2, 0, 1))
    assert np.asarray(rgb.original(1)).shape == (12, 6, 3)  # the file as stored, for people

    gray = load_source(f"folder:{tmp_path / 'd'}", image_size=4, grayscale=True)
    assert gray.image_shape == (1, 4, 4)
    expected = np.asarray(Image.fromarray(a).convert("L").resize((4, 4), Image.Resampling.BILINEAR))
    np.testing.assert_array_equal(gray.decode().pixels[0, 0], expected)


def test_folder_errors(tmp_path, make_images):
    with pytest.raises(DataError, match="does not exist"):
        load_source(f"folder:{tmp_path / 'missing'}")
    (tmp_path / "file.png").write_bytes(b"x")
    with pytest.raises(DataError, match="is not a folder"):
        load_source(f"folder:{tmp_path / 'file.png'}")
    (tmp_path / "empty" / "cls").mkdir(parents=True)
    with pytest.raises(DataError, match="no images found"):
        load_source(f"folder:{tmp_path / 'empty'}")
    one = make_images(tmp_path / "one", {"only": 3})
    with pytest.raises(DataError, match="at least 2 classes"):
        load_source(f"folder:{one}")


def test_corrupt_image_is_reported_with_its_file(tmp_path, make_images):
    root = make_images(tmp_path / "d", {"a": 2, "b": 2})
    bad = root / "b" / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n this is not really a png")
    ds = load_source(f"folder:{root}")
    index = ds.ids.index("b/broken.png")
    result = ds.decode()
    assert list(result.unreadable) == [index] and "not a readable image" in result.unreadable[index]
    assert not result.pixels[index].any()  # the row of an unreadable file stays zero
    with pytest.raises(DataError, match="broken.png"):
        ds.image(index)
    with pytest.raises(DataError, match="broken.png"):
        ds.original(index)


# -- csv: ------------------------------------------------------------------------------------
def _manifest(folder, rows, classes=None, header="path,label"):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "m.csv").write_text(header + "\n" + "".join(f"{p},{lab}\n" for p, lab in rows))
    if classes is not None:
        (folder / "classes.txt").write_text("\n".join(classes) + "\n")
    return folder / "m.csv"


def test_csv_without_classes_file_sorts_the_labels(tmp_path, make_images):
    make_images(tmp_path / "imgs", {"x": 2, "y": 1})
    m = _manifest(tmp_path, [("imgs/y/y_0.png", "dog"), ("imgs/x/x_0.png", "cat"), ("./imgs/x/../x/x_1.png", "dog")])
    ds = load_source(f"csv:{m}", image_size=8)
    assert ds.classes == ["cat", "dog"]
    assert ds.ids == ["imgs/y/y_0.png", "imgs/x/x_0.png", "imgs/x/x_1.png"]  # manifest order, normalised
    assert ds.labels.tolist() == [1, 0, 1]
    assert ds.root == tmp_path and ds.file_path(1) == tmp_path / "imgs" / "x" / "x_0.png"
    assert ds.decode().unreadable == {}


def test_csv_with_classes_file_keeps_its_order_and_takes_indices(tmp_path, make_images):
    make_images(tmp_path / "imgs", {"x": 3})
    rows = [("imgs/x/x_0.png", "zebra"), ("imgs/x/x_1.png", "2"), ("imgs/x/x_2.png", "0")]
    m = _manifest(tmp_path, rows, classes=["zebra", "ant", "moth"])
    ds = load_source(f"csv:{m}")
    assert ds.classes == ["zebra", "ant", "moth"]
    assert ds.labels.tolist() == [0, 2, 0]


def test_csv_label_errors(tmp_path, make_images):
    make_images(tmp_path / "imgs", {"x": 2})
    m = _manifest(tmp_path / "a", [("../imgs/x/x_0.png", "cat")])
    with pytest.raises(DataError, match="leaves the manifest's folder"):
        load_source(f"csv:{m}")
    m = _manifest(tmp_path, [("imgs/x/x_0.png", "cat"), ("imgs/x/x_1.png", "cow")], classes=["cat", "dog"])
    with pytest.raises(DataError, match=r"line 3: label 'cow' is not in the class list"):
        load_source(f"csv:{m}")
    m = _manifest(tmp_path, [("imgs/x/x_0.png", "cat"), ("imgs/x/x_1.png", "5")], classes=["cat", "dog"])
    with pytest.raises(DataError, match=r"label 5 is out of range 0..1"):
        load_source(f"csv:{m}")
    m = _manifest(tmp_path, [("imgs/x/x_0.png", "cat"), ("imgs/x/x_1.png", "-1")], classes=["cat", "dog"])
    with pytest.raises(DataError, match=r"label -1 is out of range"):
        load_source(f"csv:{m}")
    m = _manifest(tmp_path, [("imgs/x/x_0.png", "cat"), ("imgs/x/x_1.png", "")], classes=["cat", "dog"])
    with pytest.raises(DataError, match="empty label"):
        load_source(f"csv:{m}")


def test_csv_structure_errors(tmp_path, make_images):
    make_images(tmp_path / "imgs", {"x": 2})
    for path, msg in [
        ("/etc/passwd", "must be relative"),
        ("../x.png", "leaves the manifest's folder"),
        ("a/../../x.png", "leaves"),
    ]:
        m = _manifest(tmp_path, [("imgs/x/x_0.png", "a"), (path, "b")])
        with pytest.raises(DataError, match=msg):
            load_source(f"csv:{m}")
    m = _manifest(tmp_path, [("imgs/x/x_0.png", "a"), ("imgs/./x/x_0.png", "b")])
    with pytest.raises(DataError, match="listed twice"):
        load_source(f"csv:{m}")
    m = _manifest(tmp_path, [("imgs/x/x_0.png", "a")], header="file,class")
    with pytest.raises(DataError, match="needs the columns path,label"):
        load_source(f"csv:{m}")
    m = _manifest(tmp_path, [])
    with pytest.raises(DataError, match="no rows"):
        load_source(f"csv:{m}")
    with pytest.raises(DataError, match="does not exist"):
        load_source(f"csv:{tmp_path / 'nope.csv'}")
    m = _manifest(tmp_path, [("imgs/x/x_0.png", "a"), ("imgs/x/gone.png", "b")])
    missing = load_source(f"csv:{m}")
    assert missing.decode().unreadable == {1: "file not found"}  # named when decoding, skippable
    present = _manifest(tmp_path, [("imgs/x/x_0.png", "a"), ("imgs/x/x_1.png", "b")])
    assert missing.fingerprint() != load_source(f"csv:{present}").fingerprint()


def test_safe_relative_path():
    assert safe_relative_path(" a\\b/./c.png ") == "a/b/c.png"
    assert safe_relative_path("a/../b.png") == "b.png"
    for bad in ("/abs.png", "C:/x.png", "..", "../x", "", ".", "a/.."):
        with pytest.raises(ValueError):
            safe_relative_path(bad)


# -- torchvision:NAME:ROOT -------------------------------------------------------------------
def _write_mnist(root, images: np.ndarray, labels: np.ndarray) -> None:
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    n, h, w = images.shape
    (raw / "train-images-idx3-ubyte").write_bytes(struct.pack(">IIII", 0x00000803, n, h, w) + images.tobytes())
    (raw / "train-labels-idx1-ubyte").write_bytes(struct.pack(">II", 0x00000801, n) + labels.astype(np.uint8).tobytes())


def test_torchvision_mnist_from_idx_files(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (7, 28, 28), dtype=np.uint8)
    labels = np.array([3, 1, 4, 1, 5, 9, 2])
    _write_mnist(tmp_path, images, labels)  # the train split only: no t10k files needed
    ds = load_source(f"torchvision:mnist:{tmp_path}")
    assert ds.source == f"torchvision:MNIST:{tmp_path}"
    assert len(ds) == 7 and ds.image_shape == (1, 28, 28) and ds.num_classes == 10
    assert ds.ids == [f"train/{i:05d}" for i in range(7)]
    assert ds.labels.tolist() == labels.tolist()
    np.testing.assert_array_equal(ds.decode().pixels[:, 0], images)


def _write_cifar10(root, batches: list[tuple[np.ndarray, list[int]]], names: list[str]) -> None:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    files = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for name, (data, labels) in zip(files, batches):
        # the CIFAR python format: a pickled dict, data uint8 (N, 3072) in channel-major order
        with open(folder / name, "wb") as f:
            pickle.dump({"data": data, "labels": labels, "batch_label": name}, f, protocol=2)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": names, "num_vis": 3072}, f, protocol=2)


def test_torchvision_cifar10_from_pickled_batches(tmp_path):
    rng = np.random.default_rng(1)
    batches = [(rng.integers(0, 256, (2, 3072), dtype=np.uint8), [i, (i + 3) % 10]) for i in range(6)]
    names = [f"class{k}" for k in range(10)]
    _write_cifar10(tmp_path, batches, names)
    ds = load_source(f"torchvision:CIFAR10:{tmp_path}")
    assert len(ds) == 10  # five train batches of two; the test batch is not read
    assert ds.classes == names and ds.image_shape == (3, 32, 32)
    assert ds.labels.tolist() == [0, 3, 1, 4, 2, 5, 3, 6, 4, 7]
    train = np.concatenate([d for d, _ in batches[:5]]).reshape(10, 3, 32, 32)
    np.testing.assert_array_equal(ds.decode().pixels, train)


def test_torchvision_errors(tmp_path):
    with pytest.raises(DataError, match="not found under"):
        load_source(f"torchvision:MNIST:{tmp_path}")
    with pytest.raises(DataError, match="not found under"):
        load_source(f"torchvision:CIFAR10:{tmp_path}")
    with pytest.raises(DataError, match="unknown torchvision dataset 'SVHN'"):
        load_source(f"torchvision:SVHN:{tmp_path}")
    with pytest.raises(DataError, match="names no path"):
        load_source("torchvision:MNIST:")
    raw = tmp_path / "t" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    (raw / "train-images-idx3-ubyte").write_bytes(b"\x00\x00\x08\x03garbage")
    (raw / "train-labels-idx1-ubyte").write_bytes(b"\x00\x00\x08\x01")
    with pytest.raises(DataError, match="cannot be read"):
        load_source(f"torchvision:MNIST:{tmp_path / 't'}")


# -- demo: and the spec ------------------------------------------------------------------------
def test_demo_digits():
    ds = load_source("demo:digits")
    assert len(ds) == 1797 and ds.image_shape == (1, 8, 8) and ds.classes == [str(k) for k in range(10)]
    assert ds.ids[0] == "00000" and ds.ids[-1] == "01796"
    pixels = ds.decode().pixels
    assert pixels.dtype == np.uint8 and pixels.max() == 255 and pixels.min() == 0
    assert np.bincount(ds.labels).min() >= 170


def test_demo_mnist5k():
    ds = load_source("demo:mnist5k")
    assert len(ds) == 5000 and ds.image_shape == (1, 28, 28)
    assert sorted(set(ds.labels.tolist())) == list(range(10))
    assert np.bincount(ds.labels).tolist() == [500] * 10
    assert ds.decode().pixels.max() > 200


def test_unknown_sources():
    with pytest.raises(DataError, match="unknown data source 'ftp://x'"):
        load_source("ftp://x")
    with pytest.raises(DataError, match="unknown demo 'cifar'"):
        load_source("demo:cifar")
    with pytest.raises(DataError, match="names no path"):
        load_source("folder:")


# -- identity ------------------------------------------------------------------------------------
def test_fingerprint_tracks_bytes_and_labels_not_resolution(tmp_path, make_images):
    root = make_images(tmp_path / "d", {"a": 2, "b": 2})
    first = load_source(f"folder:{root}", image_size=8).fingerprint()
    assert load_source(f"folder:{root}", image_size=8).fingerprint() == first  # stable across loads
    assert load_source(f"folder:{root}", image_size=32).fingerprint() == first  # and resolutions
    assert load_source(f"folder:{root}", grayscale=True).fingerprint() == first

    ds = load_source(f"folder:{root}")
    assert ds.with_labels(np.array([1, 0, 1, 1])).fingerprint() != first  # a label changed

    _png(root / "a" / "a_0.png", np.zeros((8, 8, 3), np.uint8))  # a file's bytes changed
    assert load_source(f"folder:{root}").fingerprint() != first


def test_csv_fingerprint_follows_the_manifest_labels(tmp_path, make_images):
    make_images(tmp_path / "imgs", {"x": 2})
    m = _manifest(tmp_path, [("imgs/x/x_0.png", "cat"), ("imgs/x/x_1.png", "dog")])
    before = load_source(f"csv:{m}").fingerprint()
    assert load_source(f"csv:{m}", image_size=16).fingerprint() == before
    m = _manifest(tmp_path, [("imgs/x/x_0.png", "dog"), ("imgs/x/x_1.png", "cat")])
    assert load_source(f"csv:{m}").fingerprint() != before


def test_array_dataset_copies_share_storage():
    pixels = np.arange(4 * 1 * 2 * 2, dtype=np.uint8).reshape(4, 1, 2, 2)
    ds = LabeledImages(
        source="t", ids=["a", "b", "c", "d"], labels=np.array([0, 1, 0, 1]), classes=["x", "y"], pixels=pixels
    )
    sub = ds.subset([3, 1])
    assert sub.ids == ["d", "b"] and sub.labels.tolist() == [1, 1]
    np.testing.assert_array_equal(sub.image(0), pixels[3])
    relabeled = ds.with_labels(np.array([1, 1, 1, 0]))
    assert relabeled.labels.tolist() == [1, 1, 1, 0] and ds.labels.tolist() == [0, 1, 0, 1]
    assert relabeled.fingerprint() != ds.fingerprint()
    with pytest.raises(DataError, match="out of range"):
        ds.with_labels(np.array([0, 1, 2, 0]))
    with pytest.raises(DataError, match="3 labels for 4 samples"):
        LabeledImages(source="t", ids=list("abcd"), labels=np.array([0, 1, 0]), classes=["x", "y"], pixels=pixels)


def test_csv_reads_back_the_formula_guard_of_oga_exports(tmp_path, make_images):
    make_images(tmp_path, {"=x": 1, "-1": 1, "'quoted": 1})
    rows = [("'=x/=x_0.png", "'=x"), ("'-1/-1_0.png", "'-1"), ("'quoted/'quoted_0.png", "'quoted")]
    m = _manifest(tmp_path, rows)
    ds = load_source(f"csv:{m}")
    assert ds.ids == ["=x/=x_0.png", "-1/-1_0.png", "'quoted/'quoted_0.png"]  # a plain quote stays
    assert ds.classes == ["'quoted", "-1", "=x"] and ds.labels.tolist() == [2, 1, 0]
    assert ds.decode().unreadable == {}


def test_original_of_an_array_sample():
    pixels = np.arange(2 * 3 * 4 * 4, dtype=np.uint8).reshape(2, 3, 4, 4)
    ds = LabeledImages(source="t", ids=["a", "b"], labels=np.array([0, 1]), classes=["x", "y"], pixels=pixels)
    im = ds.original(1)
    assert im.mode == "RGB" and im.size == (4, 4)
    np.testing.assert_array_equal(np.asarray(im), pixels[1].transpose(1, 2, 0))
    assert ds.file_path(0) is None and not ds.is_files


def test_cifar_reader_refuses_a_pickle_that_runs_code(tmp_path):
    """torchvision unpickles CIFAR batches with plain pickle.load; a crafted batch would run code."""
    import pickle

    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    base = tmp_path / "cifar-10-batches-py"
    base.mkdir()
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["batches.meta"]:
        (base / name).write_bytes(pickle.dumps({"data": Payload(), "labels": [0], "label_names": ["a", "b"]}))
    with pytest.raises(DataError, match=r"refused to load (io|builtins)\.open"):
        load_source(f"torchvision:CIFAR10:{tmp_path}")
    assert not marker.exists()
