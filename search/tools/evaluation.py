"""What ``hpsearch evaluate`` measured, as a record, the trial's user attrs, text and a plot.

:mod:`search.tools.evaluate` retrains and tests; this module only shows the result.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from search import keys

__all__ = ["Evaluation", "as_attrs", "format_evaluation", "plot_confusion"]


@dataclass(frozen=True)
class Evaluation:
    """What :func:`evaluate` measured and wrote."""

    study: str
    trial: int
    fit: str  # "train+validation" or "train"
    epochs: int
    train_size: int
    test_size: int
    test_source: str
    test_accuracy: float
    test_loss: float
    confusion: NDArray[np.int64] = field(repr=False)  # rows: true class, columns: predicted
    class_names: tuple[str, ...]
    report: str  # scikit-learn's per-class precision / recall / F1 table
    per_class: dict[str, Any] = field(repr=False)
    model_path: Path
    plot_path: Path
    val_accuracy: float | None = None  # --fit train: the retrained model on the validation split
    recorded_val_accuracy: float | None = None  # what the trial recorded for it


def plot_confusion(matrix: NDArray[np.int64], names: tuple[str, ...], path: Path, *, title: str) -> Path:
    """The confusion matrix as a PNG at ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import ConfusionMatrixDisplay

    fig, ax = plt.subplots(figsize=(8, 7))
    ConfusionMatrixDisplay(matrix, display_labels=list(names)).plot(
        ax=ax, colorbar=False, xticks_rotation=45, values_format="d"
    )
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def as_attrs(result: Evaluation) -> dict[str, Any]:
    """The trial user attrs that record an evaluation (JSON)."""
    return {
        keys.TEST_ACCURACY: result.test_accuracy,
        keys.TEST_LOSS: result.test_loss,
        keys.TEST_CONFUSION_MATRIX: result.confusion.tolist(),
        keys.TEST_PER_CLASS: {
            name: {k: float(v) for k, v in result.per_class[name].items()} for name in result.class_names
        },
        keys.TEST_FIT: f"{result.fit}, {result.epochs} epochs, {result.train_size} samples",
        keys.TEST_MODEL: str(result.model_path),
    }


def format_evaluation(result: Evaluation) -> str:
    """The text ``hpsearch evaluate`` prints: metrics, confusion matrix, per-class report, files."""
    names = result.class_names
    width = max(5, *(len(str(v)) for v in result.confusion.flat)) + 1
    short = [n[: width - 1] for n in names]
    label_w = max(map(len, names))
    lines = [
        f"trial {result.trial} of study {result.study!r}: retrained on {result.fit} "
        f"({result.train_size} samples, {result.epochs} epochs); test split: {result.test_size} samples "
        f"({result.test_source})",
        f"test_accuracy={result.test_accuracy:.4f} test_loss={result.test_loss:.4f}",
        *(
            [
                f"validation accuracy of the retrained model {result.val_accuracy:.4f} "
                f"(the trial recorded {result.recorded_val_accuracy:.4f})"
            ]
            if result.val_accuracy is not None and result.recorded_val_accuracy is not None
            else []
        ),
        "",
        "confusion matrix (rows: true class, columns: predicted class):",
        " " * label_w + "".join(s.rjust(width) for s in short),
    ]
    for name, row in zip(names, result.confusion, strict=True):
        lines.append(name.rjust(label_w) + "".join(str(int(v)).rjust(width) for v in row))
    lines += [
        "",
        result.report.rstrip(),
        "",
        f"model: {result.model_path}",
        f"confusion matrix: {result.plot_path}",
    ]
    return "\n".join(lines)
