"""More like this: the samples nearest to one sample, with their labels and decisions, and bulk
actions on all of them (docs/architecture.md, "Neighbours").

A card's *More like this* button (``oga_app.cards``) names the sample (``callbacks.SIMILAR_KEY``); the page that
draws :func:`panel` then shows that sample and its nearest neighbours in the model's feature space
(or the loss-gradient space) as editable cards. The usual way to meet a cluster of look-alikes
filed under the wrong class is one of them at the top of the queue: here the whole cluster is
relabelled, kept or dropped in one click (one undo step).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from oga_app import actions, callbacks, cards, resources
from oga_app.messages import escape_md, guard
from oga_core import neighbors, options
from oga_core.pipeline import Analysis

SESSION = "session"
SIZES = (6, options.DEFAULT_SIMILAR, 24, 48)
SPACES = options.MAP_SPACES


def neighbour_rows(analysis: Analysis, table: pd.DataFrame, sample_id: str, *, k: int, space: str) -> pd.DataFrame:
    """``sample_id``'s row then its ``k`` nearest samples' rows of ``table`` (a
    ``loading.decided_table``), nearest first, with their ``distance`` (0 for the sample)."""
    hits = neighbors.similar(analysis, sample_id, k=k, space=space)
    views = resources.views(analysis)
    positions = np.array([views.row_of(sample_id), *(views.row_of(str(s)) for s in hits["sample_id"])], dtype=np.int64)
    rows = table.iloc[positions].copy()
    rows["distance"] = np.concatenate([[0.0], hits["distance"].to_numpy(dtype=np.float64)])
    return rows


def panel(analysis: Analysis, table: pd.DataFrame, *, key: str) -> None:
    """The panel of the sample a card asked about, if any; ``key`` keeps its widgets apart per page."""
    sample_id = st.session_state.get(callbacks.SIMILAR_KEY)
    if sample_id is None:
        return
    if resources.views(analysis).row_of(str(sample_id)) is None:  # a sample of other data, from before
        callbacks.on_similar(None)
        return
    classes = analysis.dataset.classes
    with st.container(border=True, key=f"{key}-similar-panel"):
        # Two rows: four controls in one were cut off at 1024 px beside the sidebar.
        title = st.columns([3, 1], vertical_alignment="center")
        title[0].markdown(f"**More like {escape_md(str(sample_id))}** · it comes first, then its nearest samples")
        title[1].button(
            "Close", key=f"{key}-similar-close", icon=":material/close:", on_click=callbacks.on_similar, args=(None,)
        )
        head = st.columns([2, 1], vertical_alignment="bottom")
        space = head[0].segmented_control(
            "Nearest in",
            options.names(SPACES),
            default=SPACES[0].name,
            format_func=options.labels(SPACES).get,
            key=f"{key}-similar-space",
            required=True,
            persist_state=SESSION,
            help=options.SPACE_HELP,
        )
        k = head[1].selectbox("How many", SIZES, index=1, key=f"{key}-similar-k", persist_state=SESSION)
        with guard():
            rows = neighbour_rows(analysis, table, str(sample_id), k=int(k), space=space)
            store_path = str(resources.store_for(analysis).path)
            bar = st.columns([3, 2], vertical_alignment="bottom")
            box = f"{key}-similar-to"
            bar[0].selectbox(
                "Relabel all of them to",
                range(len(classes)),
                index=None,
                format_func=lambda c: classes[c],
                key=box,
                placeholder="Choose a class …",
            )
            bar[1].button(
                f"Relabel these {len(rows)}",
                key=f"{key}-similar-relabel",
                icon=":material/edit:",
                on_click=callbacks.on_bulk_relabel_to,
                args=(store_path, rows, box, list(classes)),
                help="One undo step; those already of that class are kept.",
            )
            actions.bulk_actions(analysis, rows, key=f"{key}-similar-bulk", scope="here")
            labels = rows["label_name"].astype(str).value_counts()
            st.caption(
                "Given labels here: "
                + ", ".join(f"{escape_md(name)} {count}" for name, count in labels.items())
                + f" · distances {rows['distance'].iloc[1:].min():.3g}–{rows['distance'].max():.3g} in the "
                f"{options.labels(SPACES)[space]}"
            )
            # 4 across: at 1024 px beside the sidebar six cards left Keep / Drop too narrow to read
            cards.sample_grid(analysis, rows, columns=4, prefix=f"{key}-sim-")
