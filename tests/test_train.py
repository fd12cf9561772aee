import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from tests.conftest import REPO_ROOT
from tf_mlp import layout
from tf_mlp.errors import ConfigError, TrainingDivergedError
from tf_mlp.training import progress, steps, train_and_evaluate
from tf_mlp.training.runs import (
    RunLockedError,
    load_config,
    read_class_names,
    read_metrics,
    restore_model,
    training_lock,
)


def _weights(run_dir):
    _, model = restore_model(run_dir)
    return [variable.numpy() for variable in model.trainable_variables]


def test_training_learns_and_writes_the_run_directory(tmp_path, tiny_config, tiny_splits):
    summary = train_and_evaluate(tiny_config, tmp_path, splits=tiny_splits, verbose=False)
    rows = read_metrics(tmp_path)
    assert [row["epoch"] for row in rows] == [1, 2]
    assert rows[1]["train_loss"] < rows[0]["train_loss"]
    assert summary["test_accuracy"] > 0.9
    assert summary["steps"] == summary["planned_steps"] == 2 * (512 // 32)
    assert load_config(tmp_path) == tiny_config
    assert read_class_names(tmp_path) == tiny_splits.class_names
    assert json.loads((tmp_path / "evaluation.json").read_text())["test_accuracy"] == summary["test_accuracy"]
    assert list((tmp_path / "logs" / "train").iterdir()), "TensorBoard summaries written"


def test_the_train_function_returns_named_sums_over_its_steps(tiny_config, tiny_splits):
    from tf_mlp.model import build_model
    from tf_mlp.training.pipeline import ResidentSplit

    l2_config = tiny_config.override("model", l2=0.01)
    model = build_model(l2_config.model, seed=0)
    optimizer = steps.make_optimizer(l2_config.train)
    data = ResidentSplit(tiny_splits.train)
    train = steps.make_train_function(model, optimizer, tf.distribute.get_strategy(), data, 32, jit_compile=False)
    permutation = data.permutation(0, 0)

    def call(first_batch, count):
        return train(permutation, tf.constant(0, tf.int64), tf.constant(first_batch, tf.int64),
                     tf.constant(count, tf.int64)).numpy()

    penalty = float(tf.add_n(model.losses))  # the L2 penalty of the weights the first step sees
    one = call(0, 1)
    assert isinstance(one, steps.StepSums) and all(isinstance(value, float) for value in one)
    assert one.count == 32 and 0 <= one.correct <= one.count and one.loss_sum > 0
    assert one.regularization == pytest.approx(penalty, rel=1e-5)
    three = call(1, 3)
    assert three.count == 3 * 32 and three.regularization > 0  # the penalty once per step, not per example


def test_interrupted_run_resumes_at_the_exact_step_with_identical_weights(tmp_path, tiny_config, tiny_splits,
                                                                          monkeypatch):
    # Dropout and augmentation included: their randomness must resume exactly too.
    config = tiny_config.override("model", dropout_rate=0.3).override("train", epochs=3, flip=True, shift=1)
    train_and_evaluate(config, tmp_path / "uninterrupted", splits=tiny_splits, verbose=False)

    # Crash mid-epoch: calls run 5,5,5,1 steps in epoch 1 (16 steps), then 4,5,...;
    # the 6th call raises, after the checkpoint at step 20 (4 steps into epoch 2).
    real_factory = steps.make_train_function

    def crashing_factory(*args, **kwargs):
        function, calls = real_factory(*args, **kwargs), []

        def crash_on_sixth_call(*arguments):
            calls.append(arguments)
            if len(calls) == 6:
                raise KeyboardInterrupt("simulated crash")
            return function(*arguments)

        return crash_on_sixth_call

    monkeypatch.setattr(steps, "make_train_function", crashing_factory)
    with pytest.raises(KeyboardInterrupt):
        train_and_evaluate(config, tmp_path / "resumed", splits=tiny_splits, verbose=False)
    assert tf.train.latest_checkpoint(str(tmp_path / "resumed" / "checkpoints")).endswith("ckpt-20")
    monkeypatch.setattr(steps, "make_train_function", real_factory)

    summary = train_and_evaluate(config, tmp_path / "resumed", splits=tiny_splits, verbose=False)
    assert summary["steps"] == 48
    # Bit for bit: the same batches through the same kernels in this process, so an exact resume repeats every
    # rounding of the uninterrupted run.
    for resumed, uninterrupted in zip(_weights(tmp_path / "resumed"), _weights(tmp_path / "uninterrupted")):
        np.testing.assert_array_equal(resumed, uninterrupted)
    assert [row["epoch"] for row in read_metrics(tmp_path / "resumed")] == [1, 2, 3]


def test_finished_run_started_again_does_not_train_more(tmp_path, tiny_config, tiny_splits):
    first = train_and_evaluate(tiny_config, tmp_path, splits=tiny_splits, verbose=False)
    second = train_and_evaluate(tiny_config, tmp_path, splits=tiny_splits, verbose=False)
    assert second["steps"] == first["steps"] and second["test_accuracy"] == first["test_accuracy"]


def test_resuming_with_a_different_model_is_refused(tmp_path, tiny_config, tiny_splits):
    train_and_evaluate(tiny_config.override("train", epochs=1), tmp_path, splits=tiny_splits, verbose=False)
    refusal = r"trained with other options \(model.hidden_units \(32,\) -> \(16,\); train.epochs 1 -> 2"
    with pytest.raises(ConfigError, match=refusal):
        train_and_evaluate(tiny_config.override("model", hidden_units=(16,)), tmp_path, splits=tiny_splits,
                           verbose=False)
    assert load_config(tmp_path) == tiny_config.override("train", epochs=1)  # config.json still says what ran


def test_resuming_may_change_only_where_and_how_it_checkpoints(tmp_path, tiny_config, tiny_splits):
    config = tiny_config.override("train", epochs=1)
    train_and_evaluate(config, tmp_path, splits=tiny_splits, verbose=False)
    changed = (config.override("train", checkpoint_every_steps=7, max_checkpoints=5)
               .override("data", data_dir=str(tmp_path / "elsewhere")))
    summary = train_and_evaluate(changed, tmp_path, splits=tiny_splits, verbose=False)
    assert summary["steps"] == 16 and load_config(tmp_path) == changed
    with pytest.raises(ConfigError, match="train.label_smoothing 0.0 -> 0.1"):
        train_and_evaluate(changed.override("train", label_smoothing=0.1), tmp_path, splits=tiny_splits, verbose=False)


def test_a_run_directory_has_one_writer(tmp_path, tiny_config, tiny_splits):
    tmp_path.mkdir(exist_ok=True)
    with training_lock(tmp_path):
        with pytest.raises(RunLockedError, match=rf"is in use by another tf-mlp train \(pid {os.getpid()}\)"):
            train_and_evaluate(tiny_config, tmp_path, splits=tiny_splits, verbose=False)
    assert not layout.config_path(tmp_path).exists()
    train_and_evaluate(tiny_config, tmp_path, splits=tiny_splits, verbose=False)  # free again once released


def test_a_metrics_line_cut_short_by_a_crash_does_not_block_resuming(tmp_path, tiny_config, tiny_splits):
    config = tiny_config.override("train", epochs=1)
    train_and_evaluate(config, tmp_path, splits=tiny_splits, verbose=False)
    with layout.metrics_path(tmp_path).open("a") as metrics:
        metrics.write('{"epoch": 2, "ste')  # no newline: a write the crash interrupted
    train_and_evaluate(config.override("train", epochs=1), tmp_path, splits=tiny_splits, verbose=False)
    assert [row["epoch"] for row in read_metrics(tmp_path)] == [1]


def test_without_a_terminal_progress_is_a_periodic_line(tmp_path, tiny_config, tiny_splits, capsys, monkeypatch):
    monkeypatch.setattr(progress, "PROGRESS_LINE_SECONDS", 0.0)
    train_and_evaluate(tiny_config.override("train", epochs=1), tmp_path, splits=tiny_splits, verbose=True)
    lines = capsys.readouterr().out.splitlines()
    periodic = [line for line in lines if line.startswith("epoch 1: step ")]
    # 16 steps in calls of 5, 5, 5, 1: a line after each call but the last (the epoch's own line follows).
    assert [line.split()[3] for line in periodic] == ["5/16", "10/16", "15/16"]
    assert "loss" in periodic[0] and "accuracy" in periodic[0]
    assert not any("test accuracy" in line for line in lines)  # the command prints the result, once


def test_a_strategy_says_where_its_replicas_run(tmp_path, tiny_config, tiny_splits, capsys):
    train_and_evaluate(tiny_config.override("train", epochs=1, strategy="mirrored"), tmp_path, splits=tiny_splits)
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("strategy ")]
    assert len(lines) == 1 and lines[0].startswith("strategy mirrored: 1 replicas on ") and "CPU:0" in lines[0]


