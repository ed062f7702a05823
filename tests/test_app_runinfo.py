"""The health verdict and the engine's notices on the Set-up page (oga_app/runinfo.py), for the
verdicts the demo does not produce: rendered with AppTest from a run record as run.json holds it."""

from __future__ import annotations

from streamlit.testing.v1 import AppTest

from oga_app.messages import escape_md


def render(run: dict) -> AppTest:
    def page(run: dict) -> None:
        import streamlit as st

        from oga_app import runinfo

        runinfo.accuracy_metrics(run, st.columns(2))
        runinfo.health_and_notices(run)

    at = AppTest.from_function(page, kwargs={"run": run})
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_a_memorising_model_is_a_warning_with_what_to_do():
    advice = "the model fits 100% of its training data but only 71% of held-out data: it has memorised labels"
    at = render(
        {
            "train_accuracy": 1.0,
            "health": {"verdict": "memorise", "advice": advice, "holdout_accuracy": 0.71, "holdout_size": 500},
            "notices": [f"health: {advice}", "cache entry model/abc was unreadable and was recomputed"],
        }
    )
    (warning,) = at.warning
    assert "memorised its labels" in warning.value and escape_md(advice) in warning.value
    # The health notice is said once (in the warning); every other notice is shown as it is.
    assert [i.value for i in at.info] == ["cache entry model/abc was unreadable and was recomputed"]
    assert {m.label: m.value for m in at.metric} == {"Training accuracy": "100.0%", "Held-out accuracy": "71.0%"}


def test_a_loaded_checkpoint_says_it_was_not_checked_and_has_no_held_out_figure():
    at = render(
        {
            "train_accuracy": 0.93,
            "health": {"verdict": "unchecked", "advice": "", "holdout_accuracy": None, "holdout_size": 0},
            "notices": [],
        }
    )
    assert not at.warning
    assert any("needs a trained model" in c.value for c in at.caption)
    assert {m.label: m.value for m in at.metric}["Held-out accuracy"] == "—"


def test_markdown_in_a_notice_is_shown_as_text():
    at = render({"train_accuracy": 0.5, "health": {}, "notices": ["folder **bold** [x](javascript:1)"]})
    (info,) = at.info
    assert info.value == escape_md("folder **bold** [x](javascript:1)") != "folder **bold** [x](javascript:1)"
