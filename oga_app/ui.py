"""Session glue and shared widgets for the Streamlit pages.

What lives where:

* the analysis: ``oga_core.pipeline.analyze`` (disk cache) behind one process-wide registry in
  ``st.cache_resource``, so every session and page reuses the same object; a change of detector,
  budget or per-class ranking is an ``Analysis.rescore`` of it, never a recomputation;
* the settings of the session: ``st.session_state["oga_config"]`` (the last analysed
  ``AnalysisConfig``) plus the ranking widgets of the sidebar; the last analysed settings are also
  written to ``$OGA_HOME/app/last_config.json`` so a reload or a server restart reopens them;
* decisions: only in SQLite (``DecisionStore.for_data``), read afresh on every run, written by
  widget callbacks before the page reruns.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import os
import re
import runpy
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

from oga_core import summaries
from oga_core.config import AnalysisConfig
from oga_core.decisions import DamagedDecisions, Decision, DecisionStore, recover
from oga_core.detectors import DETECTORS
from oga_core.errors import OgaError
from oga_core.options import STAGES, names
from oga_core.pipeline import Analysis, analyze
from oga_core.store import oga_home
from oga_core.uploads import clean_uploads

_LOG = logging.getLogger("oga.app")

DEFAULT_CONFIG = AnalysisConfig(data="demo:digits", noise=0.1)
DETECTOR_LABELS = {name: d.label for name, d in DETECTORS.items()}
STAGE_LABELS = {
    "data": "Opening the data",
    "decode": "Decoding images",
    "train": "Training the model",
    "gradients": "Per-sample gradients",
    "scores": "Scoring every sample",
}
DECISION_BADGES = {
    "keep": ("kept", "green", ":material/check:"),
    "drop": ("dropped", "red", ":material/delete:"),
    "relabel": ("relabelled", "blue", ":material/edit:"),
    summaries.UNDECIDED: ("undecided", "gray", None),
}
FLASH_KEY = "_oga_flash"
CONFIG_KEY = "oga_config"
ENTRY = Path(__file__).resolve().parent.parent / "app.py"
PAGES: dict[str, Any] = {}  # st.Page objects by name, filled by app.py for cross-page links


# -- the entry point -------------------------------------------------------------------------
def require_entry() -> None:
    """Make sure a page runs inside app.py's ``st.navigation``; call first thing in every page.

    A fresh server that finds a ``pages/`` folder starts in Streamlit's older folder mode until
    some run reaches ``st.navigation``: a first request for, say, ``/review`` (a reload after a
    restart) would run pages/review.py alone, without app.py's sidebar. Here the page then runs
    app.py itself, whose navigation resolves the same URL to this same page, and stops. Unlike a
    rerun this keeps the click that started the run (button clicks last one run only).
    """
    from streamlit.runtime.pages_manager import PagesManager

    if PagesManager.uses_pages_directory:
        PagesManager.uses_pages_directory = False
        runpy.run_path(str(ENTRY), run_name="__main__")
        st.stop()


# -- threads ---------------------------------------------------------------------------------
_threads_set: int | None = None


def configure_threads() -> int:
    """Set torch's intra-op threads once per process: ``$OGA_THREADS``, else half the cores (1-4).

    A Streamlit server shares the machine with the browser and often with other jobs; torch's
    default of one thread per core ran small ops 25-170x slower beside a busy process.
    """
    global _threads_set
    if _threads_set is None:
        import torch

        default = max(1, min(4, (os.cpu_count() or 2) // 2))
        try:
            n = max(1, int(os.environ.get("OGA_THREADS") or default))
        except ValueError:
            n = default
        torch.set_num_threads(n)
        _threads_set = n
    return _threads_set


# -- the analysis registry -------------------------------------------------------------------
def base_config(config: AnalysisConfig) -> AnalysisConfig:
    """``config`` without its ranking (detector, budget, per-class): what needs computing."""
    return config.unranked()


class _Job:
    """One analysis running in a worker thread; progress is polled by whoever waits for it."""

    def __init__(self, config: AnalysisConfig) -> None:
        self.config = config
        self.done = threading.Event()
        self.result: Analysis | None = None
        self.error: BaseException | None = None
        self._progress: dict[str, tuple[int, int]] = {}
        self._lock = threading.Lock()

    def report(self, stage: str, done: int, total: int) -> None:
        with self._lock:
            self._progress[stage] = (done, total)

    def snapshot(self) -> dict[str, tuple[int, int]]:
        with self._lock:
            return dict(self._progress)


class AnalysisRegistry:
    """Analyses held in memory for every session, keyed by their base config.

    ``get`` starts :func:`analyze` in a worker thread at most once per base config and waits for
    it, relaying its progress. The work belongs to the server, not to the page: a person who
    clicks to another page (which stops the page's script) or reloads does not abort training,
    and a second session asking for the same data waits on the same job. Results come back
    ranked as asked via ``Analysis.rescore``. Holds ``capacity`` analyses; the disk cache makes
    an evicted one quick to load again. ``record(analysis)`` keeps each finished or re-ranked
    analysis as its workspace's latest (by default :meth:`Workspace.record`), so ``oga export``
    and *Recent work* see what the person saw.
    """

    def __init__(self, capacity: int = 3, *, record: Callable[[Analysis], object] | None = None) -> None:
        self.capacity = capacity
        self.record = record or (lambda analysis: analysis.workspace.record(analysis))
        self._lock = threading.Lock()
        self._jobs: dict[AnalysisConfig, _Job] = {}
        self._ready: OrderedDict[AnalysisConfig, Analysis] = OrderedDict()
        self._ranked: OrderedDict[AnalysisConfig, Analysis] = OrderedDict()

    def peek(self, config: AnalysisConfig) -> Analysis | None:
        """The analysis for ``config`` if it is in memory, else None (never computes)."""
        base = base_config(config)
        with self._lock:
            found = self._ready.get(base)
            if found is not None:
                self._ready.move_to_end(base)
        return None if found is None else self._rank(found, config)

    def running(self, config: AnalysisConfig) -> bool:
        with self._lock:
            return base_config(config) in self._jobs

    def get(
        self, config: AnalysisConfig, progress: Callable[[str, int, int], None] | None = None, *, fresh: bool = False
    ) -> Analysis:
        """The analysis for ``config``, computed (or loaded from the disk cache) if needed.

        ``progress(stage, done, total)`` is called from the caller's thread as the job advances.
        ``fresh``: ignore the copy in memory and run :func:`analyze` again, so files added, edited
        or removed on disk since (or a checkpoint overwritten in place) are seen; unchanged steps
        still come from the disk cache. Raises what :func:`analyze` raised (OgaError for bad input).
        """
        base = base_config(config)
        if fresh:
            with self._lock:
                self._ready.pop(base, None)
                for key in [k for k in self._ranked if base_config(k) == base]:
                    del self._ranked[key]
        found = self.peek(config)
        if found is not None:
            return found
        with self._lock:
            job = self._jobs.get(base)
            if job is None:
                job = self._jobs[base] = _Job(config)
                threading.Thread(target=self._work, args=(base, job), name="oga-analyze", daemon=True).start()
        seen: dict[str, tuple[int, int]] = {}
        while True:
            finished = job.done.wait(0.1)
            if progress is not None:
                for stage, state in job.snapshot().items():
                    if seen.get(stage) != state:
                        seen[stage] = state
                        progress(stage, *state)
            if finished:
                break
        if job.error is not None:
            raise job.error
        assert job.result is not None
        return self._rank(job.result, config)

    def _work(self, base: AnalysisConfig, job: _Job) -> None:
        try:
            analysis = analyze(job.config, progress=job.report)
            self.record(analysis)
        except BaseException as exc:  # handed to every waiter; a later request starts afresh
            job.error = exc
        else:
            job.result = analysis
            with self._lock:
                self._ready[base] = analysis
                while len(self._ready) > self.capacity:
                    self._ready.popitem(last=False)
                    self._ranked.clear()
        finally:
            with self._lock:
                self._jobs.pop(base, None)
            job.done.set()

    def _rank(self, analysis: Analysis, config: AnalysisConfig) -> Analysis:
        if analysis.config == config:
            return analysis
        with self._lock:
            found = self._ranked.get(config)
        if found is not None and found.data_id == analysis.data_id:
            return found
        ranked = analysis.rescore(detector=config.detector, budget=config.budget, per_class=config.per_class)
        self.record(ranked)  # so `oga export` scores rows by the ranking the person looked at
        with self._lock:
            self._ranked[config] = ranked
            while len(self._ranked) > 16:
                self._ranked.popitem(last=False)
        return ranked


@st.cache_resource(show_spinner=False)
def clean_old_uploads() -> int:
    """Once per server process: remove uploads that no analysed data set uses (older than an hour)."""
    return len(clean_uploads())


@st.cache_resource(show_spinner=False)
def registry() -> AnalysisRegistry:
    """The process-wide registry (st.cache_resource: shared by all sessions)."""
    return AnalysisRegistry()


# -- the session's settings ------------------------------------------------------------------
def _last_config_path() -> Path:
    return oga_home() / "app" / "last_config.json"


def load_last_config() -> AnalysisConfig | None:
    """The settings last analysed in this app home, or None (missing or from another version)."""
    path = _last_config_path()
    try:
        return AnalysisConfig.from_dict(json.loads(path.read_text())).validate()
    except (OSError, ValueError, TypeError, OgaError):
        return None


def save_last_config(config: AnalysisConfig) -> None:
    path = _last_config_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(dataclasses.asdict(config), indent=2))
        os.replace(tmp, path)
    except OSError as exc:  # a read-only home must not break the app; settings just won't persist
        _LOG.warning("cannot save the last settings to %s: %s", path, exc)


def stored_config() -> AnalysisConfig:
    """The session's analysed settings (ranking as analysed): session, else last saved, else the demo."""
    config = st.session_state.get(CONFIG_KEY)
    if config is None:
        config = load_last_config() or DEFAULT_CONFIG
        st.session_state[CONFIG_KEY] = config
    return config


def session_config() -> AnalysisConfig:
    """The settings the pages show: the stored config ranked as the sidebar says now."""
    config = stored_config()
    detector = st.session_state.get("rank_detector", config.detector)
    budget = st.session_state.get("rank_budget", config.budget * 100) / 100
    per_class = st.session_state.get("rank_per_class", config.per_class)
    return dataclasses.replace(config, detector=detector, budget=round(float(budget), 6), per_class=bool(per_class))


def _ranking_changed() -> None:
    save_last_config(session_config())


def sidebar_ranking() -> None:
    """Detector, budget and per-class ranking: on every page, applied instantly by rescoring."""
    config = stored_config()
    with st.sidebar:
        st.markdown("**Ranking** · instant, no retraining")
        st.selectbox(
            "Detector",
            list(DETECTORS),
            index=list(DETECTORS).index(config.detector),
            format_func=DETECTOR_LABELS.get,
            key="rank_detector",
            on_change=_ranking_changed,
            help="The score that orders samples and decides which are flagged. OGA scores are outlier "
            "scores of each sample's loss gradient (L1 / L2 norm, Isolation Forest); the baselines "
            "(cross-entropy loss, EL2N = ‖softmax − one-hot‖₂, negative margin) use the same forward pass.",
        )
        st.slider(
            "Budget (% of samples flagged)",
            0.5,
            50.0,
            min(50.0, max(0.5, float(round(config.budget * 200) / 2))),
            0.5,
            key="rank_budget",
            on_change=_ranking_changed,
            format="%.1f%%",
            help="The paper trims the top 5%.",
        )
        st.toggle(
            "Rank within each class",
            value=config.per_class,
            key="rank_per_class",
            on_change=_ranking_changed,
            help="Gradient norms differ by class; ranking within classes spreads the budget evenly.",
        )


def sidebar_summary() -> None:
    """What is loaded and how far the review has got (only if the analysis is already in memory)."""
    analysis = registry().peek(session_config())
    if analysis is None:
        return
    try:
        table = decided_table(analysis)
    except Exception:  # a summary must never take the page down
        _LOG.exception("sidebar summary failed")
        return
    reviewed, flagged = summaries.review_progress(table)
    counts = table["decision"].value_counts()
    with st.sidebar:
        st.divider()
        st.caption(
            f"**{escape_md(analysis.config.data)}** · {len(table):,} samples · {analysis.dataset.num_classes} classes"
        )
        st.progress(reviewed / flagged if flagged else 0.0, text=f"Reviewed {reviewed} of {flagged} flagged")
        st.caption(
            f"kept {int(counts.get('keep', 0))} · dropped {int(counts.get('drop', 0))} · "
            f"relabelled {int(counts.get('relabel', 0))}"
        )


# -- running and loading ---------------------------------------------------------------------
def current_analysis() -> Analysis:
    """The session's analysis, with live progress in the page if it has to be computed or loaded."""
    config = session_config()
    found = registry().peek(config)
    return found if found is not None else run_analysis(config)


def run_analysis(config: AnalysisConfig, *, fresh: bool = False) -> Analysis:
    """Analyse ``config`` with a status box and one progress bar per stage; OgaError on bad input.
    ``fresh``: look at the data on disk again (see :meth:`AnalysisRegistry.get`)."""
    config.validate()
    status = st.status(f"Analyzing {config.data} …", expanded=True)
    bars = {stage: status.progress(0.0, text=STAGE_LABELS[stage]) for stage in names(STAGES)}
    last_draw = dict.fromkeys(names(STAGES), 0.0)
    epochs = config.resolved_epochs()

    def progress(stage: str, done: int, total: int) -> None:
        now = time.monotonic()
        # Each update is a message to the browser: ~10 per second is smooth and cheap.
        if done < total and now - last_draw.get(stage, 0.0) < 0.1:
            return
        last_draw[stage] = now
        text = STAGE_LABELS.get(stage, stage)
        if stage == "train" and total > 1 and epochs:
            per_epoch = max(1, total // epochs)
            text += f": epoch {min(epochs, 1 + (done - 1) // per_epoch)} of {epochs}"
        elif total > 1:
            text += f": {done:,} of {total:,}"
        if stage in bars:
            bars[stage].progress(min(1.0, done / total) if total else 1.0, text=text)

    start = time.perf_counter()
    try:
        analysis = registry().get(config, progress, fresh=fresh)
    except Exception:  # not Streamlit's stop / rerun signals: the page is going away then
        status.update(label=f"Could not analyze {config.data}", state="error", expanded=False)
        raise
    hits = analysis.run.get("cache_hits", [])
    took = time.perf_counter() - start
    note = " (from the cache)" if set(hits) >= {"train", "gradients", "scores"} else ""
    status.update(label=f"Analyzed {config.data} in {took:.1f} s{note}", state="complete", expanded=False)
    return analysis


def start_analysis(config: AnalysisConfig) -> Analysis:
    """Analyse new settings (an explicit request: the data on disk is looked at again); only on
    success do they become the session's (and the saved) ones."""
    analysis = run_analysis(config, fresh=True)
    st.session_state[CONFIG_KEY] = config
    save_last_config(config)
    return analysis


@st.cache_resource(show_spinner=False, max_entries=32)
def _store_at(path: str) -> DecisionStore:
    return DecisionStore(Path(path))


def store_for(analysis: Analysis) -> DecisionStore:
    """The decisions of the analysed data (its workspace under the current app home)."""
    return _store_at(str(analysis.workspace.decisions_path))


def decided_table(analysis: Analysis) -> pd.DataFrame:
    """The analysis' score table with the current decisions joined on (read from SQLite now)."""
    return summaries.with_decisions(analysis.scores, store_for(analysis).table(), analysis.dataset.classes)


@st.cache_data(show_spinner=False, max_entries=32)
def _coords(gradients_key: str, method: str, space: str, _analysis: Analysis) -> np.ndarray:
    return _analysis.map_coords(method=method, space=space)


def map_coords(analysis: Analysis, method: str, space: str) -> np.ndarray:
    """``(N, 2)`` map coordinates (the engine caches them on disk; this keeps them in memory)."""
    return _coords(analysis.keys["gradients"], method, space, analysis)


@st.cache_data(show_spinner=False, max_entries=20_000)
def _thumb(data_id: str, sample_id: str, index: int, side: int, _analysis: Analysis) -> bytes:
    return summaries.thumbnail_png(_analysis.dataset, index, side=side)


# -- errors and messages ---------------------------------------------------------------------
@contextmanager
def guard(*, setup_link: bool = False) -> Iterator[None]:
    """Show anything that goes wrong inside the block as a message in the page, not a traceback.

    OgaError is bad input a person can fix (with ``setup_link``, a link to Set-up follows, where
    the data or model can be changed); anything else is a bug in oga, logged for the report.
    Streamlit's own rerun / stop signals derive from BaseException and pass through.
    """
    try:
        yield
    except DamagedDecisions as exc:
        st.error(
            str(exc).replace(
                "run `oga recover --data ...` with the same data settings (in the app, press Recover)", "press Recover"
            ),
            icon=":material/error:",
        )
        st.button(
            "Recover the decisions",
            key=f"recover-{exc.path}",
            icon=":material/healing:",
            on_click=_on_recover,
            args=(str(exc.path),),
            help="Moves the damaged file aside (it is never deleted) and rebuilds the decisions from what is "
            "still readable and from the append-only event log.",
        )
    except OgaError as exc:
        st.error(str(exc), icon=":material/error:")
        if setup_link and "setup" in PAGES:
            st.page_link(PAGES["setup"], label="Change the data or the model on Set-up", icon=":material/tune:")
    except Exception as exc:
        _LOG.exception("unexpected error in a page")
        st.error(
            f"Something went wrong inside oga ({type(exc).__name__}: {exc}). Decisions already made "
            "are saved. The full report is in the server's log.",
            icon=":material/bug_report:",
        )


def _on_recover(path: str) -> None:
    try:
        done = recover(Path(path))
    except OgaError as exc:
        flash("error", str(exc))
        return
    _store_at.clear()
    kept = f" The damaged file is kept as {done.aside}." if done.aside else ""
    flash(
        "success",
        f"Rebuilt {done.decisions} decision(s) from {', '.join(done.sources) or 'nothing readable'}.{kept}",
    )


def flash(kind: str, text: str) -> None:
    """Queue a message for the next run (callbacks run before the page is drawn)."""
    st.session_state.setdefault(FLASH_KEY, []).append((kind, text))


def show_flash() -> None:
    for kind, text in st.session_state.pop(FLASH_KEY, []):
        if kind == "error":
            st.error(text, icon=":material/error:")
        else:
            st.toast(text, icon=":material/check_circle:" if kind == "success" else ":material/info:")


def safe_callback(fn: Callable[..., None]) -> Callable[..., None]:
    """A widget callback whose errors become a message instead of a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        try:
            fn(*args, **kwargs)
        except OgaError as exc:
            flash("error", str(exc))
        except Exception as exc:
            _LOG.exception("callback %s failed", fn.__name__)
            flash("error", f"Could not save that ({type(exc).__name__}: {exc}); nothing already decided was lost.")

    return wrapper


def escape_md(text: object) -> str:
    """Text shown inside markdown without being read as markdown (class names come from folders)."""
    return re.sub(r"([\\`*_{}\[\]<>()#+\-.!|~$:])", r"\\\1", str(text))


# -- decisions -------------------------------------------------------------------------------
@safe_callback
def _on_decide(store_path: str, sample_id: str, original_label: int, action: str) -> None:
    store = _store_at(store_path)
    current = store.get(sample_id)
    # Clicking the decision a sample already has takes it back (a toggle, as in a tagging tool).
    if current is not None and current["action"] == action:
        action = "clear"
    store.decide(sample_id, action, original_label=original_label)


@safe_callback
def _on_relabel(store_path: str, sample_id: str, original_label: int) -> None:
    value = st.session_state.get(f"relabel-{sample_id}")
    store = _store_at(store_path)
    if value is None:
        current = store.get(sample_id)
        if current and current["action"] == "relabel":
            store.decide(sample_id, "clear", original_label=original_label)
        return
    store.decide(sample_id, "relabel", original_label=original_label, label=int(value))


@safe_callback
def _on_bulk(store_path: str, items: list[tuple[str, str, int, int | None]], what: str) -> None:
    n = _store_at(store_path).decide_many(Decision(sid, action, orig, label) for sid, action, orig, label in items)
    flash("success", f"{what}: {n} sample{'s' if n != 1 else ''} (one undo step)")


@safe_callback
def _on_undo(store_path: str) -> None:
    ids = _store_at(store_path).undo()
    if ids:
        shown = ", ".join(ids[:5]) + (f" and {len(ids) - 5} more" if len(ids) > 5 else "")
        flash("info", f"Undid the last decision ({shown})")
    else:
        flash("info", "Nothing to undo")


def undo_button(analysis: Analysis, *, key: str = "undo") -> None:
    store = store_for(analysis)
    st.button(
        "Undo last",
        key=key,
        icon=":material/undo:",
        on_click=_on_undo,
        args=(str(store.path),),
        disabled=not store.can_undo(),
        shortcut="Ctrl+Z",
        help="Reverts the latest decision, or the latest bulk action as a whole (Ctrl+Z).",
    )


def bulk_actions(analysis: Analysis, rows: pd.DataFrame, *, key: str, scope: str = "on this page") -> None:
    """Buttons acting on every sample in ``rows`` (a :func:`decided_table` slice); one undo step each."""
    store_path = str(store_for(analysis).path)
    undecided = rows[rows["decision"] == summaries.UNDECIDED]
    disagree = rows[rows["pred"] != rows["label"]]
    keep_items = [(r.sample_id, "keep", int(r.label), None) for r in undecided.itertuples(index=False)]
    drop_items = [(r.sample_id, "drop", int(r.label), None) for r in rows.itertuples(index=False)]
    relabel_items = [(r.sample_id, "relabel", int(r.label), int(r.pred)) for r in disagree.itertuples(index=False)]
    clear_items = [
        (r.sample_id, "clear", int(r.label), None)
        for r in rows.itertuples(index=False)
        if r.decision != summaries.UNDECIDED
    ]
    with st.container(horizontal=True, gap="small"):
        st.button(
            f"Keep the undecided {scope} ({len(keep_items)})",
            key=f"{key}-keep",
            icon=":material/check:",
            on_click=_on_bulk,
            args=(store_path, keep_items, "Kept"),
            disabled=not keep_items,
        )
        st.button(
            f"Drop all {scope} ({len(drop_items)})",
            key=f"{key}-drop",
            icon=":material/delete:",
            on_click=_on_bulk,
            args=(store_path, drop_items, "Dropped"),
            disabled=not drop_items,
        )
        st.button(
            f"Relabel to predicted ({len(relabel_items)})",
            key=f"{key}-relabel",
            icon=":material/edit:",
            on_click=_on_bulk,
            args=(store_path, relabel_items, "Relabelled to the prediction"),
            disabled=not relabel_items,
            help="Every sample here whose prediction differs from its given label gets the predicted label.",
        )
        st.button(
            f"Clear decisions {scope} ({len(clear_items)})",
            key=f"{key}-clear",
            icon=":material/backspace:",
            on_click=_on_bulk,
            args=(store_path, clear_items, "Cleared"),
            disabled=not clear_items,
        )


# -- the sample grid -------------------------------------------------------------------------
def image(analysis: Analysis, sample_id: str, index: int, *, side: int = summaries.THUMBNAIL_SIDE) -> None:
    """The sample's thumbnail, or a readable note if its file can no longer be read."""
    try:
        st.image(_thumb(analysis.data_id, sample_id, index, side, analysis), width="content")
    except OgaError as exc:
        st.warning(f"Image unreadable: {exc}", icon=":material/broken_image:")


def sample_grid(analysis: Analysis, rows: pd.DataFrame, *, columns: int = 6, editable: bool = True) -> None:
    """Cards for ``rows`` (a :func:`decided_table` slice) in ``columns`` columns.

    Editable cards carry the buttons ``keep-<id>`` and ``drop-<id>`` (the current decision drawn
    as primary; clicking it again takes it back) and the select box ``relabel-<id>`` (classes, the
    prediction first). Their state is re-read from SQLite on every run, so an undo or another
    tab's decision shows at once.
    """
    position = {sid: i for i, sid in enumerate(analysis.dataset.ids)}
    store_path = str(store_for(analysis).path)
    records = list(rows.itertuples(index=False))
    for lo in range(0, len(records), columns):
        for col, row in zip(st.columns(columns, gap="small"), records[lo : lo + columns]):
            with col:
                _card(analysis, row, position[row.sample_id], store_path, editable)


def _card(analysis: Analysis, row: Any, index: int, store_path: str, editable: bool) -> None:
    classes = analysis.dataset.classes
    sid = str(row.sample_id)
    given, pred = classes[int(row.label)], classes[int(row.pred)]
    with st.container(border=True, key=f"card-{sid}"):
        image(analysis, sid, index)
        agree = int(row.label) == int(row.pred)
        shown_pred = f"**{escape_md(pred)}**" if agree else f":orange[**{escape_md(pred)}**]"
        st.markdown(f"given **{escape_md(given)}** → pred {shown_pred}")
        st.caption(f"#{int(row.rank)} · score {float(row.score):.3g}  \n{escape_md(sid)}")
        decision = str(getattr(row, "decision", summaries.UNDECIDED))
        text, color, icon = DECISION_BADGES.get(decision, DECISION_BADGES[summaries.UNDECIDED])
        if decision == "relabel":
            text = f"relabelled → {row.new_label_name}"
        st.badge(text, color=color, icon=icon)
        if not editable:
            return
        for col, action in zip(st.columns(2, gap="small"), ("keep", "drop")):
            col.button(
                action.capitalize(),
                key=f"{action}-{sid}",
                on_click=_on_decide,
                args=(store_path, sid, int(row.label), action),
                type="primary" if decision == action else "secondary",
                width="stretch",
                help=f"{action.capitalize()} this sample (click again to take it back)",
            )
        choices = summaries.relabel_choices(len(classes), int(row.label), int(row.pred))
        current = int(row.new_label) if decision == "relabel" and int(row.new_label) in choices else None
        st.session_state[f"relabel-{sid}"] = current
        st.selectbox(
            "Relabel to",
            choices,
            index=None,
            key=f"relabel-{sid}",
            placeholder="Relabel to …",
            format_func=lambda k, p=int(row.pred): f"→ {classes[k]}" + (" (predicted)" if k == p else ""),
            on_change=_on_relabel,
            args=(store_path, sid, int(row.label)),
            label_visibility="collapsed",
        )


def preview_grid(analysis: Analysis, rows: pd.DataFrame, *, columns: int = 6) -> None:
    """Read-only thumbnails with a one-line label each (the set-up page's first look)."""
    classes = analysis.dataset.classes
    position = {sid: i for i, sid in enumerate(analysis.dataset.ids)}
    records = list(rows.itertuples(index=False))
    for lo in range(0, len(records), columns):
        for col, row in zip(st.columns(columns, gap="small"), records[lo : lo + columns]):
            with col:
                image(analysis, str(row.sample_id), position[row.sample_id])
                st.caption(
                    f"#{int(row.rank)} · {escape_md(classes[int(row.label)])} → {escape_md(classes[int(row.pred)])}",
                    help=f"{row.sample_id}: given label → predicted label; score {float(row.score):.3g}",
                )


# -- one sample at a time, from the keyboard -------------------------------------------------
FOCUS_KEY = "focus_sample"


@safe_callback
def _on_focus(
    store_path: str, sample_id: str, action: str | None, original: int, label: int | None, goto: str | None
) -> None:
    if action is not None:
        _store_at(store_path).decide(sample_id, action, original_label=original, label=label)
    if goto is not None:
        st.session_state[FOCUS_KEY] = goto


@safe_callback
def _on_focus_relabel(store_path: str, sample_id: str, original: int, goto: str | None) -> None:
    value = st.session_state.get("focus-relabel")
    if value is not None:
        _store_at(store_path).decide(sample_id, "relabel", original_label=original, label=int(value))
        if goto is not None:
            st.session_state[FOCUS_KEY] = goto


def focus_view(analysis: Analysis, queue: pd.DataFrame) -> None:
    """One sample large, decided from the keyboard: K keep, D drop, P relabel to the prediction,
    ← / → previous / next. Each decision moves on to the next sample of ``queue``."""
    ids = queue["sample_id"].tolist()
    current = st.session_state.get(FOCUS_KEY)
    i = ids.index(current) if current in ids else 0
    row = queue.iloc[i]
    sid, given, pred = str(row.sample_id), int(row.label), int(row["pred"])
    classes = analysis.dataset.classes
    nxt = ids[i + 1] if i + 1 < len(ids) else None
    prev = ids[i - 1] if i > 0 else None
    store_path = str(store_for(analysis).path)
    position = analysis.dataset.ids.index(sid)
    left, right = st.columns([2, 3], gap="large")
    with left, st.container(border=True, key=f"card-{sid}"):
        image(analysis, sid, position, side=320)
    with right:
        st.markdown(f"#### {i + 1} of {len(ids)} · `{escape_md(sid)}`")
        agree = given == pred
        st.markdown(
            f"given **{escape_md(classes[given])}** → predicted "
            + (f"**{escape_md(classes[pred])}**" if agree else f":orange[**{escape_md(classes[pred])}**]")
            + f" ({float(row.confidence):.0%})"
        )
        st.caption(f"rank #{int(row['rank'])} · score {float(row['score']):.4g}")
        decision = str(row.decision)
        text, color, icon = DECISION_BADGES.get(decision, DECISION_BADGES[summaries.UNDECIDED])
        st.badge(f"relabelled → {row.new_label_name}" if decision == "relabel" else text, color=color, icon=icon)
        with st.container(horizontal=True):
            st.button(
                "Keep",
                key="focus-keep",
                shortcut="K",
                icon=":material/check:",
                on_click=_on_focus,
                args=(store_path, sid, "keep", given, None, nxt),
                type="primary" if decision == "keep" else "secondary",
            )
            st.button(
                "Drop",
                key="focus-drop",
                shortcut="D",
                icon=":material/delete:",
                on_click=_on_focus,
                args=(store_path, sid, "drop", given, None, nxt),
                type="primary" if decision == "drop" else "secondary",
            )
            st.button(
                f"Relabel to {classes[pred]}",
                key="focus-predicted",
                shortcut="P",
                icon=":material/edit:",
                on_click=_on_focus,
                args=(store_path, sid, "relabel", given, pred, nxt),
                disabled=agree,
            )
        choices = summaries.relabel_choices(len(classes), given, pred)
        st.session_state["focus-relabel"] = None  # a fresh choice for every sample shown
        st.selectbox(
            "… or relabel to",
            choices,
            index=None,
            key="focus-relabel",
            placeholder="another class",
            format_func=lambda k: classes[k] + (" (predicted)" if k == pred else ""),
            on_change=_on_focus_relabel,
            args=(store_path, sid, given, nxt),
        )
        with st.container(horizontal=True):
            st.button(
                "Previous",
                key="focus-prev",
                shortcut="Left",
                icon=":material/arrow_back:",
                on_click=_on_focus,
                args=(store_path, sid, None, given, None, prev),
                disabled=prev is None,
            )
            st.button(
                "Next",
                key="focus-next",
                shortcut="Right",
                icon=":material/arrow_forward:",
                on_click=_on_focus,
                args=(store_path, sid, None, given, None, nxt),
                disabled=nxt is None,
            )


# -- selections from the map -----------------------------------------------------------------
def ids_from_points(points: list[dict[str, Any]]) -> list[str]:
    """Sample ids of selected Plotly points, read from ``customdata`` (never from point indices,
    which count within one trace); order kept, duplicates dropped."""
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
