"""Training speed: `tf-mlp train` and its train function against Keras model.fit, in steady state.

All three train the same model (the `mlp` preset: 784-1024-10) with the same
optimizer (plain SGD at 0.1), the same resident uint8 data and the same batch
size, and every rate is taken over whole epochs after the first, so start-up,
tracing and the first epoch's warm-up are never counted:

- `tf-mlp train`: the command itself in a child process; the rate is its
  own per-epoch figure from metrics.jsonl (the train loop with its
  checkpoints, not validation), epochs 2 onwards.
- the train function alone (tf_mlp/training/steps.py), driven in process the way the
  loop drives it.
- model.fit at its defaults, and with steps_per_execution raised (what the
  Keras documentation recommends for small models); its rate comes from a
  callback timing epochs 2 onwards.

Beside them: the machine's float32 matrix-multiply peak (tf_mlp.benchmark.peak:
the best of TensorFlow's and numpy's products at several sizes) and the rate
of the training step's own products alone at each batch size (forward,
weight gradients, input gradients, with the exact shapes from
tf_mlp.model.flops_by_layer): the ceiling for any trainer at that batch.
FLOPs are counted exactly by tf_mlp.model.training_flops_per_example.

Repetitions are interleaved (every measure once, then again), and each figure
is reported as median and range. Ratios are taken within each repetition
(trainer and baseline measured minutes apart), then their median and range
reported, so a slow patch of the machine moves both sides of a ratio. The
tuned model.fit in a repetition is the faster of its tuned settings in that
repetition, which gives the baseline every benefit of the doubt. Whether the
machine was quiet is measured, not guessed: other processes' share of the
cores in each repetition (tf_mlp.benchmark.machine), since the load average
counts this benchmark's own threads. The machine itself (CPU, instruction
set, cores, TensorFlow build) is recorded with the figures.

This module measures and returns JSON-ready results; training_page renders them.
"""

from __future__ import annotations

import json
import pathlib
import resource
import statistics
import subprocess
import sys
import tempfile
import time

import keras
import tensorflow as tf

from tf_mlp.benchmark import machine, peak
from tf_mlp.benchmark.summary import summarize
from tf_mlp.config import Config, DataConfig, ModelConfig, preset
from tf_mlp.data.splits import DataSplits
from tf_mlp.model import build_model, flops_by_layer, training_flops_per_example
from tf_mlp.training import steps
from tf_mlp.training.loop import STEPS_PER_CALL
from tf_mlp.training.pipeline import ResidentSplit

BATCH_SIZES = (32, 128, 1024)
QUICK_BATCH_SIZES = (128,)
HEADLINE_BATCH_SIZE = 128
FIT_STEPS_PER_EXECUTION = (1, 50, 200)
"""1 is model.fit's default; the others are the tuned settings, of which the faster counts."""
QUICK_FIT_STEPS_PER_EXECUTION = (1, 50)
EPOCHS = 3
"""Epochs per timed run: the first is warm-up, the rest are timed."""
QUICK_EPOCHS = 2
PEAK_TIMINGS = 3
"""Timings of each matrix-multiply size and library per repetition; the best over all repetitions counts."""


def measured_config(data: DataConfig, batch_size: int, epochs: int) -> Config:
    """The `mlp` preset's model trained by plain SGD at 0.1: the configuration every trainer here runs."""
    return Config(data=data, model=preset("mlp").model).override(
        "train", optimizer="sgd", learning_rate=0.1, batch_size=batch_size, epochs=epochs,
    )


