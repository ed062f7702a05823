"""oga in the browser: ``streamlit run app.py``.

This file is the entry point and the first page, Set-up: choose the data, the model and the
gradient scope, and analyse. The other pages (Explore, Review, Export, Evaluate) live in pages/
and are registered here with ``st.navigation``. With nothing set up the app analyses the digits
demo with 10% of labels flipped on purpose, so a newcomer sees flagged samples at once.
"""

from __future__ import annotations

import time

import streamlit as st

from oga_app import ui
from oga_core import summaries
from oga_core.config import AnalysisConfig
from oga_core.errors import OgaError
from oga_core.options import DEFAULT_EPOCHS, FALLBACK_EPOCHS, TORCHVISION_SETS, labels, names
from oga_core.options import DEMOS as DEMO_CHOICES
from oga_core.options import MODELS as MODEL_CHOICES
from oga_core.pipeline import Analysis
from oga_core.store import oga_home
from oga_core.uploads import extract_image_archive, save_upload
from oga_core.workspace import Workspace

st.set_page_config(page_title="oga · find the samples that hurt your model", page_icon="🧹", layout="wide")
ui.configure_threads()
ui.clean_old_uploads()

SOURCES = {
    "demo": "Demo data set",
    "folder": "Image folder (<class>/<image>)",
    "csv": "CSV manifest (path,label)",
    "torchvision": "torchvision data set on disk",
}
DEMOS = list(names(DEMO_CHOICES))
DEMO_LABELS = labels(DEMO_CHOICES)
MODELS = list(names(MODEL_CHOICES))
MODEL_HELP = {c.name: c.help for c in MODEL_CHOICES}
MODEL_MODES = {
    "small_cnn": "Train the small CNN (seconds on a CPU)",
    "torchvision": "Train a torchvision architecture",
    "checkpoint": "Load a checkpoint (weights only)",
}
SCOPES = {"last": "Last layer · closed form, one forward pass", "all": "All layers · ghost norms, one backward pass"}
TRAINABLE = [m for m in MODELS if m != "small_cnn"]
SESSION = "session"  # widget values survive a visit to another page


def setup_page() -> None:
    st.title("Find the training samples that hurt your model")
    st.caption(
        "Outlier Gradient Analysis (arXiv 2405.03869): a sample whose loss gradient is an outlier is "
        "likely mislabelled or harmful. Train or load a model, rank every sample by its gradient, then "
        "review, keep, drop or relabel the flagged ones and export the cleaned data set."
    )
    current = ui.stored_config()
    left, right = st.columns([2, 3], gap="large")
    with left:
        reopened = requested = None
        with ui.guard():
            reopened = recent_work(current)
        with ui.guard():
            requested = settings_form(current)
    with right:
        if reopened is not None:
            with ui.guard():
                ui.start_analysis(reopened)
                st.session_state["setup_version"] = st.session_state.get("setup_version", 0) + 1
                st.rerun()
        elif requested is not None:
            with ui.guard():
                ui.start_analysis(requested)
        with ui.guard():
            results(ui.current_analysis())


def wkey(name: str) -> str:
    """A set-up widget's key. Reopening earlier work bumps the version, which gives the form fresh
    widgets initialised from the reopened settings (kept widget values would hide them)."""
    version = st.session_state.get("setup_version", 0)
    return name if version == 0 else f"{name}~{version}"


def recent_work(current: AnalysisConfig) -> AnalysisConfig | None:
    """Data sets analysed before under this app home, to reopen with their decisions."""
    others = [w for w in Workspace.recent(oga_home()) if w.data != current.data]
    if not others:
        return None
    chosen = None
    with st.expander(f"Recent work ({len(others)})", icon=":material/history:"):
        for w in others:
            counts = w.decisions
            decided = sum(counts.values())
            row = st.columns([4, 1], vertical_alignment="center")
            row[0].markdown(
                f"**{ui.escape_md(w.data)}**  \n{w.num_samples:,} samples · {decided} decided · "
                f"analysed {time.strftime('%Y-%m-%d %H:%M', time.localtime(w.analysed_at))}"
            )
            if row[1].button("Reopen", key=f"reopen-{w.data_id}"):
                chosen = AnalysisConfig.from_dict(w.config)
    return chosen


