"""What users look at: the training curve, the confusion matrix (counts and row-normalised, class names, colour
bars) and ROC / PR curves with AUC / AP. Background, when it is scored, is drawn and named as such."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    return plt


def training_curve(train: list[float], val: list[float], path: Path, ylabel: str = "loss") -> None:
    """Train and validation loss per epoch, the best validation epoch marked."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    epochs = np.arange(1, len(train) + 1)
    ax.plot(epochs, train, "o-", label="train")
    ax.plot(epochs[: len(val)], val, "s-", label="validation")
    if val:
        best = int(np.argmin(val))
        ax.scatter([best + 1], [val[best]], s=120, facecolors="none", edgecolors="k", label="best validation")
    ax.set(xlabel="epoch", ylabel=ylabel, title="training curve")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def confusion_matrix(cm: np.ndarray, names: list[str], path: Path) -> None:
    """Counts (left) and rows normalised to recall (right), with class names, cell values and colour bars."""
    plt = _pyplot()
    rows = cm.sum(1, keepdims=True)
    norm = np.divide(cm, rows, out=np.zeros(cm.shape, dtype=float), where=rows > 0)
    size = max(5.0, 0.6 * len(names) + 3)
    fig, axes = plt.subplots(1, 2, figsize=(2 * size, size))
    for ax, values, title, fmt in (
        (axes[0], cm, "counts", "d"),
        (axes[1], norm, "normalised by true class", ".2f"),
    ):
        im = ax.imshow(values, cmap="Blues", vmin=0, vmax=1 if fmt == ".2f" else None)
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
        ax.set(xticks=range(len(names)), yticks=range(len(names)), xlabel="predicted", ylabel="true", title=title)
        ax.set_xticklabels(names, rotation=45, ha="right")
        ax.set_yticklabels(names)
        high = values.max() / 2 if values.size else 0
        for (i, j), v in np.ndenumerate(values):
            ax.text(
                j, i, format(v, fmt), ha="center", va="center", fontsize=7, color="white" if v > high else "black"
            )
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def roc_pr(report: dict[str, Any], out: Path) -> None:
    """``roc.png`` (with AUC per class) and ``pr.png`` (with AP per class) from the report's curves."""
    plt = _pyplot()
    names = report["classes"]
    for kind, (x, y), score in (
        ("roc", ("fpr", "tpr"), "auroc"),
        ("pr", ("recall", "precision"), "average_precision"),
    ):
        fig, ax = plt.subplots(figsize=(5.5, 5))
        for c, curve in report["curves"].items():
            value = report[score][int(c)]
            ax.plot(curve[x], curve[y], label=f"{names[int(c)]} ({'AUC' if kind == 'roc' else 'AP'} {value:.3f})")
        if kind == "roc":
            ax.plot([0, 1], [0, 1], ":", color="grey", label="chance")
        ax.set(xlabel=x, ylabel=y, title=kind.upper(), xlim=(0, 1), ylim=(0, 1.02))
        ax.legend(fontsize="small")
        fig.tight_layout()
        fig.savefig(out / f"{kind}.png")
        plt.close(fig)
