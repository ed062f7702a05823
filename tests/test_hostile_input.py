"""Hostile and unlucky input (issue 11): each case first reproduces what used to go wrong, then
asserts exit status 2 with one line (or one message on the page, no exception element), that no
bystander file changed, and that the decisions are intact."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from oga_core.cli import main
from oga_core.models import build_model

from helpers import cli_fails, decisions_intact, open_page, page_error, tree_hashes


@pytest.fixture
def folder_data(tmp_path, make_images):
    """A 2-class image folder with two decisions recorded through the CLI; returns
    (data args, image root)."""
    root = make_images(tmp_path / "src", {"cat": 3, "dog": 3})
    data = ["--data", f"folder:{root}"]
    assert main(["decide", *data, "--sample", "cat/cat_0.png", "--drop"]) == 0
    assert main(["decide", *data, "--sample", "dog/dog_1.png", "--relabel", "cat"]) == 0
    return data, root


@pytest.fixture(autouse=True)
def _own_home(tmp_path, monkeypatch):
    monkeypatch.setenv("OGA_HOME", str(tmp_path / "home"))


def _db(tmp_path):
    (db,) = (tmp_path / "home").glob("workspaces/*/decisions.sqlite")
    return db


# -- 1. overwrite replaces only what oga wrote -----------------------------------------------
def test_overwrite_never_deletes_a_folder_that_merely_holds_a_manifest(tmp_path, capsys, folder_data):
    data, _ = folder_data
    precious = tmp_path / "p"
    precious.mkdir()
    (precious / "manifest.csv").write_text("x\n")
    (precious / "thesis.tex").write_text("work\n")
    before = tree_hashes(precious)
    cli_fails(
        capsys,
        ["export", *data, "--out", str(tmp_path / "m.csv"), "--folder", str(precious), "--overwrite"],
        "no record of an earlier oga export",
    )
    assert tree_hashes(precious) == before
    assert not (tmp_path / "m.csv").exists()


def test_overwrite_of_an_oga_export_touches_only_its_own_unchanged_files(tmp_path, capsys, folder_data):
    data, _ = folder_data
    dest = tmp_path / "clean"
    out = ["--out", str(tmp_path / "m.csv")]
    assert main(["export", *data, *out, "--folder", str(dest)]) == 0
    assert (dest / ".oga-export.json").is_file() and (dest / "cat" / "cat_1.png").is_file()
    # The person adds their own notes and edits one exported image; a sample is dropped since.
    (dest / "notes.txt").write_text("mine")
    (dest / "cat" / "README").write_text("also mine")
    (dest / "dog" / "dog_2.png").write_bytes(b"edited by hand")
    assert main(["decide", *data, "--sample", "cat/cat_1.png", "--drop"]) == 0
    capsys.readouterr()
    mine = tree_hashes(dest / "notes.txt", dest / "cat" / "README", dest / "dog" / "dog_2.png")

    # The new export needs dog/dog_2.png, which is no longer the file oga wrote: refused, unchanged.
    everything = tree_hashes(dest)
    cli_fails(capsys, ["export", *data, *out, "--folder", str(dest), "--overwrite"], "dog_2.png", "Nothing was changed")
    assert tree_hashes(dest) == everything

    (dest / "dog" / "dog_2.png").unlink()  # the person moves their edit away
    del mine[str(dest / "dog" / "dog_2.png")]
    assert main(["export", *data, *out, "--folder", str(dest), "--overwrite"]) == 0
    assert tree_hashes(dest / "notes.txt", dest / "cat" / "README") == mine  # untouched
    assert not (dest / "cat" / "cat_1.png").exists()  # dropped since: its old copy was oga's to remove
    assert (dest / "dog" / "dog_2.png").is_file() and (dest / "cat" / "cat_2.png").is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".clean")]  # no temporary folder left


def test_a_forged_export_record_cannot_reach_outside_the_folder(tmp_path, capsys, folder_data):
    data, root = folder_data
    dest = tmp_path / "clean"
    assert main(["export", *data, "--out", str(tmp_path / "m.csv"), "--folder", str(dest)]) == 0
    capsys.readouterr()
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    marker = dest / ".oga-export.json"
    marker.write_text(marker.read_text().replace('"manifest.csv"', '"../victim.txt"'))
    before = tree_hashes(victim, root)
    cli_fails(
        capsys, ["export", *data, "--out", str(tmp_path / "m.csv"), "--folder", str(dest), "--overwrite"], "no record"
    )
    assert tree_hashes(victim, root) == before


def test_app_overwrite_checkbox_refuses_a_folder_oga_did_not_write(home, demo, tmp_path):
    precious = tmp_path / "p"
    precious.mkdir()
    (precious / "manifest.csv").write_text("x\n")
    (precious / "thesis.tex").write_text("work\n")
    before = tree_hashes(precious)
    at = open_page("export")
    at.text_input(key="export_folder").input(str(precious)).run()
    at.checkbox(key="export_overwrite").check().run()
    at.button(key="write-folder").click().run()
    page_error(at, "no record of an earlier oga export")
    assert tree_hashes(precious) == before


# -- 2. the manifest path is confined --------------------------------------------------------
def test_export_cannot_replace_the_decisions_database(tmp_path, capsys, folder_data):
    data, _ = folder_data
    db = _db(tmp_path)
    before = decisions_intact(db)
    cli_fails(capsys, ["export", *data, "--out", str(db)], "inside oga's own folder")
    cli_fails(capsys, ["export", *data, "--out", str(db), "--overwrite-out"], "inside oga's own folder")
    assert decisions_intact(db) == before
    assert main(["undo", *data]) == 0  # every later command still works


def test_export_does_not_overwrite_a_file_it_did_not_write(tmp_path, capsys, folder_data):
    data, root = folder_data
    dotfile = tmp_path / ".bashrc"
    dotfile.write_text("export PATH=/opt/bin:$PATH\n")
    before = tree_hashes(dotfile, root)
    cli_fails(capsys, ["export", *data, "--out", str(dotfile)], "not a manifest oga wrote")
    # a symbolic link is never written through, even onto a source image, even when allowed
    link = tmp_path / "m.csv"
    link.symlink_to(root / "cat" / "cat_2.png")
    cli_fails(capsys, ["export", *data, "--out", str(link), "--overwrite-out"], "symbolic link")
    cli_fails(capsys, ["export", *data, "--out", str(root / "cat" / "new.csv")], "inside the source data")
    assert tree_hashes(dotfile, root) == before
    # a manifest oga wrote is replaced without asking; another file only when asked explicitly
    ok = tmp_path / "cleaned.csv"
    assert main(["export", *data, "--out", str(ok)]) == 0 and main(["export", *data, "--out", str(ok)]) == 0
    assert main(["export", *data, "--out", str(dotfile), "--overwrite-out"]) == 0
    assert dotfile.read_text().startswith("sample_id,path")


def test_app_write_to_field_refuses_an_unrelated_dotfile(home, demo, tmp_path):
    dotfile = tmp_path / ".profile"
    dotfile.write_text("precious\n")
    before = tree_hashes(dotfile)
    at = open_page("export")
    at.text_input(key="export_csv_path").input(str(dotfile)).run()
    at.button(key="write-csv").click().run()
    page_error(at, "not a manifest oga wrote")
    assert not at.success  # the page does not claim it saved anything
    assert tree_hashes(dotfile) == before


# -- 3. non-finite training or weights stop with one line ------------------------------------
def test_diverging_training_stops_with_one_line(tmp_path, capsys):
    out = tmp_path / "run"
    line = cli_fails(
        capsys,
        ["analyze", "--data", "demo:digits", "--out", str(out), "--lr", "1e12", "--epochs", "2", "--quiet"],
        "training diverged",
    )
    assert "learning rate" in line
    assert not (out / "scores.csv").exists()


def test_checkpoint_with_nan_weights_is_refused(tmp_path, capsys):
    model = build_model("small_cnn", num_classes=10, in_channels=1, image_size=8)
    state = model.state_dict()
    state["head.weight"] = torch.full_like(state["head.weight"], float("nan"))
    ckpt = tmp_path / "nan.pt"
    torch.save(state, ckpt)
    out = tmp_path / "run"
    cli_fails(
        capsys,
        ["analyze", "--data", "demo:digits", "--model", "small_cnn", "--checkpoint", str(ckpt), "--out", str(out)],
        "non-finite weights",
        "head.weight",
    )
    assert not (out / "scores.csv").exists()


def test_non_finite_outputs_are_named_not_ranked():
    from oga_core.errors import OgaError
    from oga_core.gradients import GradientStats

    logits = np.zeros((4, 3))
    logits[2, 1] = np.nan
    stats = GradientStats("last", np.ones((4, 2)), logits, np.ones(4), np.ones(4))
    with pytest.raises(OgaError, match=r"logits are not finite .* 1 of 4 samples \(first: c\)"):
        stats.check_finite(["a", "b", "c", "d"])


# -- 4. a cache entry that cannot be read heals itself ---------------------------------------
@pytest.mark.parametrize(
    "step, name",
    [("decode", "pixels.npy"), ("model", "model.pt"), ("model", "train.json"), ("gradients", "logits.npy"),
     ("scores", "scores.parquet"), ("decode", "unreadable.json")],
)  # fmt: skip
def test_a_truncated_cache_file_is_dropped_and_recomputed(tmp_path, capsys, step, name):
    out = tmp_path / "run"
    argv = ["analyze", "--data", "demo:digits", "--epochs", "1", "--out", str(out), "--quiet"]
    assert main(argv) == 0
    first = (out / "scores.csv").read_bytes()
    (victim,) = (tmp_path / "home" / "cache" / step).glob(f"*/{name}")
    victim.write_bytes(victim.read_bytes()[: max(1, victim.stat().st_size // 3)])
    capsys.readouterr()
    assert main(argv) == 0
    err = capsys.readouterr().err
    notes = [line for line in err.splitlines() if line.startswith("oga: note:") and "cache" in line]
    assert len(notes) == 1 and f"cached {step} result was unreadable" in notes[0] and "recomputing" in notes[0]
    assert "Traceback" not in err
    assert (out / "scores.csv").read_bytes() == first  # the same result, computed again
    assert main(argv) == 0 and "cache" not in capsys.readouterr().err  # healed for good


def test_cache_info_and_clear_leave_the_decisions(tmp_path, capsys, folder_data):
    data, _ = folder_data
    assert main(["analyze", *data, "--epochs", "1", "--out", str(tmp_path / "run"), "--quiet"]) == 0
    db = _db(tmp_path)
    before = decisions_intact(db)
    capsys.readouterr()
    assert main(["cache", "info"]) == 0
    info = capsys.readouterr().out
    assert all(step in info for step in ("decode", "model", "gradients", "scores")) and "MiB" in info
    assert main(["cache", "clear", "--step", "model"]) == 0
    assert not list((tmp_path / "home" / "cache" / "model").glob("*")) and list(
        (tmp_path / "home" / "cache" / "scores").glob("*")
    )
    assert main(["cache", "clear"]) == 0
    assert not (tmp_path / "home" / "cache" / "scores").exists()
    assert decisions_intact(db) == before


# -- 5. a damaged or read-only decisions database --------------------------------------------
def _damage(db, where: str) -> None:
    import sqlite3

    con = sqlite3.connect(db)
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # everything in the main file
    page_size = con.execute("PRAGMA page_size").fetchone()[0]
    root = con.execute("SELECT rootpage FROM sqlite_master WHERE name = 'decisions'").fetchone()[0]
    con.close()
    raw = bytearray(db.read_bytes())
    if where == "header":
        raw[:100] = b"\x13" * 100
    else:  # the decisions table's root page: that table is lost, the event log is not
        start = (root - 1) * page_size
        raw[start : start + page_size] = b"\xa5" * page_size
    db.write_bytes(bytes(raw))


@pytest.mark.parametrize("where", ["header", "table"])
def test_a_damaged_decisions_database_is_kept_aside_and_rebuilt(tmp_path, capsys, folder_data, where):
    data, root = folder_data
    assert main(["undo", *data]) == 0 and main(["decide", *data, "--sample", "cat/cat_2.png", "--keep"]) == 0
    db = _db(tmp_path)
    before = decisions_intact(db)
    assert before == [("cat/cat_0.png", "drop", 0, 0), ("cat/cat_2.png", "keep", 0, 0)]
    _damage(db, where)
    damaged = tree_hashes(db)
    capsys.readouterr()
    for argv in (["decide", *data, "--sample", "dog/dog_0.png", "--drop"], ["undo", *data]):
        cli_fails(capsys, argv, "is damaged", "oga recover")
    assert tree_hashes(db) == damaged  # said so, changed nothing
    assert main(["recover", *data]) == 0
    out = capsys.readouterr().out
    assert "rebuilt 2 decision(s)" in out and "the event log" in out
    (aside,) = [p for p in db.parent.glob("decisions.sqlite.damaged-*") if not p.name.endswith(("-wal", "-shm"))]
    assert tree_hashes(aside) == {str(aside): damaged[str(db)]}  # kept aside, byte for byte
    assert decisions_intact(db) == before
    assert main(["undo", *data]) == 0  # the history came back too: undo reverts the last keep
    assert decisions_intact(db) == before[:1]


def test_a_read_only_decisions_database_is_one_line(tmp_path, make_images):
    import shutil
    import subprocess
    import sys
    import tempfile

    # Another user's view of the workspace: readable, not writable (the cache stays writable). Root
    # writes anyway, so the CLI runs as nobody (setpriv) in a folder every user can reach.
    setpriv = shutil.which("setpriv")
    if os.geteuid() == 0 and not setpriv:
        pytest.fail("running as root without setpriv: cannot make a file read-only for the test")
    prefix = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups"] if os.geteuid() == 0 else []
    base = Path(tempfile.mkdtemp(prefix="oga-readonly-"))
    try:
        base.chmod(0o755)
        root = make_images(base / "src", {"cat": 3, "dog": 3})
        env = {**os.environ, "OGA_HOME": str(base / "home"), "HOME": str(base)}
        data = ["--data", f"folder:{root}"]
        run = [sys.executable, "-m", "oga_core.cli"]
        assert subprocess.run([*run, "decide", *data, "--sample", "cat/cat_0.png", "--drop"], env=env).returncode == 0
        (db,) = (base / "home").glob("workspaces/*/decisions.sqlite")
        before = decisions_intact(db)
        for path in [base, *base.rglob("*")]:
            path.chmod(0o777 if path.is_dir() else 0o666)  # nobody may write everywhere ...
        for path in [db.parent, *db.parent.iterdir()]:
            path.chmod(0o555 if path.is_dir() else 0o444)  # ... but in the workspace
        try:
            done = subprocess.run(
                [*prefix, *run, "decide", *data, "--sample", "dog/dog_0.png", "--drop"],
                env=env,
                capture_output=True,
                text=True,
            )
        finally:
            for path in [base, *base.rglob("*")]:
                path.chmod(0o755 if path.is_dir() else 0o644)
        lines = done.stderr.strip().splitlines()
        assert done.returncode == 2 and len(lines) == 1 and "read-only" in lines[0], done.stderr
        assert "Traceback" not in done.stderr
        assert decisions_intact(db) == before
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_app_offers_recovery_of_a_damaged_database(home, demo):
    from streamlit.testing.v1 import AppTest

    from helpers import APP, TIMEOUT

    store = demo.workspace.decisions()
    store.decide(demo.dataset.ids[0], "drop", original_label=int(demo.dataset.labels[0]))
    _damage(store.path, "header")
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT).run()
    at.switch_page("pages/review.py").run()
    assert not at.exception
    assert any("is damaged" in e.value for e in at.error)
    (button,) = [b for b in at.button if b.key and b.key.startswith("recover-")]
    button.click().run()
    assert not at.exception and not at.error
    assert demo.workspace.decisions().get(demo.dataset.ids[0])["action"] == "drop"
    assert list(store.path.parent.glob("decisions.sqlite.damaged-*"))


# -- 6. bad input that used to raise ---------------------------------------------------------
def test_bad_csv_manifests_and_names_are_one_line(tmp_path, capsys, make_images):
    root = make_images(tmp_path / "src", {"cat": 2, "dog": 2})
    cases = {
        "huge.csv": "path,label\n" + "cat/cat_0.png," + "x" * 200_000 + "\n",
        "nul.csv": "path,label\ncat/cat_0.png,cat\ncat/cat\x00_1.png,dog\n",
    }
    for name, text in cases.items():
        (root / name).write_text(text)
        line = cli_fails(capsys, ["analyze", "--data", f"csv:{root / name}", "--out", str(tmp_path / "o")], name)
        assert "line" in line
    bad = root / "cat" / os.fsdecode(b"caf\xe9.png")
    bad.write_bytes((root / "cat" / "cat_0.png").read_bytes())
    argv = ["analyze", "--data", f"folder:{root}", "--out", str(tmp_path / "o"), "--epochs", "1", "--quiet"]
    cli_fails(capsys, argv, "not valid UTF-8", "caf\\xe9.png")
    assert main([*argv, "--skip-unreadable"]) == 0  # left out, with a note
    assert "left out 1 file(s)" in capsys.readouterr().err
    scores = (tmp_path / "o" / "scores.csv").read_text()
    assert "cat/cat_0.png" in scores and "caf" not in scores


def test_relabel_to_a_superscript_digit_is_one_line(tmp_path, capsys, folder_data):
    data, _ = folder_data
    cli_fails(capsys, ["decide", *data, "--sample", "cat/cat_0.png", "--relabel", "²"], "unknown class '²'")


def test_skip_unreadable_skips_a_csv_row_whose_file_is_missing(tmp_path, capsys, make_images):
    root = make_images(tmp_path / "src", {"cat": 3, "dog": 3})
    rows = [f"{c}/{c}_{i}.png,{c}" for c in ("cat", "dog") for i in range(3)] + ["cat/gone.png,cat"]
    (root / "m.csv").write_text("path,label\n" + "\n".join(rows) + "\n")
    argv = ["analyze", "--data", f"csv:{root / 'm.csv'}", "--out", str(tmp_path / "o"), "--epochs", "1", "--quiet"]
    cli_fails(capsys, argv, "unreadable image", "gone.png", "file not found")
    assert main([*argv, "--skip-unreadable"]) == 0
    assert "cat/gone.png" not in (tmp_path / "o" / "scores.csv").read_text()


def test_zero_epochs_without_a_checkpoint_is_refused(tmp_path, capsys):
    cli_fails(
        capsys,
        ["analyze", "--data", "demo:digits", "--epochs", "0", "--out", str(tmp_path / "o")],
        "untrained model",
    )
    assert not (tmp_path / "o").exists()


# -- 7. scores.csv cannot run as a spreadsheet formula ---------------------------------------
def test_scores_csv_guards_formula_cells(tmp_path, make_images):
    import csv

    root = make_images(tmp_path / "src", {"=HYPERLINK(1)": 3, "@SUM(A1)": 3})
    (root / "@SUM(A1)" / "@SUM(A1)_0.png").rename(root / "@SUM(A1)" / "-2+3.png")
    out = tmp_path / "o"
    assert main(["analyze", "--data", f"folder:{root}", "--out", str(out), "--epochs", "1", "--quiet"]) == 0
    rows = list(csv.DictReader((out / "scores.csv").open()))
    cells = [v for r in rows for k, v in r.items() if k in ("sample_id", "label_name", "pred_name")]
    assert cells and not [c for c in cells if c[:1] in ("=", "+", "-", "@")]
    assert {r["label_name"] for r in rows} == {"'=HYPERLINK(1)", "'@SUM(A1)"}
    assert any(r["sample_id"] == "'@SUM(A1)/-2+3.png" for r in rows)
    assert all(np.isfinite(float(r["score"])) for r in rows)  # numbers stay numbers (no quote)


# -- 8. uploads: bombs, file counts, clean-up, chunked hashing -------------------------------
def _zip(entries: dict[str, bytes]) -> bytes:
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return buf.getvalue()


def test_upload_limits_refuse_bombs_and_inode_floods(tmp_path):
    import io

    from oga_core.errors import DataError
    from oga_core.uploads import extract_image_archive

    bomb = _zip({"cat/a.png": b"\0" * (200 << 20)})  # 200 MiB of zeros: ~200 KiB packed
    assert len(bomb) < 1 << 20
    with pytest.raises(DataError, match="likely zip bomb"):
        extract_image_archive(io.BytesIO(bomb), tmp_path / "u")
    many = _zip({f"c{i % 2}/{i}.png": b"x" for i in range(60)})
    with pytest.raises(DataError, match="more than 50 files"):
        extract_image_archive(io.BytesIO(many), tmp_path / "u", max_files=50)
    assert not (tmp_path / "u").exists() or not [p for p in (tmp_path / "u").iterdir() if p.is_dir()]
    root = extract_image_archive(io.BytesIO(many), tmp_path / "u")  # within the limits
    assert len(list(root.rglob("*.png"))) == 60


def test_unused_uploads_are_cleaned_up_used_ones_stay(tmp_path, capsys, make_images):
    import io
    import os
    import time

    from oga_core.uploads import clean_uploads, extract_image_archive, save_upload

    home = tmp_path / "home"
    src = make_images(tmp_path / "src", {"cat": 2, "dog": 2})
    files = {str(p.relative_to(src)): p.read_bytes() for p in src.rglob("*.png")}
    used = extract_image_archive(io.BytesIO(_zip(files)), home / "uploads")
    unused = extract_image_archive(
        io.BytesIO(_zip({**files, "cat/extra.png": files["cat/cat_0.png"]})), home / "uploads"
    )
    ckpt = save_upload(io.BytesIO(b"not really weights"), "model.pt", home / "uploads")
    assert main(["analyze", "--data", f"folder:{used}", "--epochs", "1", "--out", str(tmp_path / "o"), "--quiet"]) == 0
    assert clean_uploads(home) == []  # everything is younger than an hour
    old = time.time() - 7200
    for entry in (home / "uploads").iterdir():
        os.utime(entry, (old, old))
    removed = clean_uploads(home)
    assert sorted(p.name for p in removed) == sorted(
        [
            unused.parts[-1] if unused.parent == home / "uploads" else unused.relative_to(home / "uploads").parts[0],
            ckpt.name,
        ]
    )
    assert used.is_dir() and not ckpt.exists()


# -- 9. very large images --------------------------------------------------------------------
def test_images_above_100_megapixels_are_one_line(tmp_path, capsys, make_images):
    from PIL import Image

    root = make_images(tmp_path / "src", {"cat": 2, "dog": 2})
    Image.new("L", (12_000, 9_000)).save(root / "dog" / "huge.png")  # 108 megapixels, 100 KB on disk
    argv = ["analyze", "--data", f"folder:{root}", "--out", str(tmp_path / "o"), "--epochs", "1", "--quiet"]
    line = cli_fails(capsys, argv, "huge.png", "108 megapixels", "above oga's limit of 100 megapixels")
    assert "DecompressionBomb" not in line
    assert main([*argv, "--skip-unreadable"]) == 0
    assert "Warning" not in capsys.readouterr().err


# -- 10. OGA_ROOTS confines every path -------------------------------------------------------
def test_oga_roots_confines_data_checkpoints_and_exports(tmp_path, capsys, make_images, monkeypatch):
    inside = make_images(tmp_path / "data" / "pets", {"cat": 2, "dog": 2})
    outside = make_images(tmp_path / "elsewhere", {"cat": 2, "dog": 2})
    (inside / "cat" / "sneaky.png").symlink_to(outside / "cat" / "cat_0.png")
    monkeypatch.setenv("OGA_ROOTS", f"{tmp_path / 'data'}{os.pathsep}{tmp_path / 'exports'}")
    bystanders = tree_hashes(outside)
    out = ["--out", str(tmp_path / "exports" / "run"), "--epochs", "1", "--quiet"]
    cli_fails(capsys, ["analyze", "--data", f"folder:{outside}", *out], "outside the folders this server may use")
    cli_fails(capsys, ["analyze", "--data", f"folder:{inside}", *out], "sneaky.png", "outside the folders")
    (inside / "cat" / "sneaky.png").unlink()
    data = ["--data", f"folder:{inside}"]
    assert main(["analyze", *data, *out]) == 0
    capsys.readouterr()  # the analysis's own notes (colour images trained from scratch: the ImageNet hint)
    cli_fails(capsys, ["export", *data, "--out", str(tmp_path / "m.csv")], "outside the folders this server may use")
    cli_fails(
        capsys,
        ["export", *data, "--out", str(tmp_path / "exports" / "m.csv"), "--folder", str(outside / "x")],
        "outside the folders",
    )
    assert main(["export", *data, "--out", str(tmp_path / "exports" / "m.csv")]) == 0
    cli_fails(capsys, ["analyze", *data, *out, "--checkpoint", str(outside / "cat" / "cat_1.png")], "checkpoint")
    assert tree_hashes(outside) == bystanders


def test_app_path_fields_obey_oga_roots(home, demo, tmp_path, monkeypatch, make_images):
    outside = make_images(tmp_path / "elsewhere", {"cat": 2, "dog": 2})
    monkeypatch.setenv("OGA_ROOTS", str(tmp_path / "allowed"))
    at = open_page("export")
    at.text_input(key="export_csv_path").input(str(outside / "m.csv")).run()
    at.button(key="write-csv").click().run()
    page_error(at, "outside the folders this server may use")
    assert not (outside / "m.csv").exists()


# -- 11. the server's file watcher -----------------------------------------------------------
def test_streamlit_watches_no_files():
    from pathlib import Path

    import tomllib

    config = tomllib.loads((Path(__file__).resolve().parent.parent / ".streamlit" / "config.toml").read_text())
    assert config["server"]["fileWatcherType"] == "none" and config["server"]["runOnSave"] is False
    assert config["server"]["address"] == "127.0.0.1"
