"""Hostile and unlucky input (issue 11): each case first reproduces what used to go wrong, then
asserts exit status 2 with one line (or one message on the page, no exception element), that no
bystander file changed, and that the decisions are intact."""

from __future__ import annotations

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
        ["analyze", "--data", "demo:digits", "--checkpoint", str(ckpt), "--out", str(out), "--quiet"],
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
