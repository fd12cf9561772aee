"""Every on-disk name of a run directory and of an export base, defined once.

    RUN_DIR/
      config.json        the resolved Config the run was started with
      labels.txt         class names of the training data, one per class id
      checkpoints/       tf.train.CheckpointManager checkpoints (model, optimizer, step, ...)
      checkpoints/best/  the best validation epoch's weights (early stopping only)
      metrics.jsonl      one JSON object per epoch: step, losses, accuracies, time
      logs/train|validation   TensorBoard summaries
      evaluation.json    test-split evaluation written at the end of training
      train.lock         held (fcntl.flock) by the one `tf-mlp train` writing the run; holds its pid

    EXPORT_BASE/tf_mlp/<version>/   one SavedModel per integer version (TensorFlow Serving's base_path layout)
      saved_model.pb, variables/
      assets/labels.txt
      assets.extra/tf_serving_warmup_requests, assets.extra/model_card.json   (names in tf_mlp/contract.py)
      assets.extra/gate_report.json, assets.extra/gate_report.md   written by `tf-mlp rollout gate`

Reading and writing these files is done elsewhere (tf_mlp/training/runs.py,
tf_mlp/export/versions.py); this module only names them, and imports
nothing heavy.
"""

from __future__ import annotations

import pathlib
import re

CONFIG_FILE = "config.json"
CHECKPOINT_DIR = "checkpoints"
BEST_CHECKPOINT_DIR = "best"
METRICS_FILE = "metrics.jsonl"
LOGS_DIR = "logs"
EVALUATION_FILE = "evaluation.json"
LABELS_FILE = "labels.txt"
"""Class names, one per line, line number = class id: in a run directory, in an export's assets/ and in an IDX source
directory."""
LOCK_FILE = "train.lock"

SAVED_MODEL_FILE = "saved_model.pb"
ASSETS_DIR = "assets"
ASSETS_EXTRA_DIR = "assets.extra"
"""TensorFlow Serving's place for files that travel with a version but are not part of the graph."""

VERSION_NAME = re.compile(r"[0-9]+")
"""A version directory's name: TensorFlow Serving loads the children of a base path named by a number, and only
those."""


def config_path(run_dir) -> pathlib.Path:
    return pathlib.Path(run_dir) / CONFIG_FILE


def checkpoint_dir(run_dir) -> pathlib.Path:
    return pathlib.Path(run_dir) / CHECKPOINT_DIR


def best_checkpoint_dir(run_dir) -> pathlib.Path:
    return checkpoint_dir(run_dir) / BEST_CHECKPOINT_DIR


def logs_dir(run_dir, split: str) -> pathlib.Path:
    """TensorBoard's summaries of one split ("train" or "validation")."""
    return pathlib.Path(run_dir) / LOGS_DIR / split


def lock_path(run_dir) -> pathlib.Path:
    return pathlib.Path(run_dir) / LOCK_FILE


def metrics_path(run_dir) -> pathlib.Path:
    return pathlib.Path(run_dir) / METRICS_FILE


def evaluation_path(run_dir) -> pathlib.Path:
    return pathlib.Path(run_dir) / EVALUATION_FILE


def labels_path(directory) -> pathlib.Path:
    return pathlib.Path(directory) / LABELS_FILE


def version_dirs(base) -> dict[int, pathlib.Path]:
    """version number -> directory for the numbered child directories of a model's base path, ascending;
    staging (.export-*) and retired (.retired-*) directories are not versions. {} when base is not a directory."""
    try:
        children = list(pathlib.Path(base).iterdir())
    except OSError:
        return {}
    numbered = {int(child.name): child for child in children if VERSION_NAME.fullmatch(child.name) and child.is_dir()}
    return dict(sorted(numbered.items()))


def saved_model_versions(path, model_name: str) -> dict[int, pathlib.Path]:
    """version number -> directory of the complete SavedModels `path` names, ascending; {} if none.

    `path` may be one version directory (its number, or 0 for an unnumbered
    one), a model's base path, or an export base holding model_name/.
    """
    path = pathlib.Path(path)
    if (path / SAVED_MODEL_FILE).is_file():
        return {int(path.name) if VERSION_NAME.fullmatch(path.name) else 0: path}
    for base in (path, path / model_name):
        complete = {number: child for number, child in version_dirs(base).items()
                    if (child / SAVED_MODEL_FILE).is_file()}
        if complete:
            return complete
    return {}


def labels_asset_path(version_dir) -> pathlib.Path:
    return pathlib.Path(version_dir) / ASSETS_DIR / LABELS_FILE


def assets_extra_path(version_dir, name: str) -> pathlib.Path:
    """assets.extra/<name>: contract.WARMUP_FILE or contract.MODEL_CARD_FILE."""
    return pathlib.Path(version_dir) / ASSETS_EXTRA_DIR / name
