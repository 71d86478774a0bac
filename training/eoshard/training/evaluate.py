"""``eoshard-train evaluate``: torchmetrics over the pixels not ignored: overall accuracy, per-class precision,
recall, F1, IoU, AUROC and average precision, the confusion matrix (counts and row-normalised), ROC and PR curves
(JSON + PNG). Metrics are streamed batch by batch (curves at 101 thresholds), so memory does not grow with the
split."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from eoshard.training.data import ShardDataset
from eoshard.training.models import forward

IGNORE = -1  # target value of ignored pixels: torchmetrics' ignore_index
THRESHOLDS = 101


def metrics(n_classes: int) -> Any:
    """The torchmetrics collection of a report (``ignore_index`` = :data:`IGNORE`)."""
    from torchmetrics import MetricCollection
    from torchmetrics import classification as tmc

    common: dict[str, Any] = {"num_classes": n_classes, "ignore_index": IGNORE}
    per_class: dict[str, Any] = common | {"average": None}
    return MetricCollection({
        "overall_accuracy": tmc.MulticlassAccuracy(average="micro", **common),
        "precision": tmc.MulticlassPrecision(**per_class), "recall": tmc.MulticlassRecall(**per_class),
        "f1": tmc.MulticlassF1Score(**per_class), "iou": tmc.MulticlassJaccardIndex(**per_class),
        "auroc": tmc.MulticlassAUROC(thresholds=THRESHOLDS, **per_class),
        "average_precision": tmc.MulticlassAveragePrecision(thresholds=THRESHOLDS, **per_class),
        "confusion_matrix": tmc.MulticlassConfusionMatrix(**common),
        "roc": tmc.MulticlassROC(thresholds=THRESHOLDS, **common),
        "pr": tmc.MulticlassPrecisionRecallCurve(thresholds=THRESHOLDS, **common),
    })  # fmt: skip


def evaluate(
    model: nn.Module, architecture: str, data: ShardDataset, n_classes: int, out: Path, names: dict[int, str],
    background: int = 0,
) -> dict[str, Any]:  # fmt: skip
    """Predict ``data``, write ``report.json`` and PNG plots under ``out``; return the report."""
    out.mkdir(parents=True, exist_ok=True)
    model.eval()
    collection = metrics(n_classes)
    # torchmetrics' deterministic bincount builds an (n_pixels x n_bins) matrix: count with torch.bincount
    with torch.no_grad(), _nondeterministic():
        for batch in DataLoader(data, batch_size=16):
            probs = forward(model, architecture, batch["image"], batch["pad"], batch["dates"]).softmax(1)
            target = batch["label"].masked_fill(batch["ignore"], IGNORE)
            collection.update(probs.permute(0, 2, 3, 1).reshape(-1, n_classes), target.flatten())
    result = collection.compute()
    cm = result["confusion_matrix"].long().numpy()
    present = cm.sum(1) > 0
    report: dict[str, Any] = {
        "overall_accuracy": float(result["overall_accuracy"]),
        **{k: result[k].tolist() for k in ("precision", "recall", "f1", "iou", "auroc", "average_precision")},
        "support": cm.sum(1).tolist(), "confusion_matrix": cm.tolist(),
        "classes": [names.get(c, "background" if c == background else str(c)) for c in range(n_classes)],
        "ignore_index": IGNORE, "background": background,
    }  # fmt: skip
    for key in ("auroc", "average_precision"):  # a class absent from the split has no curve: null, not 0
        report[key] = [v if present[c] else None for c, v in enumerate(report[key])]
    (fpr, tpr, _), (prec, rec, _) = result["roc"], result["pr"]
    report["curves"] = {
        str(c): {"fpr": fpr[c].tolist(), "tpr": tpr[c].tolist(), "precision": prec[c].tolist(), "recall": rec[c].tolist()}
        for c in range(n_classes) if present[c]
    }  # fmt: skip
    (out / "report.json").write_text(json.dumps(report, indent=2))
    _plots(report, cm, out)
    return report


@contextlib.contextmanager
def _nondeterministic() -> Iterator[None]:
    before, warn = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
    )
    torch.use_deterministic_algorithms(False)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before, warn_only=warn)


def _plots(report: dict[str, Any], cm: np.ndarray, out: Path) -> None:
    from eoshard.training import plots

    plots.confusion_matrix(cm, report["classes"], out / "confusion_matrix.png")
    plots.roc_pr(report, out)
