import json
import os
import signal
import subprocess
import sys
import time

import pytest
import tensorflow as tf
from click.testing import CliRunner

from tests.commands import run_in_process
from tf_mlp.cli import main
from tf_mlp.config import preset
from tf_mlp.training.runs import load_config, read_evaluation, read_metrics


def _tiny_options(idx_dir, tmp_path, run_dir):
    return [
        "train", "--data", "idx", "--source-dir", str(idx_dir), "--data-dir", str(tmp_path / "tfds"),
        "--validation-size", "128", "--hidden", "32", "--epochs", "2", "--batch-size", "32",
        "--run-dir", str(run_dir),
    ]


def test_train_evaluate_and_report_through_the_cli(tmp_path, tiny_idx_dir):
    runner = CliRunner()
    run_dir = tmp_path / "run"
    result = runner.invoke(main, _tiny_options(tiny_idx_dir, tmp_path, run_dir))
    assert result.exit_code == 0, result.output
    assert "test accuracy:" in result.output
    config = load_config(run_dir)
    assert config.model.hidden_units == (32,) and config.train.optimizer == "adam"  # mlp preset + overrides

    result = runner.invoke(main, ["evaluate", str(run_dir), "--json"])
    assert result.exit_code == 0, result.output
    evaluation = json.loads(result.output)
    assert evaluation["accuracy"] == read_evaluation(run_dir)["test_accuracy"]
    assert len(evaluation["confusion_matrix"]) == 10

    result = runner.invoke(main, ["report", str(run_dir)])
    assert result.exit_code == 0, result.output
    for name in ("learning_curves.png", "confusion_matrix.png", "misclassified.png", "report.md"):
        assert (run_dir / "report" / name).stat().st_size > 0


def test_option_overrides_the_preset(tmp_path, tiny_idx_dir):
    run_dir = tmp_path / "run"
    options = _tiny_options(tiny_idx_dir, tmp_path, run_dir) + ["--preset", "logistic", "--epochs", "1"]
    result = CliRunner().invoke(main, options)
    assert result.exit_code == 0, result.output
    config = load_config(run_dir)
    assert config.model.hidden_units == (32,)  # --hidden wins over the preset's none
    assert config.train.optimizer == "sgd"  # the rest of the logistic preset stays


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["train", "--preset", "logistic", "--config", "x.json"], "Error: --preset and --config are alternatives"),
        (["train", "--config", "missing.json"], "Error: missing.json: config file not found"),
        (["train", "--epochs", "0"], "Error: train.epochs must be >= 1"),
        (["train", "--data", "idx", "--source-dir", "/nonexistent/dir"], "Error: "),
        (["evaluate", "/nonexistent/run"], "Error: /nonexistent/run: not a run directory"),
        (["report", "/nonexistent/run"], "Error: /nonexistent/run: not a run directory"),
        (["train", "--hidden", " "], "Error: --hidden must be positive comma-separated widths"),
        (["train", "--hidden", "0"], "Error: --hidden must be positive comma-separated widths"),
        (["train", "--hidden", "512,,256"], "Error: --hidden must be positive comma-separated widths"),
        (["train", "--early-stopping-patience", "-1"], "Error: train.early_stopping_patience must be >= 0"),
        (["train", "--learning-rate", "inf"], "Error: train.learning_rate must be a finite number > 0, got inf"),
        (["train", "--momentum", "-5"], "Error: train.momentum must be in [0, 1), got -5.0"),
        (["config", "--hidden", "0"], "Error: --hidden must be positive comma-separated widths"),
    ],
)
def test_bad_input_gives_one_line_error_and_non_zero_exit(arguments, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, arguments)
    assert result.exit_code == 1
    assert result.output.startswith(message)
    assert result.output.count("\n") == 1, result.output
    assert "Traceback" not in result.output


def test_only_none_means_no_hidden_layer():
    result = CliRunner().invoke(main, ["config", "--preset", "mlp", "--hidden", "None"])
    assert result.exit_code == 0 and json.loads(result.output)["model"]["hidden_units"] == []


