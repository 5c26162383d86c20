"""What a prepare run found, for people: summary.json, class_distribution.png, a printed table."""

import sys
from collections import Counter
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from rich.console import Console
from rich.table import Table

from imgexp.atomic import atomic_path
from imgexp.data.splits import SPLITS
from imgexp.progress import is_terminal


def split_counts(rows: list[tuple], classes: list[str]) -> dict[str, dict[str, int]]:
    """label -> split -> count (every split present, zeros included) from manifest rows."""
    counts = Counter((label, split) for _, label, split, *_ in rows)
    return {c: {s: counts[(c, s)] for s in SPLITS} for c in classes}


def size_stats(values: list[float]) -> dict:
    if not values:
        return {}
    arr = np.asarray(values, dtype=float)
    return {"min": float(arr.min()), "median": float(np.median(arr)), "max": float(arr.max())}


def plot_distribution(counts: dict[str, dict[str, int]], path: Path) -> Path:
    """One panel per split: images per class, with count and share of the split on each bar."""
    splits = [s for s in SPLITS if any(c[s] for c in counts.values())] or ["train"]
    classes = list(counts)
    fig = Figure(figsize=(max(6.0, 0.6 * len(classes) + 2) * len(splits) / 1.5, 4.5))
    axes = fig.subplots(1, len(splits), squeeze=False)[0]
    for ax, split in zip(axes, splits, strict=True):
        values = [counts[c][split] for c in classes]
        total = sum(values) or 1
        bars = ax.bar(range(len(classes)), values, color="#4C72B0")
        for bar, v in zip(bars, values, strict=True):
            ax.text(bar.get_x() + bar.get_width() / 2, bar.get_height(),
                    f"{v}\n{100 * v / total:.1f}%", ha="center", va="bottom", fontsize=7)
        ax.set_xticks(range(len(classes)), classes, rotation=30, ha="right", fontsize=8)
        ax.set_title(f"{split}: {sum(values)} images")
        ax.set_ylabel("images")
        ax.margins(y=0.2)
    fig.suptitle("Class distribution per split")
    # fixed margins: tight_layout would draw the figure once more, as costly as saving it
    fig.subplots_adjust(left=0.06, right=0.98, bottom=0.2, top=0.85, wspace=0.25)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100)
    return path


def print_summary(summary: dict, counts: dict[str, dict[str, int]], run_dir: Path) -> None:
    # a log file is not 80 columns wide: lines are not cut there, a terminal still wraps
    console = Console(highlight=False, soft_wrap=not is_terminal(sys.stdout))
    # the caption is a line of its own: as the table's title it wrapped to the table's width
    console.print(f"{summary['in_manifest']} images in the manifest ({summary['split']} split)")
    table = Table()
    table.add_column("class")
    for split in SPLITS:
        table.add_column(split, justify="right")
    table.add_column("total", justify="right")
    for label, per_split in counts.items():
        total = sum(per_split.values())
        table.add_row(label, *(_share(per_split[s], total) for s in SPLITS), str(total))
    split_totals = summary["splits"]
    table.add_row("all", *(_share(split_totals[s], summary["in_manifest"]) for s in SPLITS),
                  str(summary["in_manifest"]), style="bold")
    console.print(table)
    console.print(f"checked {summary['checked']} files: {summary['in_manifest']} in the "
                  f"manifest, {summary['rejected']} rejected, {summary['duplicates']['total']} "
                  f"duplicates, {summary['ignored']} ignored")
    for reason, n in summary["rejected_by_reason"].items():
        console.print(f"  rejected ({reason}): {n}")
    for message in summary["warnings"]:
        console.print(f"[yellow]warning:[/yellow] {message}")
    if "quarantined" in summary:
        console.print(f"moved {summary['quarantined']} rejected file(s) to "
                      f"{run_dir / 'quarantine'}; undo: imgexp-prepare prepare.restore={run_dir}")
    if "exported" in summary:
        console.print(f"exported {summary['exported']} file(s) as train/ val/ test/ folders")
    console.print(f"outputs: {run_dir}")


def _share(n: int, total: int) -> str:
    return f"{n} ({100 * n / total:.0f}%)" if total else "0"