def settings_form(current: AnalysisConfig) -> AnalysisConfig | None:
    """The data, model and scope widgets; returns the requested config when Analyze is clicked."""
    st.subheader("Data")
    kind, _, rest = current.data.partition(":")
    source = st.radio(
        "Source",
        list(SOURCES),
        index=list(SOURCES).index(kind) if kind in SOURCES else 0,
        format_func=SOURCES.get,
        key=wkey("setup_source"),
        persist_state=SESSION,
    )
    if source == "demo":
        demo = st.selectbox(
            "Demo",
            DEMOS,
            index=DEMOS.index(rest) if kind == "demo" and rest in DEMOS else 0,
            format_func=DEMO_LABELS.get,
            key=wkey("setup_demo"),
            persist_state=SESSION,
        )
        spec = f"demo:{demo}"
    elif source == "folder":
        path = st.text_input(
            "Folder",
            value=rest if kind == "folder" else "",
            key=wkey("setup_folder"),
            persist_state=SESSION,
            placeholder="/data/pets  (holds one sub-folder of images per class)",
        )
        archive = st.file_uploader(
            "… or upload a .zip of class folders",
            type=["zip"],
            key=wkey("setup_zip"),
            help="Unpacked once under the app home; the cleaned copy can be downloaded as a .zip on Export.",
        )
        if archive is not None:
            root = extract_image_archive(archive, oga_home() / "uploads")
            st.caption(f"Unpacked to {root}")
            path = str(root)
        spec = f"folder:{path.strip()}"
    elif source == "csv":
        path = st.text_input(
            "Manifest",
            value=rest if kind == "csv" else "",
            key=wkey("setup_csv"),
            persist_state=SESSION,
            placeholder="/data/pets/train.csv  (columns path,label; paths relative to the file)",
        )
        spec = f"csv:{path.strip()}"
    else:
        name, _, root = rest.partition(":") if kind == "torchvision" else ("CIFAR10", "", "")
        tv_name = st.selectbox(
            "Data set",
            TORCHVISION_SETS,
            index=TORCHVISION_SETS.index(name) if name in TORCHVISION_SETS else 0,
            key=wkey("setup_tv_name"),
            persist_state=SESSION,
        )
        tv_root = st.text_input(
            "Root folder",
            value=root,
            key=wkey("setup_tv_root"),
            persist_state=SESSION,
            placeholder="~/data  (as passed to torchvision.datasets; oga never downloads)",
        )
        spec = f"torchvision:{tv_name}:{tv_root.strip()}"

    # Flipped labels are for demos and for testing detectors: a user's own data starts at 0%.
    noise_now = int(round(current.noise * 100)) if source == kind else (10 if source == "demo" else 0)
    noise = st.slider(
        "Flip labels on purpose (%)",
        0,
        50,
        noise_now,
        key=wkey(f"setup_noise_{source}"),
        persist_state=SESSION,
        help="Flips this share of labels and remembers the truth, so the Evaluate page can score the "
        "detectors. The demo flips 10%; leave 0 on your own data unless you want to test the detectors.",
    )
    noise_kind = current.noise_kind
    if noise:
        noise_kind = st.radio(
            "Kind of flips",
            ["symmetric", "pair"],
            index=["symmetric", "pair"].index(current.noise_kind),
            key=wkey("setup_noise_kind"),
            persist_state=SESSION,
            horizontal=True,
            captions=["to any other class", "class k → k+1"],
        )

    st.subheader("Model")
    mode_now = "checkpoint" if current.checkpoint else ("small_cnn" if current.model == "small_cnn" else "torchvision")
    mode = st.radio(
        "Model",
        list(MODEL_MODES),
        index=list(MODEL_MODES).index(mode_now),
        format_func=MODEL_MODES.get,
        key=wkey("setup_model_mode"),
        persist_state=SESSION,
        label_visibility="collapsed",
    )
    checkpoint = None
    if mode == "small_cnn":
        model = "small_cnn"
    elif mode == "torchvision":
        model = st.selectbox(
            "Architecture",
            TRAINABLE,
            index=TRAINABLE.index(current.model) if current.model in TRAINABLE else 0,
            key=wkey("setup_arch"),
            persist_state=SESSION,
            help="\n\n".join(f"**{m}**: {MODEL_HELP[m]}" for m in TRAINABLE),
        )
        st.caption(MODEL_HELP[model] + ". Training a ResNet on a CPU takes minutes per epoch on thousands of images.")
    else:
        models = list(MODELS)
        model = st.selectbox(
            "Architecture of the checkpoint",
            models,
            index=models.index(current.model),
            key=wkey("setup_ckpt_arch"),
            persist_state=SESSION,
            help="oga's own checkpoints and plain torchvision state dicts both load.",
        )
        path = st.text_input(
            "Checkpoint file",
            value=current.checkpoint or "",
            key=wkey("setup_ckpt_path"),
            persist_state=SESSION,
            placeholder="/models/resnet18.pt  (a state dict; never executed, weights only)",
        )
        upload = st.file_uploader("… or upload it", type=["pt", "pth", "ckpt", "bin"], key=wkey("setup_ckpt_upload"))
        checkpoint = str(save_upload(upload, upload.name)) if upload is not None else path.strip() or None
        if checkpoint is None:
            st.info("Give a checkpoint file to score a model you already trained.", icon=":material/info:")
    default_epochs = 0 if mode == "checkpoint" else DEFAULT_EPOCHS.get(model, FALLBACK_EPOCHS)
    epochs = st.number_input(
        "Fine-tuning epochs" if mode == "checkpoint" else "Training epochs",
        0,
        500,
        current.epochs if current.epochs is not None and mode == mode_now else default_epochs,
        key=wkey(f"setup_epochs_{mode}"),
        persist_state=SESSION,
        help="0 with a checkpoint scores it as it is. The final epoch's model is scored: no epoch is picked "
        "by looking at held-out accuracy.",
    )

    st.subheader("Gradients")
    scope = st.radio(
        "Scope",
        list(SCOPES),
        index=list(SCOPES).index(current.scope),
        format_func=SCOPES.get,
        key=wkey("setup_scope"),
        persist_state=SESSION,
        help="The paper uses the last layer's gradient. All layers costs a backward "
        "pass per batch (about 5x a forward pass).",
    )
    st.caption("Detector and budget are in the sidebar: they re-rank at once, without retraining.")

    with st.expander("Advanced"):
        image_size = st.number_input(
            "Image size for file sources (px)",
            4,
            1024,
            current.image_size,
            key=wkey("setup_image_size"),
            persist_state=SESSION,
            help="File images are resized to a square of this side for the model.",
        )
        grayscale = st.checkbox(
            "Read file images as grayscale", current.grayscale, key=wkey("setup_grayscale"), persist_state=SESSION
        )
        skip = st.checkbox(
            "Skip unreadable images",
            current.skip_unreadable,
            key=wkey("setup_skip"),
            persist_state=SESSION,
            help="Otherwise a corrupt or missing file stops the analysis with its name.",
        )
        seed = st.number_input("Seed", 0, 2**31 - 1, current.seed, key=wkey("setup_seed"), persist_state=SESSION)
        batch = st.number_input(
            "Batch size", 1, 4096, current.batch_size, key=wkey("setup_batch"), persist_state=SESSION
        )
        lr = st.number_input(
            "Learning rate", 1e-6, 1.0, current.lr, format="%.5f", key=wkey("setup_lr"), persist_state=SESSION
        )
        device = st.selectbox(
            "Device",
            ["auto", "cpu", "cuda"],
            index=["auto", "cpu", "cuda"].index(current.device) if current.device in ("auto", "cpu", "cuda") else 0,
            key=wkey("setup_device"),
            persist_state=SESSION,
        )

    if not st.button("Analyze", key="analyze", type="primary", icon=":material/play_arrow:", width="stretch"):
        return None
    if mode == "checkpoint" and checkpoint is None:
        raise OgaError("Load a checkpoint: give its file path or upload it (or choose to train a model)")
    ranking = ui.session_config()
    config = AnalysisConfig(
        data=spec,
        model=model,
        checkpoint=checkpoint,
        # The default epoch count is stored as None so these settings share the demo's cache entry.
        epochs=None if int(epochs) == default_epochs else int(epochs),
        batch_size=int(batch),
        lr=float(lr),
        scope=scope,
        detector=ranking.detector,
        budget=ranking.budget,
        per_class=ranking.per_class,
        noise=noise / 100,
        noise_kind=noise_kind,
        seed=int(seed),
        device=device,
        image_size=int(image_size),
        grayscale=bool(grayscale),
        skip_unreadable=bool(skip),
    )
    config.validate()
    return config


