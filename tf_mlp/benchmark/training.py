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

Beside them: the machine's float32 matrix-multiply peak (the best of several
4096x4096 products) and the rate of the training step's own products alone
at each batch size (forward, weight gradients, input gradients, with the
exact shapes from tf_mlp.model.flops_by_layer): the ceiling for any trainer
at that batch. FLOPs are counted exactly by tf_mlp.model.training_flops_per_example.

Repetitions are interleaved (every measure once, then again), and each figure
is reported as median and range. Ratios are taken within each repetition
(trainer and baseline measured minutes apart), then their median and range
reported, so a slow patch of the machine moves both sides of a ratio. The
tuned model.fit in a repetition is the faster of its tuned settings in that
repetition, which gives the baseline every benefit of the doubt. Whether the
machine was quiet is measured, not guessed: other processes' share of the
cores in each repetition (tf_mlp.benchmark.machine), since the load average
counts this benchmark's own threads.
"""

from __future__ import annotations

import json
import os
import pathlib
import resource
import statistics
import subprocess
import sys
import tempfile
import time

import keras
import tensorflow as tf

from tf_mlp.benchmark import machine
from tf_mlp.config import Config, DataConfig, ModelConfig, preset
from tf_mlp.data.splits import DataSplits
from tf_mlp.model import build_model, flops_by_layer, training_flops_per_example
from tf_mlp.training import steps
from tf_mlp.training.loop import STEPS_PER_CALL
from tf_mlp.training.pipeline import ResidentSplit

BATCH_SIZES = (32, 128, 1024)
QUICK_BATCH_SIZES = (32, 128)
HEADLINE_BATCH_SIZE = 128
FIT_STEPS_PER_EXECUTION = (1, 50, 200)
"""1 is model.fit's default; the others are the tuned settings, of which the faster counts."""
QUICK_FIT_STEPS_PER_EXECUTION = (1, 50)
EPOCHS = 3
"""Epochs per timed run: the first is warm-up, the rest are timed."""
QUICK_EPOCHS = 2
GOALS = {"fit_default": 1.5, "fit_tuned": 1.0, "matmul_peak_fraction": 0.55}


def measured_config(data: DataConfig, batch_size: int, epochs: int) -> Config:
    """The `mlp` preset's model trained by plain SGD at 0.1: the configuration every trainer here runs."""
    return Config(data=data, model=preset("mlp").model).override(
        "train", optimizer="sgd", learning_rate=0.1, batch_size=batch_size, epochs=epochs,
    )


def matmul_flops_per_second(size: int = 4096, repetitions: int = 7) -> float:
    """The machine's float32 matrix-multiply peak: the best of several size x size products.

    A peak, so the best repetition rather than the median: on a shared
    machine the median measures the other jobs.
    """
    a = tf.random.normal([size, size])
    b = tf.random.normal([size, size])
    # Two products per call, each consumed, so the multiply dominates and nothing is skipped.
    multiply = tf.function(lambda a, b: tf.reduce_sum(tf.matmul(a, b)) + tf.reduce_sum(tf.matmul(b, a)))
    multiply(a, b).numpy()
    rates = []
    for _ in range(repetitions):
        start = time.perf_counter()
        multiply(a, b).numpy()
        rates.append(2 * 2 * size**3 / (time.perf_counter() - start))
    return max(rates)


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


def cli_train(config: Config) -> dict:
    """`tf-mlp train` in a child process: examples/s over epochs 2 onwards (metrics.jsonl), test accuracy, peak RSS."""
    with tempfile.TemporaryDirectory() as work:
        config_file = pathlib.Path(work) / "config.json"
        config.save(config_file)
        run_dir = pathlib.Path(work) / "run"
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


def _summary(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "values": values}


