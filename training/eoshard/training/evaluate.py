"""``eoshard-train evaluate``: OA, per-class P/R/F1, IoU, confusion matrix, ROC and PR curves (JSON + PNG)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from eoshard.training.data import ShardDataset
from eoshard.training.models import forward


def confusion(pred: np.ndarray, truth: np.ndarray, n: int) -> np.ndarray:
    """Rows are true classes, columns predicted."""
    return np.bincount(truth * n + pred, minlength=n * n).reshape(n, n)


def scores(cm: np.ndarray) -> dict[str, Any]:
    tp = np.diag(cm).astype(float)
    support = cm.sum(1)
    predicted = cm.sum(0)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted > 0, tp / predicted, 0.0)
        recall = np.where(support > 0, tp / support, 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
        iou = np.where(support + predicted - tp > 0, tp / (support + predicted - tp), 0.0)
    return {
        "overall_accuracy": float(tp.sum() / max(cm.sum(), 1)),
        "precision": precision.tolist(), "recall": recall.tolist(), "f1": f1.tolist(), "iou": iou.tolist(),
        "support": support.tolist(), "confusion_matrix": cm.tolist(),
    }  # fmt: skip


def curves(prob: np.ndarray, positive: np.ndarray, points: int = 101) -> dict[str, list[float]]:
    """One-vs-rest ROC and PR curves at evenly spaced thresholds."""
    thresholds = np.linspace(1, 0, points)
    pos = max(int(positive.sum()), 1)
    neg = max(int((~positive).sum()), 1)
    tpr, fpr, prec = [], [], []
    for t in thresholds:
        hit = prob >= t
        tp = int((hit & positive).sum())
        fp = int((hit & ~positive).sum())
        tpr.append(tp / pos)
        fpr.append(fp / neg)
        prec.append(tp / (tp + fp) if tp + fp else 1.0)
    return {"fpr": fpr, "tpr": tpr, "precision": prec, "recall": tpr}


def evaluate(
    model: nn.Module, architecture: str, data: ShardDataset, n_classes: int, out: Path, names: dict[int, str]
) -> dict[str, Any]:
    """Predict ``data``, write ``report.json`` and PNG plots under ``out``; return the report."""
    out.mkdir(parents=True, exist_ok=True)
    model.eval()
    preds, truths, probs = [], [], []
    with torch.no_grad():
        for batch in DataLoader(data, batch_size=16):
            p = forward(model, architecture, batch["image"], batch["pad"]).softmax(1)
            keep = ~batch["ignore"]
            probs.append(p.permute(0, 2, 3, 1)[keep].numpy())
            preds.append(p.argmax(1)[keep].numpy())
            truths.append(batch["label"][keep].numpy())
    pred, truth, prob = np.concatenate(preds), np.concatenate(truths), np.concatenate(probs)
    report = scores(confusion(pred, truth, n_classes))
    report["classes"] = [names.get(c, str(c)) for c in range(n_classes)]
    report["curves"] = {str(c): curves(prob[:, c], truth == c) for c in range(n_classes) if (truth == c).any()}
    (out / "report.json").write_text(json.dumps(report, indent=2))
    _plots(report, out)
    return report


def _plots(report: dict[str, Any], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    names = report["classes"]
    fig, ax = plt.subplots(figsize=(6, 5))
    ax.imshow(np.array(report["confusion_matrix"]), cmap="Blues")
    ax.set(xticks=range(len(names)), yticks=range(len(names)), xlabel="predicted", ylabel="true")
    ax.set_xticklabels(names, rotation=45, ha="right")
    ax.set_yticklabels(names)
    fig.tight_layout()
    fig.savefig(out / "confusion_matrix.png")
    plt.close(fig)
    for kind, (x, y) in {"roc": ("fpr", "tpr"), "pr": ("recall", "precision")}.items():
        fig, ax = plt.subplots(figsize=(5, 5))
        for c, curve in report["curves"].items():
            ax.plot(curve[x], curve[y], label=names[int(c)])
        ax.set(xlabel=x, ylabel=y, title=kind.upper())
        ax.legend(fontsize="small")
        fig.savefig(out / f"{kind}.png")
        plt.close(fig)
