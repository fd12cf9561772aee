"""A run's report: learning curves, confusion matrix, worst mistakes, and a markdown summary.

Plots use matplotlib's non-interactive Agg backend so reports render on
servers and in CI with no display.
"""

from __future__ import annotations

import json
import pathlib

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from tf_mlp import layout  # noqa: E402
from tf_mlp.data.splits import DataSplits  # noqa: E402
from tf_mlp.errors import CheckpointError  # noqa: E402
from tf_mlp.model import parameter_count  # noqa: E402
from tf_mlp.training import evaluate, runs  # noqa: E402

LEARNING_CURVES = "learning_curves.png"
CONFUSION_MATRIX = "confusion_matrix.png"
MISCLASSIFIED = "misclassified.png"
SUMMARY = "report.md"


def plot_learning_curves(rows: list[dict], path: pathlib.Path, title: str) -> None:
    epochs = [row["epoch"] for row in rows]
    figure, (loss_axis, accuracy_axis) = plt.subplots(1, 2, figsize=(11, 4))
    for split, style in (("train", "-o"), ("validation", "-s")):
        loss_axis.plot(epochs, [row[f"{split}_loss"] for row in rows], style, label=split, markersize=3)
        accuracy_axis.plot(epochs, [row[f"{split}_accuracy"] for row in rows], style, label=split, markersize=3)
    loss_axis.set(title="Loss (cross-entropy + L2)", xlabel="epoch", ylabel="loss")
    accuracy_axis.set(title="Accuracy", xlabel="epoch", ylabel="accuracy")
    for axis in (loss_axis, accuracy_axis):
        axis.grid(alpha=0.3)
        axis.legend()
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def plot_confusion_matrix(matrix: np.ndarray, class_names, path: pathlib.Path, title: str) -> None:
    figure, axis = plt.subplots(figsize=(8, 7))
    image = axis.imshow(matrix, cmap="Blues")
    ticks = np.arange(len(class_names))
    axis.set_xticks(ticks, labels=class_names, rotation=45, ha="right")
    axis.set_yticks(ticks, labels=class_names)
    axis.set(title=title, xlabel="predicted class", ylabel="true class")
    threshold = matrix.max() / 2 if matrix.size else 0
    for true_index in range(matrix.shape[0]):
        for predicted_index in range(matrix.shape[1]):
            count = matrix[true_index, predicted_index]
            axis.text(predicted_index, true_index, str(count), ha="center", va="center", fontsize=7,
                      color="white" if count > threshold else "black")
    figure.colorbar(image, ax=axis, fraction=0.046, pad=0.04, label="images")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def most_confident_mistakes(labels: np.ndarray, probabilities: np.ndarray, count: int) -> np.ndarray:
    """Indices of misclassified images, most confident wrong prediction first."""
    predictions = probabilities.argmax(axis=-1)
    wrong = np.flatnonzero(predictions != labels)
    confidence = probabilities[wrong, predictions[wrong]]
    return wrong[np.argsort(-confidence, kind="stable")][:count]


