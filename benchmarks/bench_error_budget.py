"""error_budget: the certified threshold (predict.max_error) against a plain quantile.

Synthetic calibration sets whose true selective risk is known exactly (scores uniform on
[0, 1], P(wrong | s) = (1 - s) / 2, so the risk of accepting scores >= t is (1 - t) / 4 and
the best coverage within a 10% budget is 40%). For each calibration size and seed: the
threshold from `threshold_for_error_budget` (max_error 0.1, confidence 0.9) and the plain
quantile (lowest threshold whose calibration error is within the budget). Figures: the share
of seeds whose true risk exceeds the budget (the promise: <= 10%) and the mean coverage.

    python -m benchmarks.bench_error_budget          # 500 seeds per size
    python -m benchmarks.bench_error_budget --quick  # 100 seeds
"""

import argparse
import json

import numpy as np

from imgexp.metrics.selective_risk import risk_coverage, threshold_for_error_budget

MAX_ERROR, CONFIDENCE, ORACLE_COVERAGE = 0.1, 0.9, 0.4


def true_risk(threshold: float) -> float:
    return 0.0 if threshold > 1 else (1 - threshold) / 4


def plain_quantile(scores: np.ndarray, correct: np.ndarray) -> float:
    thresholds, accepted, errors = risk_coverage(scores, correct)
    ok = np.flatnonzero(errors / accepted <= MAX_ERROR)
    return float(thresholds[ok[-1]]) if len(ok) else np.inf


def run(quick: bool = False) -> dict:
    seeds = 100 if quick else 500
    figures = {"budget": f"max_error {MAX_ERROR}, confidence {CONFIDENCE}",
               "oracle coverage": ORACLE_COVERAGE, "seeds per size": seeds}
    for n in (250, 1000, 4000):
        rng = np.random.default_rng(n)
        stats = {"certified": ([], []), "plain quantile": ([], [])}
        for _ in range(seeds):
            scores = rng.uniform(size=n)
            correct = rng.uniform(size=n) >= (1 - scores) / 2
            result = threshold_for_error_budget(scores, correct, MAX_ERROR, CONFIDENCE)
            for name, t in (("certified", result.threshold),
                            ("plain quantile", plain_quantile(scores, correct))):
                stats[name][0].append(true_risk(t) > MAX_ERROR)
                stats[name][1].append(max(0.0, 1 - t))
        for name, (violated, coverage) in stats.items():
            figures[f"n={n} {name}: budget violated"] = f"{np.mean(violated):.1%}"
            figures[f"n={n} {name}: mean coverage"] = round(float(np.mean(coverage)), 3)
    return figures


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    print(json.dumps(run(parser.parse_args().quick), indent=1))
