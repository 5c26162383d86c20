"""The reliability diagram of an evaluation: accuracy against confidence per bin, binned by
torchmetrics' own calibration-error code, the code behind metrics.json's `ece`, so that the
bars and the number always agree."""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on servers/CI
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402
from torchmetrics.functional.classification.calibration_error import (  # noqa: E402
    _binning_bucketize,
    _multiclass_calibration_error_update,
)

from imgexp.atomic import atomic_path  # noqa: E402


def reliability_bins(labels: np.ndarray, proba: np.ndarray, n_bins: int) -> pd.DataFrame:
    """One row per bin: confidence range, images, accuracy, mean confidence, gap (confidence -
    accuracy: > 0 is overconfident); accuracy and confidence are NaN in an empty bin.

    These are the bins of `multiclass_calibration_error(..., n_bins, norm="l1")`: equal widths
    over [0, 1], right-closed bucketing, float32 top-1 confidences. torchmetrics puts a
    confidence of exactly 1.0 (common with an overconfident softmax) in a bin of its own,
    [1, 1], kept here when it holds images: ECE = sum(|gap| * images) / total images.
    """
    confidences, hits = _multiclass_calibration_error_update(
        torch.as_tensor(proba, dtype=torch.float32), torch.as_tensor(labels))
    edges = torch.linspace(0, 1, n_bins + 1, dtype=confidences.dtype)
    accuracy, confidence, share = (t.double().numpy() for t in
                                   _binning_bucketize(confidences, hits, edges))
    count = np.rint(share * len(confidences)).astype(int)
    lower = edges.double().numpy()
    table = pd.DataFrame({"bin_lower": lower, "bin_upper": [*lower[1:], 1.0], "count": count,
                          "accuracy": accuracy, "confidence": confidence})
    table.loc[table["count"] == 0, ["accuracy", "confidence"]] = np.nan
    table["gap"] = table["confidence"] - table["accuracy"]
    return table.iloc[:n_bins] if count[n_bins] == 0 else table


def expected_calibration_error(bins: pd.DataFrame) -> float:
    full = bins[bins["count"] > 0]
    return float((full["gap"].abs() * full["count"]).sum() / full["count"].sum())


def plot_reliability(bins: pd.DataFrame, ece: float, path: Path, title: str) -> Path:
    """Top: accuracy per bin, the gap to the bin's mean confidence hatched, the diagonal of a
    calibrated model; bottom: images per bin."""
    n_bins = int((bins["bin_upper"] > bins["bin_lower"]).sum())
    # the [1, 1] bin of exact ones (if any) is drawn as a half-width bar just right of 1
    width = np.where(bins["bin_upper"] > bins["bin_lower"], bins["bin_upper"] - bins["bin_lower"],
                     0.5 / n_bins)
    full = (bins["count"] > 0).to_numpy()
    left, width, rows = bins["bin_lower"].to_numpy()[full], width[full], bins[full]
    fig, (ax, below) = plt.subplots(2, 1, figsize=(6, 7), sharex=True, constrained_layout=True,
                                    gridspec_kw={"height_ratios": [3, 1]})
    ax.plot([0, 1], [0, 1], "k--", linewidth=1, label="perfectly calibrated")
    ax.bar(left, rows["accuracy"], width, align="edge", color="tab:blue", edgecolor="black",
           linewidth=0.5, label="accuracy")
    ax.bar(left, rows["gap"], width, bottom=rows["accuracy"], align="edge", color="tab:red",
           alpha=0.3, hatch="//", edgecolor="tab:red", label="gap to mean confidence")
    ax.set(ylim=(0, 1), ylabel="accuracy", title=f"{title}: ECE {ece:.4f} ({n_bins} bins, "
                                                  f"{int(bins['count'].sum())} images)")
    ax.legend(loc="upper left", fontsize=8, framealpha=0.9)
    ax.grid(alpha=0.3)
    below.bar(left, rows["count"], width, align="edge", color="tab:gray", edgecolor="black",
              linewidth=0.5)
    for x, w, n in zip(left, width, rows["count"], strict=True):
        below.annotate(str(n), (x + w / 2, n), ha="center", va="bottom", fontsize=7)
    exact = len(bins) > n_bins
    below.set(xlabel="confidence (top-1 probability)" + ("; the bar past 1: exactly 1"
                                                          if exact else ""),
              ylabel="images", xlim=(0, 1 + (0.5 / n_bins if exact else 0)))
    below.margins(y=0.25)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)
    return path
