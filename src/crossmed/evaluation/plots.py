"""Plot data for DVC (ROC points, per-image predictions for confusion matrices) and PNGs for MLflow."""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from sklearn.metrics import ConfusionMatrixDisplay, precision_recall_curve, roc_curve  # noqa: E402

from crossmed.files import atomic_path  # noqa: E402


def roc_points(labels: np.ndarray, probabilities: np.ndarray) -> pd.DataFrame:
    """Return the ROC curve as a table with fpr, tpr and threshold columns."""
    fpr, tpr, thresholds = roc_curve(labels, probabilities)
    return pd.DataFrame({"fpr": fpr.round(5), "tpr": tpr.round(5), "threshold": np.minimum(thresholds, 1.0).round(6)})


def pr_points(labels: np.ndarray, probabilities: np.ndarray) -> pd.DataFrame:
    """Return the precision-recall curve as a table with recall, precision and threshold columns."""
    precision, recall, thresholds = precision_recall_curve(labels, probabilities)
    return pd.DataFrame({"recall": recall.round(5), "precision": precision.round(5),
                         "threshold": np.append(thresholds, 1.0).round(6)})


def write_csv(table: pd.DataFrame, path: str | Path) -> None:
    """Write a table as CSV atomically."""
    with atomic_path(path) as tmp:
        table.to_csv(tmp, index=False)


def curve_figure(curves: dict[str, tuple[pd.DataFrame, str]], x: str, y: str, labels: tuple[str, str], title: str,
                 path: str | Path, diagonal: bool = True, counts: str | None = None) -> None:
    """Write a PNG with one curve per evaluation set ({name: (points, legend note)}), optionally with the diagonal;
    `counts` names a column whose value is written beside each point (e.g. the cases in each reliability bin)."""
    fig, ax = plt.subplots(figsize=(4.5, 4.5), dpi=120)
    for name, (points, note) in curves.items():
        line, = ax.plot(points[x], points[y], marker="o" if len(points) <= 12 else None, markersize=3, label=f"{name} ({note})")
        if counts is not None:
            for px, py, n in zip(points[x], points[y], points[counts]):
                ax.annotate(f"{int(n)}", (px, py), textcoords="offset points", xytext=(3, 3), fontsize=7, color=line.get_color())
    if diagonal:
        ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
    ax.set(xlabel=labels[0], ylabel=labels[1], title=title, xlim=(0, 1), ylim=(0, 1.01))
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def roc_figure(curves: dict[str, tuple[pd.DataFrame, float]], path: str | Path) -> None:
    """Write a PNG with one ROC curve per evaluation set, AUC in the legend."""
    curve_figure({name: (points, f"AUC {auc:.3f}") for name, (points, auc) in curves.items()}, "fpr", "tpr",
                 ("1 - specificity", "sensitivity"), "ROC", path)


def confusion_figure(labels: np.ndarray, predicted: np.ndarray, classes: list[str], title: str, path: str | Path) -> None:
    """Write a PNG confusion matrix of one evaluation set."""
    size = 4 + 0.35 * max(0, len(classes) - 2)
    fig, ax = plt.subplots(figsize=(size, size), dpi=120)
    ConfusionMatrixDisplay.from_predictions(labels, predicted, labels=list(range(len(classes))), display_labels=classes,
                                            ax=ax, colorbar=False, xticks_rotation="vertical" if len(classes) > 3 else "horizontal")
    ax.set_title(title)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
