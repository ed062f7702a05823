"""Plotly figures of the app (the map, the score histogram, the precision curves, one sample's
per-layer gradient norms), built from plain frames of ``oga_core``.

Every map trace carries the sample ids in ``customdata``: a selection is read back as ids
(:func:`ids_from_points`), never as point indices (which count within one trace, and Plotly
draws one trace per colour).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative

from oga_core import options

COLOR_BY = ("score", "given label", "predicted label", "flagged", "decision", "issue type")
# Past this many points one scattergl trace gets sluggish in the browser, and the page's message
# grows by ~100 bytes a point (docs/architecture.md, "The app at scale"): the map becomes a density
# image of every sample with MARKERS of the most suspicious flagged or decided ones drawn on it,
# and a region selected on it is drawn below as points, at most REGION_POINTS of them.
MAX_POINTS = 60_000
MARKERS = 2_000
REGION_POINTS = 5_000
DECISION_COLORS = {"undecided": "#b0b7c3", "keep": "#2ca02c", "drop": "#d62728", "relabel": "#1f77b4"}
ISSUE_COLORS = {  # by oga_core.options.ISSUE_TYPES; "none" grey, so the issues stand out
    "near_duplicate": "#9467bd",
    "outlier": "#8c564b",
    "mislabeled": "#d62728",
    "ambiguous": "#ff7f0e",
    "none": "#b0b7c3",
}
FLAG_COLOR = "#e4572e"


def _hover(frame: pd.DataFrame) -> list[str]:
    return [
        f"<b>{sid}</b><br>given {g} · predicted {p}<br>score {s:.3g} (#{r})" + (f"<br>{d}" if d != "undecided" else "")
        for sid, g, p, s, r, d in frame[
            ["sample_id", "label_name", "pred_name", "score", "rank", "decision"]
        ].itertuples(index=False)
    ]


def _sizes(frame: pd.DataFrame, point_size: float) -> np.ndarray:
    return np.where(frame["flagged"].to_numpy(dtype=bool), point_size * 1.9, point_size)


def _points(frame: pd.DataFrame, name: str, point_size: float, **marker: object) -> go.Scattergl:
    return go.Scattergl(
        x=frame["x"],
        y=frame["y"],
        mode="markers",
        name=name,
        customdata=frame["sample_id"].to_numpy(dtype=object),
        text=_hover(frame),
        hovertemplate="%{text}<extra></extra>",
        marker={"size": _sizes(frame, point_size), "line": {"width": 0}, **marker},
        unselected={"marker": {"opacity": 0.35}},  # Plotly's default fades the rest to near white
    )


def ids_from_points(points: Sequence[Mapping[str, Any]] | None) -> list[str]:
    """Sample ids of selected map points (a selection event's ``points``), read from
    ``customdata``; order kept, duplicates dropped, points without an id (density cells) skipped."""
    ids: list[str] = []
    seen: set[str] = set()
    for point in points or []:
        value = point.get("customdata")
        if isinstance(value, (list, tuple)):
            value = value[0] if value else None
        if value is None:
            continue
        sid = str(value)
        if sid not in seen:
            seen.add(sid)
            ids.append(sid)
    return ids


def selected_region(selection: Mapping[str, Any]) -> dict[str, Any] | None:
    """The box or lasso of a chart's selection (``{"box": (x0, x1, y0, y1)}`` or ``{"lasso":
    (M, 2) polygon}``, the keywords of ``summaries.rows_in_region``), None for points alone.
    Streamlit reports them in data coordinates; the last one drawn counts."""
    for name in ("box", "lasso"):
        for shape in reversed(list(selection.get(name) or [])):
            xs, ys = list(shape.get("x") or []), list(shape.get("y") or [])
            if name == "box" and len(xs) == 2 and len(ys) == 2:
                return {"box": (float(xs[0]), float(xs[1]), float(ys[0]), float(ys[1]))}
            if name == "lasso" and len(xs) == len(ys) >= 3:
                return {"lasso": np.column_stack([np.asarray(xs, float), np.asarray(ys, float)])}
    return None


def map_figure(
    frame: pd.DataFrame,
    *,
    color_by: str = "score",
    classes: Sequence[str] = (),
    point_size: float = 5.0,
    height: int = 600,
    density: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
) -> go.Figure:
    """The 2-D map of :func:`oga_core.summaries.map_frame` rows; flagged samples drawn larger.

    ``density``: a :func:`oga_core.summaries.density_grid` of every sample, drawn beneath the
    points as a grey image (a large data set: ``frame`` then holds only the points to mark).
    Dragging pans and a click selects the point under it (Streamlit makes clicks select only
    outside the box and lasso modes, so those are a toolbar choice away); ids ride in ``customdata``.
    """
    if color_by not in COLOR_BY:
        raise ValueError(f"unknown colouring '{color_by}': use one of {', '.join(COLOR_BY)}")
    fig = go.Figure()
    if density is not None:
        grid, xc, yc = density
        fig.add_trace(
            go.Heatmap(
                x=xc,
                y=yc,
                z=np.log1p(grid).astype(np.float32),
                colorscale="Greys",
                showscale=False,
                name="all samples",
                hoverinfo="skip",  # no customdata either: a click on a cell must not read as a sample id
            )
        )
    if color_by == "score":
        ordered = frame.sort_values("score")  # most suspicious drawn last, on top
        fig.add_trace(
            _points(
                ordered,
                "samples",
                point_size,
                color=ordered["score"],
                colorscale="Viridis",
                colorbar={"title": {"text": "score"}, "thickness": 12},
                showscale=True,
            )
        )
    elif color_by in ("given label", "predicted label"):
        column = "label_name" if color_by == "given label" else "pred_name"
        palette = qualitative.Dark24 if len(classes) > 10 else qualitative.T10
        order = list(map(str, classes)) or sorted(frame[column].astype(str).unique())
        for i, name in enumerate(order):
            part = frame[frame[column].astype(str) == name]
            if len(part):
                fig.add_trace(_points(part, name, point_size, color=palette[i % len(palette)]))
    elif color_by == "flagged":
        flagged = frame["flagged"].to_numpy(dtype=bool)
        fig.add_trace(_points(frame[~flagged], "not flagged", point_size, color="#b0b7c3"))
        fig.add_trace(_points(frame[flagged], "flagged", point_size, color=FLAG_COLOR))
    elif color_by == "issue type":
        names = options.labels(options.ISSUE_TYPES)
        issue = frame["issue"].to_numpy() if "issue" in frame else np.full(len(frame), "none", dtype=object)
        for name in ("none", *(n for n in ISSUE_COLORS if n != "none")):  # issues drawn last, on top
            part = frame[issue == name]
            if len(part):
                fig.add_trace(_points(part, names[name], point_size, color=ISSUE_COLORS[name]))
    else:
        for state, color in DECISION_COLORS.items():
            part = frame[frame["decision"] == state]
            if len(part):
                fig.add_trace(_points(part, state, point_size, color=color))
    fig.update_layout(
        dragmode="pan",  # not "select": there Streamlit's clickmode ignores clicks, and a click opens a card
        height=height,
        margin={"l": 8, "r": 8, "t": 8, "b": 8},
        legend={"orientation": "h", "y": 1.02, "x": 0, "yanchor": "bottom", "itemsizing": "constant"},
        uirevision="map",  # keeps zoom and pan across reruns
        hoverlabel={"align": "left"},
    )
    fig.update_xaxes(showticklabels=False, showgrid=False, zeroline=False, title=None)
    fig.update_yaxes(showticklabels=False, showgrid=False, zeroline=False, title=None, scaleanchor=None)
    return fig


def score_histogram(
    bins: pd.DataFrame,
    *,
    cut: float | None = None,
    detector_label: str = "score",
    log_y: bool = False,
    height: int = 300,
) -> go.Figure:
    """The ranking score's histogram from :func:`oga_core.summaries.score_bins` (counted on the
    server: a million scores are 60 bars, not a million values sent to the browser), flagged
    samples in their own colour, the budget ``cut`` as a line."""
    centre = ((bins["left"] + bins["right"]) / 2).to_numpy(dtype=np.float64)
    width = (bins["right"] - bins["left"]).to_numpy(dtype=np.float64)
    fig = go.Figure()
    for column, name, colour in (("not_flagged", "not flagged", "#9aa5b1"), ("flagged", "flagged", FLAG_COLOR)):
        fig.add_trace(
            go.Bar(
                x=centre,
                y=bins[column].to_numpy(dtype=np.int64),
                width=width,
                name=name,
                marker_color=colour,
                hovertemplate=f"{name}: %{{y:,}}<extra></extra>",
            )
        )
    if cut is not None:
        fig.add_vline(
            x=cut,
            line_dash="dash",
            line_color="#333",
            annotation_text=f"budget cut: {int(bins['flagged'].sum()):,} flagged",
            annotation_position="top left",
        )
    fig.update_layout(
        barmode="stack",
        height=height,
        margin={"l": 8, "r": 8, "t": 28, "b": 8},
        legend={"orientation": "h", "y": 1.12, "x": 0, "xanchor": "left"},
        xaxis_title=detector_label,
        yaxis_title="samples",
        bargap=0.02,
    )
    if log_y:
        fig.update_yaxes(type="log")
    return fig


def precision_figure(
    curve: pd.DataFrame, *, marks: dict[str, int] | None = None, active: str | None = None, height: int = 360
) -> go.Figure:
    """Precision of the top-k against k, one line per score column (``summaries.precision_curve``)."""
    fig = go.Figure()
    palette = qualitative.T10
    for i, (name, part) in enumerate(curve.groupby("score", sort=False)):
        fig.add_trace(
            go.Scatter(
                x=part["k"],
                y=part["precision"],
                mode="lines",
                name=name,
                line={"width": 3.5 if name == active else 1.8, "color": palette[i % len(palette)]},
                hovertemplate=f"{name}<br>top %{{x}}: precision %{{y:.2f}}<extra></extra>",
            )
        )
    for label, k in (marks or {}).items():
        fig.add_vline(
            x=k, line_dash="dot", line_color="#777", annotation_text=label, annotation_position="bottom right"
        )
    fig.update_layout(
        height=height,
        margin={"l": 8, "r": 8, "t": 8, "b": 8},
        xaxis_title="k (samples reviewed, most suspicious first)",
        yaxis_title="precision among the top k",
        yaxis_range=[0, 1.02],
        legend={"orientation": "h", "y": -0.25},
    )
    return fig


def layer_norm_figure(norms: pd.Series, *, bar_px: int = 22) -> go.Figure:
    """Horizontal bars of one sample's gradient L2 norm per layer (``Analysis.layer_norms``),
    first layer on top: which layers the sample pulls hardest on."""
    fig = go.Figure(
        go.Bar(
            x=norms.to_numpy(dtype=np.float64),
            y=[str(name) for name in norms.index],
            orientation="h",
            marker_color=FLAG_COLOR,
            hovertemplate="%{y}: %{x:.3g}<extra></extra>",
        )
    )
    fig.update_layout(
        height=60 + bar_px * len(norms),
        margin={"l": 8, "r": 8, "t": 8, "b": 8},
        xaxis_title="gradient L2 norm",
        yaxis={"autorange": "reversed"},  # forward order, top to bottom
        bargap=0.25,
    )
    return fig
