"""Is the model fit to rank its own training data? The held-out split and the health check.

A ranking is only as good as the model behind it: a model that underfits ranks hard-but-correct
samples as suspicious, and one that memorises the flipped labels makes final-epoch scores
useless (docs/architecture.md, "Health"). Every analysis that trains holds a small, fixed part of
the data out of training — chosen by a hash of each sample id, so the split is the same for the
same data set whatever the seed, order or model — and reports:

* training accuracy on the given labels (the final model, eval mode),
* accuracy on the held-out part (given labels, never trained on),

with a warning when the model underfits (training accuracy far below what the noise allows) or
memorises (training accuracy near 100% while held-out accuracy lags far behind).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

# Fewer samples than this: no held-out part (a handful of held-out samples says nothing).
MIN_SAMPLES_FOR_HOLDOUT = 200
MAX_HOLDOUT = 5_000
UNDERFIT_GAP = 0.10  # training accuracy this far below the noise-implied level
STILL_LEARNING = 0.02  # held-out accuracy gained over the last quarter of training
MEMORISE_TRAIN = 0.98
MEMORISE_GAP = 0.15  # training minus held-out accuracy
MEMORISE_MARGIN = 0.05  # training accuracy above the noise-implied level


def holdout_mask(ids: Sequence[str], fraction: float) -> np.ndarray:
    """bool ``(N,)``: the samples held out of training, about ``fraction`` of them (at most
    5,000; none below 200 samples). Decided by a hash of each sample id, so adding or removing
    other samples does not move a sample between the parts."""
    n = len(ids)
    if fraction <= 0 or n < MIN_SAMPLES_FOR_HOLDOUT:
        return np.zeros(n, dtype=bool)
    keys = np.array(
        [int.from_bytes(hashlib.blake2b(sid.encode(), digest_size=8).digest(), "little") for sid in ids],
        dtype=np.uint64,
    )
    quota = min(int(round(fraction * n)), MAX_HOLDOUT)
    mask = np.zeros(n, dtype=bool)
    mask[np.argsort(keys, kind="stable")[:quota]] = True
    return mask


@dataclass(frozen=True)
class Health:
    """The health check of one analysis. Accuracies in [0, 1] on the GIVEN labels; ``verdict``
    is ``ok``, ``underfit``, ``memorise`` or ``unchecked``; ``advice`` says what to do."""

    train_accuracy: float
    holdout_accuracy: float | None
    holdout_size: int
    epochs: int
    verdict: str
    advice: str

    def to_dict(self) -> dict:
        return asdict(self)


def check(
    *,
    train_accuracy: float,
    holdout_accuracy: float | None,
    holdout_size: int,
    epochs: int,
    expected_noise: float | None = None,
    holdout_curve: Sequence[float] = (),
    frozen_backbone: bool = False,
) -> Health:
    """The verdict for a trained model.

    ``expected_noise``: the known share of wrong labels (injected noise), else None: a model that
    fits the clean labels reaches about ``1 - noise`` on the given ones. ``holdout_curve``: the
    held-out accuracy after each epoch; still climbing over the last quarter of training means
    the model had more to learn. Without a known noise level a low accuracy alone cannot tell an
    underfit model from very noisy labels, so below 50% is the only absolute threshold.
    ``frozen_backbone``: only a linear head was trained on a frozen network's features; more
    epochs or a larger head cannot fit what the features do not separate, so the advice differs.
    """

    def verdict(name: str, advice: str) -> Health:
        return Health(train_accuracy, holdout_accuracy, holdout_size, epochs, name, advice)

    if epochs == 0:
        return verdict("unchecked", "the checkpoint was scored as it is; training accuracy is that of the loaded model")
    curve = list(holdout_curve)
    # A gain must beat the held-out part's own sampling noise (two standard errors) to count.
    noise_floor = 2 * math.sqrt(curve[-1] * (1 - curve[-1]) / holdout_size) if curve and holdout_size else 0.0
    climbing = len(curve) >= 4 and curve[-1] - curve[int(0.75 * len(curve)) - 1] > max(STILL_LEARNING, noise_floor)
    reachable = 1.0 - expected_noise if expected_noise is not None else None
    below_reach = reachable is not None and train_accuracy < reachable - UNDERFIT_GAP
    held_noise = 2 * math.sqrt(0.25 / holdout_size) if holdout_size else 1.0
    better_unseen = holdout_accuracy is not None and holdout_accuracy > train_accuracy + max(STILL_LEARNING, held_noise)
    if below_reach or climbing or better_unseen or train_accuracy < 0.5:
        why = (
            f"it could reach about {reachable:.0%}"
            if below_reach
            else "its held-out accuracy was still climbing when training stopped"
            if climbing
            else f"it does better, {holdout_accuracy:.0%}, on data it never saw"
            if better_unseen
            else "fewer than half of the given labels"
        )
        if frozen_backbone:
            # The head's weight decay keeps it from fitting flipped labels on purpose; what it cannot
            # fit beyond them is what the frozen features do not tell apart.
            return verdict(
                "underfit",
                f"the head on the frozen backbone fits only {train_accuracy:.0%} of its training data ({why}): "
                "classes the backbone's features do not separate rank as suspicious. Fine-tune every layer "
                "(--backbone finetune; as costly as training) or start from weights that know such images.",
            )
        return verdict(
            "underfit",
            f"the model fits only {train_accuracy:.0%} of its training data ({why}): its ranking mistakes hard "
            "samples for wrong ones. Train for more epochs or use a larger model.",
        )
    memorised = train_accuracy >= MEMORISE_TRAIN and (
        (holdout_accuracy is not None and train_accuracy - holdout_accuracy > MEMORISE_GAP)
        or (reachable is not None and train_accuracy > reachable + MEMORISE_MARGIN)
    )
    if memorised:
        held = f" but only {holdout_accuracy:.0%} of held-out data" if holdout_accuracy is not None else ""
        return verdict(
            "memorise",
            f"the model fits {train_accuracy:.0%} of its training data{held}: it has memorised labels, wrong ones "
            "included. Scores of the final model are then weak; scores averaged over training (the *_traj "
            "detectors, AUM) are not. Or train for fewer epochs.",
        )
    return verdict("ok", "")