def plot_mistakes(images, labels, probabilities, indices, class_names, path: pathlib.Path, title: str) -> None:
    columns = 6
    rows = max(1, int(np.ceil(len(indices) / columns)))
    figure, axes = plt.subplots(rows, columns, figsize=(columns * 1.9, rows * 2.2))
    for axis in np.ravel(axes):
        axis.axis("off")
    for axis, index in zip(np.ravel(axes), indices):
        predicted = int(probabilities[index].argmax())
        axis.imshow(images[index], cmap="gray_r", vmin=0, vmax=255)
        axis.set_title(f"true: {class_names[labels[index]]}\npred: {class_names[predicted]} "
                       f"({probabilities[index, predicted]:.2f})", fontsize=8)
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def write_report(run_dir, output_dir=None, *, splits: DataSplits | None = None, mistakes: int = 24) -> pathlib.Path:
    """Write the plots and report.md into output_dir (default RUN_DIR/report); return the summary path."""
    run_dir = pathlib.Path(run_dir)
    config = runs.load_config(run_dir)
    rows = runs.read_metrics(run_dir)
    summary = runs.read_evaluation(run_dir)
    if not rows or summary is None:
        # The report describes a finished run (its test evaluation is in evaluation.json).
        resume = f"tf-mlp train --config {layout.config_path(run_dir)} --run-dir {run_dir}"
        raise CheckpointError(
            f"{run_dir}: training has not finished ({len(rows)} of {config.train.epochs} epochs in "
            f"{layout.METRICS_FILE}, no {layout.EVALUATION_FILE}); finish it with: {resume}"
        )
    _, model = runs.restore_model(run_dir)
    if splits is None:
        from tf_mlp.data import load_splits

        splits = load_splits(config.data)
    output_dir = pathlib.Path(output_dir) if output_dir else run_dir / "report"
    output_dir.mkdir(parents=True, exist_ok=True)
    class_names = splits.class_names

    logits, test_loss = evaluate.predict_logits(model, splits.test)
    probabilities = _softmax(logits)
    test = evaluate.summarize(splits.test.labels, probabilities.argmax(axis=-1), class_names)
    name = f"{splits.name}, hidden {list(config.model.hidden_units) or 'none'}"
    plot_learning_curves(rows, output_dir / LEARNING_CURVES, f"Learning curves ({name})")
    plot_confusion_matrix(np.array(test["confusion_matrix"]), class_names, output_dir / CONFUSION_MATRIX,
                          f"Test confusion matrix ({name}), accuracy {test['accuracy']:.4f}")
    worst = most_confident_mistakes(splits.test.labels, probabilities, mistakes)
    plot_mistakes(splits.test.images, splits.test.labels, probabilities, worst, class_names, output_dir / MISCLASSIFIED,
                  "Most confidently misclassified test images")
    markdown = _markdown(config, rows, summary, test, run_dir)
    (output_dir / SUMMARY).write_text(markdown)
    (output_dir / "report.json").write_text(json.dumps({"test": test, "summary": summary}, indent=2) + "\n")
    return output_dir / SUMMARY


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def _markdown(config, rows, summary, test, run_dir) -> str:
    final = rows[-1]
    lines = [
        f"# Report: `{run_dir}`",
        "",
        f"Data set: {summary['data_set']} (train {summary['split_sizes']['train']}, validation "
        f"{summary['split_sizes']['validation']}, test {summary['split_sizes']['test']})",
        f"Hidden layers: {list(config.model.hidden_units) or 'none (logistic classifier)'}; dropout "
        f"{config.model.dropout_rate}; L2 {config.model.l2}",
        f"Parameters by the lesson's formula, sum of (inputs + 1) x outputs: {parameter_count(config.model):,}",
        "",
        "| measure | value |",
        "| --- | --- |",
        f"| train accuracy (last epoch) | {final['train_accuracy']:.4f} |",
        f"| validation accuracy | {summary['validation_accuracy']:.4f} |",
        f"| test accuracy | {test['accuracy']:.4f} |",
        f"| epochs / steps | {final['epoch']} / {summary['steps']}"
        f"{' (stopped early)' if summary['stopped_early'] else ''} |",
        f"| training time | {summary['train_seconds']:.1f} s |",
        f"| examples per second | {summary['examples_per_second']:.0f} |",
        "",
        "## Per-class test accuracy",
        "",
        "| class | accuracy |",
        "| --- | --- |",
    ]
    lines += [f"| {name} | {value:.4f} |" for name, value in test["per_class_accuracy"].items() if value is not None]
    lines += [
        "",
        f"![learning curves]({LEARNING_CURVES})",
        f"![confusion matrix]({CONFUSION_MATRIX})",
        f"![misclassified]({MISCLASSIFIED})",
        "",
        "## Config",
        "",
        "```json",
        config.to_json(),
        "```",
        "",
    ]
    return "\n".join(lines)
