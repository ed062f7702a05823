"""How many wrong labels are left below the budget cut, estimated from a person's decisions.

A person reviews the top of the queue and decides keep (the label was right), drop or relabel
(it was wrong). Those decisions are labelled examples of ``P(wrong | score)``; applied to the
samples nobody reviewed below the cut, they give the expected number of wrong labels left
(docs/architecture.md, "Noise left"):

* x = the sample's ranking score as a quantile in (0, 1] of all samples (detector-agnostic);
* the reviewed samples below the cut are cut into strata of x, ``STRATUM`` samples each (at most
  ``MAX_STRATA``); every un-reviewed sample below the cut belongs to the stratum of its x;
* each stratum's rate of wrong labels has the posterior ``Beta(wrong + PRIOR, right + PRIOR)``; a
  draw of all rates is made non-decreasing in x (pool adjacent violators, weighted by the
  stratum's reviews: a ranking score promises no more than that a higher score is likelier
  wrong) and the count of wrong labels left drawn from it (binomial per stratum);
* over ``DRAWS`` draws: the mean is the estimate, the 2.5th and 97.5th percentiles the interval
  (nominal 95%). On digits (symmetric 10% and 20%, pair 20% noise; the top 5% and a spot check of
  50 reviewed; 40 spot checks each) it held the true count in 109 of 120 runs, and the mean estimate
  of each setting was within 8% of the truth.

Conditioning on the score makes this valid however the person chose what to review, as long as
the choice depended only on the score (the queue's order, any page, any stopping point). What it
cannot see is below the lowest score reviewed: there the rate of the lowest reviewed stratum is
used, which, wrong labels being rarer at lower scores, is an upper bound. So with fewer than
``MIN_BELOW`` reviews below the cut, the reviews above it (all of them, in strata) give only that
bound (``basis = "bound"``: ``expected`` None, ``low`` 0); a random spot check below the cut
(:func:`spot_check`, ``SPOT_CHECK`` samples) turns it into an estimate (``basis =
"spot-checked"``; ``"complete"`` when nothing below the cut is left un-reviewed).

Fewer than ``MIN_REVIEWED`` reviewed samples, or fewer than ``MIN_EACH`` of either outcome (every
reviewed label wrong says nothing about where wrong labels stop), gives nothing (``basis = "too
few"``) and the reason.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from oga_core import options

MIN_REVIEWED = 30
MIN_EACH = 5  # reviewed samples of each outcome (wrong, right)
MIN_BELOW = 20  # reviewed samples below the cut for an estimate not to be an extrapolation
SPOT_CHECK = options.DEFAULT_SPOT_CHECK
DRAWS = 2000
PRIOR = 0.1  # each stratum rate's prior: Beta(PRIOR, PRIOR)
STRATUM = 10  # reviewed samples per stratum of the score
MAX_STRATA = 8
LEVEL = 0.95
WRONG = ("drop", "relabel")
UNDECIDED = "undecided"


@dataclass(frozen=True)
class NoiseLeft:
    """The estimate. ``basis``: ``spot-checked`` (enough reviews below the cut), ``bound`` (too
    few below it: only ``high``, an upper bound; ``expected`` None, ``low`` 0) or ``too few``
    (nothing: ``expected``, ``low``, ``high`` None). Counts are of un-reviewed samples below the
    cut (``unreviewed``); ``fraction`` = expected / unreviewed, ``low_fraction``/``high_fraction``
    likewise. ``reason`` says in one sentence what the numbers rest on."""

    basis: str
    reviewed: int
    reviewed_wrong: int
    reviewed_below_cut: int
    unreviewed: int
    expected: float | None
    low: float | None
    high: float | None
    fraction: float | None
    low_fraction: float | None
    high_fraction: float | None
    level: float
    reason: str

    def to_dict(self) -> dict:
        return asdict(self)

    def line(self) -> str:
        """One line for a person."""
        if self.high is None:
            return f"noise left below the cut: no estimate ({self.reason})"
        if self.expected is None:
            return (
                f"noise left below the cut: at most {self.high:.0f} of {self.unreviewed} un-reviewed samples "
                f"({self.high_fraction:.1%}); {self.reason}"
            )
        return (
            f"noise left below the cut: about {self.expected:.0f} of {self.unreviewed} un-reviewed samples "
            f"({self.fraction:.1%}; {self.level:.0%} interval {self.low:.0f}-{self.high:.0f}, "
            f"{self.low_fraction:.1%}-{self.high_fraction:.1%}); {self.reason}"
        )


def score_quantile(scores: np.ndarray) -> np.ndarray:
    """Each score's quantile in (0, 1] among all scores (ties share their average rank)."""
    return pd.Series(np.asarray(scores, dtype=np.float64)).rank(method="average").to_numpy() / len(scores)