def results(analysis: Analysis) -> None:
    """What the analysis found: counts, the most suspicious samples, and where to go next."""
    run, config = analysis.run, analysis.config
    table = ui.decided_table(analysis)
    reviewed, flagged = summaries.review_progress(table)
    st.subheader(f"Results · {config.data}")
    truth = summaries.flagged_truth(analysis.scores)
    if config.data.startswith("demo:") and truth is not None:
        st.info(
            f"This is a demo: **{truth['noisy']:,} of {len(table):,} labels ({config.noise:.0%}) were flipped on "
            "purpose**, and oga kept the truth so the Evaluate page can score the detectors. Choose your own "
            "data on the left whenever you are ready.",
            icon=":material/science:",
        )
    cols = st.columns(5)
    cols[0].metric("Samples", f"{len(table):,}", help=f"{analysis.dataset.num_classes} classes")
    cols[1].metric("Flagged", f"{flagged:,}", f"top {config.budget:.1%}", delta_color="off")
    cols[2].metric("Reviewed", f"{reviewed:,} of {flagged:,}")
    cols[3].metric("Accuracy", f"{run['train_accuracy']:.1%}", help="On the given labels, flipped ones included.")
    hits = run.get("cache_hits", [])
    cols[4].metric(
        "Analysis time", f"{run['timings']['total']:.1f} s", "cached" if "train" in hits else None, delta_color="off"
    )
    if truth is not None and truth["flagged"]:
        st.markdown(
            f"Of the **{truth['flagged']}** flagged samples, **{truth['flagged_noisy']}** really were flipped "
            f"(precision {truth['flagged_noisy'] / truth['flagged']:.0%}), which finds "
            f"{truth['flagged_noisy'] / max(truth['noisy'], 1):.0%} of all flipped labels in the top {config.budget:.0%}."
        )
    with st.container(horizontal=True):
        st.page_link("pages/review.py", label=f"Review the {flagged} flagged samples", icon=":material/grid_view:")
        st.page_link("pages/explore.py", label="Explore the map", icon=":material/scatter_plot:")
        st.page_link("pages/export.py", label="Export the cleaned data", icon=":material/download:")
        if truth is not None:
            st.page_link("pages/evaluate.py", label="Evaluate the detectors", icon=":material/analytics:")
    st.markdown(f"##### Most suspicious samples · {ui.DETECTOR_LABELS[config.detector]}")
    st.caption("Rank · given label → predicted label. Decide on them in Review, or select clusters in Explore.")
    top = summaries.review_queue(table).head(12)
    ui.preview_grid(analysis, top, columns=6)
    with st.expander("Run details"):
        st.json(
            {
                "data_id": analysis.data_id,
                "workspace": str(analysis.workspace.folder),
                "device": run["device"],
                "epochs": run["epochs"],
                "timings_s": run["timings"],
                "cache_hits": hits,
                "image_shape": run["image_shape"],
            },
            expanded=True,
        )


pages = [
    st.Page(setup_page, title="Set-up", icon=":material/tune:", default=True),
    st.Page("pages/explore.py", title="Explore", icon=":material/scatter_plot:"),
    st.Page("pages/review.py", title="Review", icon=":material/grid_view:"),
    st.Page("pages/export.py", title="Export", icon=":material/download:"),
    st.Page("pages/evaluate.py", title="Evaluate", icon=":material/analytics:"),
]
ui.PAGES.update(zip(("setup", "explore", "review", "export", "evaluate"), pages))
navigation = st.navigation(pages)
ui.sidebar_ranking()
ui.show_flash()
navigation.run()
ui.sidebar_summary()
