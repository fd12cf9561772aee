"""Evaluation of a model on a split: loss, accuracy, per-class accuracy, confusion matrix."""

from __future__ import annotations

import numpy as np

from tf_mlp.data.splits import Split

EVAL_BATCH_SIZE = 1000


def predict_logits(model, split: Split, batch_size: int = EVAL_BATCH_SIZE) -> tuple[np.ndarray, float]:
    """(logits [N, K], mean data loss) of the model on the split, in order."""
    # Imported here: they import TensorFlow, which the report's text functions do not need.
    from tf_mlp.training.pipeline import ResidentSplit
    from tf_mlp.training.steps import make_eval_function

    evaluate = make_eval_function(model)
    loss_sum, logits = 0.0, []
    for images, labels in ResidentSplit(split).in_order(batch_size):
        batch_loss, _, batch_logits = evaluate(images, labels)
        loss_sum += float(batch_loss)
        logits.append(batch_logits.numpy())
    return np.concatenate(logits), loss_sum / max(len(split), 1)


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, num_classes: int) -> np.ndarray:
    """counts[true, predicted]."""
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (labels, predictions), 1)
    return matrix


def summarize(labels: np.ndarray, predictions: np.ndarray, class_names) -> dict:
    """Accuracy, per-class accuracy (recall) and the confusion matrix as plain JSON types."""
    matrix = confusion_matrix(labels, predictions, len(class_names))
    per_class_totals = matrix.sum(axis=1)
    per_class = {
        name: (float(matrix[index, index] / per_class_totals[index]) if per_class_totals[index] else None)
        for index, name in enumerate(class_names)
    }
    return {
        "examples": int(labels.shape[0]),
        "accuracy": float(np.mean(labels == predictions)) if labels.size else 0.0,
        "per_class_accuracy": per_class,
        "confusion_matrix": matrix.tolist(),
        "class_names": list(class_names),
    }


def evaluate_model(model, split: Split, class_names) -> dict:
    logits, loss = predict_logits(model, split)
    result = summarize(split.labels, np.argmax(logits, axis=-1), class_names)
    result["loss"] = loss
    return result


def format_report(result: dict, split_name: str) -> str:
    """A readable text report: accuracy, per-class accuracy and the confusion matrix."""
    names = result["class_names"]
    width = max(len(name) for name in names)
    lines = [
        f"{split_name}: {result['examples']} examples, accuracy {result['accuracy']:.4f}, loss {result['loss']:.4f}",
        "",
        "per-class accuracy:",
    ]
    for name in names:
        value = result["per_class_accuracy"][name]
        lines.append(f"  {name:<{width}}  {'n/a' if value is None else f'{value:.4f}'}")
    lines += ["", "confusion matrix (rows: true class, columns: predicted class id):"]
    lines.append(" " * (width + 2) + "".join(f"{index:>6}" for index in range(len(names))))
    for name, row in zip(names, result["confusion_matrix"]):
        lines.append(f"  {name:<{width}}" + "".join(f"{count:>6}" for count in row))
    return "\n".join(lines)
