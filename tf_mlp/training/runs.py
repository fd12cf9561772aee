"""A run directory: reading and writing its files, restoring its checkpoints, the lock that gives it one writer.

Training writes a run directory and everything downstream (evaluate, report,
export, a `run:` client) reads it through these functions. Its file names
and paths are tf_mlp/layout.py's alone.
"""

from __future__ import annotations

import errno
import json
import os
import pathlib
import tempfile

from tf_mlp import layout, locks
from tf_mlp.config import Config
from tf_mlp.errors import CheckpointError, TfMlpError, first_line


def check_writable(run_dir) -> None:
    """Raise OSError naming run_dir unless this process can create it (or write into it); leaves nothing behind."""
    run_dir = pathlib.Path(run_dir)
    existing = run_dir.absolute()
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(run_dir))
    try:
        # A real attempt, not os.access(): root passes every permission check,
        # yet read-only mounts and /sys still refuse it.
        tempfile.TemporaryDirectory(dir=existing, prefix=".tf-mlp-write-check-").cleanup()
    except OSError as error:
        raise OSError(error.errno, error.strerror, str(run_dir)) from None


def write_if_changed(path, text: str) -> None:
    """Write text to path unless it already holds exactly that (a resume that fails then leaves no trace)."""
    path = pathlib.Path(path)
    if not path.is_file() or path.read_bytes() != text.encode("utf-8"):
        path.write_text(text, encoding="utf-8")


def write_class_names(run_dir, class_names) -> None:
    write_if_changed(layout.labels_path(run_dir), "".join(f"{name}\n" for name in class_names))


def read_class_names(run_dir) -> tuple[str, ...]:
    path = layout.labels_path(run_dir)
    if not path.is_file():
        raise CheckpointError(f"{run_dir}: not a run directory (no {layout.LABELS_FILE})")
    return tuple(path.read_text().splitlines())


def load_config(run_dir) -> Config:
    path = layout.config_path(run_dir)
    if not path.is_file():
        raise CheckpointError(f"{run_dir}: not a run directory (no {layout.CONFIG_FILE})")
    return Config.load(path)


def latest_checkpoint(run_dir) -> str:
    """Path prefix of the newest checkpoint, or CheckpointError."""
    import tensorflow as tf

    latest = tf.train.latest_checkpoint(str(layout.checkpoint_dir(run_dir)))
    if latest is None:
        raise CheckpointError(f"{run_dir}: no finished checkpoint in {layout.checkpoint_dir(run_dir)}")
    return latest


def model_checkpoint(run_dir, config: Config) -> str:
    """The checkpoint whose weights the run reported: its best epoch under early stopping, else its newest."""
    import tensorflow as tf

    if config.train.early_stopping_patience:
        # The training loop evaluates on these weights too (TrainLoop.final_evaluation),
        # so its evaluation, the report and the export all describe one model.
        best = tf.train.latest_checkpoint(str(layout.best_checkpoint_dir(run_dir)))
        if best:
            return best
    return latest_checkpoint(run_dir)


def restore_checkpoint(checkpoint, path: str, *, partial: bool = False) -> None:
    """checkpoint.restore(path), every existing object matched; a damaged or foreign checkpoint is a CheckpointError."""
    import tensorflow as tf

    try:
        status = checkpoint.restore(path)
        if partial:
            status = status.expect_partial()
        status.assert_existing_objects_matched()
    except AssertionError as error:
        raise CheckpointError(f"{path}: checkpoint does not match the run's config ({first_line(error)})") from None
    except (IndexError, ValueError, tf.errors.OpError) as error:
        # A file cut short (disk full, a copy interrupted) reads as
        # "IndexError: Read less bytes than requested" from deep inside TensorFlow.
        raise CheckpointError(
            f"{path}: checkpoint files are damaged ({first_line(error)}); delete {os.path.basename(path)}.* "
            f"in {os.path.dirname(path)} to go back to an older checkpoint, or train again in a new run directory"
        ) from None


def restore_model(run_dir, checkpoint: str | None = None):
    """(config, model) with the weights the run reported (see model_checkpoint), or a given checkpoint's."""
    import tensorflow as tf

    from tf_mlp.model import build_model

    config = load_config(run_dir)
    path = checkpoint or model_checkpoint(run_dir, config)
    model = build_model(config.model, seed=config.train.seed)
    # Every model variable must come from the checkpoint; the optimizer's
    # slots and the loop's counters in it are deliberately not needed here.
    restore_checkpoint(tf.train.Checkpoint(model=model), path, partial=True)
    return config, model


def read_metrics(run_dir, *, drop_torn_last_line: bool = False) -> list[dict]:
    """metrics.jsonl's rows; a line that is not JSON is a CheckpointError naming the file and line.

    drop_torn_last_line: a last line without its newline is a write that a
    crash cut short; training (which rewrites the file on resume) drops it.
    """
    path = layout.metrics_path(run_dir)
    if not path.is_file():
        return []
    text = path.read_text(encoding="utf-8", errors="replace")
    lines = text.splitlines()
    if drop_torn_last_line and lines and not text.endswith("\n"):
        lines = lines[:-1]
    rows = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            raise CheckpointError(
                f"{path}, line {number}: not valid JSON ({error.msg}); fix or delete that line") from None
        if not isinstance(row, dict) or not isinstance(row.get("step"), int):
            raise CheckpointError(f"{path}, line {number}: not a metrics row (a JSON object with an integer step)")
        rows.append(row)
    return rows


def read_evaluation(run_dir) -> dict | None:
    path = layout.evaluation_path(run_dir)
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CheckpointError(
            f"{path}: not valid JSON ({error}); run `tf-mlp train` on the run directory again to rewrite it") from None


class RunLockedError(TfMlpError):
    """Another process is training in this run directory."""


def training_lock(run_dir):
    """Hold RUN_DIR/train.lock exclusively for the block: one writer per run directory (tf_mlp.locks)."""

    def refused(holder: str) -> RunLockedError:
        return RunLockedError(f"{run_dir} is in use by another tf-mlp train (pid {holder}); wait for it to finish "
                              "or use another --run-dir")

    return locks.exclusive(layout.lock_path(run_dir), str(os.getpid()), refused)
