"""The Set-up form: data, model and gradient scope, every choice read from ``oga_core.options``.

Widget values persist for the session (``persist_state``), so a visit to another page keeps
them. Reopening earlier work bumps a version that gives the form fresh widgets (:func:`wkey`),
initialised from the reopened settings.
"""

from __future__ import annotations

import streamlit as st

from oga_app import state
from oga_core import options
from oga_core.config import AnalysisConfig
from oga_core.errors import OgaError
from oga_core.options import labels, names
from oga_core.store import oga_home
from oga_core.uploads import extract_image_archive, save_upload

SESSION = "session"  # persist_state scope: widget values survive a visit to another page
VERSION_KEY = "setup_version"
SOURCE_LABELS = labels(options.SOURCE_KINDS)
DEMO_LABELS = labels(options.DEMOS)
MODEL_LABELS = labels(options.MODELS)
MODEL_HELP = {c.name: c.help for c in options.MODELS}
SMALL_MODEL = options.DEFAULT_MODEL  # trains in minutes on a CPU: the one a newcomer starts with
TRAINABLE = [m for m in names(options.MODELS) if m != SMALL_MODEL]
MODEL_MODES = {
    SMALL_MODEL: "Train oga's default for the data (CNN for grayscale, Photo ResNet-8 for colour photos; minutes on a CPU)",
    "torchvision": "Train another architecture",
    "imagenet": "Start from ImageNet weights installed with oga (EfficientNet-Lite0; no download; best for photos)",
    "weights": "Start from pretrained weights (a frozen backbone with a new head, or fine-tuned)",
    "checkpoint": "Load a checkpoint (weights only)",
}
BACKBONE_LABELS = labels(options.BACKBONES)
IMAGENET_MODEL = next(iter(options.INSTALLED_WEIGHTS))  # the ImageNet backbone that comes with oga
DEMO_NOISE_PERCENT = round(state.DEMO_NOISE * 100)
NOISE_PERCENT_MAX = 50


def wkey(name: str) -> str:
    """A set-up widget's key, fresh after each reopening (kept widget values would hide the
    reopened settings)."""
    version = st.session_state.get(VERSION_KEY, 0)
    return name if version == 0 else f"{name}~{version}"


def renew() -> None:
    """Give the form fresh widgets on the next run (after reopening earlier work)."""
    st.session_state[VERSION_KEY] = st.session_state.get(VERSION_KEY, 0) + 1


def settings_form(current: AnalysisConfig) -> AnalysisConfig | None:
    """The widgets, initialised from ``current``; the validated config when Analyze is clicked,
    ranked as the sidebar says. OgaError for settings that cannot be analysed."""
    st.subheader("Data")
    source, spec = _data(current)
    noise, noise_kind = _noise(current, source)
    st.subheader("Model")
    mode, model, checkpoint, epochs, weights, backbone = _model(current)
    st.subheader("Gradients")
    scope = st.radio(
        "Scope",
        names(options.SCOPES),
        index=names(options.SCOPES).index(current.scope),
        format_func=labels(options.SCOPES).get,
        key=wkey("setup_scope"),
        persist_state=SESSION,
        help="The paper uses the last layer's gradient. All layers costs a backward "
        "pass per batch (about 5x a forward pass) and shows each sample's gradient norm per layer on Review.",
    )
    st.caption("Detector and budget are in the sidebar: they re-rank at once, without retraining.")
    advanced = _advanced(current)

    if not st.button("Analyze", key="analyze", type="primary", icon=":material/play_arrow:", width="stretch"):
        return None
    if mode == "checkpoint" and checkpoint is None:
        raise OgaError("Load a checkpoint: give its file path or upload it (or choose to train a model)")
    if mode == "weights" and weights is None:
        raise OgaError("Give the pretrained weights: a file path or an upload (or choose to train a model)")
    ranking = state.session_config()
    return AnalysisConfig(
        data=spec,
        model=model,
        checkpoint=checkpoint,
        weights=weights,
        backbone=backbone,
        pretrained=mode == "imagenet",
        epochs=epochs,  # None: the model's recipe (and the same cache entry as the demo's)
        scope=scope,
        detector=ranking.detector,
        budget=ranking.budget,
        per_class=ranking.per_class,
        noise=noise / 100,
        noise_kind=noise_kind,
        **advanced,
    ).validate()