def product_examples_per_second(model_config: ModelConfig, batch_size: int, steps_count: int) -> float:
    """Examples/s of a training step's matrix products alone, at their exact shapes: the limit at this batch.

    Per layer: the forward product x @ W, the weight gradient x^T @ dy and,
    where backprop computes one, the input gradient dy @ W^T, so one loop
    iteration performs exactly training_flops_per_example * batch_size FLOPs.
    """
    operands = []
    for layer in flops_by_layer(model_config):
        x = tf.random.normal([batch_size, layer.fan_in])
        kernel = tf.random.normal([layer.fan_in, layer.fan_out])
        upstream = tf.random.normal([batch_size, layer.fan_out])
        operands.append((x, kernel, upstream, layer.input_gradient > 0))

    @tf.function
    def run(count):
        carry = tf.constant(0.0)
        for _ in tf.range(count):
            # The previous iteration's result feeds every product, so none can be hoisted out of the loop.
            zero = carry * 0.0
            for x, kernel, upstream, input_gradient in operands:
                x, upstream = x + zero, upstream + zero
                carry += tf.matmul(x, kernel)[0, 0] + tf.matmul(x, upstream, transpose_a=True)[0, 0]
                if input_gradient:
                    carry += tf.matmul(upstream, kernel, transpose_b=True)[0, 0]
        return carry

    run(tf.constant(2)).numpy()
    start = time.perf_counter()
    run(tf.constant(steps_count)).numpy()
    return steps_count * batch_size / (time.perf_counter() - start)


def trainer_examples_per_second(splits: DataSplits, config: Config, *, xla: bool = False) -> float:
    """The project's train function on resident data, driven as the loop drives it, epochs 2 onwards."""
    keras.utils.set_random_seed(0)
    batch_size = config.train.batch_size
    model = build_model(config.model)
    optimizer = steps.make_optimizer(config.train)
    optimizer.build(model.trainable_variables)
    data = ResidentSplit(splits.train)
    train = steps.make_train_function(model, optimizer, tf.distribute.get_strategy(), data, batch_size, jit_compile=xla)
    steps_per_epoch = data.steps_per_epoch(batch_size)

    def run_epoch(epoch: int) -> None:
        permutation, done = data.permutation(0, epoch), 0
        while done < steps_per_epoch:
            count = min(STEPS_PER_CALL, steps_per_epoch - done)
            train(permutation, tf.constant(epoch, tf.int64), tf.constant(done, tf.int64),
                  tf.constant(count, tf.int64)).numpy()
            done += count

    run_epoch(0)
    start = time.perf_counter()
    for epoch in range(1, config.train.epochs):
        run_epoch(epoch)
    return (config.train.epochs - 1) * steps_per_epoch * batch_size / (time.perf_counter() - start)


class _EpochTimer(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.seconds = []

    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self.start)


def fit_examples_per_second(splits: DataSplits, config: Config, steps_per_execution: int) -> tuple[float, float]:
    """(examples/s over epochs 2 onwards, test accuracy) of Keras compile + fit on the same model and data.

    compile() is left at its defaults except steps_per_execution (jit_compile
    "auto" is off on a CPU-only machine).
    """
    keras.utils.set_random_seed(0)
    model = build_model(config.model)
    model.compile(
        optimizer=steps.make_optimizer(config.train),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
        steps_per_execution=steps_per_execution,
    )
    timer = _EpochTimer()
    images, labels = splits.train.images, splits.train.labels
    model.fit(images, labels, batch_size=config.train.batch_size, epochs=config.train.epochs, shuffle=True, verbose=0,
              callbacks=[timer])
    # fit keeps the last partial batch: it trains on every example each epoch.
    rate = (config.train.epochs - 1) * len(images) / sum(timer.seconds[1:])
    accuracy = float(model.evaluate(splits.test.images, splits.test.labels, batch_size=1000, verbose=0)[1])
    return rate, accuracy


def cli_train(config: Config, run_dir: pathlib.Path | None = None) -> dict:
    """`tf-mlp train` in a child process: examples/s over epochs 2 onwards (metrics.jsonl), test accuracy, peak RSS.

    The run is written to run_dir (a new directory) and left there, or by default to a temporary one.
    """
    with tempfile.TemporaryDirectory() as work:
        config_file = pathlib.Path(work) / "config.json"
        config.save(config_file)
        run_dir = run_dir or pathlib.Path(work) / "run"
        subprocess.run([sys.executable, "-m", "tf_mlp.cli", "train", "--config", str(config_file),
                        "--run-dir", str(run_dir)],
                       check=True, capture_output=True)
        rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()][1:]
        evaluation = json.loads((run_dir / "evaluation.json").read_text())
    return {
        "examples_per_second": (sum(row["examples_per_second"] * row["seconds"] for row in rows)
                                / sum(row["seconds"] for row in rows)),
        "test_accuracy": evaluation["test_accuracy"],
        # ru_maxrss of children is the largest child so far (kilobytes on Linux).
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
    }


