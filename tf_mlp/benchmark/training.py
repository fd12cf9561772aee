"""Training-side measurements: the project's trainer against Keras model.fit,
XLA on and off, the fraction of the measured matrix-multiply peak, the input
pipeline alone, scaling with batch size and width, and peak memory.

Every figure is the median of several repetitions taken in the same process
on the same data, so ratios between them are meaningful on a noisy machine.
"""

from __future__ import annotations

import resource
import statistics
import subprocess
import sys
import tempfile
import time

import keras
import tensorflow as tf

from tf_mlp import config as config_module, steps
from tf_mlp.data.splits import DataSplits
from tf_mlp.model import build_model, training_flops_per_example
from tf_mlp.pipeline import ResidentSplit

MEASURED_STEPS = 200


def matmul_flops_per_second(size: int = 4096, repetitions: int = 7) -> float:
    """The machine's float32 matrix-multiply peak: the ceiling for a Dense network.

    A peak, so the best of the repetitions rather than their median: on a
    shared machine the median measures the other jobs, and a "peak" below
    what training itself reaches makes the fraction meaningless.
    """
    a = tf.random.normal([size, size])
    b = tf.random.normal([size, size])
    # Several products per call, each consumed, so the multiply dominates and nothing is skipped.
    multiply = tf.function(lambda a, b: tf.reduce_sum(tf.matmul(a, b)) + tf.reduce_sum(tf.matmul(b, a)))
    multiply(a, b).numpy()
    rates = []
    for _ in range(repetitions):
        start = time.perf_counter()
        multiply(a, b).numpy()
        rates.append(2 * 2 * size**3 / (time.perf_counter() - start))
    return max(rates)