def _data(current: AnalysisConfig) -> tuple[str, str]:
    """The source kind and the data spec (``demo:digits``, ``folder:PATH``, ...)."""
    kind, _, rest = current.data.partition(":")
    kinds = names(options.SOURCE_KINDS)
    source = st.radio(
        "Source",
        kinds,
        index=kinds.index(kind) if kind in kinds else 0,
        format_func=SOURCE_LABELS.get,
        key=wkey("setup_source"),
        persist_state=SESSION,
    )
    if source == "demo":
        demos = names(options.DEMOS)
        demo = st.selectbox(
            "Demo",
            demos,
            index=demos.index(rest) if kind == "demo" and rest in demos else 0,
            format_func=DEMO_LABELS.get,
            key=wkey("setup_demo"),
            persist_state=SESSION,
        )
        return source, f"demo:{demo}"
    if source == "folder":
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
        return source, f"folder:{path.strip()}"
    if source == "csv":
        path = st.text_input(
            "Manifest",
            value=rest if kind == "csv" else "",
            key=wkey("setup_csv"),
            persist_state=SESSION,
            placeholder="/data/pets/train.csv  (columns path,label; paths relative to the file)",
        )
        return source, f"csv:{path.strip()}"
    if source == "hf":
        path = st.text_input(
            "Data set folder or Parquet file",
            value=rest if kind == "hf" else "",
            key=wkey("setup_hf"),
            persist_state=SESSION,
            placeholder="/data/pets-hf  (written by save_to_disk; or .parquet files with an image and a label column)",
            help="Read from disk only: a hub name is refused; download it first with "
            'datasets.load_dataset("NAME").save_to_disk(PATH). Needs the optional package datasets.',
        )
        return source, f"hf:{path.strip()}"
    sets = options.TORCHVISION_SETS
    name, _, root = rest.partition(":") if kind == "torchvision" else (sets[0], "", "")
    tv_name = st.selectbox(
        "Data set",
        sets,
        index=sets.index(name) if name in sets else 0,
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
    return source, f"torchvision:{tv_name}:{tv_root.strip()}"


def _noise(current: AnalysisConfig, source: str) -> tuple[int, str]:
    """Labels flipped on purpose: a percentage and a noise kind."""
    kind = current.data.partition(":")[0]
    # Flipped labels are for demos and for testing detectors: a user's own data starts at 0%.
    if source == kind:
        now = int(round(current.noise * 100))
    else:
        now = DEMO_NOISE_PERCENT if source == "demo" else 0
    noise = st.slider(
        "Flip labels on purpose (%)",
        0,
        NOISE_PERCENT_MAX,
        now,
        key=wkey(f"setup_noise_{source}"),
        persist_state=SESSION,
        help="Flips this share of labels and remembers the truth, so the Evaluate page can score the "
        f"detectors. The demo flips {DEMO_NOISE_PERCENT}%; leave 0 on your own data unless you want to test "
        "the detectors.",
    )
    if not noise:
        return 0, current.noise_kind
    kinds = names(options.NOISE_KINDS)
    noise_kind = st.radio(
        "Kind of flips",
        kinds,
        index=kinds.index(current.noise_kind),
        key=wkey("setup_noise_kind"),
        persist_state=SESSION,
        horizontal=True,
        captions=[c.label for c in options.NOISE_KINDS],
    )
    return noise, noise_kind


def _model(current: AnalysisConfig) -> tuple[str, str, str | None, int | None, str | None, str]:
    """``(mode, model, checkpoint, epochs, weights, backbone)``; checkpoint and weights None unless
    given, epochs None for the recipe."""
    if current.checkpoint:
        mode_now = "checkpoint"
    elif current.weights:
        mode_now = "weights"
    elif current.pretrained and current.model in options.INSTALLED_WEIGHTS:
        mode_now = "imagenet"
    else:
        mode_now = SMALL_MODEL if current.model == SMALL_MODEL else "torchvision"
    mode = st.radio(
        "Model",
        list(MODEL_MODES),
        index=list(MODEL_MODES).index(mode_now),
        format_func=MODEL_MODES.get,
        key=wkey("setup_model_mode"),
        persist_state=SESSION,
        label_visibility="collapsed",
    )
    checkpoint, weights, backbone = None, None, current.backbone
    if mode == SMALL_MODEL:
        model = SMALL_MODEL
    elif mode == "torchvision":
        model = st.selectbox(
            "Architecture",
            TRAINABLE,
            index=TRAINABLE.index(current.model) if current.model in TRAINABLE else 0,
            format_func=MODEL_LABELS.get,
            key=wkey("setup_arch"),
            persist_state=SESSION,
            help="\n\n".join(f"**{MODEL_LABELS[m]}**: {MODEL_HELP[m]}" for m in TRAINABLE),
        )
        st.caption(MODEL_HELP[model] + ". Training a ResNet on a CPU takes minutes per epoch on thousands of images.")
    elif mode == "imagenet":
        model = IMAGENET_MODEL
        st.caption(MODEL_HELP[model] + ".")
        backbone = _backbone(current)
    elif mode == "weights":
        model = st.text_input(
            "Architecture of the weights",
            value=current.model if current.model != SMALL_MODEL else "resnet18_imagenet",
            key=wkey("setup_weights_arch"),
            persist_state=SESSION,
            help="One of oga's models (photo_resnet, cnn, resnet18_imagenet, ...) or any torchvision "
            "classification architecture by name (mobilenet_v3_small, efficientnet_b0, convnext_tiny, ...).",
        ).strip()
        weights = _weights_file(
            "Weights file",
            current.weights,
            "setup_weights",
            placeholder="/models/resnet18-f37072fd.pth  (a state dict or a checkpoint; never executed)",
            help=options.WEIGHTS_HELP,
        )
        backbone = _backbone(current)
    else:
        models = list(names(options.MODELS))
        model = st.selectbox(
            "Architecture of the checkpoint",
            models,
            index=models.index(current.model) if current.model in models else 0,
            format_func=MODEL_LABELS.get,
            key=wkey("setup_ckpt_arch"),
            persist_state=SESSION,
            help="oga's own checkpoints and plain torchvision state dicts both load.",
        )
        checkpoint = _weights_file(
            "Checkpoint file",
            current.checkpoint,
            "setup_ckpt",
            placeholder="/models/resnet18.pt  (a state dict; never executed, weights only)",
        )
        if checkpoint is None:
            st.info("Give a checkpoint file to score a model you already trained.", icon=":material/info:")
    epochs = st.number_input(
        "Fine-tuning epochs" if mode == "checkpoint" else "Training epochs",
        0,
        500,
        current.epochs if mode == mode_now else None,
        key=wkey(f"setup_epochs_{mode}"),
        persist_state=SESSION,
        placeholder="0: score it as it is" if mode == "checkpoint" else "auto: the recipe",
        help=options.EPOCHS_HELP + ". The final epoch's model is scored: no epoch is picked by looking at "
        "held-out accuracy.",
    )
    return mode, model, checkpoint, None if epochs is None else int(epochs), weights, backbone


def _backbone(current: AnalysisConfig) -> str:
    """How pretrained weights are trained: a frozen backbone with a new head, or every layer."""
    backbones = list(names(options.BACKBONES))
    return st.radio(
        "Train",
        backbones,
        index=backbones.index(current.backbone),
        format_func=BACKBONE_LABELS.get,
        key=wkey("setup_backbone"),
        persist_state=SESSION,
        captions=[c.help for c in options.BACKBONES],
    )


def _weights_file(label: str, value: str | None, key: str, *, placeholder: str, help: str | None = None) -> str | None:
    """A path to a weights file on the server, or an upload of one (saved under the app home);
    None when neither is given. ``key``: the widgets' key prefix (``_path`` / ``_upload``)."""
    path = st.text_input(
        label, value=value or "", key=wkey(f"{key}_path"), persist_state=SESSION, placeholder=placeholder, help=help
    )
    upload = st.file_uploader("… or upload it", type=["pt", "pth", "ckpt", "bin"], key=wkey(f"{key}_upload"))
    return str(save_upload(upload, upload.name)) if upload is not None else path.strip() or None


def _advanced(current: AnalysisConfig) -> dict[str, object]:
    """The rarely changed settings, as ``AnalysisConfig`` keyword arguments."""
    with st.expander("Advanced"):
        image_size = st.number_input(
            "Image size for file sources (px)",
            *options.IMAGE_SIZE_RANGE,
            current.image_size,
            key=wkey("setup_image_size"),
            persist_state=SESSION,
            placeholder=f"auto: {options.DEFAULT_IMAGE_SIZE} (EfficientNet-Lite0: 128)",
            help="File images are resized to a square of this side for the model. " + options.IMAGE_SIZE_HELP,
        )
        grayscale = st.checkbox(
            "Read file images as grayscale",
            current.grayscale,
            key=wkey("setup_grayscale"),
            persist_state=SESSION,
        )
        skip = st.checkbox(
            "Skip unreadable images",
            current.skip_unreadable,
            key=wkey("setup_skip"),
            persist_state=SESSION,
            help="Otherwise a corrupt or missing file stops the analysis with its name.",
        )
        seed = st.number_input(
            "Seed",
            0,
            2**31 - 1,
            current.seed,
            key=wkey("setup_seed"),
            persist_state=SESSION,
        )
        batch = st.number_input(
            "Batch size",
            2,
            4096,
            current.batch_size,
            key=wkey("setup_batch"),
            persist_state=SESSION,
            placeholder=f"auto: {current.recipe().batch_size}",
            help=options.BATCH_SIZE_HELP,
        )
        lr = st.number_input(
            "Learning rate",
            1e-6,
            1.0,
            current.lr,
            format="%.5f",
            key=wkey("setup_lr"),
            persist_state=SESSION,
            placeholder=f"auto: {current.recipe().lr:g}",
            help=options.LR_HELP,
        )
        devices = list(options.DEVICES)
        device = st.selectbox(
            "Device",
            devices,
            index=devices.index(current.device) if current.device in devices else 0,
            key=wkey("setup_device"),
            persist_state=SESSION,
            help=options.DEVICE_HELP,
        )
    return {
        "image_size": None if image_size is None else int(image_size),
        "grayscale": bool(grayscale),
        "skip_unreadable": bool(skip),
        "seed": int(seed),
        "batch_size": None if batch is None else int(batch),
        "lr": None if lr is None else float(lr),
        "device": device,
    }
