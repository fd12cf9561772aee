"""The training loop: epochs of train-step calls, validation, checkpoints, early stopping.

`train_and_evaluate(config, run_dir)` never reads flags (the CLI resolves them
into a Config first). Started again on the same run directory, it resumes from
the newest checkpoint at the exact step, with the same weights, optimizer
state, dropout random state and data order, and finishes the planned steps.
"""

from __future__ import annotations

import contextlib
import json
import math
import pathlib
import sys
import time

import keras
import numpy as np
import tensorflow as tf

from tf_mlp import layout
from tf_mlp.config import Config
from tf_mlp.data.splits import DataSplits
from tf_mlp.errors import ConfigError, TrainingDivergedError
from tf_mlp.model import build_model, parameter_count
from tf_mlp.training import evaluate, runs, steps
from tf_mlp.training.distribute import WritableDirectory, is_chief, make_strategy
from tf_mlp.training.pipeline import ResidentSplit

# Steps per tf.function call: large enough that Python is off the per-step
# path, small enough for a lively progress bar and fine-grained checkpoints.
STEPS_PER_CALL = 50
# Without a terminal (a log file, CI) the progress bar is off; a plain line
# this often shows the run is alive between epoch lines.
PROGRESS_LINE_SECONDS = 30.0

# Fields a resumed run may change: where the prepared data is cached, and how
# (not what) it computes and checkpoints. Every other field shapes the
# training itself, so a different value would make config.json describe a run
# that never happened.
RESUMABLE_CHANGES = {
    "data": ("data_dir",),
    "model": (),
    "train": ("checkpoint_every_steps", "max_checkpoints", "xla", "strategy"),
}


class _State:
    """Everything a checkpoint holds besides the model and the optimizer."""

    def __init__(self):
        self.step = tf.Variable(0, dtype=tf.int64, name="step")
        self.best_accuracy = tf.Variable(-1.0, dtype=tf.float64, name="best_accuracy")
        self.epochs_without_improvement = tf.Variable(0, dtype=tf.int64, name="epochs_without_improvement")
        self.stopped_early = tf.Variable(False, name="stopped_early")
        self.train_seconds = tf.Variable(0.0, dtype=tf.float64, name="train_seconds")

    def trackables(self) -> dict:
        return dict(vars(self))


def _check_resumable(config: Config, run_dir: pathlib.Path) -> None:
    """Refuse, before anything is written, to resume a run with a config other than the one it was trained with."""
    path = layout.config_path(run_dir)
    if not path.is_file() or not list(layout.checkpoint_dir(run_dir).glob("ckpt-*.index")):
        return
    previous = Config.load(path)
    differences = []
    for section, allowed in RESUMABLE_CHANGES.items():
        recorded, given = previous.to_dict()[section], config.to_dict()[section]
        differences += [
            f"{section}.{key} {recorded[key]!r} -> {given[key]!r}"
            for key in recorded if key not in allowed and recorded[key] != given[key]
        ]
    if differences:
        raise ConfigError(
            f"{run_dir} was trained with other options ({'; '.join(differences)}, recorded -> given); "
            f"resume with the same options (e.g. --config {path}) or use a new --run-dir"
        )


def _keep_metrics_up_to(run_dir: pathlib.Path, step: int) -> None:
    """After a restart, forget epochs logged after the checkpoint we resumed from."""
    rows = [row for row in runs.read_metrics(run_dir, drop_torn_last_line=True) if row["step"] <= step]
    if rows or layout.metrics_path(run_dir).exists():
        runs.write_if_changed(layout.metrics_path(run_dir), "".join(json.dumps(row) + "\n" for row in rows))


