"""oga_core/train.py: seeded, reproducible training that learns; devices; input statistics."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from oga_core.errors import OgaError
from oga_core.models import build_model
from oga_core.train import channel_stats, resolve_device, to_float, train


def _toy(n: int = 64, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two learnable classes of 1x8x8 images: bright top half vs bright bottom half, plus noise."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 2
    pixels = rng.integers(0, 60, (n, 1, 8, 8)).astype(np.uint8)
    pixels[labels == 0, :, :4] += 150
    pixels[labels == 1, :, 4:] += 150
    return pixels, labels


def _model(seed: int = 0):
    return build_model("small_cnn", num_classes=2, in_channels=1, image_size=8, seed=seed)


def test_same_seed_same_weights_other_seed_other_weights():
    pixels, labels = _toy()
    runs = []
    for seed in (1, 1, 2):
        runs.append(train(_model(), pixels, labels, epochs=2, batch_size=16, seed=seed).model.state_dict())
    for k in runs[0]:
        assert torch.equal(runs[0][k], runs[1][k]), k
    assert not torch.equal(runs[0]["head.weight"], runs[2]["head.weight"])  # the seed orders the batches


def test_loss_goes_down_and_the_model_learns():
    pixels, labels = _toy()
    steps = []
    result = train(
        _model(), pixels, labels, epochs=6, batch_size=16, lr=5e-3, progress=lambda s, t: steps.append((s, t))
    )
    losses = [h["loss"] for h in result.history]
    assert [h["epoch"] for h in result.history] == [1, 2, 3, 4, 5, 6]
    assert losses[-1] < 0.5 * losses[0], losses
    assert result.history[-1]["accuracy"] >= 0.95
    assert steps[-1] == (24, 24) and len(steps) == 24  # 6 epochs x 4 batches, every step reported
    assert result.seconds > 0 and not result.model.training  # handed back in eval mode
    with torch.no_grad():
        pred = result.model(to_float(torch.from_numpy(pixels), torch.device("cpu"))).argmax(1).numpy()
    assert (pred == labels).mean() >= 0.95


def test_zero_epochs_returns_the_model_untouched():
    pixels, labels = _toy()
    model = _model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result = train(model, pixels, labels, epochs=0)
    assert result.model is model and result.history == [] and not model.training
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_a_last_batch_of_one_joins_the_batch_before():
    pixels, labels = _toy(n=9)
    model = build_model("resnet18", num_classes=2, in_channels=1, image_size=8)
    sizes = []
    result = train(model, pixels, labels, epochs=1, batch_size=4, on_batch=lambda e, idx, z, y: sizes.append(len(idx)))
    assert sizes == [4, 5]  # 4, 4 and 1: BatchNorm cannot normalise one sample, and none is left out
    assert result.history[0]["loss"] > 0 and np.isfinite(result.history[0]["loss"])


def test_the_trajectory_is_the_head_gradient_of_each_step_before_the_step():
    """Every recorded value equals what per-sample autograd gives on that mini-batch with the
    weights before the optimiser step (the model keeps BatchNorm in train mode, as training does)."""
    from oga_core.lastlayer import TRAJECTORY_FIELDS

    pixels, labels = _toy(n=40)
    model = _model()
    expected = np.zeros((3, 40, len(TRAJECTORY_FIELDS)))

    def check_gradients(epoch, idx, logits, y):
        w, b = model.head.weight, model.head.bias
        for row, sample in enumerate(idx.tolist()):
            loss = torch.nn.functional.cross_entropy(logits[row : row + 1], y[row : row + 1])
            gw, gb = torch.autograd.grad(loss, [w, b], retain_graph=True)
            g = torch.cat([gw.flatten(), gb]).double()
            p = torch.softmax(logits[row].detach().double(), 0)
            z = logits[row].detach().double()
            others = [k for k in range(len(p)) if k != int(y[row])]
            # p_y, max other p, ||g||_2, logit margin, ||g||_1 of the head's per-sample gradient
            expected[epoch, sample, :5] = [
                float(p[y[row]]),
                float(p[others].max()),
                float(g.norm()),
                float(z[y[row]] - z[others].max()),
                float(g.abs().sum()),
            ]

    probs = np.zeros((3, 40, 2))

    def check(epoch, idx, logits, y):
        check_gradients(epoch, idx, logits, y)
        probs[epoch, idx.numpy()] = torch.softmax(logits.detach().double(), 1).numpy()

    result = train(model, pixels, labels, epochs=3, batch_size=16, seed=3, on_batch=check)
    traj = result.trajectory
    assert traj.values.shape == (3, 40, len(TRAJECTORY_FIELDS)) and traj.trained.all()
    f = {name: traj.field(name).astype(np.float64) for name in TRAJECTORY_FIELDS}
    np.testing.assert_allclose(np.exp(f["log_p_given"]), expected[:, :, 0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(f["p_other"], expected[:, :, 1], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(f["logit_margin"], expected[:, :, 3], rtol=1e-5, atol=1e-5)
    # the closed form's L2 and L1 norms of the head gradient, from the recorded factors
    l2 = f["el2n"] * np.sqrt(f["h_l2"] ** 2 + 1)
    l1 = -2 * np.expm1(f["log_p_given"]) * (f["h_l1"] + 1)
    np.testing.assert_allclose(l2, expected[:, :, 2], rtol=1e-6)
    np.testing.assert_allclose(l1, expected[:, :, 4], rtol=1e-6)
    assert traj.lr.shape == (3,) and traj.lr[0] > traj.lr[-1] > 0  # cosine decay
    # each sample's class probabilities, averaged over the epochs with TracIn's weights
    weights = traj.lr / traj.lr.sum()
    np.testing.assert_allclose(traj.probs, np.tensordot(weights, probs, 1), rtol=1e-5, atol=1e-6)
    assert traj.probs_quality is None and traj.quality is None  # nothing held out: no quality to weigh by


def test_held_out_samples_are_recorded_but_never_trained_on():
    pixels, labels = _toy(n=40)
    holdout = np.zeros(40, bool)
    holdout[::5] = True
    trained = []
    result = train(
        _model(),
        pixels,
        labels,
        epochs=2,
        batch_size=8,
        holdout=holdout,
        on_batch=lambda e, idx, z, y: trained.extend(idx.tolist()),
    )
    assert set(trained) == set(np.flatnonzero(~holdout)) and len(trained) == 2 * 32
    assert (result.trajectory.trained == ~holdout).all()
    assert np.all(result.trajectory.values[:, holdout, 4] > 0)  # recorded by the eval-mode pass
    assert "holdout_accuracy" in result.history[-1]


def test_quality_weights_follow_held_out_accuracy():
    """Each epoch's records weigh by the squared held-out accuracy above chance the model had while
    they were made (the mean of the accuracy before and after the epoch; chance before the first),
    the final model by its own; the quality-weighted probabilities are distributions."""
    pixels, labels = _toy(n=60)
    holdout = np.zeros(60, bool)
    holdout[::4] = True
    result = train(_model(), pixels, labels, epochs=4, batch_size=8, holdout=holdout, seed=1)
    traj, classes = result.trajectory, 2
    accuracy = [h["holdout_accuracy"] for h in result.history]
    before = [1.0 / classes, *accuracy[:-1]]
    expected = [max((a + b) / 2 - 1.0 / classes, 0.0) ** 2 for a, b in zip(before, accuracy)]
    np.testing.assert_allclose(traj.quality, [*expected, max(accuracy[-1] - 1.0 / classes, 0) ** 2])
    assert traj.quality[0] < traj.quality[-1]  # the first epoch's records came from a half-trained model
    np.testing.assert_allclose(traj.probs_quality.sum(1), 1.0, rtol=1e-5)
    final = np.full((60, classes), 0.5)
    mixed = traj.quality_probs(final)
    share = traj.quality[-1] / traj.quality.sum()
    np.testing.assert_allclose(mixed, (1 - share) * traj.probs_quality + share * final, rtol=1e-5)


def test_resolve_device(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(OgaError, match="torch sees no CUDA GPU"):
        resolve_device("cuda")
    with pytest.raises(OgaError, match="torch sees no CUDA GPU"):
        resolve_device("cuda:1")
    with pytest.raises(OgaError, match="unknown device 'tpu'"):
        resolve_device("tpu")


def test_channel_stats_and_to_float():
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (10, 3, 4, 4), dtype=np.uint8)
    mean, std = channel_stats(pixels)
    x = pixels.astype(np.float64) / 255
    np.testing.assert_allclose(mean.numpy(), x.mean(axis=(0, 2, 3)), rtol=1e-5)
    np.testing.assert_allclose(std.numpy(), x.std(axis=(0, 2, 3), ddof=1), rtol=1e-4)
    f = to_float(torch.from_numpy(pixels), torch.device("cpu"))
    assert f.dtype == torch.float32 and float(f.max()) <= 1.0
    np.testing.assert_allclose(f.numpy(), x, rtol=1e-6)


# -- photos: augmentation and the colour recipe ------------------------------------------------
def test_random_crop_flip_keeps_shape_and_content():
    from oga_core.train import random_crop_flip

    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).reshape(2, 3, 8, 8)
    views = random_crop_flip(x, torch.Generator().manual_seed(0))
    assert views.shape == x.shape
    # each view is a shifted / mirrored window of its own image: every value comes from that image
    for i in range(2):
        assert set(views[i].flatten().tolist()) <= set(x[i].flatten().tolist())
    again = random_crop_flip(x, torch.Generator().manual_seed(0))
    assert torch.equal(views, again)  # reproducible from the generator
    assert not torch.equal(random_crop_flip(x, torch.Generator().manual_seed(1)), views)


def test_photo_recipe_learns_real_photos(cifar_photos):
    """The colour default (photo_resnet with crops and flips) learns real photos in seconds: on
    1,000 CIFAR-10 photos, 6 epochs, accuracy on 1,000 other photos far above chance (0.10)."""
    from oga_core.config import AnalysisConfig

    pixels, labels = cifar_photos
    rng = np.random.default_rng(0)
    order = rng.permutation(len(labels))
    train_rows, test_rows = order[:1000], order[1000:2000]
    config = AnalysisConfig().for_input(colour=True)
    assert config.model == "photo_resnet" and config.recipe().augment
    model = build_model("photo_resnet", num_classes=10, in_channels=3, image_size=32, seed=0)
    model.set_normalization(*channel_stats(pixels[train_rows]))
    recipe = config.recipe()
    train(
        model,
        pixels[train_rows],
        labels[train_rows],
        epochs=6,
        batch_size=recipe.batch_size,
        lr=recipe.lr,
        weight_decay=recipe.weight_decay,
        augment=True,
    )
    with torch.no_grad():
        pred = model(torch.from_numpy(pixels[test_rows]).float() / 255).argmax(1).numpy()
    accuracy = float((pred == labels[test_rows]).mean())
    assert accuracy > 0.25, accuracy
