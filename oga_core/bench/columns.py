"""The score columns the quality part compares, declared once; adding a column is one entry.

A column's ``source`` says where its scores come from:

* ``"last"`` / ``"all"``: ``oga_core.detectors.score_columns`` on the final model's last-layer /
  all-layer gradient stats; ``key`` is the detector's column there, and the family is the
  detector's (``"oga"`` or ``"baseline"``);
* ``"peer"``: a ranking from outside the product, ``oga_core.bench.peers.PEERS[key]``.

Families decide the verdicts (:mod:`oga_core.bench.verdicts`): ``"oga"`` against ``"baseline"``;
``"reference"`` (random) is there to calibrate, never the best of a setting.
"""

from __future__ import annotations

from dataclasses import dataclass

from oga_core.detectors import DETECTORS


@dataclass(frozen=True)
class Column:
    """One row of the quality tables: ``name`` keys ``run["metrics"]``; ``help`` is its line in
    the report's legend."""

    name: str
    help: str
    family: str  # "oga" | "baseline" | "reference"
    source: str  # "last" | "all" | "peer"
    key: str


def _detector(column: str, help: str, *, scope: str) -> Column:
    """A column computed by one of the product's detectors (``column`` as in ``scores.csv``)."""
    family = next(d.family for d in DETECTORS.values() if d.column == column)
    return Column(column if scope == "last" else f"{column}_all", help, family, scope, column)


COLUMNS: tuple[Column, ...] = (
    # the final model's scores (one forward pass after training)
    _detector("oga_l1", "OGA, L1 norm of the last layer's gradient (closed form)", scope="last"),
    _detector("oga_l2", "OGA, L2 norm of the last layer's gradient (closed form)", scope="last"),
    _detector("oga_iforest", "OGA, Isolation Forest on the last layer's gradients", scope="last"),
    _detector("oga_l1", "OGA, L1 norm of the gradient over all layers", scope="all"),
    _detector("oga_l2", "OGA, L2 norm over all layers (ghost norms)", scope="all"),
    _detector("oga_iforest", "OGA, Isolation Forest on a count sketch of the all-layer gradient", scope="all"),
    _detector("loss", "cross-entropy on the given label (final model)", scope="last"),
    _detector("el2n", "EL2N, ||p - e_y||_2 (final model)", scope="last"),
    _detector("margin", "max_{k != y} p_k - p_y (final model)", scope="last"),
    # averaged over training, from training's own forward passes (no extra pass)
    _detector("oga_l2_traj", "OGA-L2 of the last layer, mean over epochs", scope="last"),
    _detector("oga_l1_traj", "OGA-L1 of the last layer, mean over epochs", scope="last"),
    _detector(
        "oga_l2n_tracin",
        "OGA-L2 with the feature norm relative to its class's median, learning-rate-weighted",
        scope="last",
    ),
    _detector("margin_tracin", "probability margin, learning-rate-weighted over epochs (TracIn's form)", scope="last"),
    _detector("loss_traj", "cross-entropy, mean over epochs", scope="last"),
    _detector("el2n_traj", "EL2N, mean over epochs", scope="last"),
    _detector("margin_traj", "probability margin, mean over epochs", scope="last"),
    _detector("aum", "AUM (Pleiss et al. 2020): logit margin, mean over epochs", scope="last"),
    _detector(
        "margin_adaptive",
        "final margin while the model has not memorised (held-out part), TracIn margin once it has, blended",
        scope="last",
    ),
    _detector(
        "noise_aware",
        "the margin toward the classes flips come from (estimated: cleanlab's confident joint of the model's "
        "probabilities) where they concentrate, EL2N where they spread; probabilities of the final model, or "
        "TracIn-averaged once it memorises",
        scope="last",
    ),
    # cleanlab on 5-fold out-of-sample probabilities of the same model and recipe
    Column("cleanlab_sc", "cleanlab, 1 - self_confidence label quality", "baseline", "peer", "cleanlab_sc"),
    Column("cleanlab_nm", "cleanlab, 1 - normalized_margin label quality", "baseline", "peer", "cleanlab_nm"),
    Column(
        "cleanlab_fli",
        "cleanlab, find_label_issues' issues first, then by normalized margin",
        "baseline",
        "peer",
        "cleanlab_fli",
    ),
    Column("random", "uniform random scores (seeded)", "reference", "peer", "random"),
)
# The peers the default ranking must match or beat (the target): the final model's
# scores, cleanlab's three rankings and AUM.
GOAL_PEERS = ("loss", "el2n", "margin", "cleanlab_sc", "cleanlab_nm", "cleanlab_fli", "aum")
# The final model's scores, which memorisation spoils (the memorising regime's target compares with them).
FINAL_EPOCH = ("oga_l1", "oga_l2", "oga_iforest", "loss", "el2n", "margin")
NAMES: tuple[str, ...] = tuple(c.name for c in COLUMNS)
FAMILY: dict[str, str] = {c.name: c.family for c in COLUMNS}


def of_family(names: tuple[str, ...], *families: str) -> tuple[str, ...]:
    """The ``names`` (in their order) whose family is one of ``families``."""
    return tuple(n for n in names if FAMILY[n] in families)