def _pava(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """The weighted least-squares non-decreasing fit of ``values`` (pool adjacent violators)."""
    blocks: list[list[float]] = []  # [mean, weight, count]
    for v, w in zip(values.tolist(), weights.tolist()):
        blocks.append([v, w, 1])
        while len(blocks) > 1 and blocks[-2][0] > blocks[-1][0]:
            v2, w2, c2 = blocks.pop()
            v1, w1, c1 = blocks.pop()
            blocks.append([(v1 * w1 + v2 * w2) / (w1 + w2), w1 + w2, c1 + c2])
    return np.repeat([b[0] for b in blocks], [b[2] for b in blocks])


def _strata(x_fit: np.ndarray, x_target: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Equal-count strata of the fitted samples' quantiles (about ``STRATUM`` each, at most
    ``MAX_STRATA``): the stratum of each fitted and each target sample, and their number. A target
    beyond the fitted range joins the nearest stratum."""
    order = np.sort(x_fit)
    k = int(max(1, min(MAX_STRATA, len(order) // STRATUM)))
    cuts = [len(order) * j // k for j in range(1, k)]
    edges = np.array([(order[c - 1] + order[c]) / 2 for c in cuts])
    return np.searchsorted(edges, x_fit), np.searchsorted(edges, x_target), k


def estimate(table: pd.DataFrame, *, seed: int = 0, draws: int = DRAWS) -> NoiseLeft:
    """The expected number of wrong labels among un-reviewed samples below the cut.

    ``table``: a :func:`oga_core.summaries.with_decisions` frame (``score``, ``flagged``,
    ``decision``) of the analysis the person reviewed.
    """
    decision = table["decision"].to_numpy()
    flagged = table["flagged"].to_numpy(dtype=bool)
    x = score_quantile(table["score"].to_numpy())
    reviewed = decision != UNDECIDED
    wrong = np.isin(decision, WRONG)
    target = ~reviewed & ~flagged
    n_rev, n_wrong = int(reviewed.sum()), int((wrong & reviewed).sum())
    below = int((reviewed & ~flagged).sum())
    n_target = int(target.sum())

    def result(basis: str, reason: str, values: tuple[float | None, float, float] | None = None) -> NoiseLeft:
        exp, low, high = values if values is not None else (None, None, None)

        def frac(v: float | None) -> float | None:
            return v / n_target if v is not None and n_target else None

        return NoiseLeft(
            basis, n_rev, n_wrong, below, n_target, exp, low, high, frac(exp), frac(low), frac(high), LEVEL, reason
        )

    if n_target == 0:
        return result("complete", "every sample below the cut has been reviewed", (0.0, 0.0, 0.0))
    if n_rev < MIN_REVIEWED or n_wrong < MIN_EACH or n_rev - n_wrong < MIN_EACH:
        return result(
            "too few",
            f"{n_rev} reviewed ({n_wrong} wrong, {n_rev - n_wrong} kept); an estimate needs at least "
            f"{MIN_REVIEWED} reviewed with {MIN_EACH} of each outcome",
        )
    # Fitted to the reviews below the cut when there are enough (the rate there is what is wanted),
    # else to every review (then all targets lie below the fit: the lowest stratum's rate bounds them).
    fit = reviewed & ~flagged if below >= MIN_BELOW else reviewed
    s_fit, s_target, k = _strata(x[fit], x[target])
    n_s = np.bincount(s_fit, minlength=k).astype(np.float64)
    w_s = np.bincount(s_fit, weights=wrong[fit].astype(np.float64), minlength=k)
    t_s = np.bincount(s_target, minlength=k).astype(np.float64)
    rng = np.random.default_rng(seed)
    # each stratum's rate ~ Beta(wrong + 1/2, right + 1/2) (Jeffreys), made non-decreasing, then the count
    counts = np.empty(draws)
    for m in range(draws):
        rate = _pava(rng.beta(w_s + PRIOR, n_s - w_s + PRIOR), n_s)
        counts[m] = rng.binomial(t_s.astype(np.int64), rate).sum()
    tail = (1 - LEVEL) / 2
    low, high = np.quantile(counts, [tail, 1 - tail])
    values = (float(counts.mean()), float(low), float(high))
    if below >= MIN_BELOW:
        return result(
            "spot-checked",
            f"{below} of the {n_rev} reviewed samples lie below the cut ({int(w_s.sum())} of them wrong)",
            values,
        )
    return result(
        "bound",
        f"only {below} of the {n_rev} reviewed samples lie below the cut, so this is an upper bound (the rate of "
        f"the lowest scores reviewed); review a spot check of {SPOT_CHECK} random samples below the cut for an "
        "estimate",
        (None, 0.0, values[2]),
    )


def spot_check(table: pd.DataFrame, *, n: int = SPOT_CHECK, seed: int = 0) -> list[str]:
    """Ids of ``n`` random un-reviewed samples below the cut (all of them if fewer), in score
    order: reviewing them grounds :func:`estimate`. ``table``: a ``with_decisions`` frame."""
    pool = table[(table["decision"] == UNDECIDED).to_numpy() & ~table["flagged"].to_numpy(dtype=bool)]
    if len(pool) > n:
        pool = pool.iloc[np.sort(np.random.default_rng(seed).choice(len(pool), n, replace=False))]
    return pool.sort_values("score", ascending=False, kind="stable")["sample_id"].tolist()