def test_l2_raises_the_training_loss(tmp_path, tiny_config, tiny_splits):
    one_epoch = tiny_config.override("train", epochs=1)
    train_and_evaluate(one_epoch, tmp_path / "plain", splits=tiny_splits, verbose=False)
    train_and_evaluate(one_epoch.override("model", l2=0.01), tmp_path / "l2", splits=tiny_splits, verbose=False)
    plain, penalised = read_metrics(tmp_path / "plain")[0], read_metrics(tmp_path / "l2")[0]
    assert penalised["train_loss"] > plain["train_loss"] + 0.01


def test_nan_loss_stops_cleanly_and_keeps_the_last_good_checkpoint(tmp_path, tiny_config, tiny_splits):
    config = tiny_config.override("train", optimizer="sgd", learning_rate=1e30, checkpoint_every_steps=1)
    with pytest.raises(TrainingDivergedError, match="loss became NaN or infinite at step") as error:
        train_and_evaluate(config, tmp_path, splits=tiny_splits, verbose=False)
    assert "\n" not in str(error.value)
    latest = tf.train.latest_checkpoint(str(tmp_path / "checkpoints"))
    if latest:  # every checkpoint that was written holds finite weights
        _, model = restore_model(tmp_path)
        assert all(np.all(np.isfinite(variable.numpy())) for variable in model.variables)


