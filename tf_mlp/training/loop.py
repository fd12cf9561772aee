"""The training loop: epochs of train-step calls, validation, checkpoints, early stopping.

`train_and_evaluate(config, run_dir)` never reads flags (the CLI resolves them
into a Config first). It checks and locks the run directory, then hands the
run to a TrainLoop, which holds everything one run needs (model, optimizer,
checkpoint and its managers, summary writers, counters, data, train
function). Started again on the same run directory, it resumes from the
newest checkpoint at the exact step, with the same weights, optimizer state,
dropout random state and data order, and finishes the planned steps.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import pathlib
import time

import keras
import tensorflow as tf

from tf_mlp import layout
from tf_mlp.config import Config
from tf_mlp.data.splits import DataSplits
from tf_mlp.errors import ConfigError, TrainingDivergedError
from tf_mlp.model import build_model, parameter_count
from tf_mlp.training import evaluate, runs, steps
from tf_mlp.training.distribute import is_chief, make_strategy, writable_directory
from tf_mlp.training.pipeline import ResidentSplit
from tf_mlp.training.progress import epoch_progress

# Steps per tf.function call: large enough that Python is off the per-step
# path, small enough for a lively progress bar and fine-grained checkpoints.
STEPS_PER_CALL = 50

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


def train_and_evaluate(config: Config, run_dir, *, splits: DataSplits | None = None,
                       verbose: bool = True) -> dict | None:
    """Train (or resume) the run in run_dir, evaluate on the test split, return the summary.

    Under multi-worker training only the chief evaluates, writes the run
    directory and reports; the other workers return None.
    """
    config.validate()
    # First: a multi-worker strategy must exist before TensorFlow runs any op.
    strategy = make_strategy(config.train.strategy)
    chief = is_chief(strategy)
    run_dir = pathlib.Path(run_dir)
    _check_resumable(config, run_dir)
    if chief:
        # Preparing the data can take minutes; a run directory that cannot be written is known now.
        runs.check_writable(run_dir)
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
        # Every task saves checkpoints (a collective step under multi-worker); only the chief's land in run_dir.
        writable_dir = stack.enter_context(writable_directory(run_dir, chief))
        loop = TrainLoop(config, run_dir, splits, strategy,
                         writable_dir=writable_dir, chief=chief, verbose=verbose and chief)
        loop.run()
        return loop.final_evaluation() if chief else None


@dataclasses.dataclass
class EpochTotals:
    """The train function's sums over one epoch (or, resumed mid-epoch, over its rest)."""

    epoch: int
    loss_sum: float = 0.0
    correct: float = 0.0
    count: float = 0.0
    regularization: float = 0.0
    steps: int = 0
    seconds: float = 0.0

    def add(self, sums: steps.StepSums, step_count: int) -> None:
        self.loss_sum += sums.loss_sum
        self.correct += sums.correct
        self.count += sums.count
        self.regularization += sums.regularization
        self.steps += step_count

    @property
    def loss(self) -> float:
        """Mean data loss per example plus the mean L2 penalty per step: the loss the optimizer minimised."""
        return self.loss_sum / self.count + self.regularization / self.steps

    @property
    def accuracy(self) -> float:
        return self.correct / self.count


