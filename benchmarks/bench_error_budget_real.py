"""error_budget_real: predict.max_error's certified threshold on trained models, over many
calibration seeds: the built-in digits and the real sign-language photos, each with a weak
(1 epoch) and a strong model (the default small CNN at 32 px, imgexp-train's own run).

The labelled images the models never trained on (val + test splits) are the population. Per
seed, a random half calibrates (max_error 0.05, confidence 0.9, the softmax score, exactly
what imgexp-predict does with its calibration images), and the promise is checked on:
- the other half (what a user sees on one batch of new images: noisier than the rate);
- the whole pool (closer to the rate the promise is about).
The promise: error within budget in >= 90% of seeds, counting the seeds where the budget
cannot be met (nothing sorted: no error) as within.

    python -m benchmarks error_budget_real [--quick]   (quick: 30 seeds, 4 strong epochs)
"""

import argparse
import tempfile
from pathlib import Path

import numpy as np

from benchmarks.bench_cbir import train_cnn
from benchmarks.common import REAL_PHOTOS, REPO
from imgexp.models import load_model
from imgexp.models.data_config import datamodule_for, split_loader
from imgexp.models.error_budget import calibrate, correct_of, score_all
from imgexp.models.inference import Outputs

MAX_ERROR, CONFIDENCE = 0.05, 0.9
SIZE = 32


def datasets() -> dict[str, Path]:
    from imgexp.data.digits import ensure_digits

    found = {"digits": ensure_digits(REPO / "data" / "digits")}
    if REAL_PHOTOS.is_dir():
        found["photos"] = REAL_PHOTOS
    return found


def pooled(run: Path) -> tuple[np.ndarray, np.ndarray]:
    """(proba, labels) of the run's val + test images."""
    model = load_model(run / "checkpoints" / "best.ckpt")
    datamodule = datamodule_for(model)
    parts = [score_all(model, split_loader(datamodule, s), ["softmax"], s, False)[0]
             for s in ("val", "test")]
    proba = np.concatenate([p.proba for p in parts])
    return proba, np.concatenate([p.labels for p in parts])


def over_seeds(proba: np.ndarray, labels: np.ndarray, seeds: int) -> dict:
    n = len(labels)
    correct = correct_of(Outputs(np.arange(n), proba, labels))
    score = proba.max(1)
    met, held_ok, pool_ok, coverage, errors = [], [], [], [], []
    for seed in range(seeds):
        order = np.random.default_rng(seed).permutation(n)
        cal, held = order[: n // 2], order[n // 2:]
        result = calibrate(Outputs(np.arange(len(cal)), proba[cal], labels[cal]),
                           {"softmax": score[cal]}, MAX_ERROR, CONFIDENCE, "half").result
        met.append(result.met)
        for rows, ok in ((held, held_ok), (np.arange(n), pool_ok)):
            accepted = score[rows] >= result.threshold
            error = float((~correct[rows][accepted]).mean()) if accepted.any() else 0.0
            ok.append(error <= MAX_ERROR)
            if rows is held:
                coverage.append(float(accepted.mean()))
                if accepted.any():
                    errors.append(error)
    return {"budget met": f"{np.mean(met):.0%}",
            "other half: within budget": f"{np.mean(held_ok):.0%}",
            "whole pool: within budget": f"{np.mean(pool_ok):.0%}",
            "other half: mean share sorted": round(float(np.mean(coverage)), 3),
            "other half: mean error among sorted":
                round(float(np.mean(errors)), 4) if errors else "nothing sorted"}


def run(quick: bool = False) -> dict:
    seeds, strong = (30, 4) if quick else (100, 8)
    figures = {"budget": f"max_error {MAX_ERROR}, confidence {CONFIDENCE} (promise: within "
                         f"budget in >= {CONFIDENCE:.0%} of seeds)",
               "seeds": seeds, "model": f"default small CNN, {SIZE} px"}
    with tempfile.TemporaryDirectory() as tmp:
        for name, root in datasets().items():
            for strength, epochs in (("weak", 1), ("strong", strong)):
                run_dir = train_cnn(root, SIZE, epochs, Path(tmp) / f"{name}_{strength}")
                proba, labels = pooled(run_dir)
                accuracy = (proba.argmax(1) == labels).mean()
                tag = (f"{name} {strength} ({epochs} epoch{'s' * (epochs > 1)}, accuracy "
                       f"{accuracy:.2f} on {len(labels)} val+test images)")
                figures |= {f"{tag}: {k}": v for k, v in over_seeds(proba, labels,
                                                                    seeds).items()}
    return figures


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    for key, value in run(parser.parse_args().quick).items():
        print(f"{key}: {value}")
