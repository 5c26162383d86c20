"""The pictures of imgexp-compare: per-epoch curves, parallel coordinates, Optuna importances."""

import logging
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import optuna  # noqa: E402
import pandas as pd  # noqa: E402
import plotly.graph_objects as go  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from imgexp.atomic import atomic_path  # noqa: E402

log = logging.getLogger(__name__)
MAX_LEGEND = 20
UNSET = "(unset)"  # a hyperparameter the run's config does not have
RESERVED = {"run", "status", "overrides", "epochs", "wall_time_s", "env", "path"}


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
                label=r["label"] if i < MAX_LEGEND else None)
    ax.set(xlabel="epoch", ylabel=metric, title=f"{metric} per epoch ({len(runs)} runs; "
                                                "dashed: pruned)")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7, ncol=2)
    return _save_figure(fig, path)


def is_unset(value) -> bool:
    """A hyperparameter the run's config does not have: UNSET in the leaderboard, NaN/None in a frame
    (pandas 3 keeps NaN through astype(str), pandas 2 turns it into "nan": test, never cast)."""
    return (isinstance(value, str) and value == UNSET) or (pd.api.types.is_scalar(value)
                                                            and pd.isna(value))


def _order(name: str) -> tuple:
    """Numbers in numeric order, then words: a column may mix both (choice(0.5, none))."""
    try:
        return (0, float(name), name)
    except ValueError:
        return (1, 0.0, name)


def _numeric_dimension(label: str, numbers: list[float], unset: list[bool], log: bool) -> dict:
    """A numeric axis; log10 of the values for a log-scale parameter (plotly's parcoords has no
    log axis: the ticks carry the real values), "(unset)" one step below the smallest value."""
    shown = np.log10(numbers) if log else np.asarray(numbers, dtype=float)
    label = f"{label} (log)" if log else label
    if not log and not any(unset):
        return {"label": label, "values": shown.tolist()}
    lo, hi = float(shown.min()), float(shown.max())
    # whole decades on a log axis as soon as two fall in the range
    decades = log and math.floor(hi) - math.ceil(lo) >= 1
    ticks = [float(t) for t in MaxNLocator(nbins=5, integer=decades).tick_values(lo, hi)
             if lo - 1e-9 <= t <= hi + 1e-9] if hi > lo else []
    ticks = ticks if len(ticks) >= 2 else sorted({lo, hi})
    text = [f"{10 ** t:.3g}" if log else f"{t:.6g}" for t in ticks]
    values, below = iter(shown.tolist()), lo - 0.15 * ((hi - lo) or 1.0)
    if any(unset):
        ticks, text = [below, *ticks], [UNSET, *text]
    return {"label": label, "values": [below if u else next(values) for u in unset],
            "tickvals": ticks, "ticktext": text}


def _dimension(label: str, values: pd.Series, log: bool) -> dict:
    unset = [is_unset(v) for v in values]
    present = [v for v, u in zip(values, unset, strict=True) if not u]
    numeric = pd.to_numeric(pd.Series(present, dtype=object), errors="coerce")
    if present and numeric.notna().all():
        return _numeric_dimension(label, numeric.tolist(), unset,
                                  log and bool((numeric > 0).all()))
    # categorical (words, or numbers mixed with words): one tick per value, "(unset)" first
    names = [UNSET] * any(unset) + sorted({str(v) for v in present}, key=_order)
    text = [UNSET if u else str(v) for v, u in zip(values, unset, strict=True)]
    return {"label": label, "values": [names.index(t) for t in text],
            "tickvals": list(range(len(names))), "ticktext": names}


def parallel_coordinates_figure(board: pd.DataFrame, metric: str,
                                log_params: frozenset[str] = frozenset()) -> go.Figure:
    """hyperparameters -> metric, one line per run with a value; log_params on log axes."""
    rows = board[pd.to_numeric(board[metric], errors="coerce").notna()] \
        if metric in board else board.iloc[:0]
    params = [c for c in board.columns if c not in RESERVED and "/" not in c]
    score = pd.to_numeric(rows[metric], errors="coerce") if len(rows) else pd.Series(dtype=float)
    dims = [_dimension(p, rows[p], p in log_params) for p in params] if len(rows) else []
    dims.append({"label": metric, "values": score.tolist()})
    fig = go.Figure(go.Parcoords(line={"color": score.tolist(), "colorscale": "Viridis",
                                       "showscale": True}, dimensions=dims))
    fig.update_layout(title=f"hyperparameters -> {metric} ({len(rows)} runs)")
    return fig


def plot_parallel_coordinates(board: pd.DataFrame, metric: str, path: Path,
                              log_params: frozenset[str] = frozenset()) -> Path:
    """The figure as one self-contained HTML file (plotly.js inside: opens offline)."""
    fig = parallel_coordinates_figure(board, metric, log_params)
    with atomic_path(path) as tmp:
        fig.write_html(tmp, include_plotlyjs=True)
    return path


def plot_importance(studies: list[optuna.Study], path: Path) -> Path | None:
    """Optuna's parameter importances (fANOVA) of each study, one panel per study."""
    panels = []
    for study in studies:
        try:
            panels.append((study.study_name, optuna.importance.get_param_importances(study)))
        except (ValueError, RuntimeError) as exc:
            log.warning("no parameter importances for study %s: %s", study.study_name, exc)
    if not panels:
        return None
    fig, axes = plt.subplots(len(panels), 1, figsize=(7, 2 + 1.2 * sum(len(p) for _, p in
                                                                           panels)), squeeze=False)
    for ax, (name, importances) in zip(axes[:, 0], panels, strict=True):
        names = list(importances)[::-1]
        ax.barh(names, [importances[n] for n in names], color="tab:blue")
        ax.set(xlabel="importance (fANOVA)", title=f"study {name}")
    return _save_figure(fig, path)
