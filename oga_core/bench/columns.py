"""The score columns the quality part compares, declared once; adding a column is one entry.

A column's ``source`` says where its scores come from:

* ``"last"`` / ``"all"``: ``oga_core.detectors.score_columns`` on the final model's last-layer /
  all-layer gradient stats; ``key`` is the detector's column there, and the family is the
  detector's (``"oga"`` or ``"baseline"``);
* ``"peer"``: a ranking from outside the product, ``oga_core.bench.peers.PEERS[key]``.

Families decide the verdicts (:mod:`oga_core.bench.verdicts`): ``"oga"`` against ``"baseline"``;
``"reference"`` (random) and the accuracy table's ``"untrimmed"`` (no trimming) and ``"oracle"``
rows are there to calibrate, never the best of a setting.
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
    family: str  # "oga" | "baseline" | "reference" | "untrimmed" | "oracle"
    source: str  # "last" | "all" | "peer" | "accuracy" (a row of the accuracy table only)
    key: str


def _detector(column: str, help: str, *, scope: str) -> Column:
    """A column computed by one of the product's detectors (``column`` as in ``scores.csv``)."""
    family = next(d.family for d in DETECTORS.values() if d.column == column)
    return Column(column if scope == "last" else f"{column}_all", help, family, scope, column)


COLUMNS: tuple[Column, ...] = (
    _detector("oga_l1", "OGA, L1 norm of the last layer's gradient (closed form)", scope="last"),
    _detector("oga_l2", "OGA, L2 norm of the last layer's gradient (closed form)", scope="last"),
    _detector("oga_iforest", "OGA, Isolation Forest on the last layer's gradients", scope="last"),
    _detector("oga_l1", "OGA, L1 norm of the gradient over all layers", scope="all"),
    _detector("oga_l2", "OGA, L2 norm over all layers (ghost norms)", scope="all"),
    _detector("oga_iforest", "OGA, Isolation Forest on a count sketch of the all-layer gradient", scope="all"),
    _detector("loss", "cross-entropy on the given label", scope="last"),
    _detector("el2n", "EL2N, ||p - e_y||_2", scope="last"),
    _detector("margin", "max_{k != y} p_k - p_y", scope="last"),
    Column(
        "cleanlab",
        "cleanlab, 1 - label quality (self-confidence) from 5-fold out-of-sample probabilities",
        "baseline",
        "peer",
        "cleanlab",
    ),
    Column("random", "uniform random scores (seeded)", "reference", "peer", "random"),
)
# The accuracy table's rows around the retrained columns: before trimming, and the ideal trim.
UNTRIMMED = Column("none", "no trimming", "untrimmed", "accuracy", "none")
ORACLE = Column("oracle", "oracle (drop exactly the flipped samples)", "oracle", "accuracy", "oracle")

NAMES: tuple[str, ...] = tuple(c.name for c in COLUMNS)
FAMILY: dict[str, str] = {c.name: c.family for c in (*COLUMNS, UNTRIMMED, ORACLE)}
ROW_NAMES: dict[str, str] = {c.name: c.help for c in (UNTRIMMED, ORACLE)}


def of_family(names: tuple[str, ...], *families: str) -> tuple[str, ...]:
    """The ``names`` (in their order) whose family is one of ``families``."""
    return tuple(n for n in names if FAMILY[n] in families)