def run_training_benchmarks(splits: DataSplits, data: DataConfig, repetitions: int = 5, quick: bool = False) -> dict:
    """Every training figure at every batch size, repetitions interleaved."""
    batch_sizes = QUICK_BATCH_SIZES if quick else BATCH_SIZES
    fit_settings = QUICK_FIT_STEPS_PER_EXECUTION if quick else FIT_STEPS_PER_EXECUTION
    epochs = QUICK_EPOCHS if quick else EPOCHS
    model_config = preset("mlp").model
    flops = training_flops_per_example(model_config)
    samples: dict = {}
    other_processes: list[float | None] = []
    accuracies: dict = {}
    peak_rss = peak = 0.0
    matmul_size = 1024 if quick else 4096

    def record(key: str, value: float) -> None:
        samples.setdefault(key, []).append(value)

    for _ in range(repetitions):
        watch = machine.OtherProcesses().start()
        for batch_size in batch_sizes:
            config = measured_config(data, batch_size, epochs)
            run = cli_train(config)
            record(f"cli_{batch_size}", run["examples_per_second"])
            peak_rss = max(peak_rss, run["peak_rss_mb"])
            accuracies.setdefault(f"cli_{batch_size}", []).append(run["test_accuracy"])
            record(f"trainer_{batch_size}", trainer_examples_per_second(splits, config))
            for steps_per_execution in fit_settings:
                rate, accuracy = fit_examples_per_second(splits, config, steps_per_execution)
                record(f"fit_spe{steps_per_execution}_{batch_size}", rate)
                accuracies.setdefault(f"fit_spe{steps_per_execution}_{batch_size}", []).append(accuracy)
            record(f"fit_tuned_{batch_size}",
                   max(samples[f"fit_spe{setting}_{batch_size}"][-1] for setting in fit_settings if setting != 1))
            record(f"products_{batch_size}",
                   product_examples_per_second(model_config, batch_size, 200 if quick else 2000))
        headline = measured_config(data, HEADLINE_BATCH_SIZE, epochs)
        record(f"trainer_xla_{HEADLINE_BATCH_SIZE}", trainer_examples_per_second(splits, headline, xla=True))
        # The peak is sampled in every repetition and the best kept: one sample taken while
        # other jobs hold the cores would understate it and overstate every fraction of it.
        peak = max(peak, matmul_flops_per_second(matmul_size, repetitions=3))
        other_processes.append(watch.share())
    return {
        "model": "784-1024-10 (the mlp preset), SGD learning rate 0.1",
        "flops_per_example": flops,
        "flops_by_layer": [vars(layer) for layer in flops_by_layer(model_config)],
        "matmul_gflops": peak / 1e9,
        "matmul_size": matmul_size,
        "matmul_samples": 3 * repetitions,
        "batch_sizes": list(batch_sizes),
        "fit_steps_per_execution": list(fit_settings),
        "epochs": epochs,
        "examples_per_second": {key: _summary(values) for key, values in samples.items()},
        "test_accuracy": {key: statistics.median(values) for key, values in accuracies.items()},
        "training_peak_rss_mb": peak_rss,
        "other_processes_share": other_processes,
        "cpus": os.cpu_count(),
    }


def loaded(results: dict) -> bool:
    """True when other processes took a measurable share of the cores in some repetition (or it could not be told)."""
    return not machine.quiet(results["other_processes_share"])


def _rate(results: dict, key: str) -> dict:
    return results["examples_per_second"][key]


def best_tuned_fit(results: dict, batch_size: int) -> dict:
    """The tuned model.fit at this batch: in each repetition the faster of its tuned settings."""
    return _rate(results, f"fit_tuned_{batch_size}")


def _paired(results: dict, numerator: str, denominator: str) -> dict:
    """Median and range of numerator / denominator taken within each repetition."""
    pairs = zip(_rate(results, numerator)["values"], _rate(results, denominator)["values"])
    return _summary([top / bottom for top, bottom in pairs])


def comparisons(results: dict, batch_size: int) -> dict:
    """The ratios the goals are stated in: within each repetition, then median and range."""
    cli = _rate(results, f"cli_{batch_size}")["median"]
    return {
        "over_fit_default": _paired(results, f"cli_{batch_size}", f"fit_spe1_{batch_size}"),
        "over_fit_tuned": _paired(results, f"cli_{batch_size}", f"fit_tuned_{batch_size}"),
        "matmul_peak_fraction": cli * results["flops_per_example"] / (results["matmul_gflops"] * 1e9),
        "products_fraction": cli / _rate(results, f"products_{batch_size}")["median"],
    }


def _ratio_cell(summary: dict) -> str:
    return f"{summary['median']:.2f}x ({summary['min']:.2f}–{summary['max']:.2f})"


def _cell(summary: dict) -> str:
    return f"{summary['median'] / 1000:,.1f}k ({summary['min'] / 1000:,.1f}–{summary['max'] / 1000:,.1f}k)"


