"""Where the flipped labels come from: the label-noise transition estimated from the data, and the
noise-aware score that ranks each sample by it (oga's default ranking).

Label errors are rarely uniform: people mistake a cat for a dog, not for a truck. If the class a
flipped label came from were known, the Bayes-optimal ranking would weigh each sample's
probability of that class against its given one; if flips were uniform over classes, the
probability of the given class alone ranks best. oga estimates which case the data is in:

1. ``confident_joint``: cleanlab's confident joint (Northcutt et al. 2021) of the model's class
   probabilities ``P (N, K)`` against the GIVEN labels: a sample counts under the class it is
   confidently predicted as (its probability at least that class's mean self-confidence), in the
   row of that class and the column of its given label: ``C[true, given]``.
2. ``concentration`` of the off-diagonal counts: per true class, the share of its likeliest
   wrong label in all its wrong labels, from 0 (spread evenly, as uniform flips are) to 1 (one
   label takes them all, as look-alike or pair flips do); averaged, weighted by counts.
3. ``source_weights``: for each given label, how likely each other class is its flips' source,
   relative to the likeliest (1), shrunk toward uniform where the counts are few (the James-Stein
   shrinkage of Hausser and Strimmer 2009) and never below ``floor`` (a class the counts never saw
   as a source still counts a little, so no sample's evidence is vetoed by a zero).
4. ``noise_aware_scores``: the weighted margin ``max_c w[c, y] P_c - P_y`` (the probability of
   the likeliest source class against the given one) where flips concentrate, EL2N ``||P - e_y||``
   (the given class's probability, with the rest's concentration) where they spread, blended
   linearly between ``CONCENTRATION_SPREAD`` and ``CONCENTRATION_STRUCTURED``.

All arrays are numpy; probabilities float ``(N, K)``, labels int ``(N,)``; higher = more suspicious.
docs/architecture.md ("The default ranking") has the measurements behind the thresholds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# The concentration below which flips count as spread (uniform-like) and above which as
# structured. Measured on uniform flips 0.10-0.39, on pair and human-like flips 0.56-1.00.
CONCENTRATION_SPREAD, CONCENTRATION_STRUCTURED = 0.4, 0.55
SOURCE_FLOOR = 0.25  # the least weight of any class as a flip's source, relative to the likeliest
BLOCK = 65_536  # rows scored at a time


@dataclass(frozen=True)
class NoiseEstimate:
    """What the data says about its label noise: ``joint`` float ``(K, K)`` counts ``C[true,
    given]`` of confidently predicted samples; ``concentration`` in [0, 1]; ``structure`` in
    [0, 1], the share of the source-weighted margin in the score (0: EL2N)."""

    joint: np.ndarray
    concentration: float
    structure: float

    def likely_flips(self, classes: list[str], *, top: int = 5) -> list[tuple[str, str, float]]:
        """The ``top`` (true class, given label, share of that true class's confident samples)
        off the diagonal, largest first: "cat given as dog: 12%"."""
        counts = self.joint.copy()
        np.fill_diagonal(counts, 0.0)
        totals = np.maximum(self.joint.sum(1), 1.0)
        order = np.argsort(-counts, axis=None, kind="stable")[:top]
        out = []
        for flat in order:
            true, given = divmod(int(flat), len(counts))
            if counts[true, given] <= 0:
                break
            out.append((classes[true], classes[given], float(counts[true, given] / totals[true])))
        return out


def describe(noise: NoiseEstimate, classes: list[str]) -> dict:
    """The estimate as a run record keeps it (JSON): concentration, structure and the likeliest
    flips ``[true class, given label, share]``."""
    return {
        "concentration": round(noise.concentration, 4),
        "structure": round(noise.structure, 4),
        "likely_flips": [[t, g, round(share, 4)] for t, g, share in noise.likely_flips(classes)],
    }


def summary(record: dict) -> str:
    """One line for people: how the model's confident disagreements with the given labels fall,
    what the default ranks by, and the most frequent ones (label errors and the model's own
    confusions alike)."""
    if record["structure"] >= 1.0:
        how = "concentrated: for each given label they come mostly from one or two classes, which the ranking weighs"
    elif record["structure"] <= 0.0:
        how = "spread evenly over the classes, so the ranking is EL2N"
    else:
        how = f"partly concentrated, so the ranking weighs the likely source classes {record['structure']:.0%}"
    flips = ", ".join(f"{t} given as {g} {share:.0%}" for t, g, share in record.get("likely_flips", []))
    return f"the model's confident disagreements with the given labels are {how}" + (
        f"; most frequent: {flips}" if flips else ""
    )


def confident_joint(probs: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """float ``(K, K)`` counts ``C[true, given]``: each sample whose probability of some class
    reaches that class's threshold (the mean probability of the class over the samples given it)
    counts under the likeliest such class; the others are not counted."""
    labels = np.asarray(labels, dtype=np.int64)
    sums = np.zeros(num_classes)
    np.add.at(sums, labels, np.asarray(probs[np.arange(len(labels)), labels], dtype=np.float64))
    given = np.bincount(labels, minlength=num_classes)
    threshold = np.where(given > 0, sums / np.maximum(given, 1), np.inf)
    joint = np.zeros((num_classes, num_classes))
    for lo in range(0, len(labels), BLOCK):
        p = np.asarray(probs[lo : lo + BLOCK], dtype=np.float64)
        above = p >= threshold[None, :]
        counted = above.any(1)
        true = np.where(above, p, -1.0).argmax(1)
        np.add.at(joint, (true[counted], labels[lo : lo + BLOCK][counted]), 1.0)
    return joint


def concentration(joint: np.ndarray) -> float:
    """How concentrated the off-diagonal counts of ``joint`` are, in [0, 1]: per true class the
    share of its most frequent wrong label among its wrong labels, rescaled so that an even
    spread is 0 and a single wrong label 1, averaged weighted by each class's wrong counts (0 when
    there are none)."""
    k = len(joint)
    if k < 3:  # two classes: a flip has one possible source, so flips are always "concentrated"
        return 1.0
    off = joint - np.diag(np.diag(joint))
    wrong = off.sum(1)
    if wrong.sum() <= 0:
        return 0.0
    share = off.max(1) / np.maximum(wrong, 1e-12)
    mean = float(np.average(share, weights=wrong))
    return float(np.clip((mean - 1.0 / (k - 1)) / (1.0 - 1.0 / (k - 1)), 0.0, 1.0))


def source_weights(joint: np.ndarray, *, floor: float = SOURCE_FLOOR) -> np.ndarray:
    """float ``(K, K)`` ``w[c, y]`` in [floor', 1]: how likely class ``c`` is the source of label
    ``y``'s flips relative to ``y``'s likeliest source (1); 0 on the diagonal.

    Each true class's wrong labels are shrunk toward uniform by the James-Stein intensity (few or
    evenly spread counts: much; many concentrated counts: little), then mixed with ``floor`` of
    uniform; each given label's column is then scaled so its largest source weighs 1."""
    k = len(joint)
    rows = np.zeros((k, k))
    uniform = 1.0 / (k - 1)
    for c in range(k):
        wrong = np.delete(joint[c], c)
        total = wrong.sum()
        if total > 1:
            share = wrong / total
            spread = ((uniform - share) ** 2).sum()
            intensity = 1.0 if spread <= 0 else float(np.clip((1 - (share**2).sum()) / ((total - 1) * spread), 0, 1))
            share = intensity * uniform + (1 - intensity) * share
        else:
            share = np.full(k - 1, uniform)
        share = (1 - floor) * share + floor * uniform
        kept = joint[c, c] / max(joint[c].sum(), 1.0)
        rows[c] = np.insert(share * (1 - kept), c, kept)
    np.fill_diagonal(rows, 0.0)
    return rows / np.maximum(rows.max(0, keepdims=True), 1e-12)