def trainer_examples_per_second(splits: DataSplits, config, steps_count: int = MEASURED_STEPS) -> float:
    """The project's train function (several steps per tf.function call) on resident data."""
    keras.utils.set_random_seed(0)
    model = build_model(config.model)
    optimizer = steps.make_optimizer(config.train)
    optimizer.build(model.trainable_variables)
    strategy = tf.distribute.get_strategy()
    train = steps.make_train_function(model, optimizer, strategy, config.train.batch_size, jit_compile=config.train.xla)
    data = ResidentSplit(splits.train)
    iterator = iter(data.epoch(config.train.batch_size, 0, 0).repeat())
    from tf_mlp.train import STEPS_PER_CALL

    train(iterator, tf.constant(STEPS_PER_CALL)).numpy()  # trace and warm up
    calls = max(1, steps_count // STEPS_PER_CALL)
    start = time.perf_counter()
    for _ in range(calls):
        train(iterator, tf.constant(STEPS_PER_CALL)).numpy()
    return calls * STEPS_PER_CALL * config.train.batch_size / (time.perf_counter() - start)


def fit_examples_per_second(splits: DataSplits, config, steps_count: int = MEASURED_STEPS) -> float:
    """Keras compile + fit on the same model, optimizer, batch size and data."""
    keras.utils.set_random_seed(0)
    model = build_model(config.model)
    model.compile(
        optimizer=steps.make_optimizer(config.train),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
        jit_compile=config.train.xla,
    )
    batch = config.train.batch_size
    images, labels = splits.train.images, splits.train.labels
    model.fit(images[: batch * 20], labels[: batch * 20], batch_size=batch, epochs=1, verbose=0)  # trace and warm up
    count = steps_count * batch
    start = time.perf_counter()
    model.fit(images[:count], labels[:count], batch_size=batch, epochs=1, verbose=0, shuffle=True)
    return count / (time.perf_counter() - start)


def accuracy_after_training(splits: DataSplits, config, trainer: str) -> float:
    """Test accuracy after config.train.epochs with our loop or with model.fit."""
    keras.utils.set_random_seed(config.train.seed)
    if trainer == "project":
        from tf_mlp.train import train_and_evaluate

        with tempfile.TemporaryDirectory() as run_dir:
            return train_and_evaluate(config, run_dir, splits=splits, verbose=False)["test_accuracy"]
    model = build_model(config.model)
    model.compile(optimizer=steps.make_optimizer(config.train),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    model.fit(splits.train.images, splits.train.labels, batch_size=config.train.batch_size,
              epochs=config.train.epochs, verbose=0, shuffle=True)
    return float(model.evaluate(splits.test.images, splits.test.labels, batch_size=1000, verbose=0)[1])


def pipeline_examples_per_second(splits: DataSplits, batch_size: int = 128) -> float:
    data = ResidentSplit(splits.train)
    start, count = time.perf_counter(), 0
    for images, _ in data.epoch(batch_size, 0, 0):
        count += int(images.shape[0])
    return count / (time.perf_counter() - start)


def median_of(repetitions: int, measure) -> float:
    return statistics.median(measure() for _ in range(repetitions))


def training_peak_rss_megabytes(preset: str = "mlp", epochs: int = 1) -> float:
    """Peak resident memory of `tf-mlp train --preset NAME` in a child process."""
    with tempfile.TemporaryDirectory() as run_dir:
        before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        subprocess.run([sys.executable, "-m", "tf_mlp.cli", "train", "--preset", preset, "--epochs", str(epochs),
                        "--run-dir", run_dir], check=True, capture_output=True)
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    # ru_maxrss of children is the largest child so far (kilobytes on Linux).
    return max(peak, before) / 1024


def run_training_benchmarks(splits: DataSplits, repetitions: int = 3, quick: bool = False) -> dict:
    """Every training figure, measured side by side."""
    base = config_module.preset("mlp")
    steps_count = 50 if quick else MEASURED_STEPS
    results = {"matmul_gflops": matmul_flops_per_second(1024 if quick else 4096) / 1e9}
    flops = training_flops_per_example(base.model)
    for xla in (False, True):
        config = base.override("train", xla=xla)
        suffix = "_xla" if xla else ""
        project = median_of(repetitions, lambda: trainer_examples_per_second(splits, config, steps_count))
        fit = median_of(repetitions, lambda: fit_examples_per_second(splits, config, steps_count))
        results[f"trainer{suffix}_examples_per_second"] = project
        results[f"fit{suffix}_examples_per_second"] = fit
        results[f"trainer_over_fit{suffix}"] = project / fit
        results[f"trainer{suffix}_fraction_of_matmul_peak"] = flops * project / (results["matmul_gflops"] * 1e9)
    results["flops_per_example"] = flops
    results["pipeline_examples_per_second"] = median_of(repetitions, lambda: pipeline_examples_per_second(splits))
    accuracy_config = base.override("train", epochs=1 if quick else 3)
    results["accuracy_epochs"] = accuracy_config.train.epochs
    results["trainer_test_accuracy"] = accuracy_after_training(splits, accuracy_config, "project")
    results["fit_test_accuracy"] = accuracy_after_training(splits, accuracy_config, "fit")
    results["scaling_batch_size"] = {
        batch: trainer_examples_per_second(splits, base.override("train", batch_size=batch), steps_count)
        for batch in ((32, 128) if quick else (32, 128, 512, 1024, 4096))
    }
    results["scaling_hidden_width"] = {
        width: trainer_examples_per_second(splits, base.override("model", hidden_units=(width,)), steps_count)
        for width in ((256, 1024) if quick else (256, 1024, 2048, 4096))
    }
    results["training_peak_rss_mb"] = training_peak_rss_megabytes(epochs=1)
    return results


def as_table_rows(results: dict) -> list[tuple[str, str]]:
    rows = [("matrix-multiply peak (float32)", f"{results['matmul_gflops']:.1f} GFLOP/s"),
            ("FLOPs per example, forward + backward", f"{results['flops_per_example'] / 1e6:.2f} M")]
    for suffix, name in (("", "no XLA"), ("_xla", "XLA")):
        rows += [
            (f"project trainer, {name}", f"{results[f'trainer{suffix}_examples_per_second']:,.0f} examples/s "
                                        f"({results[f'trainer{suffix}_fraction_of_matmul_peak']:.0%} of peak)"),
            (f"Keras model.fit, {name}", f"{results[f'fit{suffix}_examples_per_second']:,.0f} examples/s"),
            (f"trainer / model.fit, {name}", f"{results[f'trainer_over_fit{suffix}']:.2f}x"),
        ]
    rows += [
        ("tf.data pipeline alone", f"{results['pipeline_examples_per_second']:,.0f} examples/s"),
        (f"test accuracy after {results['accuracy_epochs']} epochs: trainer / model.fit",
         f"{results['trainer_test_accuracy']:.4f} / {results['fit_test_accuracy']:.4f}"),
        ("peak RSS, `tf-mlp train --preset mlp`", f"{results['training_peak_rss_mb']:,.0f} MB"),
    ]
    rows += [(f"trainer at batch size {batch}", f"{value:,.0f} examples/s") for batch, value in results["scaling_batch_size"].items()]
    rows += [(f"trainer at hidden width {width}", f"{value:,.0f} examples/s") for width, value in results["scaling_hidden_width"].items()]
    return rows



def targets(results: dict) -> list[str]:
    """Issue 7's training targets, each marked met or not by this run's numbers."""
    def mark(met: bool) -> str:
        return "met" if met else "NOT met"

    ratio = results["trainer_over_fit"]
    best_fraction = max(results["trainer_fraction_of_matmul_peak"], results["trainer_xla_fraction_of_matmul_peak"])
    return [
        f"training at batch 128 >= 1.5x model.fit: {ratio:.2f}x without XLA, {results['trainer_over_fit_xla']:.2f}x with ({mark(ratio >= 1.5)})",
        f"training >= 60% of the matrix-multiply peak: best {best_fraction:.0%} ({mark(best_fraction >= 0.6)})",
        f"input pipeline well above training: {results['pipeline_examples_per_second'] / results['trainer_examples_per_second']:.1f}x the trainer",
    ]
