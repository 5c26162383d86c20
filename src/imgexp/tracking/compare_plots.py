"""The pictures of imgexp-compare: per-epoch curves, parallel coordinates, Optuna importances."""

import logging
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import optuna  # noqa: E402
import pandas as pd  # noqa: E402
import plotly.graph_objects as go  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402

from imgexp.atomic import atomic_path  # noqa: E402

log = logging.getLogger(__name__)
MAX_LEGEND = 20
RESERVED = {"run", "status", "overrides", "epochs", "wall_time_s", "path"}


def _save_figure(fig, path: Path) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def epoch_curve(run_dir: Path, metric: str) -> pd.Series:
    """metric per epoch from the run's CSV log (the last value logged in each epoch)."""
    csv = run_dir / "csv" / "metrics.csv"
    if not csv.is_file():
        return pd.Series(dtype=float)
    frame = pd.read_csv(csv)
    if metric not in frame or "epoch" not in frame:
        return pd.Series(dtype=float)
    frame = frame.dropna(subset=[metric, "epoch"])
    return frame.groupby(frame["epoch"].astype(int))[metric].last()


def plot_curves(runs: list[dict], metric: str, path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(8, 5))
    for i, r in enumerate(runs):
        curve = epoch_curve(r["run"], metric)
        if curve.empty:
            continue
        ax.plot(curve.index, curve.values, marker="o", markersize=3,
                linestyle="--" if r["status"] == "PRUNED" else "-",
                label=r["run"].name if i < MAX_LEGEND else None)
    ax.set(xlabel="epoch", ylabel=metric, title=f"{metric} per epoch ({len(runs)} runs; "
                                                "dashed: pruned)")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7, ncol=2)
    return _save_figure(fig, path)


def _dimension(label: str, values: pd.Series) -> dict:
    numeric = pd.to_numeric(values, errors="coerce")
    if numeric.notna().all():
        return {"label": label, "values": numeric.tolist()}
    names = sorted(values.astype(str).unique())  # categorical: one tick per value
    return {"label": label, "values": [names.index(v) for v in values.astype(str)],
            "tickvals": list(range(len(names))), "ticktext": names}


def plot_parallel_coordinates(board: pd.DataFrame, metric: str, path: Path) -> Path:
    """hyperparameters -> metric, one line per run with a value (plotly, self-contained HTML)."""
    rows = board[pd.to_numeric(board[metric], errors="coerce").notna()] \
        if metric in board else board.iloc[:0]
    params = [c for c in board.columns if c not in RESERVED and "/" not in c]
    score = pd.to_numeric(rows[metric], errors="coerce") if len(rows) else pd.Series(dtype=float)
    dims = [_dimension(p, rows[p]) for p in params] + [{"label": metric,
                                                         "values": score.tolist()}]
    fig = go.Figure(go.Parcoords(line={"color": score.tolist(), "colorscale": "Viridis",
                                       "showscale": True}, dimensions=dims))
    fig.update_layout(title=f"hyperparameters -> {metric} ({len(rows)} runs)")
    with atomic_path(path) as tmp:
        fig.write_html(tmp, include_plotlyjs=True)  # offline: plotly.js inside the file
    return path


def plot_importance(results_files: list[Path], path: Path) -> Path | None:
    """Optuna's parameter importances (fANOVA) of each study found, one panel per study."""
    panels = []
    for results in results_files:
        meta = OmegaConf.load(results)
        try:
            study = optuna.load_study(study_name=meta.study_name, storage=meta.storage)
            panels.append((meta.study_name, optuna.importance.get_param_importances(study)))
        except (ValueError, RuntimeError, KeyError) as exc:
            log.warning("no parameter importances for %s: %s", results.parent, exc)
    if not panels:
        return None
    fig, axes = plt.subplots(len(panels), 1, figsize=(7, 2 + 1.2 * sum(len(p) for _, p in
                                                                           panels)), squeeze=False)
    for ax, (name, importances) in zip(axes[:, 0], panels, strict=True):
        names = list(importances)[::-1]
        ax.barh(names, [importances[n] for n in names], color="tab:blue")
        ax.set(xlabel="importance (fANOVA)", title=f"study {name}")
    return _save_figure(fig, path)
