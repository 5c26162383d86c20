"""imgexp-eval's eval.max_error: calibrate the error budget on the val split, then measure the
promise on the evaluated split (budget.json, risk_coverage.png / .csv, metrics)."""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from omegaconf import DictConfig, OmegaConf  # noqa: E402

from imgexp.atomic import atomic_path, write_frame_atomic, write_json_atomic  # noqa: E402
from imgexp.errors import ImgexpError  # noqa: E402
from imgexp.metrics.selective_risk import risk_coverage  # noqa: E402
from imgexp.models.data_config import split_loader  # noqa: E402
from imgexp.models.error_budget import (  # noqa: E402
    calibrate_checkpoint,
    correct_of,
    describe,
    realised,
    score_all,
)


def plot_risk_coverage(curve: pd.DataFrame, point: dict, max_error: float, path: Path,
                       title: str) -> Path:
    """Error among accepted images against the share accepted, the budget as a line and the
    chosen threshold as a dot."""
    fig, ax = plt.subplots(figsize=(5.5, 4))
    ax.plot(curve["coverage"], curve["selective_error"], lw=1.5, label="error among accepted")
    ax.axhline(max_error, color="tab:red", ls="--", lw=1, label=f"budget {max_error:g}")
    if point["realised_coverage"] and point["realised_error"] is not None:
        ax.plot([point["realised_coverage"]], [point["realised_error"]], "o", color="black",
                label="chosen threshold")
    ax.set_xlabel("coverage (share sorted into class folders)")
    ax.set_ylabel("error among sorted images")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, max(2 * max_error, float(curve["selective_error"].max()) * 1.05, 0.01))
    ax.set_title(title)
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return path


def budget_report(model, datamodule, split: str, cfg: DictConfig, out_dir: Path,
                  inference=None) -> dict:
    """budget.json, risk_coverage.csv/.png; returns metrics.json's `<split>/budget_*` keys."""
    if split == "val":
        raise ImgexpError("eval.max_error calibrates on the val split: evaluate another split "
                          "(split=test) so the promise is checked on images it did not see")
    calibrated = calibrate_checkpoint(model, cfg.eval, OmegaConf.to_container(cfg.data), "eval",
                                      cfg.eval.progress, inference)
    outputs, scores = score_all(model, split_loader(datamodule, split), [calibrated.score],
                                f"budget {split}", cfg.eval.progress, inference)
    score, correct = scores[calibrated.score], correct_of(outputs)
    fields = calibrated.fields() | realised(score >= calibrated.result.threshold, correct)
    write_json_atomic(out_dir / "budget.json", fields)
    print(describe(fields, "eval"))  # met or not, the promise in one line, as predict says it
    thresholds, accepted, errors = risk_coverage(score, correct)
    curve = pd.DataFrame({"threshold": thresholds, "coverage": accepted / len(score),
                          "selective_error": errors / accepted})
    write_frame_atomic(curve, out_dir / "risk_coverage.csv")
    plot_risk_coverage(curve, fields, calibrated.result.max_error, out_dir / "risk_coverage.png",
                       f"Risk-coverage on {split} (score_{calibrated.score})")
    return {f"{split}/budget_met": float(fields["met"]),
            f"{split}/budget_threshold": fields["threshold"] if fields["met"] else np.nan,
            f"{split}/budget_bound": fields["bound"],
            f"{split}/budget_expected_coverage": 1 - fields["expected_unknown_share"],
            f"{split}/budget_coverage": fields["realised_coverage"],
            f"{split}/budget_error": fields["realised_error"]}