def train_and_evaluate(config: Config, run_dir, *, splits: DataSplits | None = None, verbose: bool = True) -> dict:
    """Train (or resume) the run in run_dir, evaluate on the test split, return the summary."""
    config.validate()
    train_config = config.train
    # First: a multi-worker strategy must exist before TensorFlow runs any op.
    strategy = make_strategy(train_config.strategy)
    chief = is_chief(strategy)
    verbose = verbose and chief
    run_dir = pathlib.Path(run_dir)
    _check_resumable(config, run_dir)
    if splits is None:
        from tf_mlp.data import load_splits

        splits = load_splits(config.data)
    with contextlib.ExitStack() as stack:
        if chief:
            # Only now, with the data loaded, does the run directory come to exist.
            run_dir.mkdir(parents=True, exist_ok=True)
            stack.enter_context(runs.training_lock(run_dir))
            _check_resumable(config, run_dir)  # again: another process may have trained here meanwhile
            # Both are rewritten only when different, so a resume that fails
            # (a damaged checkpoint, say) leaves the run directory as it was.
            config.save(layout.config_path(run_dir))
            runs.write_class_names(run_dir, splits.class_names)
        return _train_in_run_dir(config, run_dir, splits, strategy, chief, verbose)


def _train_in_run_dir(config: Config, run_dir: pathlib.Path, splits: DataSplits, strategy, chief: bool, verbose: bool) -> dict:
    train_config = config.train
    if verbose and splits.skipped_files:
        print(f"skipped {splits.skipped_files} unreadable or empty image files in the source data")
    if verbose and train_config.strategy != "default":
        print(describe_strategy(strategy, train_config.strategy), flush=True)

    keras.utils.set_random_seed(train_config.seed)
    batch_size = train_config.batch_size
    if batch_size % strategy.num_replicas_in_sync:
        raise ConfigError(f"batch size {batch_size} does not split evenly over {strategy.num_replicas_in_sync} replicas")
    train_data, validation_data = ResidentSplit(splits.train), ResidentSplit(splits.validation)
    steps_per_epoch = train_data.steps_per_epoch(batch_size)
    if steps_per_epoch == 0:
        raise ConfigError(f"batch size {batch_size} is larger than the {train_data.size} training examples")
    planned_steps = train_config.epochs * steps_per_epoch

    with strategy.scope():
        model = build_model(config.model, seed=train_config.seed, mixed_precision=train_config.mixed_precision)
        optimizer = steps.make_optimizer(train_config)
        optimizer.build(model.trainable_variables)
    # The loop's counters are read and written by Python only, so they are
    # plain (not mirrored) variables.
    state = _State()
    # Non-trainable model variables (dropout's random state) are listed
    # explicitly: Keras does not track them for tf.train.Checkpoint.
    checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer, model_state=list(model.non_trainable_variables), **state.trackables())
    # Every task saves (a collective step under multi-worker); only the chief's copy is kept.
    written = WritableDirectory(layout.checkpoint_dir(run_dir), chief)
    manager = tf.train.CheckpointManager(checkpoint, written.path, max_to_keep=train_config.max_checkpoints, step_counter=state.step)
    best_manager = tf.train.CheckpointManager(tf.train.Checkpoint(model=model), written.path / "best", max_to_keep=1)
    latest = tf.train.latest_checkpoint(str(layout.checkpoint_dir(run_dir)))
    if latest:
        runs.restore_checkpoint(checkpoint, latest)
        if verbose:
            print(f"resuming from {latest} at step {int(state.step)} of {planned_steps}")
    if chief:
        _keep_metrics_up_to(run_dir, int(state.step))

    train_function = steps.make_train_function(
        model, optimizer, strategy, train_data, batch_size, jit_compile=train_config.xla, seed=train_config.seed,
        label_smoothing=train_config.label_smoothing, flip=train_config.flip, shift=train_config.shift,
    )
    evaluate_batch = steps.make_eval_function(model)
    writers = {name: tf.summary.create_file_writer(str(layout.logs_dir(run_dir, name))) for name in ("train", "validation")} if chief else None
    try:
        _run_epochs(train_config, optimizer, state, manager, best_manager, train_data, validation_data,
                    train_function, evaluate_batch, writers, run_dir, planned_steps, steps_per_epoch, verbose)
    finally:
        written.cleanup()
    if train_config.early_stopping_patience and tf.train.latest_checkpoint(str(layout.checkpoint_dir(run_dir) / "best")):
        # The run reports (and later exports) its best epoch, not its last.
        best = tf.train.latest_checkpoint(str(layout.checkpoint_dir(run_dir) / "best"))
        runs.restore_checkpoint(tf.train.Checkpoint(model=model), best)
    return _final_evaluation(config, run_dir, model, splits, state, planned_steps, verbose, chief)


