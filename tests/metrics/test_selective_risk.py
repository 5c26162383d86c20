"""The error-budget threshold (imgexp.metrics.selective_risk) on synthetic scores whose true
selective risk is known exactly."""

import numpy as np
import pytest

from imgexp.errors import ImgexpError
from imgexp.metrics.selective_risk import (
    clopper_pearson_upper,
    min_accepted,
    risk_coverage,
    threshold_for_error_budget,
)

MAX_ERROR, CONFIDENCE, N_SPLITS = 0.1, 0.9, 200


def draw(rng, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Scores uniform on [0, 1], P(wrong | s) = (1 - s) / 2: the selective risk of the
    threshold t (error among scores >= t) is exactly (1 - t) / 4."""
    scores = rng.uniform(size=n)
    return scores, rng.uniform(size=n) >= (1 - scores) / 2


def true_risk(threshold: float) -> float:
    return 0.0 if threshold > 1 else (1 - threshold) / 4


def naive_threshold(scores, correct, max_error) -> float:
    """A plain quantile: the lowest threshold whose calibration error is within the budget."""
    thresholds, accepted, errors = risk_coverage(scores, correct)
    ok = np.flatnonzero(errors / accepted <= max_error)
    return thresholds[ok[-1]] if len(ok) else np.inf


def test_clopper_pearson_matches_its_closed_form():
    # zero errors in n: the bound is 1 - (1 - confidence)^(1/n)
    assert clopper_pearson_upper(np.array([0]), np.array([45]), 0.9)[0] == pytest.approx(
        1 - 0.1 ** (1 / 45), rel=1e-9)
    assert clopper_pearson_upper(np.array([5]), np.array([5]), 0.9)[0] == 1.0
    assert min_accepted(0.05, 0.9) == 45  # 44 images with no error do not certify 5%


def test_the_risk_stays_within_budget_in_the_promised_share_of_splits():
    """Over 200 independent calibration sets the certified threshold's true risk exceeds the
    budget in at most 1 - confidence = 10% of them. Tolerance: 2 binomial standard deviations
    (sqrt(200 * 0.1 * 0.9) = 4.2 splits), so <= 28 of 200; the seeds are fixed, so the test is
    deterministic. The plain quantile, which ignores the calibration set's sampling error,
    must violate far more often (about half the time): the bound is what makes the promise."""
    rng = np.random.default_rng(0)
    violations = naive_violations = 0
    coverages = []
    for _ in range(N_SPLITS):
        scores, correct = draw(rng, 500)
        result = threshold_for_error_budget(scores, correct, MAX_ERROR, CONFIDENCE)
        violations += true_risk(result.threshold) > MAX_ERROR
        naive_violations += true_risk(naive_threshold(scores, correct, MAX_ERROR)) > MAX_ERROR
        coverages.append(result.coverage)
    assert violations <= 28
    assert naive_violations >= 60
    # and it is not vacuous: it sorts a real share (the best possible is 40% here)
    assert np.mean(coverages) > 0.15


def test_result_fields_describe_the_threshold():
    rng = np.random.default_rng(1)
    scores, correct = draw(rng, 2000)
    r = threshold_for_error_budget(scores, correct, MAX_ERROR, CONFIDENCE)
    assert r.met and r.bound <= MAX_ERROR and r.n_calibration == 2000
    accepted = scores >= r.threshold
    assert r.coverage == pytest.approx(accepted.mean(), abs=1e-12)
    assert r.calibration_error == pytest.approx((~correct[accepted]).mean(), abs=1e-12)
    assert r.calibration_error <= r.bound
    # a looser budget accepts more images
    looser = threshold_for_error_budget(scores, correct, 0.2, CONFIDENCE)
    assert looser.coverage > r.coverage
    surer = threshold_for_error_budget(scores, correct, MAX_ERROR, 0.99)
    assert surer.coverage < r.coverage and surer.bound <= MAX_ERROR


def test_a_perfect_model_sorts_everything_and_ties_stay_together():
    scores = np.repeat([0.9, 0.7, 0.5], 100)
    r = threshold_for_error_budget(scores, np.ones(300, bool), 0.05, 0.9)
    assert r.met and r.threshold == 0.5 and r.coverage == 1.0
    # the 0.7 group is entirely wrong: only the 0.9 group may be accepted
    correct = scores != 0.7
    r = threshold_for_error_budget(scores, correct, 0.05, 0.9)
    assert r.met and r.threshold == 0.9 and r.coverage == pytest.approx(1 / 3)


def test_an_unreachable_budget_says_so_with_the_best_bound():
    rng = np.random.default_rng(2)
    scores = rng.uniform(size=400)
    correct = rng.uniform(size=400) > 0.3  # 30% wrong whatever the score
    r = threshold_for_error_budget(scores, correct, 0.05, 0.9)
    assert not r.met and r.threshold == np.inf and r.coverage == 0.0
    # the bound is then the smallest budget these images would certify: it is met
    assert 0.05 < r.bound < 1.0
    assert threshold_for_error_budget(scores, correct, r.bound, 0.9).met
    assert not threshold_for_error_budget(scores, correct, r.bound - 0.005, 0.9).met
    # too few calibration images: even a perfect model cannot certify 5% with 44 images
    r = threshold_for_error_budget(np.linspace(0, 1, 44), np.ones(44, bool), 0.05, 0.9)
    assert not r.met and r.bound > 0.05
    assert threshold_for_error_budget(np.linspace(0, 1, 45), np.ones(45, bool), 0.05, 0.9).met


@pytest.mark.parametrize("max_error, confidence", [(0, 0.9), (1, 0.9), (1.5, 0.9), (-0.1, 0.9),
                                                   (0.05, 1.0), (0.05, 0), ("x", 0.9),
                                                   (True, 0.9)])
def test_budget_outside_zero_one_is_a_one_line_error(max_error, confidence):
    with pytest.raises(ImgexpError, match=r"predict\.(max_error|confidence)=.* strictly between"):
        threshold_for_error_budget(np.ones(10), np.ones(10, bool), max_error, confidence)


def test_empty_or_non_finite_calibration_is_an_error():
    with pytest.raises(ImgexpError, match="no calibration image"):
        threshold_for_error_budget(np.zeros(0), np.zeros(0, bool), 0.05, 0.9)
    with pytest.raises(ImgexpError, match="non-finite"):
        threshold_for_error_budget(np.array([0.5, np.nan]), np.ones(2, bool), 0.05, 0.9)
