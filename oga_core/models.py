"""Model registry and safe checkpoint loading.

Every model is a :class:`Classifier`: input normalisation -> ``body`` (features ``h``, shape
``(B, D)``) -> ``head`` (one ``nn.Linear(D, K)``). OGA's last-layer scores need exactly that split,
so it is part of the type rather than discovered by walking modules.

Checkpoints load with ``torch.load(..., weights_only=True)``: a file can hold tensors, never code.
Both oga's own checkpoints and plain torchvision state dicts (``conv1.*``, ``fc.*``) are accepted.
"""

from __future__ import annotations

import pickle
import re
from collections.abc import Callable, Mapping
from pathlib import Path

import torch
from torch import nn

from oga_core import options
from oga_core.errors import ModelError


class Classifier(nn.Module):
    """``x`` float ``(B, C, H, W)`` in [0, 1] -> logits ``(B, K)``; ``features`` gives ``(B, D)``."""

    def __init__(self, body: nn.Module, feature_dim: int, num_classes: int, in_channels: int) -> None:
        super().__init__()
        # Stored in the state dict so a checkpoint carries the normalisation it was trained with.
        self.register_buffer("input_mean", torch.full((1, in_channels, 1, 1), 0.5))
        self.register_buffer("input_std", torch.full((1, in_channels, 1, 1), 0.25))
        self.body = body
        self.head = nn.Linear(feature_dim, num_classes)

    def set_normalization(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        """Per-channel mean and std ``(C,)`` of the training images in [0, 1]."""
        self.input_mean.copy_(mean.reshape(self.input_mean.shape))
        self.input_std.copy_(std.clamp_min(1e-3).reshape(self.input_std.shape))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body((x - self.input_mean) / self.input_std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class CNN(nn.Module):
    """Two 3x3 conv blocks (BatchNorm, ReLU, max-pool) and a dense layer on the flattened maps:
    oga's default. Flattening keeps WHERE things are (a ring and a disc differ by their centre),
    which global pooling straight after the convolutions throws away; BatchNorm lets it fit in a
    few hundred steps. Maps larger than 8 x 8 are average-pooled to 8 x 8 first, so the dense
    layer stays at most 4,096 x 128 whatever the image size. Output: ``(B, 128)`` features.
    """

    feature_dim = 128

    def __init__(self, in_channels: int, image_size: int) -> None:
        super().__init__()
        early_pool: nn.Module = nn.MaxPool2d(2) if image_size >= 16 else nn.Identity()
        side = (image_size // 2 if image_size >= 16 else image_size) // 2
        grid = min(side, 8)
        self.layers = nn.Sequential(
            nn.Conv2d(in_channels, 32, 3, padding=1, bias=False),
            nn.BatchNorm2d(32),
            nn.ReLU(),
            early_pool,
            nn.Conv2d(32, 64, 3, padding=1, bias=False),
            nn.BatchNorm2d(64),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.AdaptiveAvgPool2d(grid) if side > grid else nn.Identity(),
            nn.Flatten(),
            nn.Linear(64 * grid * grid, self.feature_dim),
            nn.ReLU(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


def _cnn(in_channels: int, image_size: int) -> tuple[nn.Module, int]:
    return CNN(in_channels, image_size), CNN.feature_dim


class SmallCNN(nn.Module):
    """Three 3x3 conv layers and global pooling (oga's first default, kept so that its checkpoints
    still load): trains in seconds, but cannot fit data whose classes differ by layout.

    Pools once early when the image is 16 px or larger, so 28 px MNIST costs about as much as
    8 px digits per layer. Output: ``(B, 128)`` features.
    """

    feature_dim = 128

    def __init__(self, in_channels: int, image_size: int) -> None:
        super().__init__()
        early_pool: nn.Module = nn.MaxPool2d(2) if image_size >= 16 else nn.Identity()
        self.layers = nn.Sequential(
            nn.Conv2d(in_channels, 32, 3, padding=1),
            nn.ReLU(),
            early_pool,
            nn.Conv2d(32, 64, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(64, 128, 3, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


def _small_cnn(in_channels: int, image_size: int) -> tuple[nn.Module, int]:
    return SmallCNN(in_channels, image_size), SmallCNN.feature_dim


def _torchvision_resnet(arch: str, *, small_inputs: bool) -> Callable[[int, int], tuple[nn.Module, int]]:
    def build(in_channels: int, image_size: int) -> tuple[nn.Module, int]:
        import torchvision.models as tvm

        net = getattr(tvm, arch)(weights=None)
        feature_dim = net.fc.in_features
        if small_inputs:
            # The CIFAR adaptation (He et al. 2016, sec. 4.2): a 3x3 stride-1 stem and no max-pool,
            # so a 32 px image is not shrunk to 8 px before the first residual stage.
            net.conv1 = nn.Conv2d(in_channels, 64, 3, stride=1, padding=1, bias=False)
            net.maxpool = nn.Identity()
        elif in_channels != 3:
            net.conv1 = nn.Conv2d(in_channels, 64, 7, stride=2, padding=3, bias=False)
        net.fc = nn.Identity()
        return net, feature_dim

    return build


MODELS: dict[str, Callable[[int, int], tuple[nn.Module, int]]] = {
    "cnn": _cnn,
    "small_cnn": _small_cnn,
    "resnet18": _torchvision_resnet("resnet18", small_inputs=True),
    "resnet34": _torchvision_resnet("resnet34", small_inputs=True),
    "resnet50": _torchvision_resnet("resnet50", small_inputs=True),
    "resnet18_imagenet": _torchvision_resnet("resnet18", small_inputs=False),
    "resnet50_imagenet": _torchvision_resnet("resnet50", small_inputs=False),
}
if set(MODELS) != set(options.names(options.MODELS)):  # names and help live in options.py
    raise AssertionError(
        f"models.MODELS and options.MODELS disagree: {sorted(set(MODELS) ^ set(options.names(options.MODELS)))}"
    )


def build_model(name: str, *, num_classes: int, in_channels: int, image_size: int, seed: int = 0) -> Classifier:
    """A freshly initialised Classifier; the seed fixes the initial weights."""
    if name not in MODELS:
        raise ModelError(f"unknown model '{name}': choose one of {', '.join(MODELS)}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        body, feature_dim = MODELS[name](in_channels, image_size)
        model = Classifier(body, feature_dim, num_classes, in_channels)
    _disable_inplace(model)
    return model


def _disable_inplace(model: nn.Module) -> None:
    # In-place activations overwrite a layer's output, which the per-sample gradient hooks read.
    for module in model.modules():
        if hasattr(module, "inplace"):
            module.inplace = False


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Tensors of a checkpoint file, unwrapped from the usual containers; ModelError otherwise."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"checkpoint {path} does not exist")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        # torch's message is many lines with terminal escapes; keep the one fact that matters.
        found = re.search(r"GLOBAL (\S+)", str(exc))
        if found is None:
            raise ModelError(f"checkpoint {path} is not a PyTorch checkpoint file (cannot unpickle it)") from None
        raise ModelError(
            f"checkpoint {path} holds Python objects beyond tensors ({found.group(1)}), which oga will not "
            "execute; save model.state_dict() instead"
        ) from None
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [""])[0]
        raise ModelError(f"checkpoint {path} is not a PyTorch file ({type(exc).__name__}: {first})") from None
    for key in ("state_dict", "model_state_dict", "model"):
        if isinstance(obj, Mapping) and isinstance(obj.get(key), Mapping):
            obj = obj[key]
            break
    if (
        not isinstance(obj, Mapping)
        or not obj
        or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())
    ):
        raise ModelError(f"checkpoint {path} is not a state dict (a mapping of parameter names to tensors)")
    # DataParallel / DistributedDataParallel prefix every key with "module."
    return {k.removeprefix("module."): v for k, v in obj.items()}


def _to_classifier_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    if any(k.startswith(("body.", "head.")) for k in state):
        return state
    # A plain torchvision model: its classifier is "fc", everything else is the body.
    return {("head." + k[3:] if k.startswith("fc.") else "body." + k): v for k, v in state.items()}


def load_checkpoint(model: Classifier, path: Path, *, new_head: bool = False) -> bool:
    """Load ``path`` into ``model`` in place; ModelError naming the first mismatches if it does not fit.

    ``new_head``: when only the classifier head's shape differs (an ImageNet checkpoint's 1,000
    classes for a 10-class data set), keep the model's freshly initialised head and load the rest,
    for fine-tuning. Returns True when the head was replaced so.
    """
    state = _to_classifier_keys(read_state_dict(path))
    own = model.state_dict()
    head_differs = any(k in state and state[k].shape != own[k].shape for k in ("head.weight", "head.bias"))
    body_fits = all(state[k].shape == own[k].shape for k in own if k in state and not k.startswith("head."))
    replaced = new_head and head_differs and body_fits
    if replaced:
        state = {k: v for k, v in state.items() if not k.startswith("head.")}
        own_required = {"head.weight", "head.bias"}
    else:
        own_required = set()
    optional = {"input_mean", "input_std"}  # foreign checkpoints keep the data's normalisation
    missing = [k for k in own if k not in state and k not in optional | own_required]
    unexpected = [k for k in state if k not in own]
    wrong = [
        f"{k} is {list(state[k].shape)} in the file but {list(own[k].shape)} in the model"
        for k in own
        if k in state and state[k].shape != own[k].shape
    ]
    problems = []
    if wrong:
        problems.append("; ".join(wrong[:3]) + (f" (+{len(wrong) - 3} more)" if len(wrong) > 3 else ""))
    if missing:
        problems.append(
            f"missing {', '.join(missing[:3])}" + (f" (+{len(missing) - 3} more)" if len(missing) > 3 else "")
        )
    if unexpected:
        problems.append(
            f"unexpected {', '.join(unexpected[:3])}"
            + (f" (+{len(unexpected) - 3} more)" if len(unexpected) > 3 else "")
        )
    if problems:
        hint = " (train for at least one epoch to fine-tune it with a new head)" if head_differs and body_fits else ""
        raise ModelError(f"checkpoint {path} does not fit this model: {'; '.join(problems)}{hint}")
    broken = [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if broken:
        more = f" (+{len(broken) - 3} more)" if len(broken) > 3 else ""
        raise ModelError(
            f"checkpoint {path} holds non-finite weights (NaN or infinity) in {', '.join(broken[:3])}{more}: "
            "it cannot score anything; use a checkpoint saved before training diverged"
        )
    model.load_state_dict({**own, **state})
    return replaced
