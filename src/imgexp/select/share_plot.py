"""The share curve p(r) as a picture: the README's plot (no clusters) and the select stage's
share_curve.png (the run's clusters on it, at the share each actually got)."""

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from imgexp.atomic import atomic_path
from imgexp.select.selection import relative_sizes, share_curve


def share_curve_figure(p_min: float, p_max: float, growth: float, sizes=None, counts=None,
                       scale: float | None = None) -> Figure:
    """Share vs size relative to the median cluster; with `sizes` and `counts`, one point per
    cluster at the share it got (rounding and min_per_cluster move points off the curve);
    `scale`: the factor select.budget applied, drawn as a second curve min(1, scale * p(r))."""
    fig = Figure(figsize=(6.5, 4), layout="constrained")
    ax = fig.add_subplot()
    relative = None if sizes is None else relative_sizes(sizes)
    top = 1.0 if scale is not None else p_max
    right = 3.0 if relative is None else max(3.0, 1.05 * float(relative.max()))
    r = np.linspace(0, right, 400)
    ax.plot(r, share_curve(r, p_min, p_max, growth), color="tab:blue",
            label=f"p(r) = {p_min:g} + ({p_max:g} − {p_min:g})·exp(−{growth:g}·r)")
    if scale is not None:
        ax.plot(r, np.minimum(1.0, scale * share_curve(r, p_min, p_max, growth)), "--",
                color="tab:blue", alpha=0.6, label=f"scaled ×{scale:.2f} to meet select.budget")
    ax.axhline(p_max, color="gray", linestyle=":", linewidth=0.8)
    ax.axhline(p_min, color="gray", linestyle=":", linewidth=0.8)
    ax.text(right, p_max, " p_max", va="center", ha="left", fontsize=8, color="gray")
    ax.text(right, p_min, " p_min", va="center", ha="left", fontsize=8, color="gray")
    ax.axvline(1.0, color="gray", linestyle="--", linewidth=0.8)
    if relative is not None:
        sizes, counts = np.asarray(sizes), np.asarray(counts)
        share = np.divide(counts, sizes, out=np.zeros(len(sizes)), where=sizes > 0)
        ax.scatter(relative, share, color="tab:orange", edgecolors="black", linewidths=0.5,
                   zorder=3, label=f"the {len(sizes)} clusters (share taken)")
        top = max(top, float(share.max()))
        title = (f"Share taken vs cluster size (median cluster: {np.median(sizes):g} images, "
                 f"r = 1)")
    else:
        title = "Share taken vs cluster size relative to the median cluster (r = 1)"
    ax.set(xlabel="r = cluster size / median cluster size", ylabel="share of the cluster taken",
           title=title, xlim=(0, right), ylim=(0, min(1.05, top + 0.08)))
    ax.title.set_fontsize(10)
    ax.yaxis.set_major_formatter("{x:.0%}")
    ax.legend(fontsize=8, loc="upper right")
    return fig


def plot_share_curve(path: Path, p_min: float, p_max: float, growth: float, sizes=None,
                     counts=None, scale: float | None = None) -> Path:
    with atomic_path(path) as tmp:
        share_curve_figure(p_min, p_max, growth, sizes, counts, scale).savefig(tmp, dpi=120)
    return path
