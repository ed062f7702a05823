"""oga_core/gradients.py: every fast path against torch.func per-sample gradients.

The reference is ``per_sample_gradients_vmap`` (``vmap(grad(loss))`` over every parameter). The
last-layer closed form, the flattened head gradient, the all-layer norms (materialised with L1,
ghost norms without) and the count sketch must all agree with it, on the small CNN, on a
ResNet-18 and on EfficientNet-Lite0, whose BatchNorm statistics and affine parameters are
perturbed so BN terms count.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from oga_core.errors import OgaError
from oga_core.gradients import (
    SKETCH_DIMS,
    CountSketch,
    all_layer_norms,
    forward_pass,
    gradient_stats,
    norms_of,
    per_sample_gradients_loop,
    per_sample_gradients_vmap,
)
from oga_core.lastlayer import last_layer_gradients, last_layer_norms
from oga_core.models import Classifier, build_model

K = 5


def _perturb_batchnorm(model: nn.Module, seed: int = 0) -> int:
    gen = torch.Generator().manual_seed(seed)
    count = 0
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                c = m.num_features
                m.running_mean.copy_(0.3 * torch.randn(c, generator=gen))
                m.running_var.copy_(0.5 + 1.5 * torch.rand(c, generator=gen))
                m.weight.copy_(1 + 0.5 * torch.randn(c, generator=gen))
                m.bias.copy_(0.3 * torch.randn(c, generator=gen))
                count += 1
    return count


class _Case:
    """A model in eval mode, uint8 pixels, labels, and the torch.func reference gradients."""

    def __init__(self, model: Classifier, shape: tuple[int, int, int], n: int, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.model = model.eval()
        self.pixels = rng.integers(0, 256, (n, *shape), dtype=np.uint8)
        self.labels = rng.integers(0, K, n)
        self.x = torch.from_numpy(self.pixels).float() / 255
        self.y = torch.from_numpy(self.labels)
        self.ref = per_sample_gradients_vmap(self.model, self.x, self.y)
        self.ref_l1, self.ref_l2 = (t.double().numpy() for t in norms_of(self.ref))

    def ref_layer_l2(self, layer: str) -> np.ndarray:
        parts = [g.flatten(1) for name, g in self.ref.items() if name.rsplit(".", 1)[0] == layer]
        return torch.cat(parts, 1).double().pow(2).sum(1).sqrt().numpy()


class _Mixed(nn.Module):
    """Layers the hooks must get right: grouped, strided, dilated and 'same'-padded convs,
    BatchNorm2d, a Linear on (B, T, D) tokens, and a BatchNorm1d before the head."""

    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.c2 = nn.Conv2d(8, 8, 3, groups=2, dilation=2, padding=2, bias=False)
        self.c3 = nn.Conv2d(8, 6, 3, padding="same")
        self.tok = nn.Linear(6, 6)
        self.bn1d = nn.BatchNorm1d(6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn(self.c1(x)))
        x = torch.relu(self.c3(torch.relu(self.c2(x))))
        tokens = self.tok(x.flatten(2).transpose(1, 2))  # (B, T, 6)
        return self.bn1d(torch.tanh(tokens).mean(1))


def _mixed_model() -> Classifier:
    torch.manual_seed(0)
    return Classifier(_Mixed(), 6, K, 3)


@pytest.fixture(scope="module")
def cases() -> dict[str, _Case]:
    torch.manual_seed(0)
    small16 = build_model("small_cnn", num_classes=K, in_channels=3, image_size=16, seed=0)
    small8 = build_model("small_cnn", num_classes=K, in_channels=1, image_size=8, seed=1)
    resnet = build_model("resnet18", num_classes=K, in_channels=3, image_size=16, seed=0)
    assert _perturb_batchnorm(resnet) == 20  # every BN of ResNet-18 (incl. the downsample ones)
    mixed = _mixed_model()
    assert _perturb_batchnorm(mixed) == 2
    cnn = build_model("cnn", num_classes=K, in_channels=1, image_size=40, seed=2)  # 10x10 maps pooled to 8x8
    assert _perturb_batchnorm(cnn) == 2
    # depthwise and strided convolutions with TensorFlow's padding, channels-last weights, 128 px inside
    lite = build_model("efficientnet_lite0", num_classes=K, in_channels=3, image_size=16, seed=3)
    assert _perturb_batchnorm(lite) == 48
    return {
        "small_cnn_3x16": _Case(small16, (3, 16, 16), 6),
        "cnn_1x40": _Case(cnn, (1, 40, 40), 5, seed=4),
        "small_cnn_1x8": _Case(small8, (1, 8, 8), 6, seed=1),
        "resnet18_3x16": _Case(resnet, (3, 16, 16), 4, seed=2),
        "mixed_3x12": _Case(mixed, (3, 12, 12), 5, seed=3),
        "lite0_3x16": _Case(lite, (3, 16, 16), 3, seed=5),
    }


CASES = ["small_cnn_3x16", "small_cnn_1x8", "cnn_1x40", "resnet18_3x16", "mixed_3x12", "lite0_3x16"]


# -- last layer, closed form -----------------------------------------------------------------
@pytest.mark.parametrize("name", CASES)
def test_last_layer_closed_form_matches_torch_func(cases, name):
    case = cases[name]
    head = per_sample_gradients_vmap(case.model, case.x, case.y, only_head=True)
    assert set(head) == {"head.weight", "head.bias"}
    torch.testing.assert_close(head["head.weight"], case.ref["head.weight"])
    out = forward_pass(case.model, case.pixels, batch_size=4)  # two batches
    l1, l2 = last_layer_norms(out.features, out.logits, case.labels)
    ref_l1, ref_l2 = (t.double().numpy() for t in norms_of(head))
    np.testing.assert_allclose(l1, ref_l1, rtol=1e-4)
    np.testing.assert_allclose(l2, ref_l2, rtol=1e-4)

    flat = last_layer_gradients(out.features, out.logits, case.labels, max_dims=10**9)
    n, d = len(case.labels), case.model.head.in_features
    expected = torch.cat([head["head.weight"], head["head.bias"][:, :, None]], 2).reshape(n, K * (d + 1))
    assert flat.shape == (n, K * (d + 1)) and flat.dtype == np.float32
    scale = float(expected.abs().max())  # float32 noise of two forward implementations
    np.testing.assert_allclose(flat, expected.numpy(), rtol=1e-4, atol=1e-5 * scale)


# -- all layers ------------------------------------------------------------------------------
@pytest.mark.parametrize("want_l1", [True, False], ids=["materialised", "ghost"])
@pytest.mark.parametrize("name", CASES)
def test_all_layer_norms_match_torch_func(cases, name, want_l1):
    case = cases[name]
    stats = all_layer_norms(case.model, case.pixels, case.labels, want_l1=want_l1, batch_size=3)
    assert stats.scope == "all" and stats.sketch is None
    np.testing.assert_allclose(stats.l2, case.ref_l2, rtol=2e-4)
    if want_l1:
        np.testing.assert_allclose(stats.l1, case.ref_l1, rtol=2e-4)
    else:
        assert np.isnan(stats.l1).all()
    # each layer's own norm, BatchNorm layers included
    layers = {name.rsplit(".", 1)[0] for name in case.ref}
    assert set(stats.layer_names) == layers and stats.layer_l2.shape == (len(case.labels), len(layers))
    for j, layer in enumerate(stats.layer_names):
        np.testing.assert_allclose(stats.layer_l2[:, j], case.ref_layer_l2(layer), rtol=5e-4, atol=1e-7, err_msg=layer)
    np.testing.assert_allclose(np.sqrt((stats.layer_l2**2).sum(1)), stats.l2, rtol=1e-6)
    out = forward_pass(case.model, case.pixels)
    # the same forward pass, in batches of another size: equal up to float32 noise
    np.testing.assert_allclose(stats.features, out.features, rtol=1e-4, atol=1e-5 * float(np.abs(out.features).max()))
    np.testing.assert_allclose(stats.logits, out.logits, rtol=1e-4, atol=1e-5 * float(np.abs(out.logits).max()))


def test_batchnorm_terms_matter_in_resnet18(cases):
    case = cases["resnet18_3x16"]
    stats = all_layer_norms(case.model, case.pixels, case.labels, want_l1=False)
    bn = [j for j, n in enumerate(stats.layer_names) if "bn" in n or "downsample.1" in n]
    assert len(bn) == 20
    # Leaving BN out would move the total L2 norm by more than the tolerance it is checked with.
    share = (stats.layer_l2[:, bn] ** 2).sum(1) / stats.l2**2
    assert (share > 5e-4).all(), share
    # The running statistics enter each BN layer's gradient: with default statistics the same
    # weights give other BN norms, so a hook that ignored them could not match torch.func above.
    plain = copy.deepcopy(case.model)
    for m in plain.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.reset_running_stats()
    other = all_layer_norms(plain, case.pixels, case.labels, want_l1=False)
    change = np.abs(other.layer_l2[:, bn] / stats.layer_l2[:, bn] - 1)
    assert np.median(change) > 0.05, change


def test_the_pass_leaves_the_model_as_it_was(cases):
    model = cases["small_cnn_1x8"].model
    model.body.layers[0].weight.requires_grad_(False)  # a frozen layer stays frozen and is skipped
    try:
        before = {k: v.clone() for k, v in model.state_dict().items()}
        case = cases["small_cnn_1x8"]
        stats = all_layer_norms(model, case.pixels, case.labels)
        ref = per_sample_gradients_vmap(model, case.x, case.y)
        assert "body.layers.0.weight" not in ref
        np.testing.assert_allclose(stats.l1, norms_of(ref)[0].double().numpy(), rtol=2e-4)
        np.testing.assert_allclose(stats.l2, norms_of(ref)[1].double().numpy(), rtol=2e-4)
        assert not model.body.layers[0].weight.requires_grad
        assert all(p.requires_grad for n, p in model.named_parameters() if n != "body.layers.0.weight")
        assert all(p.grad is None for p in model.parameters())
        for k, v in model.state_dict().items():
            assert torch.equal(v, before[k])
    finally:
        model.body.layers[0].weight.requires_grad_(True)


def test_unsupported_layers_are_refused():
    ln = Classifier(nn.Sequential(nn.Flatten(), nn.Linear(16, 4), nn.LayerNorm(4)), 4, 2, 1)
    pixels, labels = np.zeros((2, 1, 4, 4), np.uint8), np.array([0, 1])
    with pytest.raises(OgaError, match="'body.2' is a LayerNorm"):
        all_layer_norms(ln, pixels, labels)
    twice = nn.Linear(16, 16)
    reuse = Classifier(nn.Sequential(nn.Flatten(), twice, nn.ReLU(), twice), 16, 2, 1)
    with pytest.raises(OgaError, match="runs twice"):
        all_layer_norms(reuse, pixels, labels)
    assert all(p.requires_grad for p in reuse.parameters())  # restored after the failure
    circular = Classifier(nn.Sequential(nn.Conv2d(1, 2, 3, padding=1, padding_mode="circular"), nn.Flatten()), 32, 2, 1)
    with pytest.raises(OgaError, match="zero padding"):
        all_layer_norms(circular, pixels, labels)


# -- references agree --------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["small_cnn_3x16", "resnet18_3x16"])
def test_loop_equals_vmap(cases, name):
    case = cases[name]
    loop = per_sample_gradients_loop(case.model, case.x, case.y)
    assert set(loop) == set(case.ref)
    for k in case.ref:
        scale = float(case.ref[k].abs().max())
        torch.testing.assert_close(loop[k], case.ref[k], rtol=1e-4, atol=1e-5 * scale, msg=k)
    head = per_sample_gradients_loop(case.model, case.x, case.y, only_head=True)
    assert set(head) == {"head.weight", "head.bias"}
    torch.testing.assert_close(head["head.bias"], case.ref["head.bias"], rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(head["head.weight"], loop["head.weight"])


# -- sketches and projections ------------------------------------------------------------------
@pytest.mark.parametrize("name", ["small_cnn_1x8", "resnet18_3x16", "mixed_3x12"])
def test_count_sketch_of_the_pass_is_the_sketch_of_the_true_gradient(cases, name):
    case = cases[name]
    stats = all_layer_norms(case.model, case.pixels, case.labels, want_l1=False, sketch_dims=256, seed=4)
    expected = torch.zeros(len(case.labels), 256)
    sketch = CountSketch(256, seed=4)
    for param, g in case.ref.items():  # each parameter hashed under its own name
        sketch.add(expected, param, g.flatten(1))
    np.testing.assert_allclose(stats.sketch, expected.numpy(), rtol=1e-3, atol=1e-5 * float(expected.abs().max()))
    np.testing.assert_allclose(stats.l2, case.ref_l2, rtol=2e-4)


def test_count_sketch_preserves_norms(cases):
    case = cases["resnet18_3x16"]  # 11 M coordinates into 1,024 buckets
    stats = all_layer_norms(case.model, case.pixels, case.labels, want_l1=False, sketch_dims=SKETCH_DIMS)
    ratio = np.linalg.norm(stats.sketch, axis=1) / case.ref_l2
    assert np.all(np.abs(ratio - 1) < 0.15), ratio

    g = torch.randn(64, 20_000, generator=torch.Generator().manual_seed(0))
    out = torch.zeros(64, 1024)
    CountSketch(1024, seed=1).add(out, "w", g)
    sq = (out.norm(dim=1) / g.norm(dim=1)) ** 2
    assert abs(float(sq.mean()) - 1) < 0.03 and float((sq - 1).abs().max()) < 0.25  # sd ~ sqrt(2/1024)


def test_count_sketch_is_unbiased_over_seeds():
    gen = torch.Generator().manual_seed(0)
    u, v = torch.randn(1, 3000, generator=gen), torch.randn(1, 3000, generator=gen)
    v = 0.6 * u + v  # correlated: <u, v> is far from 0
    sq, dot = [], []
    for seed in range(300):
        su, sv = torch.zeros(1, 32), torch.zeros(1, 32)
        CountSketch(32, seed=seed).add(su, "p", u)
        CountSketch(32, seed=seed).add(sv, "p", v)
        sq.append(float(su.norm() ** 2 / u.norm() ** 2))
        dot.append(float((su * sv).sum() / (u * v).sum()))
    # each estimate has sd ~ sqrt(2/32) = 0.25; the mean of 300 has sd ~ 0.015
    assert abs(np.mean(sq) - 1) < 0.06 and np.std(sq) > 0.1
    assert abs(np.mean(dot) - 1) < 0.1
    a, b = torch.zeros(1, 32), torch.zeros(1, 32)
    CountSketch(32, seed=5).add(a, "p", u)
    CountSketch(32, seed=5).add(b, "p", u)
    assert torch.equal(a, b)  # same seed and key, same hash


# -- dispatch ----------------------------------------------------------------------------------
def test_gradient_stats_scopes(cases):
    case = cases["small_cnn_1x8"]
    last = gradient_stats(case.model, case.pixels, case.labels, scope="last")
    out = forward_pass(case.model, case.pixels)
    l1, l2 = last_layer_norms(out.features, out.logits, case.labels)
    np.testing.assert_allclose(last.l1, l1)
    np.testing.assert_allclose(last.l2, l2)
    assert last.sketch is None and last.layer_l2 is None
    full = gradient_stats(case.model, case.pixels, case.labels, scope="all", batch_size=4)
    assert full.sketch.shape == (len(case.labels), SKETCH_DIMS)
    np.testing.assert_allclose(full.l1, case.ref_l1, rtol=2e-4)
    assert np.all(full.l2 > last.l2)  # the head is one part of all layers
    with pytest.raises(OgaError, match="unknown scope 'middle'"):
        gradient_stats(case.model, case.pixels, case.labels, scope="middle")


_FORWARD_RSS = """
import json, resource, sys
import numpy as np, torch
torch.set_num_threads(1)
from oga_core.gradients import forward_pass
from oga_core.models import build_model
n = int(sys.argv[1])
model = build_model("cnn", num_classes=10, in_channels=1, image_size=28)
pixels = np.random.default_rng(0).integers(0, 256, (n, 1, 28, 28), dtype=np.uint8)
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
out = forward_pass(model, pixels, batch_size=64)
assert out.features.shape == (n, 128) and out.logits.shape == (n, 10)
print(json.dumps({"grew_mib": (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024}))
"""


def test_the_scoring_pass_keeps_memory_to_its_outputs():
    """20,000 images through the default cnn: the pass may hold its outputs (10 MiB of features
    and logits) and one batch's activations, not every batch's (47 KB a sample, about 900 MiB
    here, when batch tensors were kept in a list and joined at the end)."""
    import json
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", _FORWARD_RSS, "20000"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    grew = json.loads(done.stdout.strip().splitlines()[-1])["grew_mib"]
    assert grew < 150, grew