def _run_epochs(train_config, optimizer, state, manager, best_manager, train_data, validation_data,
                train_function, evaluate_batch, writers, run_dir, planned_steps, steps_per_epoch, verbose) -> None:
    while int(state.step) < planned_steps and not bool(state.stopped_early):
        epoch, done_in_epoch = divmod(int(state.step), steps_per_epoch)
        epoch_start = time.perf_counter()
        permutation = train_data.permutation(train_config.seed, epoch)
        progress = _progress(steps_per_epoch, epoch, verbose)
        totals, calls_regularization, calls = np.zeros(4), 0.0, 0
        while done_in_epoch < steps_per_epoch:
            next_checkpoint = (int(state.step) // train_config.checkpoint_every_steps + 1) * train_config.checkpoint_every_steps
            count = min(STEPS_PER_CALL, steps_per_epoch - done_in_epoch, next_checkpoint - int(state.step))
            # Tensors, not Python ints, so the function is traced once for every count and position.
            call_totals = train_function(
                permutation, tf.constant(epoch, tf.int64), tf.constant(done_in_epoch, tf.int64), tf.constant(count, tf.int64)
            ).numpy().astype(np.float64)
            if not np.all(np.isfinite(call_totals)):
                raise TrainingDivergedError(
                    f"loss became NaN or infinite at step {int(state.step)}; stopped, last good checkpoint kept: {manager.latest_checkpoint or 'none'}"
                )
            state.step.assign_add(count)
            done_in_epoch += count
            totals += call_totals
            calls_regularization += call_totals[3]
            calls += count
            progress.update(done_in_epoch, [("loss", totals[0] / totals[2] + calls_regularization / calls), ("accuracy", totals[1] / totals[2])])
            if int(state.step) % train_config.checkpoint_every_steps == 0:
                manager.save(checkpoint_number=state.step)
        seconds = time.perf_counter() - epoch_start
        state.train_seconds.assign_add(seconds)
        validation = _evaluate_resident(evaluate_batch, validation_data)
        row = {
            "epoch": epoch + 1,
            "step": int(state.step),
            "train_loss": totals[0] / totals[2] + calls_regularization / calls,
            "train_accuracy": totals[1] / totals[2],
            "validation_loss": validation["loss"],
            "validation_accuracy": validation["accuracy"],
            "learning_rate": steps.current_learning_rate(optimizer),
            "seconds": seconds,
            "examples_per_second": totals[2] / seconds,
        }
        if writers is not None:
            _log_epoch(run_dir, writers, row, verbose)
        _early_stopping(state, best_manager, validation["accuracy"], train_config.early_stopping_patience, verbose)
        manager.save(checkpoint_number=state.step)


def _evaluate_resident(evaluate_batch, data: ResidentSplit) -> dict:
    loss_sum = correct = 0.0
    for images, labels in data.in_order(evaluate.EVAL_BATCH_SIZE):
        batch_loss, batch_correct, _ = evaluate_batch(images, labels)
        loss_sum += float(batch_loss)
        correct += float(batch_correct)
    size = max(data.size, 1)
    return {"loss": loss_sum / size, "accuracy": correct / size}


def _early_stopping(state: _State, best_manager, accuracy: float, patience: int, verbose: bool) -> None:
    if accuracy > float(state.best_accuracy):
        state.best_accuracy.assign(accuracy)
        state.epochs_without_improvement.assign(0)
        best_manager.save()
        return
    state.epochs_without_improvement.assign_add(1)
    if patience and int(state.epochs_without_improvement) >= patience:
        state.stopped_early.assign(True)
        if verbose:
            print(f"early stopping: no better validation accuracy for {patience} epochs (best {float(state.best_accuracy):.4f})")


def _log_epoch(run_dir: pathlib.Path, writers: dict, row: dict, verbose: bool) -> None:
    with layout.metrics_path(run_dir).open("a") as metrics_file:
        metrics_file.write(json.dumps(row) + "\n")
    for name in ("train", "validation"):
        with writers[name].as_default(step=row["step"]):
            tf.summary.scalar("loss", row[f"{name}_loss"])
            tf.summary.scalar("accuracy", row[f"{name}_accuracy"])
            if name == "train":
                tf.summary.scalar("learning_rate", row["learning_rate"])
                tf.summary.scalar("examples_per_second", row["examples_per_second"])
        writers[name].flush()
    if verbose:
        print(
            f"epoch {row['epoch']} step {row['step']}: loss {row['train_loss']:.4f} accuracy {row['train_accuracy']:.4f}"
            f" | validation loss {row['validation_loss']:.4f} accuracy {row['validation_accuracy']:.4f}"
            f" | {row['examples_per_second']:.0f} examples/s",
            flush=True,
        )


def _final_evaluation(config, run_dir, model, splits, state, planned_steps, verbose, chief) -> dict:
    test = evaluate.evaluate_model(model, splits.test, splits.class_names)
    rows = runs.read_metrics(run_dir)
    examples = sum(row["examples_per_second"] * row["seconds"] for row in rows)
    summary = {
        "data_set": splits.name,
        "class_names": list(splits.class_names),
        "split_sizes": splits.sizes(),
        "skipped_files": splits.skipped_files,
        "dropped_overlap": splits.dropped_overlap,
        "parameters": parameter_count(config.model),
        "steps": int(state.step),
        "planned_steps": planned_steps,
        "stopped_early": bool(state.stopped_early),
        "train_accuracy": rows[-1]["train_accuracy"] if rows else None,
        "validation_accuracy": max((row["validation_accuracy"] for row in rows), default=None)
        if config.train.early_stopping_patience else (rows[-1]["validation_accuracy"] if rows else None),
        "test_accuracy": test["accuracy"],
        "test_loss": test["loss"],
        "test": test,
        "train_seconds": float(state.train_seconds),
        "examples_per_second": examples / float(state.train_seconds) if float(state.train_seconds) else None,
    }
    if not math.isfinite(summary["test_loss"]):
        raise TrainingDivergedError("the trained model gives a NaN or infinite test loss")
    if chief:
        layout.evaluation_path(run_dir).write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def describe_strategy(strategy, name: str) -> str:
    """One line: the strategy, its replica count and where they run."""
    devices = ", ".join(strategy.extended.worker_devices)
    resolver = getattr(strategy, "cluster_resolver", None)
    if name == "multiworker" and resolver is not None and resolver.task_type:
        workers = len(resolver.cluster_spec().as_dict().get("worker", [])) + len(resolver.cluster_spec().as_dict().get("chief", []))
        return (f"strategy multiworker: {strategy.num_replicas_in_sync} replicas over {workers} workers "
                f"(this is {resolver.task_type} {resolver.task_id}, devices {devices})")
    return f"strategy {name}: {strategy.num_replicas_in_sync} replicas on {devices}"


def _progress(steps_per_epoch: int, epoch: int, verbose: bool):
    """A Keras progress bar on a terminal; elsewhere a plain line every PROGRESS_LINE_SECONDS."""
    if verbose and sys.stdout.isatty():
        return keras.utils.Progbar(steps_per_epoch, verbose=1, stateful_metrics=["loss", "accuracy"])
    return _ProgressLines(steps_per_epoch, epoch, verbose)


class _ProgressLines:
    """Progbar's update(current, values) as an occasional line, for output that is not a terminal."""

    def __init__(self, steps_per_epoch: int, epoch: int, verbose: bool):
        self.steps_per_epoch, self.epoch, self.verbose = steps_per_epoch, epoch, verbose
        self.last_line = time.monotonic()

    def update(self, current: int, values) -> None:
        now = time.monotonic()
        if not self.verbose or current >= self.steps_per_epoch or now - self.last_line < PROGRESS_LINE_SECONDS:
            return  # the epoch's own line follows at its end
        self.last_line = now
        measures = " ".join(f"{name} {value:.4f}" for name, value in values)
        print(f"epoch {self.epoch + 1}: step {current}/{self.steps_per_epoch} of the epoch, {measures}", flush=True)
