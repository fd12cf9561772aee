"""The layout of a run directory, and restoring the model a run trained.

    RUN_DIR/
      config.json        the resolved Config the run was started with
      labels.txt         class names of the training data, one per class id
      checkpoints/       tf.train.CheckpointManager checkpoints (model, optimizer, step, ...)
      metrics.jsonl      one JSON object per epoch: step, losses, accuracies, time
      logs/train|validation   TensorBoard summaries
      evaluation.json    test-split evaluation written at the end of training
"""

from __future__ import annotations

import json
import pathlib

from tf_mlp.config import Config
from tf_mlp.errors import CheckpointError

CONFIG_FILE = "config.json"
CHECKPOINT_DIR = "checkpoints"
METRICS_FILE = "metrics.jsonl"
LOGS_DIR = "logs"
EVALUATION_FILE = "evaluation.json"
LABELS_FILE = "labels.txt"


def config_path(run_dir) -> pathlib.Path:
    return pathlib.Path(run_dir) / CONFIG_FILE


def checkpoint_dir(run_dir) -> pathlib.Path:
    return pathlib.Path(run_dir) / CHECKPOINT_DIR


def metrics_path(run_dir) -> pathlib.Path:
    return pathlib.Path(run_dir) / METRICS_FILE


def evaluation_path(run_dir) -> pathlib.Path:
    return pathlib.Path(run_dir) / EVALUATION_FILE


def write_class_names(run_dir, class_names) -> None:
    (pathlib.Path(run_dir) / LABELS_FILE).write_text("".join(f"{name}\n" for name in class_names))


def read_class_names(run_dir) -> tuple[str, ...]:
    path = pathlib.Path(run_dir) / LABELS_FILE
    if not path.is_file():
        raise CheckpointError(f"{run_dir}: not a run directory (no {LABELS_FILE})")
    return tuple(path.read_text().splitlines())


def load_config(run_dir) -> Config:
    path = config_path(run_dir)
    if not path.is_file():
        raise CheckpointError(f"{run_dir}: not a run directory (no {CONFIG_FILE})")
    return Config.load(path)


def latest_checkpoint(run_dir) -> str:
    """Path prefix of the newest checkpoint, or CheckpointError."""
    import tensorflow as tf

    latest = tf.train.latest_checkpoint(str(checkpoint_dir(run_dir)))
    if latest is None:
        raise CheckpointError(f"{run_dir}: no finished checkpoint in {checkpoint_dir(run_dir)}")
    return latest


def model_checkpoint(run_dir, config: Config) -> str:
    """The checkpoint whose weights the run reported: its best epoch under early stopping, else its newest."""
    import tensorflow as tf

    if config.train.early_stopping_patience:
        # train.py restores checkpoints/best before its final evaluation when
        # early stopping is on; evaluation, report and export use the same weights.
        best = tf.train.latest_checkpoint(str(checkpoint_dir(run_dir) / "best"))
        if best:
            return best
    return latest_checkpoint(run_dir)


def restore_model(run_dir, checkpoint: str | None = None):
    """(config, model) with the weights the run reported (see model_checkpoint), or a given checkpoint's."""
    import tensorflow as tf

    from tf_mlp.model import build_model

    config = load_config(run_dir)
    path = checkpoint or model_checkpoint(run_dir, config)
    model = build_model(config.model, seed=config.train.seed)
    status = tf.train.Checkpoint(model=model).restore(path)
    try:
        # Every model variable must come from the checkpoint; the optimizer's
        # slots and the loop's counters in it are deliberately not needed here.
        status.expect_partial().assert_existing_objects_matched()
    except AssertionError as error:
        raise CheckpointError(f"{path}: checkpoint does not match the run's model config ({error})") from None
    return config, model


def read_metrics(run_dir) -> list[dict]:
    path = metrics_path(run_dir)
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def read_evaluation(run_dir) -> dict | None:
    path = evaluation_path(run_dir)
    return json.loads(path.read_text()) if path.is_file() else None