def test_early_stopping_keeps_the_best_epoch(tmp_path, tiny_config, tiny_splits):
    # Validation accuracy saturates at once on the synthetic data, so patience 1 stops at epoch 2.
    config = tiny_config.override("train", epochs=10, early_stopping_patience=1)
    summary = train_and_evaluate(config, tmp_path, splits=tiny_splits, verbose=False)
    assert summary["stopped_early"] and summary["steps"] < summary["planned_steps"]
    assert len(read_metrics(tmp_path)) == 2


@pytest.mark.parametrize("option", ["xla", "mixed_precision"])
def test_xla_and_mixed_precision_paths_train(tmp_path, tiny_config, tiny_splits, option):
    config = tiny_config.override("train", epochs=1, **{option: True})
    summary = train_and_evaluate(config, tmp_path, splits=tiny_splits, verbose=False)
    assert summary["test_accuracy"] > 0.8


MIRRORED_SCRIPT = """
import sys, json, numpy as np
from tf_mlp.training.distribute import split_cpu
split_cpu(2)
import tensorflow as tf
from tests import synthetic
from tf_mlp import config
from tf_mlp.training import train_and_evaluate
from tf_mlp.training.runs import read_metrics, restore_model
run_config = config.preset("mlp").override("model", hidden_units=(32,)).override(
    "train", epochs=2, batch_size=64, optimizer="momentum", learning_rate=0.05, flip=True, shift=1)
run_config = run_config.override("model", l2=1e-4)
splits = synthetic.make_splits()
out = {}
for strategy in ("default", "mirrored"):
    run = sys.argv[1] + "/" + strategy
    summary = train_and_evaluate(run_config.override("train", strategy=strategy), run, splits=splits, verbose=False)
    _, model = restore_model(run)
    devices = [d.name for d in tf.config.list_logical_devices("CPU")]
    replicas = tf.distribute.MirroredStrategy(devices).num_replicas_in_sync if strategy == "mirrored" else 1
    out[strategy] = {"losses": [row["train_loss"] for row in read_metrics(run)],
                     "weights": [v.numpy().tolist() for v in model.trainable_variables],
                     "replicas": replicas}
print(json.dumps(out))
"""


@pytest.mark.slow
def test_mirrored_strategy_on_two_logical_cpus_matches_one_device(tmp_path):
    # Augmentation included: each replica augments its half of the global batch exactly as one device would.
    # Logical devices must be configured before TensorFlow starts: run in a fresh process.
    result = subprocess.run(
        [sys.executable, "-c", MIRRORED_SCRIPT, str(tmp_path)], capture_output=True, text=True, cwd=REPO_ROOT
    )
    assert result.returncode == 0, result.stderr[-3000:]
    runs = json.loads(result.stdout.strip().splitlines()[-1])
    assert runs["mirrored"]["replicas"] == 2
    np.testing.assert_allclose(runs["mirrored"]["losses"], runs["default"]["losses"], rtol=1e-4)
    for mirrored, single in zip(runs["mirrored"]["weights"], runs["default"]["weights"]):
        np.testing.assert_allclose(mirrored, single, rtol=1e-4, atol=1e-5)


def test_label_smoothing_raises_the_training_loss_floor(tmp_path, tiny_config, tiny_splits):
    config = tiny_config.override("train", epochs=2)
    train_and_evaluate(config, tmp_path / "plain", splits=tiny_splits, verbose=False)
    train_and_evaluate(config.override("train", label_smoothing=0.2), tmp_path / "smooth", splits=tiny_splits,
                       verbose=False)
    plain, smooth = read_metrics(tmp_path / "plain")[-1], read_metrics(tmp_path / "smooth")[-1]
    # Smoothed targets can never be matched exactly, so the loss stays well above the one-hot loss.
    assert smooth["train_loss"] > plain["train_loss"] + 0.1
    assert smooth["validation_accuracy"] > 0.9