def markdown(results: dict) -> list[str]:
    """The training section of PERFORMANCE.md: how it was measured, the table and the goals."""
    flops = results["flops_per_example"]
    layers = ", ".join(f"{layer['name']} {layer['fan_in']}x{layer['fan_out']}: {layer['forward']:,} forward + "
                       f"{layer['weight_gradient']:,} weight gradient + {layer['input_gradient']:,} input gradient"
                       for layer in results["flops_by_layer"])
    timed = f"epochs 2–{results['epochs']}" if results["epochs"] > 2 else "epoch 2"
    tuned = [str(setting) for setting in results["fit_steps_per_execution"] if setting != 1]
    tuned_fit = ("the faster of steps_per_execution " + " and ".join(tuned) if len(tuned) > 1
                 else "steps_per_execution " + tuned[0])
    lines = [
        f"Model {results['model']}; the same resident uint8 data, batch and optimizer for every trainer. Rates are "
        f"examples per second over {timed} (the first epoch is warm-up), median and (min–max) of "
        f"the repetitions, which were interleaved; ratios are taken within each repetition, then median and "
        f"(min–max). The tuned model.fit is, in each repetition, {tuned_fit}. "
        f"Machine: {machine.describe(results['other_processes_share'], results['cpus'])} "
        "(CPU time from /proc/stat less this benchmark's own, per repetition).",
        "",
        f"FLOPs per training example, counted exactly (`tf_mlp.model.training_flops_per_example`): **{flops:,}** "
        f"({layers}; the first layer's input gradient is never computed). Matrix-multiply peak: "
        f"{results['matmul_gflops']:.0f} GFLOP/s (best of {results['matmul_samples']} timings of two float32 "
        f"{results['matmul_size']}² products, taken across the repetitions).",
        "",
        *([f"**Other processes used {machine.QUIET_SHARE:.0%} or more of the cores in some repetition**: the absolute "
           "rates and the peak are understated by unequal amounts and the shares of the peak are not conclusive; the "
           "ratios within repetitions are the meaningful figures.", ""]
          if loaded(results) else []),
        "| batch | `tf-mlp train` | train function alone | model.fit, defaults | model.fit, steps_per_execution tuned "
        "| step's products alone (limit) | train / fit defaults | train / fit tuned | train, share of matmul peak |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for batch_size in results["batch_sizes"]:
        ratio = comparisons(results, batch_size)
        lines.append(
            f"| {batch_size} | {_cell(_rate(results, f'cli_{batch_size}'))} "
            f"| {_cell(_rate(results, f'trainer_{batch_size}'))} "
            f"| {_cell(_rate(results, f'fit_spe1_{batch_size}'))} | {_cell(best_tuned_fit(results, batch_size))} "
            f"| {_cell(_rate(results, f'products_{batch_size}'))} | {_ratio_cell(ratio['over_fit_default'])} "
            f"| {_ratio_cell(ratio['over_fit_tuned'])} "
            f"| {ratio['matmul_peak_fraction']:.0%} ({ratio['products_fraction']:.0%} of the limit) |"
        )
    xla = _rate(results, f"trainer_xla_{HEADLINE_BATCH_SIZE}")
    accuracy = results["test_accuracy"]
    def values(key: str) -> str:
        return ", ".join(f"{value / 1000:.1f}k" for value in _rate(results, key)["values"])

    lines += [
        "",
        f"- Each repetition at batch {HEADLINE_BATCH_SIZE}, in order: "
        f"`tf-mlp train` {values(f'cli_{HEADLINE_BATCH_SIZE}')}; "
        + "; ".join(f"model.fit steps_per_execution={setting} {values(f'fit_spe{setting}_{HEADLINE_BATCH_SIZE}')}"
                    for setting in results["fit_steps_per_execution"]) + ".",
        f"- Train function with XLA (`--xla`) at batch {HEADLINE_BATCH_SIZE}: {_cell(xla)} examples/s.",
        f"- Test accuracy after {results['epochs']} epochs at batch {HEADLINE_BATCH_SIZE}: `tf-mlp train` "
        f"{accuracy[f'cli_{HEADLINE_BATCH_SIZE}']:.4f}, model.fit {accuracy[f'fit_spe1_{HEADLINE_BATCH_SIZE}']:.4f} "
        "(same model and optimizer, so the speeds compare like with like).",
        f"- Peak resident memory of `tf-mlp train`: {results['training_peak_rss_mb']:,.0f} MB.",
    ]
    return lines


def goals(results: dict) -> list[str]:
    """Each training goal with this run's figure, marked met or not."""
    ratio = comparisons(results, HEADLINE_BATCH_SIZE)

    def mark(value: float, goal: float) -> str:
        return "met" if value >= goal else "NOT met"

    def below(summary: dict, goal: float) -> str:
        short = sum(value < goal for value in summary["values"])
        return f"; below it in {short} of {len(summary['values'])} repetitions" if short else ""

    products_share = (_rate(results, f"products_{HEADLINE_BATCH_SIZE}")["median"] * results["flops_per_example"]
                      / (results["matmul_gflops"] * 1e9))
    return [
        f"`tf-mlp train` at batch {HEADLINE_BATCH_SIZE} >= {GOALS['fit_default']}x model.fit at defaults: "
        f"{_ratio_cell(ratio['over_fit_default'])} ({mark(ratio['over_fit_default']['median'], GOALS['fit_default'])}"
        f"{below(ratio['over_fit_default'], GOALS['fit_default'])})",
        f"`tf-mlp train` at batch {HEADLINE_BATCH_SIZE} >= {GOALS['fit_tuned']}x model.fit with steps_per_execution "
        f"tuned: {_ratio_cell(ratio['over_fit_tuned'])} ({mark(ratio['over_fit_tuned']['median'], GOALS['fit_tuned'])}"
        f"{below(ratio['over_fit_tuned'], GOALS['fit_tuned'])})",
        f"`tf-mlp train` at batch {HEADLINE_BATCH_SIZE} >= {GOALS['matmul_peak_fraction']:.0%} of the matrix-multiply "
        f"peak: {ratio['matmul_peak_fraction']:.0%} "
        f"({mark(ratio['matmul_peak_fraction'], GOALS['matmul_peak_fraction'])})"
        f"{' (not conclusive: measured under load)' if loaded(results) else ''}; "
        f"the step's own products alone reach {products_share:.0%} at this batch",
    ]
