"""oga_core/retrain.py and oga_core/remaining.py: retraining with a person's decisions applied on
digits with injected noise (the truth plays the person), the comparison, the cache, the estimate
of wrong labels left, and `oga retrain`."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from oga_core import health, remaining
from oga_core.cli import main
from oga_core.config import AnalysisConfig
from oga_core.decisions import Decision
from oga_core.errors import OgaError
from oga_core.retrain import decisions_digest, lines, retrain, write_retrain
from oga_core.summaries import with_decisions
from oga_core.workspace import Workspace

from helpers import cli_fails

COLUMNS = ["sample_id", "action", "label", "original_label"]


def truth_decisions(scores: pd.DataFrame, ids) -> pd.DataFrame:
    """What a careful person decides from the truth: relabel a flipped sample to its clean label,
    keep the others."""
    rows = scores.set_index("sample_id").loc[list(ids)]
    return pd.DataFrame(
        [
            (sid, "relabel" if noisy else "keep", int(clean if noisy else given), int(given))
            for sid, noisy, clean, given in zip(rows.index, rows["noisy"], rows["clean_label"], rows["label"])
        ],
        columns=COLUMNS,
    )


@pytest.fixture(scope="module")
def corrected(digits_analysis, digits_config):
    """The flipped labels among the top 5% corrected (the others kept), retrained."""
    s = digits_analysis.scores
    decisions = truth_decisions(s, s.loc[s["flagged"], "sample_id"])
    return decisions, retrain(digits_config, decisions)


def test_the_held_out_part_is_the_same_and_never_trained_on(digits_analysis, corrected):
    decisions, result = corrected
    before, after = result.before.scores, result.after.scores
    held_before = set(before.loc[before["heldout"], "sample_id"])
    held_after = set(after.loc[after["heldout"], "sample_id"])
    assert held_before == held_after and len(held_before) == int(health.holdout_mask(before["sample_id"], 0.1).sum())
    assert result.after.run["train_history"][-1]["epoch"] == result.before.run["epochs"]  # same recipe
    assert result.after.config.model == result.before.config.model and result.after.config.seed == 0
    # the relabels are the after-run's labels; nothing was dropped
    labels = after.set_index("sample_id")["label"]
    relabelled = decisions[decisions["action"] == "relabel"]
    assert (labels.loc[relabelled["sample_id"]].to_numpy() == relabelled["label"].to_numpy()).all()
    assert len(after) == len(before)
    acc = result.summary["heldout_accuracy"]
    reviewed_held = int(before.loc[before["flagged"], "heldout"].sum())
    assert acc["samples"] == len(held_before) and acc["reviewed"] == reviewed_held > 0
    assert (
        acc["labels"]
        == f"held-out labels: given, except {reviewed_held} reviewed of {len(held_before)} (their decided labels)"
    )


def test_the_comparison_after_correcting_the_top(corrected):
    decisions, result = corrected
    summary = result.summary
    print("\n" + "\n".join(lines(summary)))
    acc, flagged = summary["heldout_accuracy"], summary["flagged"]
    for key in ("before", "after", "before_true_labels", "after_true_labels"):
        assert 0.5 < acc[key] <= 1.0, key
    # Correcting 5% when 20% of the labels are wrong leaves 3/4 of the noise: the model's held-out
    # accuracy moves by a few of 180 samples either way, within what retraining alone moves, so no
    # gain is asserted here; test_correcting_pair_noise_raises_held_out_accuracy asserts one where
    # the noise does hurt.
    assert abs(acc["after"] - acc["before"]) < 0.05
    assert acc["after"] - acc["before"] == pytest.approx((acc["gained"] - acc["lost"]) / acc["samples"])
    assert acc["p_value"] > 0.05 and "no clear change" in lines(summary)[1]
    # the corrected samples now carry the right label: they leave the flagged set
    fixed = decisions.loc[decisions["action"] == "relabel", "sample_id"]
    rows = result.table.set_index("sample_id").loc[fixed]
    assert len(fixed) >= 80 and rows["flagged_after"].sum() <= 0.1 * len(fixed)
    assert (rows["rank_after"] > rows["rank_before"]).mean() > 0.9
    # fewer truly wrong labels among the flagged (the top 5% after is drawn from the 3/4 left)
    assert flagged["before"] == flagged["after"] == 90
    assert flagged["wrong_after"] <= flagged["wrong_before"]
    assert flagged["still_flagged"] <= 9 and flagged["newly_flagged"] == 90 - flagged["still_flagged"]
    changed = result.changed(5)
    assert len(changed) == 5 and (changed["delta_rank"].abs().diff().dropna() <= 0).all()
    assert set(changed["sample_id"]) <= set(fixed)  # the corrected samples moved most (down the ranking)


def test_a_second_retrain_is_a_cache_hit_and_other_decisions_are_not(digits_config, corrected):
    decisions, result = corrected
    again = retrain(digits_config, decisions)
    assert again.after.keys == result.after.keys
    assert set(again.after.run["cache_hits"]) >= {"train", "gradients", "scores"}
    assert again.summary["heldout_accuracy"] == result.summary["heldout_accuracy"]
    ids = result.before.dataset.ids
    one_more = pd.concat([decisions, pd.DataFrame([(ids[0], "drop", 0, 0)], columns=COLUMNS)])
    assert decisions_digest(one_more, ids) != decisions_digest(decisions, ids)
    keep_more = pd.concat([decisions, pd.DataFrame([(ids[1], "keep", 0, 0)], columns=COLUMNS)])
    assert decisions_digest(keep_more, ids) == decisions_digest(decisions, ids)  # keep changes no training data


def test_drops_leave_training_but_held_out_drops_only_leave_the_accuracy(digits_analysis, digits_config, tmp_path):
    s = digits_analysis.scores
    flagged = s[s["flagged"]]
    drops = pd.DataFrame(
        [(sid, "drop", int(y), int(y)) for sid, y in zip(flagged["sample_id"], flagged["label"])], columns=COLUMNS
    )
    result = retrain(digits_config.ranked(budget=0.05), drops)
    after = result.after.scores
    dropped_trained = set(flagged.loc[~flagged["heldout"], "sample_id"])
    dropped_held = set(flagged.loc[flagged["heldout"], "sample_id"])
    assert dropped_held and not dropped_trained & set(after["sample_id"])
    assert dropped_held <= set(after.loc[after["heldout"], "sample_id"])
    acc = result.summary["heldout_accuracy"]
    n_held = int(s["heldout"].sum())
    assert acc["samples"] == n_held - len(dropped_held)
    assert f"{len(dropped_held)} dropped, left out" in acc["labels"]
    assert result.summary["decisions"]["trained_after"] == result.summary["decisions"]["trained_before"] - len(
        dropped_trained
    )
    out = write_retrain(result, tmp_path / "out")
    written = json.loads((out / "retrain.json").read_text())
    assert written["decisions"]["dropped"] == len(flagged)
    table = pd.read_csv(out / "scores_after.csv")
    assert len(table) == len(after) and list(table["sample_id"].astype(str).str.zfill(5)) == list(after["sample_id"])


def test_a_streamed_data_set_retrains_streamed_with_the_same_result(
    digits_analysis, digits_config, tmp_path, monkeypatch
):
    """Pixels larger than memory stay a PixelFile through retraining (a view of the kept rows),
    and train to the same scores as the in-memory pixels."""
    from oga_core.pixels import PixelFile
    from oga_core.store import Cache

    s = digits_analysis.scores
    flagged = s[s["flagged"]]
    drops = pd.DataFrame(
        [(sid, "drop", int(y), int(y)) for sid, y in zip(flagged["sample_id"], flagged["label"])], columns=COLUMNS
    )
    in_memory = retrain(digits_config, drops, cache=Cache(tmp_path / "memory"))
    monkeypatch.setenv("OGA_STREAM_FROM_BYTES", "0")
    streamed = retrain(digits_config, drops, cache=Cache(tmp_path / "streamed"))
    assert isinstance(streamed.after.pixels, PixelFile) and not isinstance(in_memory.after.pixels, PixelFile)
    assert len(streamed.after.pixels) == len(in_memory.after.scores)
    pd.testing.assert_frame_equal(streamed.after.scores, in_memory.after.scores, rtol=1e-5, atol=1e-6)


def test_correcting_pair_noise_raises_held_out_accuracy():
    """Pair noise at 40% fools the model (class k learnt as k+1): there correcting the flipped labels
    among the top 5% raises held-out accuracy on the true labels (0.672 -> 0.706 with the default
    cnn and detector). Measured on the given labels (40% of them wrong, as a person without the truth sees them)
    the change is within what retraining alone moves (0.594 -> 0.594, McNemar p = 1), which the
    summary says; one run on 180 samples shows the direction, not certainty."""
    config = AnalysisConfig(data="demo:digits", noise=0.4, noise_kind="pair", seed=0)
    from oga_core.pipeline import analyze

    s = analyze(config).scores
    result = retrain(config, truth_decisions(s, s.loc[s["flagged"], "sample_id"]))
    acc = result.summary["heldout_accuracy"]
    print("\npair 40%: " + lines(result.summary)[1])
    assert acc["after_true_labels"] > acc["before_true_labels"]
    assert abs(acc["after"] - acc["before"]) < 0.05 and acc["after"] - acc["before"] == pytest.approx(
        (acc["gained"] - acc["lost"]) / acc["samples"]
    )


def test_a_checkpoint_scored_as_it_is_has_no_recipe_to_repeat(tmp_path):
    checkpoint = tmp_path / "m.pt"
    checkpoint.write_bytes(b"not read: refused before")
    config = AnalysisConfig(data="demo:digits", checkpoint=str(checkpoint))
    with pytest.raises(OgaError, match="no training recipe to repeat"):
        retrain(config, pd.DataFrame([("00000", "drop", 0, 0)], columns=COLUMNS))


def test_nothing_to_apply_is_one_clear_error(digits_config, digits_analysis):
    with pytest.raises(OgaError, match="no decision drops or relabels"):
        retrain(digits_config, pd.DataFrame(columns=COLUMNS))
    s = digits_analysis.scores
    keeps = pd.DataFrame(
        [(sid, "keep", int(y), int(y)) for sid, y in zip(s["sample_id"][:5], s["label"][:5])], columns=COLUMNS
    )
    with pytest.raises(OgaError, match="no decision drops or relabels"):
        retrain(digits_config, keeps)


# -- the noise left below the cut ------------------------------------------------------------
def test_noise_left_from_the_top_alone_is_not_an_estimate(digits_analysis):
    s = digits_analysis.scores
    table = with_decisions(s, truth_decisions(s, s.loc[s["flagged"], "sample_id"]), [str(k) for k in range(10)])
    left = remaining.estimate(table)
    # every flagged label here was wrong: nothing says where wrong labels stop
    assert left.basis == "too few" and left.expected is None and left.high is None
    assert "90 reviewed (90 wrong, 0 kept)" in left.reason and "no estimate" in left.line()


def test_noise_left_with_a_spot_check_holds_the_truth(digits_analysis):
    """The top 5% plus a random spot check of 50 below the cut reviewed: the interval holds the true
    number of wrong labels left. A 95% interval misses now and then by design (on digits it held in
    109 of 120 runs, see oga_core/remaining.py); the first spot check here is one of the misses (its
    50 samples hold 10 wrong labels, 20% against 16% below the cut), so ten spot checks are made
    and at least eight must hold the truth."""
    s = digits_analysis.scores
    classes = [str(k) for k in range(10)]
    top = truth_decisions(s, s.loc[s["flagged"], "sample_id"])
    held = []
    for seed in range(10):
        spot = remaining.spot_check(with_decisions(s, top, classes), n=remaining.SPOT_CHECK, seed=seed)
        assert len(spot) == 50 and not set(spot) & set(top["sample_id"])
        table = with_decisions(s, pd.concat([top, truth_decisions(s, spot)]), classes)
        left = remaining.estimate(table)
        below = (table["decision"] == "undecided").to_numpy() & ~table["flagged"].to_numpy()
        true_left = int((table["noisy"].to_numpy() & below).sum())
        print(f"\n{left.line()}; truly {true_left} ({true_left / below.sum():.1%})")
        assert left.basis == "spot-checked" and left.unreviewed == int(below.sum()) == 1657
        assert np.isfinite([left.expected, left.low, left.high]).all()
        assert 0 <= left.low <= left.expected <= left.high <= left.unreviewed
        assert left.high - left.low < 0.2 * left.unreviewed  # an interval that says something
        held.append(left.low <= true_left <= left.high)
        assert held[-1] == (left.low_fraction <= true_left / below.sum() <= left.high_fraction)
    assert sum(held) >= 8, held


def test_noise_left_with_reviews_only_above_the_cut_is_an_upper_bound():
    rng = np.random.default_rng(0)
    n = 1000
    score = rng.random(n)
    order = np.argsort(-score)
    flagged = np.zeros(n, bool)
    flagged[order[:100]] = True
    decision = np.full(n, "undecided", dtype=object)
    decision[order[:100]] = np.where(rng.random(100) < 0.7, "relabel", "keep")  # 70% wrong at the top
    table = pd.DataFrame(
        {"sample_id": [f"{i}" for i in range(n)], "score": score, "flagged": flagged, "decision": decision}
    )
    left = remaining.estimate(table)
    assert left.basis == "bound" and left.expected is None and left.low == 0.0
    assert 0 < left.high <= left.unreviewed == 900 and "upper bound" in left.reason and "at most" in left.line()


def test_too_few_reviews_say_so():
    table = pd.DataFrame(
        {
            "sample_id": list("abcdef"),
            "score": np.arange(6.0),
            "flagged": [False] * 4 + [True] * 2,
            "decision": ["undecided"] * 4 + ["drop", "keep"],
        }
    )
    left = remaining.estimate(table)
    assert left.basis == "too few" and "2 reviewed (1 wrong, 1 kept)" in left.reason


# -- oga retrain -----------------------------------------------------------------------------
@pytest.fixture
def own_home(tmp_path, digits_analysis, monkeypatch):
    """A fresh app home sharing the session's trained models (its cache), so decisions made here
    stay here."""
    home = tmp_path / "home"
    home.mkdir()
    (home / "cache").symlink_to(digits_analysis.cache.root, target_is_directory=True)
    monkeypatch.setenv("OGA_HOME", str(home))
    return home


def test_oga_retrain(own_home, tmp_path, capsys, digits_analysis, corrected):
    data = ["--data", "demo:digits", "--noise", "0.2", "--seed", "0"]
    cli_fails(capsys, ["retrain", *data], "no analysis on record", "oga analyze")
    assert main(["analyze", *data, "--out", str(tmp_path / "a"), "--quiet"]) == 0
    capsys.readouterr()
    cli_fails(capsys, ["retrain", *data], "no decision drops or relabels")
    decisions, _ = corrected
    Workspace(digits_analysis.data_id).decisions().decide_many(
        [Decision(sid, act, orig, lab) for sid, act, lab, orig in decisions[COLUMNS].itertuples(index=False)]
    )
    (tmp_path / "file").write_text("x")
    cli_fails(capsys, ["retrain", *data, "--out", str(tmp_path / "file")], "exists and is not a folder")
    out = tmp_path / "r"
    assert main(["retrain", *data, "--out", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "held-out accuracy" in printed and "noise left below the cut" in printed
    assert "applied 0 drop(s) and" in printed and "moved most:" in printed
    assert json.loads((out / "retrain.json").read_text())["decisions"]["relabelled"] == len(
        decisions[decisions["action"] == "relabel"]
    )
    assert (out / "scores_after.csv").is_file()


def test_oga_retrain_refuses_an_out_folder_outside_oga_roots(own_home, tmp_path, capsys, monkeypatch):
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    monkeypatch.setenv("OGA_ROOTS", str(allowed))
    cli_fails(capsys, ["retrain", "--data", "demo:digits", "--out", str(tmp_path / "elsewhere")], "outside the folders")
