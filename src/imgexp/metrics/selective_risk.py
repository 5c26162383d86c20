"""The threshold that keeps the error among sorted images within a stated budget.

The user says "at most `max_error` of the images you put into class folders may be wrong, and
I want that to hold with probability `confidence`". Given labelled held-out images (their
known-class scores and whether the model got them right), `threshold_for_error_budget` picks
the lowest score threshold whose *selective risk* (error rate among the images scoring at or
above it) is certified below `max_error`:

- each candidate threshold t is a hypothesis H_t: "the selective risk at t exceeds max_error",
  rejected when the Clopper-Pearson (exact binomial) upper confidence bound on that risk,
  computed from the k errors among the n calibration images accepted at t, is <= max_error;
- the candidates are tested in a fixed sequence from the most conservative (highest) threshold
  downwards and testing stops at the first one not rejected. Fixed-sequence testing controls
  the family-wise error at 1 - confidence without any Bonferroni correction, so the returned
  threshold (the last rejected) has risk <= max_error with probability >= confidence.

This is Learn-then-Test (Angelopoulos, Bates, Candès, Jordan, Lei 2021, "Learn then Test:
calibrating predictive algorithms to achieve risk control"; the selective-classification example
of Angelopoulos & Bates, "A Gentle Introduction to Conformal Prediction", 2021) with the binomial
bound of Geifman & El-Yaniv, "Selective Classification for Deep Neural Networks" (NeurIPS 2017).
The guarantee assumes the new images come from the same distribution as the calibration images.

The sequence starts at the first threshold accepting `first_tested(...)` images, enough that
an error rate of half the budget could be certified: with fewer, one unlucky error among the
most confident images would stop the sequence before it begins (the gentle introduction
likewise skips thresholds accepting too few images). The start depends only on the budget and
the calibration size, never on which images are wrong, so the guarantee is kept.
"""

import math
from dataclasses import dataclass

import numpy as np
from scipy.stats import beta

from imgexp.errors import ImgexpError

# the budgets tried to tell the user what would pass when theirs does not: 0.5% steps
BUDGET_GRID = np.round(np.arange(0.005, 1.0, 0.005), 3)


@dataclass(frozen=True)
class BudgetResult:
    met: bool                 # a threshold certified the budget
    threshold: float          # accept score >= threshold (inf when not met: accept nothing)
    coverage: float           # share of calibration images accepted (expected share sorted)
    bound: float              # upper bound on the error at `threshold`; when not met, the
                              # smallest budget on BUDGET_GRID these images would certify
    calibration_error: float  # observed error among the accepted calibration images (all
                              # of them when not met)
    max_error: float
    confidence: float
    n_calibration: int


def check_budget(max_error: float, confidence: float, key: str = "predict") -> None:
    """One-line errors for a budget outside (0, 1)."""
    for name, value in (("max_error", max_error), ("confidence", confidence)):
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < 1:
            raise ImgexpError(f"{key}.{name}={value!r} must be a number strictly between 0 and "
                              f"1 (e.g. {key}.max_error=0.05 {key}.confidence=0.9)")


def clopper_pearson_upper(errors: np.ndarray, n: np.ndarray, confidence: float) -> np.ndarray:
    """One-sided exact binomial upper bound on the error rate, at level `confidence`."""
    errors, n = np.asarray(errors, dtype=np.float64), np.asarray(n, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        upper = beta.ppf(confidence, errors + 1, np.maximum(n - errors, 1e-12))
    return np.where((errors >= n) | (n == 0), 1.0, upper)


def min_accepted(max_error: float, confidence: float) -> int:
    """The fewest accepted images with which zero errors certify `max_error`:
    1 - (1 - confidence)^(1/n) <= max_error."""
    return math.ceil(math.log(1 - confidence) / math.log(1 - max_error) - 1e-9)


def first_tested(max_error: float, confidence: float, n_total: int) -> int:
    """The accepted count where testing starts: the fewest images at which half the budget's
    errors would pass, or `min_accepted` when the calibration set is smaller than that."""
    n = np.arange(1, n_total + 1)
    ok = clopper_pearson_upper(np.floor(n * max_error / 2), n, confidence) <= max_error
    return int(n[np.argmax(ok)]) if ok.any() else min_accepted(max_error, confidence)


def risk_coverage(scores: np.ndarray, correct: np.ndarray) -> tuple[np.ndarray, ...]:
    """For every distinct score t (highest first): t, images accepted (score >= t) and errors
    among them: the risk-coverage curve's points."""
    scores = np.asarray(scores, dtype=np.float64)
    wrong = ~np.asarray(correct, dtype=bool)
    order = np.argsort(-scores, kind="stable")
    sorted_scores, cum_errors = scores[order], np.cumsum(wrong[order])
    # the last position of each distinct score: ties are accepted or rejected together
    last = np.flatnonzero(np.r_[sorted_scores[1:] != sorted_scores[:-1], True])
    return sorted_scores[last], last + 1, cum_errors[last]


def threshold_for_error_budget(scores, correct, max_error: float, confidence: float
                               ) -> BudgetResult:
    """The lowest threshold certified by fixed-sequence testing (see the module docstring)."""
    check_budget(max_error, confidence)
    scores, correct = np.asarray(scores, dtype=np.float64), np.asarray(correct, dtype=bool)
    if scores.shape != correct.shape or scores.ndim != 1:
        raise ValueError("scores and correct must be 1-D arrays of the same length")
    if not np.isfinite(scores).all():
        raise ImgexpError("the calibration scores hold NaN or infinite values: the model "
                          "produced non-finite outputs on the calibration images")
    n_total = len(scores)
    if n_total == 0:
        raise ImgexpError("no calibration image to choose a threshold from")
    thresholds, accepted, errors = risk_coverage(scores, correct)
    bounds = clopper_pearson_upper(errors, accepted, confidence)
    last = last_certified(accepted, bounds, max_error, confidence)
    if last is None:
        # the sequence stopped at its first test: tell the user which budget would pass
        smallest = next((a for a in BUDGET_GRID if a > max_error and last_certified(
            accepted, bounds, a, confidence) is not None), 1.0)
        return BudgetResult(False, math.inf, 0.0, float(smallest), float((~correct).mean()),
                            max_error, confidence, n_total)
    return BudgetResult(True, float(thresholds[last]), float(accepted[last] / n_total),
                        float(bounds[last]), float(errors[last] / accepted[last]), max_error,
                        confidence, n_total)


def last_certified(accepted: np.ndarray, bounds: np.ndarray, max_error: float,
                   confidence: float) -> int | None:
    """Fixed-sequence testing: the index of the last threshold (in risk_coverage's order)
    before the first bound above `max_error`, or None when the first test fails."""
    start = np.searchsorted(accepted, first_tested(max_error, confidence, int(accepted[-1])))
    passed = bounds[start:] <= max_error
    n_passed = len(passed) if passed.all() else int(np.argmin(passed))
    return start + n_passed - 1 if n_passed else None
