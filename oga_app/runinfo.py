"""What an analysis says about itself: the model's health and the notes the engine left.

A ranking is only as good as the model behind it (docs/architecture.md, "Health"), so Set-up
shows training and held-out accuracy with the verdict, and every notice the run recorded (a
trajectory score that fell back to the final model, a cache entry that was recomputed) that the
command line would print as ``oga: note:``.
"""

from __future__ import annotations

import streamlit as st

from oga_app.messages import escape_md

VERDICT_TEXT = {
    "ok": "The model fits the data without memorising it: its ranking can be trusted.",
    "unchecked": "Scored as loaded (no training): the health check needs a trained model and a held-out part.",
}


def accuracy_metrics(run: dict, columns: list) -> None:
    """Training and held-out accuracy as two metrics in ``columns[0]`` and ``columns[1]``."""
    checkup = run.get("health") or {}
    columns[0].metric(
        "Training accuracy",
        f"{run['train_accuracy']:.1%}",
        help="Of the samples trained on, on their given labels (wrong ones included).",
    )
    held = checkup.get("holdout_accuracy")
    columns[1].metric(
        "Held-out accuracy",
        "—" if held is None else f"{held:.1%}",
        help=(
            f"{checkup.get('holdout_size', 0):,} samples never trained on (chosen by their ids; the same "
            "for this data set every time), on their given labels."
        ),
    )


def health_and_notices(run: dict) -> None:
    """The verdict of the health check (a warning unless ``ok``) and the run's notices."""
    checkup = run.get("health") or {}
    verdict = checkup.get("verdict")
    if verdict in ("underfit", "memorise"):
        title = "The model underfits" if verdict == "underfit" else "The model memorised its labels"
        st.warning(f"**{title}.** {escape_md(checkup['advice'])}", icon=":material/monitor_heart:")
    elif verdict in VERDICT_TEXT:
        st.caption(f":material/monitor_heart: {VERDICT_TEXT[verdict]}")
    for note in run.get("notices", []):
        if not note.startswith("health:"):  # already said above
            st.info(escape_md(note), icon=":material/info:")


def noise_estimate(run: dict) -> None:
    """Where the wrong labels seem to come from (the estimate the default ranking weighs by): one
    caption, and the likeliest flips as a small table."""
    from oga_core.transition import summary  # numpy only

    record = run.get("noise_estimate")
    if not record:
        return
    st.caption(f":material/compare_arrows: {escape_md(summary({**record, 'likely_flips': []}))}.")
    flips = record.get("likely_flips") or []
    if flips:
        with st.expander("Where wrong labels seem to come from"):
            st.dataframe(
                [
                    {"looks like": t, "given as": g, "share of its confident samples": f"{share:.0%}"}
                    for t, g, share in flips
                ],
                hide_index=True,
            )
            st.caption(
                "From the model's confident predictions against the given labels (cleanlab's confident joint): "
                "a model's own confusions count here too."
            )