def test_config_shows_a_preset_with_overrides():
    result = CliRunner().invoke(main, ["config", "--preset", "deep", "--learning-rate", "0.01"])
    assert result.exit_code == 0, result.output
    values = json.loads(result.output)
    deep = preset("deep")
    assert values["train"]["learning_rate"] == 0.01 and deep.train.learning_rate != 0.01  # the option wins
    assert values["model"]["hidden_units"] == list(deep.model.hidden_units)  # the rest is the preset's


def test_unknown_preset_is_a_usage_error():
    result = CliRunner().invoke(main, ["train", "--preset", "huge"])
    assert result.exit_code == 2 and "Invalid value for '--preset'" in result.output


def test_run_directory_without_checkpoint_is_refused(tmp_path, tiny_config):
    tiny_config.save(tmp_path / "config.json")
    result = CliRunner().invoke(main, ["evaluate", str(tmp_path)])
    assert result.exit_code == 1 and "no finished checkpoint" in result.output


def test_info_counts_parameters_by_the_lesson():
    result = CliRunner().invoke(main, ["info", "--preset", "logistic"])
    assert result.exit_code == 0
    assert "total by the lesson's formula: 7850   (Keras counts 7850)" in result.output
    result = CliRunner().invoke(main, ["info", "--preset", "mlp"])
    assert "total by the lesson's formula: 814090   (Keras counts 814090)" in result.output


def test_every_command_has_help():
    for command in ("train", "evaluate", "info", "report", "reproduce", "config"):
        result = CliRunner().invoke(main, [command, "--help"])
        assert result.exit_code == 0 and "Show this message and exit." in result.output


def _checkpoint_steps(run_dir):
    state = tf.train.get_checkpoint_state(str(run_dir / "checkpoints"))
    return [int(path.rsplit("-", 1)[1]) for path in state.all_model_checkpoint_paths] if state else []


@pytest.mark.slow
def test_sigkill_mid_epoch_then_the_same_command_resumes_and_finishes(tmp_path, tiny_splits):
    from tests import synthetic
    from tests.conftest import write_idx_data_set

    # Enough data that an epoch takes several checkpoints: 4096 examples, batch 32, 32 hidden units.
    splits = synthetic.make_splits(train=4096, validation=128, test=128)
    idx_dir = write_idx_data_set(tmp_path / "idx", splits)
    run_dir = tmp_path / "run"
    options = _tiny_options(idx_dir, tmp_path, run_dir) + ["--checkpoint-every", "10"]
    command = [sys.executable, "-m", "tf_mlp.cli", *options]
    environment = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    log_path = tmp_path / "first-run.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, env=environment, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not [step for step in _checkpoint_steps(run_dir) if step >= 30]:
            assert process.poll() is None, log_path.read_text()[-2000:]
            time.sleep(0.05)
        process.send_signal(signal.SIGKILL)
        process.wait()
    killed_at = max(_checkpoint_steps(run_dir))
    planned = 2 * (4096 // 32)
    assert 30 <= killed_at < planned, "killed mid-run"

    # The same command again; only the kill needed a process of its own.
    result = run_in_process(*options)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    resumed_line = [line for line in result.stdout.splitlines() if line.startswith("resuming from")]
    assert resumed_line and f"at step {killed_at} of {planned}" in resumed_line[0]  # not from step 0
    assert read_evaluation(run_dir)["steps"] == planned
    assert [row["step"] for row in read_metrics(run_dir)] == [128, 256]


@pytest.mark.real_data
def test_default_model_one_epoch_on_real_fashion_mnist(fashion_mnist_run):
    # `tf-mlp train --epochs 1 --data-dir ...` of the default model, run once per session for every real-data test.
    assert fashion_mnist_run.train.returncode == 0, fashion_mnist_run.train.stderr
    evaluation = read_evaluation(fashion_mnist_run.run_dir)
    assert evaluation["split_sizes"] == {"train": 55000, "validation": 5000, "test": 10000}
    assert evaluation["test_accuracy"] >= 0.84