class TrainLoop:
    """One run's training: model, optimizer, checkpoints and their managers, summary writers, counters and data.

    Built by train_and_evaluate once the run directory is held; construction
    restores the newest checkpoint, so `run()` goes on from the exact step.
    """

    def __init__(self, config: Config, run_dir: pathlib.Path, splits: DataSplits, strategy: tf.distribute.Strategy, *,
                 writable_dir: pathlib.Path, chief: bool, verbose: bool):
        self.config, self.train_config = config, config.train
        self.run_dir, self.splits, self.strategy = run_dir, splits, strategy
        self.chief, self.verbose = chief, verbose
        train_config = config.train
        if verbose and splits.skipped_files:
            print(f"skipped {splits.skipped_files} unreadable or empty image files in the source data")
        if verbose and train_config.strategy != "default":
            print(describe_strategy(strategy, train_config.strategy), flush=True)

        keras.utils.set_random_seed(train_config.seed)
        batch_size = train_config.batch_size
        if batch_size % strategy.num_replicas_in_sync:
            raise ConfigError(f"batch size {batch_size} does not split evenly over "
                              f"{strategy.num_replicas_in_sync} replicas")
        self.train_data, self.validation_data = ResidentSplit(splits.train), ResidentSplit(splits.validation)
        self.steps_per_epoch = self.train_data.steps_per_epoch(batch_size)
        if self.steps_per_epoch == 0:
            raise ConfigError(f"batch size {batch_size} is larger than the {self.train_data.size} training examples")
        self.planned_steps = train_config.epochs * self.steps_per_epoch

        with strategy.scope():
            model = build_model(config.model, seed=train_config.seed, mixed_precision=train_config.mixed_precision)
            optimizer = steps.make_optimizer(train_config)
            optimizer.build(model.trainable_variables)
        self.model, self.optimizer = model, optimizer
        # The loop's counters are read and written by Python only, so they are
        # plain (not mirrored) variables.
        self.state = _State()
        # Non-trainable model variables (dropout's random state) are listed
        # explicitly: Keras does not track them for tf.train.Checkpoint.
        self.checkpoint = tf.train.Checkpoint(
            model=model, optimizer=optimizer, model_state=list(model.non_trainable_variables), **self.state.trackables()
        )
        self.manager = tf.train.CheckpointManager(
            self.checkpoint, layout.checkpoint_dir(writable_dir),
            max_to_keep=train_config.max_checkpoints, step_counter=self.state.step,
        )
        self.best_manager = tf.train.CheckpointManager(
            tf.train.Checkpoint(model=model), layout.best_checkpoint_dir(writable_dir), max_to_keep=1
        )
        self._resume()

        self.train_function = steps.make_train_function(
            model, optimizer, strategy, self.train_data, batch_size, jit_compile=train_config.xla,
            seed=train_config.seed, label_smoothing=train_config.label_smoothing, flip=train_config.flip,
            shift=train_config.shift,
        )
        self.evaluate_batch = steps.make_eval_function(model)
        # Created after the restore: a resume that fails must leave the run directory as it was.
        self.writers = None
        if chief:
            self.writers = {split: tf.summary.create_file_writer(str(layout.logs_dir(run_dir, split)))
                            for split in ("train", "validation")}

    def _resume(self) -> None:
        """Every task restores the chief's newest checkpoint (the run directory's), if there is one."""
        latest = tf.train.latest_checkpoint(str(layout.checkpoint_dir(self.run_dir)))
        if latest:
            runs.restore_checkpoint(self.checkpoint, latest)
            if self.verbose:
                print(f"resuming from {latest} at step {int(self.state.step)} of {self.planned_steps}")
        if self.chief:
            _keep_metrics_up_to(self.run_dir, int(self.state.step))

    def run(self) -> None:
        """Epochs until the planned steps are done or early stopping stops the run; each validated, logged,
        checkpointed."""
        while int(self.state.step) < self.planned_steps and not bool(self.state.stopped_early):
            totals = self.run_epoch()
            validation = self.validate()
            row = {
                "epoch": totals.epoch + 1,
                "step": int(self.state.step),
                "train_loss": totals.loss,
                "train_accuracy": totals.accuracy,
                "validation_loss": validation["loss"],
                "validation_accuracy": validation["accuracy"],
                "learning_rate": steps.current_learning_rate(self.optimizer),
                "seconds": totals.seconds,
                "examples_per_second": totals.count / totals.seconds,
            }
            if self.chief:
                self.log_epoch(row)
            self.early_stopping(validation["accuracy"])
            self.manager.save(checkpoint_number=self.state.step)

    def run_epoch(self) -> EpochTotals:
        """Train from the current step to the end of its epoch (a resumed run may start mid-epoch)."""
        every = self.train_config.checkpoint_every_steps
        epoch, done_in_epoch = divmod(int(self.state.step), self.steps_per_epoch)
        epoch_start = time.perf_counter()
        permutation = self.train_data.permutation(self.train_config.seed, epoch)
        progress = epoch_progress(self.steps_per_epoch, epoch, self.verbose)
        totals = EpochTotals(epoch)
        while done_in_epoch < self.steps_per_epoch:
            next_checkpoint = (int(self.state.step) // every + 1) * every
            count = min(STEPS_PER_CALL, self.steps_per_epoch - done_in_epoch, next_checkpoint - int(self.state.step))
            # Tensors, not Python ints, so the function is traced once for every count and position.
            sums = self.train_function(
                permutation, tf.constant(epoch, tf.int64), tf.constant(done_in_epoch, tf.int64),
                tf.constant(count, tf.int64),
            ).numpy()
            if not all(math.isfinite(value) for value in sums):
                raise TrainingDivergedError(
                    f"loss became NaN or infinite at step {int(self.state.step)}; stopped, last good checkpoint "
                    f"kept: {self.manager.latest_checkpoint or 'none'}"
                )
            self.state.step.assign_add(count)
            done_in_epoch += count
            totals.add(sums, count)
            progress.update(done_in_epoch, [("loss", totals.loss), ("accuracy", totals.accuracy)])
            if int(self.state.step) % every == 0:
                self.manager.save(checkpoint_number=self.state.step)
        totals.seconds = time.perf_counter() - epoch_start
        self.state.train_seconds.assign_add(totals.seconds)
        return totals

    def validate(self) -> dict:
        """Mean data loss and accuracy on the validation split."""
        loss_sum = correct = 0.0
        for images, labels in self.validation_data.in_order(evaluate.EVAL_BATCH_SIZE):
            batch_loss, batch_correct, _ = self.evaluate_batch(images, labels)
            loss_sum += float(batch_loss)
            correct += float(batch_correct)
        size = max(self.validation_data.size, 1)
        return {"loss": loss_sum / size, "accuracy": correct / size}

    def early_stopping(self, accuracy: float) -> None:
        """Keep the best epoch's weights; stop after `early_stopping_patience` epochs without a better one."""
        patience = self.train_config.early_stopping_patience
        if accuracy > float(self.state.best_accuracy):
            self.state.best_accuracy.assign(accuracy)
            self.state.epochs_without_improvement.assign(0)
            self.best_manager.save()
            return
        self.state.epochs_without_improvement.assign_add(1)
        if patience and int(self.state.epochs_without_improvement) >= patience:
            self.state.stopped_early.assign(True)
            if self.verbose:
                print(f"early stopping: no better validation accuracy for {patience} epochs "
                      f"(best {float(self.state.best_accuracy):.4f})")

    def log_epoch(self, row: dict) -> None:
        """One epoch's row: metrics.jsonl, TensorBoard and (verbose) a line on stdout."""
        with layout.metrics_path(self.run_dir).open("a") as metrics_file:
            metrics_file.write(json.dumps(row) + "\n")
        for split, writer in self.writers.items():
            with writer.as_default(step=row["step"]):
                tf.summary.scalar("loss", row[f"{split}_loss"])
                tf.summary.scalar("accuracy", row[f"{split}_accuracy"])
                if split == "train":
                    tf.summary.scalar("learning_rate", row["learning_rate"])
                    tf.summary.scalar("examples_per_second", row["examples_per_second"])
            writer.flush()
        if self.verbose:
            print(
                f"epoch {row['epoch']} step {row['step']}: loss {row['train_loss']:.4f} "
                f"accuracy {row['train_accuracy']:.4f}"
                f" | validation loss {row['validation_loss']:.4f} accuracy {row['validation_accuracy']:.4f}"
                f" | {row['examples_per_second']:.0f} examples/s",
                flush=True,
            )

    def final_evaluation(self) -> dict:
        """Evaluate the weights the run reports on the test split; write and return the summary (evaluation.json)."""
        config, splits, state = self.config, self.splits, self.state
        if config.train.early_stopping_patience:
            # The run reports its best epoch, not its last: the same checkpoint
            # that evaluate, report and export restore (runs.model_checkpoint).
            best = runs.model_checkpoint(self.run_dir, config)
            runs.restore_checkpoint(tf.train.Checkpoint(model=self.model), best, partial=True)
        test = evaluate.evaluate_model(self.model, splits.test, splits.class_names)
        rows = runs.read_metrics(self.run_dir)
        examples = sum(row["examples_per_second"] * row["seconds"] for row in rows)
        summary = {
            "data_set": splits.name,
            "class_names": list(splits.class_names),
            "split_sizes": splits.sizes(),
            "skipped_files": splits.skipped_files,
            "dropped_overlap": splits.dropped_overlap,
            "parameters": parameter_count(config.model),
            "steps": int(state.step),
            "planned_steps": self.planned_steps,
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
        layout.evaluation_path(self.run_dir).write_text(json.dumps(summary, indent=2) + "\n")
        return summary


def describe_strategy(strategy, name: str) -> str:
    """One line: the strategy, its replica count and where they run."""
    devices = ", ".join(strategy.extended.worker_devices)
    resolver = getattr(strategy, "cluster_resolver", None)
    if name == "multiworker" and resolver is not None and resolver.task_type:
        cluster = resolver.cluster_spec().as_dict()
        workers = len(cluster.get("worker", [])) + len(cluster.get("chief", []))
        return (f"strategy multiworker: {strategy.num_replicas_in_sync} replicas over {workers} workers "
                f"(this is {resolver.task_type} {resolver.task_id}, devices {devices})")
    return f"strategy {name}: {strategy.num_replicas_in_sync} replicas on {devices}"
