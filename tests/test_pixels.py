"""oga_core/pixels.py and the streaming data path: pixels on disk, read a batch at a time, so a
streaming analysis's resident memory does not grow with the number of images."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from PIL import Image

from oga_core.data import load_source
from oga_core.pixels import PixelFile, RowWriter, open_pixels, sample_rows


def _pixels(n: int = 50) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (n, 3, 4, 5), dtype=np.uint8)


def test_pixel_file_reads_what_numpy_wrote(tmp_path):
    px = _pixels()
    np.save(tmp_path / "p.npy", px)
    f = PixelFile(tmp_path / "p.npy")
    assert f.shape == px.shape and len(f) == 50 and f.nbytes == px.nbytes
    np.testing.assert_array_equal(f[7], px[7])
    np.testing.assert_array_equal(f[10:20], px[10:20])
    np.testing.assert_array_equal(f[-3:], px[-3:])
    idx = np.array([5, 6, 7, 40, 2, 3, 49])  # runs and jumps, out of order
    np.testing.assert_array_equal(f[idx], px[idx])
    np.testing.assert_array_equal(f[np.arange(50) % 3 == 0], px[::3])
    np.testing.assert_array_equal(np.asarray(f), px)
    sub = f.subset(np.array([9, 1, 30]))
    np.testing.assert_array_equal(sub[:], px[[9, 1, 30]])
    np.testing.assert_array_equal(sub.subset(np.array([2, 0]))[:], px[[30, 9]])
    with pytest.raises(IndexError):
        f[np.array([50])]


def test_row_writer_and_open_pixels(tmp_path):
    px = _pixels()
    writer = RowWriter(tmp_path / "w.npy", 50, (3, 4, 5))
    for i in np.random.default_rng(1).permutation(50)[:45]:  # any order; five rows never written
        writer.write(int(i), px[i])
    writer.close()
    loaded = np.load(tmp_path / "w.npy")  # a plain .npy file
    written = np.zeros(50, bool)
    written[np.random.default_rng(1).permutation(50)[:45]] = True
    np.testing.assert_array_equal(loaded[written], px[written])
    assert not loaded[~written].any()
    assert isinstance(open_pixels(tmp_path / "w.npy"), np.ndarray)
    assert isinstance(open_pixels(tmp_path / "w.npy", stream_from=0), PixelFile)
    assert sample_rows(PixelFile(tmp_path / "w.npy"), 10).shape == (10, 3, 4, 5)
    raw = (tmp_path / "w.npy").read_bytes()
    (tmp_path / "t.npy").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ValueError, match="truncated"):
        PixelFile(tmp_path / "t.npy")


def _folder(root, n: int, size: int = 32):
    rng = np.random.default_rng(n)
    for i in range(n):
        c = i % 4
        d = root / f"c{c}"
        d.mkdir(parents=True, exist_ok=True)
        img = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
        img[c * size // 4 : (c + 1) * size // 4] = 255
        Image.fromarray(img).save(d / f"{i:06d}.png", compress_level=1)
    return root


def test_parallel_decoding_gives_the_same_pixels(tmp_path):
    root = _folder(tmp_path / "imgs", 120, size=8)
    (root / "c1" / "broken.png").write_bytes(b"not a png")
    ds = load_source(f"folder:{root}", image_size=8)
    alone = ds.decode(workers=0)
    together = ds.decode(workers=2, out=tmp_path / "p.npy")
    assert isinstance(together.pixels, PixelFile)
    np.testing.assert_array_equal(np.asarray(together.pixels), alone.pixels)
    assert together.unreadable == alone.unreadable and len(alone.unreadable) == 1


_MEASURE = textwrap.dedent(
    """
    import json, resource, sys
    import torch
    torch.set_num_threads(1)
    from oga_core.config import AnalysisConfig
    from oga_core.pipeline import analyze
    a = analyze(AnalysisConfig(data="folder:" + sys.argv[1], epochs=1), workers=0)
    assert len(a.dataset) == int(sys.argv[2]) and type(a.pixels).__name__ == "PixelFile"
    print(json.dumps({"peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
    """
)


def test_a_streaming_analysis_does_not_grow_with_the_number_of_images(tmp_path):
    peaks = {}
    for n in (2_000, 20_000):
        root = _folder(tmp_path / f"d{n}", n)
        env = {
            **os.environ,
            "OGA_HOME": str(tmp_path / f"home{n}"),
            "OGA_STREAM_FROM_BYTES": "0",  # stream even these small sets
            "OGA_THREADS": "1",
        }
        done = subprocess.run(
            [sys.executable, "-c", _MEASURE, str(root), str(n)], env=env, capture_output=True, text=True, timeout=900
        )
        assert done.returncode == 0, done.stderr[-2000:]
        peaks[n] = json.loads(done.stdout.strip().splitlines()[-1])["peak_rss_mib"]
    # 20 k images of 32 x 32 RGB are 59 MiB of pixels; in memory the peak grew by >40% here
    assert peaks[20_000] <= 1.15 * peaks[2_000], peaks


_MEASURE_ANON = textwrap.dedent(
    """
    import json, sys, threading, time
    import torch
    torch.set_num_threads(1)
    from oga_core.config import AnalysisConfig
    from oga_core.pipeline import analyze

    def status(field):
        for line in open("/proc/self/status"):
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    peak = {"anon": 0.0, "file": 0.0}
    stop = threading.Event()
    def watch():  # the kernel keeps no peak of anonymous memory alone: sample it
        while not stop.is_set():
            peak["anon"] = max(peak["anon"], status("RssAnon"))
            peak["file"] = max(peak["file"], status("RssFile"))
            time.sleep(0.005)
    threading.Thread(target=watch, daemon=True).start()
    config = AnalysisConfig(data="folder:" + sys.argv[1], checkpoint=sys.argv[3], image_size=64)
    a = analyze(config, workers=0)
    stop.set()
    assert len(a.dataset) == int(sys.argv[2]) and type(a.pixels).__name__ == "PixelFile"
    print(json.dumps({"peak_anon_mib": peak["anon"], "peak_file_mib": peak["file"]}))
    """
)


def test_scoring_larger_images_from_a_checkpoint_grows_by_its_outputs_only(tmp_path):
    """Issue 17: 12,000 generated 64 px images scored with a checkpoint, streamed, against 3,000:
    the anonymous memory (what the process allocates, not the file pages of the pixel cache, which
    the kernel counts in RSS too and drops when it needs the room) grows within 40 MiB. Before, a
    pixel-pass block of 4,096 images (200 MB as floats) and the Isolation Forest's input for
    every row at once (62 MB at 12,000) made it grow by about 230 MiB."""
    import torch

    from oga_core.models import build_model

    checkpoint = tmp_path / "model.pt"
    torch.save(build_model("photo_resnet", num_classes=4, in_channels=3, image_size=64).state_dict(), checkpoint)
    peaks = {}
    for n in (3_000, 12_000):
        root = _folder(tmp_path / f"d{n}", n, size=64)
        env = {**os.environ, "OGA_HOME": str(tmp_path / f"home{n}"), "OGA_STREAM_FROM_BYTES": "0", "OGA_THREADS": "1"}
        done = subprocess.run(
            [sys.executable, "-c", _MEASURE_ANON, str(root), str(n), str(checkpoint)],
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert done.returncode == 0, done.stderr[-2000:]
        peaks[n] = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"peaks (MiB): {peaks}")
    assert peaks[12_000]["peak_anon_mib"] - peaks[3_000]["peak_anon_mib"] <= 40, peaks