def structure_weight(estimate_concentration: float) -> float:
    """The share of the source-weighted margin in :func:`noise_aware_scores`: 0 at or below
    ``CONCENTRATION_SPREAD``, 1 at or above ``CONCENTRATION_STRUCTURED``, linear between."""
    span = CONCENTRATION_STRUCTURED - CONCENTRATION_SPREAD
    return float(np.clip((estimate_concentration - CONCENTRATION_SPREAD) / span, 0.0, 1.0))


def estimate(probs: np.ndarray, labels: np.ndarray) -> NoiseEstimate:
    """The :class:`NoiseEstimate` of class probabilities ``probs (N, K)`` and given ``labels``."""
    joint = confident_joint(probs, labels, probs.shape[1])
    c = concentration(joint)
    return NoiseEstimate(joint=joint, concentration=c, structure=structure_weight(c))


def noise_aware_scores(probs: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, NoiseEstimate]:
    """``(N,)`` scores, higher = more likely a wrong label, and the noise estimate they used."""
    labels = np.asarray(labels, dtype=np.int64)
    noise = estimate(probs, labels)
    weights = source_weights(noise.joint) if noise.structure > 0 else None
    out = np.empty(len(labels))
    for lo in range(0, len(labels), BLOCK):  # (rows, K) float64 at a time, whatever N
        p = np.asarray(probs[lo : lo + BLOCK], dtype=np.float64)
        y = labels[lo : lo + BLOCK]
        given = p[np.arange(len(y)), y]
        score = np.sqrt(np.maximum((p**2).sum(1) - 2 * given + 1.0, 0.0))  # EL2N, ||p - e_y||
        if weights is not None:
            toward_source = (p * weights[:, y].T).max(1) - given
            score = noise.structure * toward_source + (1.0 - noise.structure) * score
        out[lo : lo + len(y)] = score
    return out, noise