def run_training_benchmarks(splits: DataSplits, data: DataConfig, repetitions: int = 5, quick: bool = False,
                            keep_run: pathlib.Path | None = None) -> dict:
    """Every training figure at every batch size, repetitions interleaved.

    keep_run: where to leave the first `tf-mlp train` run (for the serving benchmark to export).
    """
    batch_sizes = QUICK_BATCH_SIZES if quick else BATCH_SIZES
    fit_settings = QUICK_FIT_STEPS_PER_EXECUTION if quick else FIT_STEPS_PER_EXECUTION
    epochs = QUICK_EPOCHS if quick else EPOCHS
    model_config = preset("mlp").model
    flops = training_flops_per_example(model_config)
    samples: dict = {}
    other_processes: list[float | None] = []
    accuracies: dict = {}
    peak_rss = 0.0
    matmul_rates = []
    product_steps = 20 if quick else 2000

    def record(key: str, value: float) -> None:
        samples.setdefault(key, []).append(value)

    for _ in range(repetitions):
        watch = machine.OtherProcesses().start()
        for batch_size in batch_sizes:
            config = measured_config(data, batch_size, epochs)
            run = cli_train(config, keep_run if keep_run is not None and not keep_run.exists() else None)
            record(f"cli_{batch_size}", run["examples_per_second"])
            peak_rss = max(peak_rss, run["peak_rss_mb"])
            accuracies.setdefault(f"cli_{batch_size}", []).append(run["test_accuracy"])
            record(f"trainer_{batch_size}", trainer_examples_per_second(splits, config))
            for steps_per_execution in fit_settings:
                rate, accuracy = fit_examples_per_second(splits, config, steps_per_execution)
                record(f"fit_spe{steps_per_execution}_{batch_size}", rate)
                accuracies.setdefault(f"fit_spe{steps_per_execution}_{batch_size}", []).append(accuracy)
            record(f"fit_tuned_{batch_size}", max(samples[f"fit_spe{setting}_{batch_size}"][-1]
                                                  for setting in fit_settings if setting != 1))
            record(f"products_{batch_size}", product_examples_per_second(model_config, batch_size, product_steps))
        headline = measured_config(data, HEADLINE_BATCH_SIZE, epochs)
        record(f"trainer_xla_{HEADLINE_BATCH_SIZE}", trainer_examples_per_second(splits, headline, xla=True))
        # The peak is sampled in every repetition and the best kept: one sample taken while
        # other jobs hold the cores would understate it and overstate every fraction of it.
        matmul_rates.append(peak.measure(peak.QUICK_SIZES if quick else peak.SIZES, PEAK_TIMINGS))
        other_processes.append(watch.share())
    matmul = peak.best_of(matmul_rates)
    peak_flops, peak_library, peak_size = peak.peak(matmul)
    return {
        "model": "784-1024-10 (the mlp preset), SGD learning rate 0.1",
        "flops_per_example": flops,
        "flops_by_layer": [vars(layer) for layer in flops_by_layer(model_config)],
        "matmul_gflops": peak_flops / 1e9,
        "matmul_peak": {"library": peak_library, "size": peak_size},
        "matmul_gflops_by_library": {library: {size: rate / 1e9 for size, rate in by_size.items()}
                                     for library, by_size in matmul.items()},
        "matmul_timings": PEAK_TIMINGS * repetitions,
        "batch_sizes": list(batch_sizes),
        "headline_batch_size": HEADLINE_BATCH_SIZE,
        "fit_steps_per_execution": list(fit_settings),
        "epochs": epochs,
        "examples_per_second": {key: summarize(values) for key, values in samples.items()},
        "test_accuracy": {key: statistics.median(values) for key, values in accuracies.items()},
        "training_peak_rss_mb": peak_rss,
        "other_processes_share": other_processes,
        "machine": machine.current(),
    }
