"""Per-class tables of an evaluation: confusion matrix (CSV + two-panel PNG), the
classification report the seeds printed, and the most confused class pairs."""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on servers/CI
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from sklearn.metrics import classification_report, confusion_matrix  # noqa: E402

from imgexp.atomic import atomic_path, write_text_atomic  # noqa: E402


def confusion_counts(labels: np.ndarray, pred: np.ndarray, num_classes: int) -> np.ndarray:
    """Rows = true class, columns = predicted class; row sums are the class supports."""
    return confusion_matrix(labels, pred, labels=np.arange(num_classes))


def normalise_rows(counts: np.ndarray) -> np.ndarray:
    supports = counts.sum(axis=1, keepdims=True)
    return np.divide(counts, supports, out=np.zeros(counts.shape), where=supports > 0)


def most_confused(counts: np.ndarray, class_names: list[str]) -> pd.DataFrame:
    """Off-diagonal cells, most errors first: which true class goes to which prediction."""
    rates = normalise_rows(counts)
    rows = [(class_names[t], class_names[p], int(counts[t, p]), float(rates[t, p]))
            for t, p in zip(*np.nonzero(counts), strict=True) if t != p]
    table = pd.DataFrame(rows, columns=["true", "predicted", "count", "rate_of_true_class"])
    return table.sort_values(["count", "rate_of_true_class", "true", "predicted"],
                             ascending=[False, False, True, True], ignore_index=True)


def report_tables(labels: np.ndarray, pred: np.ndarray, class_names: list[str]
                  ) -> tuple[str, pd.DataFrame]:
    """sklearn's classification report as text and as a table (per class + averages)."""
    classes = np.arange(len(class_names))
    kwargs = {"labels": classes, "target_names": class_names, "zero_division": 0}
    text = classification_report(labels, pred, digits=4, **kwargs)
    table = pd.DataFrame(classification_report(labels, pred, output_dict=True, **kwargs)).T
    table.index.name = "class"
    return text, table


def plot_confusion(counts: np.ndarray, class_names: list[str], path: Path, title: str) -> None:
    """Left: row-normalised (recall per class on the diagonal); right: raw counts."""
    n = len(class_names)
    side = max(4.0, 0.45 * n + 2)
    fig, axes = plt.subplots(1, 2, figsize=(2 * side + 1, side), constrained_layout=True)
    annotate = n <= 30
    for ax, values, name, fmt in ((axes[0], normalise_rows(counts), "normalised by true class",
                                   ".2f"), (axes[1], counts, "counts", "d")):
        image = ax.imshow(values, cmap="Blues", vmin=0)
        fig.colorbar(image, ax=ax, fraction=0.046)
        ax.set(xticks=range(n), yticks=range(n), xlabel="predicted", ylabel="true",
               title=f"{title}: {name}")
        ax.set_xticklabels(class_names, rotation=90)
        ax.set_yticklabels(class_names)
        if annotate:
            high = values.max() / 2 if values.size else 0
            for t in range(n):
                for p in range(n):
                    ax.text(p, t, format(values[t, p], fmt), ha="center", va="center",
                            fontsize=7, color="white" if values[t, p] > high else "black")
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120)
    plt.close(fig)


def write_confusion_files(out_dir: Path, labels: np.ndarray, pred: np.ndarray,
                          class_names: list[str], split: str) -> np.ndarray:
    counts = confusion_counts(labels, pred, len(class_names))
    frame = pd.DataFrame(counts, index=pd.Index(class_names, name="true\\predicted"),
                         columns=class_names)
    write_text_atomic(out_dir / "confusion_matrix.csv", frame.to_csv())
    write_text_atomic(out_dir / "most_confused.csv",
                      most_confused(counts, class_names).to_csv(index=False))
    text, table = report_tables(labels, pred, class_names)
    write_text_atomic(out_dir / "classification_report.txt", text)
    write_text_atomic(out_dir / "classification_report.csv", table.to_csv())
    plot_confusion(counts, class_names, out_dir / "confusion_matrix.png", split)
    return counts
