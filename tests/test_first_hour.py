"""A new user's first hour, through the real command.

Every mistake a user can make here must end in one line on stderr, exit
status 1, and a run directory left exactly as it was (files and their
modification times); TensorFlow's start-up notices must not show. What only
a fresh process shows (the start-up notices, Ctrl-C, a second process
holding the lock) runs the command in one; the other mistakes run it in this
process, with its stderr as a terminal would show it (tests/commands.py).
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time

import pytest

from tests import commands, synthetic
from tests.conftest import REPO_ROOT, TF_START_UP_MARKERS, write_idx_data_set
from tf_mlp import config, layout
from tf_mlp.training.runs import load_config, read_metrics, training_lock

# A fresh process starts TensorFlow: seconds each, tens on a busy machine.
pytestmark = pytest.mark.slow
run_cli = commands.run_subprocess
run_here = commands.run_in_process


def snapshot(directory) -> dict:
    """Every file under directory with its size and modification time.

    train.lock is left out: it names the pid of the last process that held
    it, which is its job.
    """
    return {
        str(path.relative_to(directory)): (path.stat().st_size, path.stat().st_mtime_ns)
        for path in sorted(directory.rglob("*")) if path.is_file() and path.name != layout.LOCK_FILE
    }


def assert_one_line_error(result, *fragments):
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1, result.stdout[-2000:] + result.stderr[-2000:]
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def tiny_train_options(idx_dir, data_dir, run_dir):
    return ["train", "--data", "idx", "--source-dir", idx_dir, "--data-dir", data_dir, "--validation-size", "128",
            "--hidden", "32", "--epochs", "2", "--batch-size", "32", "--run-dir", run_dir]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """(train options, run directory, the first run's result) of a tiny run trained once through the CLI."""
    root = tmp_path_factory.mktemp("first-hour")
    idx_dir = write_idx_data_set(root / "idx", synthetic.make_splits())
    options = tiny_train_options(idx_dir, root / "tfds", root / "run")
    result = run_cli(*options)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    return options, root / "run", result


@pytest.fixture
def run_copy(finished_run, tmp_path):
    """A private copy of the finished run (mtimes kept), and the train options pointing at it."""
    options, run_dir, _ = finished_run
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    return options[:-1] + [copy], copy


def test_first_train_prints_its_result_once_and_no_start_up_or_download_noise(finished_run):
    _, _, result = finished_run
    assert result.stdout.count("test accuracy") == 1, result.stdout
    assert "Downloading and preparing" not in result.stdout + result.stderr
    assert "preparing" in result.stdout and "once; later runs reuse it" in result.stdout
    for marker in TF_START_UP_MARKERS:
        assert marker not in result.stdout + result.stderr


def test_info_prints_no_tensorflow_start_up_lines_unless_verbose():
    quiet = run_cli("info", "--preset", "logistic")
    assert quiet.returncode == 0 and quiet.stderr == "", quiet.stderr
    assert "total by the lesson's formula: 7850" in quiet.stdout
    verbose = run_cli("--verbose", "info", "--preset", "logistic")
    assert verbose.returncode == 0 and "absl::InitializeLog" in verbose.stderr


def test_same_command_resumes_and_a_new_data_dir_is_allowed(run_copy, tmp_path):
    options, run_dir = run_copy
    result = run_here(*options)
    assert result.returncode == 0, result.stderr
    assert "resuming from" in result.stdout and "at step 32 of 32" in result.stdout
    moved = [tmp_path / "other-tfds" if str(option).endswith("tfds") else option for option in options]
    assert run_here(*moved).returncode == 0
    assert load_config(run_dir).data.data_dir == str(tmp_path / "other-tfds")


@pytest.mark.parametrize(
    "changes, expected",
    [
        (["--learning-rate", "0.01", "--epochs", "1"], ["train.epochs 2 -> 1", "train.learning_rate 0.001 -> 0.01"]),
        (["--optimizer", "sgd"], ["train.optimizer 'adam' -> 'sgd'"]),
    ],
)
def test_resuming_with_other_options_is_refused_before_anything_is_written(run_copy, changes, expected):
    options, run_dir = run_copy
    before = snapshot(run_dir)
    line = assert_one_line_error(run_here(*options, *changes), "trained with other options", *expected)
    assert "--config" in line  # says how to resume
    assert snapshot(run_dir) == before


def test_a_second_writer_is_refused_naming_the_holder(run_copy):
    options, run_dir = run_copy
    before = snapshot(run_dir)
    with training_lock(run_dir):  # this test process plays the first writer
        result = run_cli(*options)
    assert_one_line_error(result, f"{run_dir} is in use by another tf-mlp train (pid {os.getpid()})")
    assert snapshot(run_dir) == before


@pytest.mark.parametrize("command", ["train", "evaluate", "export"])
def test_a_truncated_checkpoint_is_a_one_line_error(run_copy, tmp_path, command):
    options, run_dir = run_copy
    data_file = next((run_dir / "checkpoints").glob("ckpt-32.data-*"))
    with data_file.open("r+b") as handle:
        handle.truncate(data_file.stat().st_size // 2)
    before = snapshot(run_dir)
    arguments = {"train": options, "evaluate": ["evaluate", run_dir],
                 "export": ["export", run_dir, "--export-base", tmp_path / "models"]}[command]
    assert_one_line_error(run_here(*arguments), f"{run_dir}/checkpoints/ckpt-32: checkpoint files are damaged",
                          "delete ckpt-32.*")
    assert snapshot(run_dir) == before
    assert not (tmp_path / "models").exists()


def test_a_corrupt_metrics_line_is_a_one_line_error_naming_file_and_line(run_copy):
    _, run_dir = run_copy
    with layout.metrics_path(run_dir).open("a") as metrics:
        metrics.write("{not json\n")
    before = snapshot(run_dir)
    assert_one_line_error(run_here("report", run_dir), f"{run_dir}/metrics.jsonl, line 3: not valid JSON")
    assert snapshot(run_dir) == before


def test_report_on_an_unfinished_run_says_how_far_it_got_and_how_to_finish(run_copy):
    _, run_dir = run_copy
    layout.evaluation_path(run_dir).unlink()
    before = snapshot(run_dir)
    assert_one_line_error(run_here("report", run_dir),
                          "training has not finished (2 of 2 epochs in metrics.jsonl, no evaluation.json)",
                          f"tf-mlp train --config {run_dir}/config.json --run-dir {run_dir}")
    assert snapshot(run_dir) == before


def _unwritable_directory(tmp_path):
    """A directory this process cannot create entries in (root ignores file modes; sysfs refuses even root)."""
    if os.geteuid() == 0:
        return pathlib.Path("/sys")
    directory = tmp_path / "read-only"
    directory.mkdir()
    directory.chmod(0o555)
    return directory


@pytest.mark.parametrize("place", ["run_dir", "run_dir_before_data", "data_dir", "report_dir"])
def test_unwritable_directories_are_one_line_errors(run_copy, tmp_path, place):
    options, run_dir = run_copy
    target = _unwritable_directory(tmp_path) / "tf-mlp-first-hour"
    before = snapshot(run_dir)
    if place == "run_dir":
        result = run_here(*options[:-1], target)
    elif place == "run_dir_before_data":
        # Data that would take long to prepare (here: fail to load) is not touched before the run directory is known
        # to be writable: the error names the run directory, not the missing source.
        missing_source = options[:-1]
        missing_source[missing_source.index("--source-dir") + 1] = tmp_path / "no-such-source"
        result = run_here(*missing_source, target)
    elif place == "data_dir":
        result = run_here(*[target if str(option).endswith("tfds") else option for option in options[:-1]],
                          tmp_path / "new-run")
    else:
        result = run_here("report", run_dir, "--output-dir", target)
    assert_one_line_error(result, str(target))
    assert snapshot(run_dir) == before
    assert not target.exists()


def test_reproduce_quick_look_never_writes_into_docs(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "RESULTS.md").write_text("shipped\n")
    before = snapshot(tmp_path / "docs")
    for output_dir in ("docs", tmp_path / "docs" / "results", REPO_ROOT / "docs"):
        result = run_here("reproduce", "--epochs", "1", "--output-dir", output_dir, cwd=tmp_path)
        assert_one_line_error(result, "holds the shipped results; a run with --epochs writes elsewhere")
    assert snapshot(tmp_path / "docs") == before


def test_ctrl_c_exits_130_and_prints_the_command_that_resumes(tmp_path):
    idx_dir = write_idx_data_set(tmp_path / "idx", synthetic.make_splits(train=4096, validation=128, test=128))
    options = tiny_train_options(idx_dir, tmp_path / "tfds", tmp_path / "run")
    options[options.index("--epochs") + 1] = "50"
    # With faulthandler on, a crash (a SIGSEGV was seen twice in full-suite runs, never when run alone) leaves
    # every thread's Python stack in stderr, which the assertion shows.
    process = subprocess.Popen([sys.executable, "-m", "tf_mlp.cli", *map(str, options)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "PYTHONFAULTHANDLER": "1"})
    deadline = time.monotonic() + 120
    while not read_metrics(tmp_path / "run") and time.monotonic() < deadline:  # training is under way
        assert process.poll() is None, process.communicate()
        time.sleep(0.1)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, (process.returncode, stderr)
    assert "Aborted!" not in stderr and "Traceback" not in stderr
    resume = [line for line in stderr.splitlines() if line.startswith("Interrupted. Resume with: tf-mlp train ")]
    assert resume and f"--run-dir {tmp_path / 'run'}" in resume[0], stderr


def test_ctrl_c_inside_a_class_being_created_still_exits_130():
    # Ctrl-C while a module imports, as TensorBoard's does at a run's first summary: a class's __set_name__
    # wraps the interrupt in a RuntimeError (which then escaped as a traceback, and the process died by SIGINT).
    # The signal is sent from inside the __set_name__, through code run from a string as dataclasses do.
    interrupt = "import os, signal\nos.kill(os.getpid(), signal.SIGINT)\nfor _ in range(10**7): pass\n"
    script = (
        "from tf_mlp import cli\n"
        "class Descriptor:\n"
        "    def __set_name__(self, owner, name):\n"
        f"        exec({interrupt!r})\n"
        "@cli.main.command(cls=cli._PlainCommand)\n"
        "def interrupted():\n"
        "    type('Owner', (), {'field': Descriptor()})\n"
        "cli.main()\n"
    )
    result = subprocess.run([sys.executable, "-c", script, "interrupted"], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 130, (result.returncode, result.stderr)
    assert result.stderr.splitlines()[-1] == "Interrupted.", result.stderr


def test_config_command_prints_the_resolved_config(tmp_path):
    result = run_cli("config", "--preset", "deep", "--epochs", "5", "--hidden", "64,32")
    assert result.returncode == 0 and result.stderr == "", result.stderr
    values = json.loads(result.stdout)
    assert values["train"]["epochs"] == 5 and values["model"]["hidden_units"] == [64, 32]
    assert values["train"]["decay_rate"] == config.preset("deep").train.decay_rate  # the rest is the deep preset's
    (tmp_path / "config.json").write_text(result.stdout)
    again = run_cli("config", "--config", tmp_path / "config.json")
    assert json.loads(again.stdout) == values  # the output is a config file


def test_retracing_warnings_are_dropped_and_tensorflows_objects_stay_out_of_garbage_collection():
    # tf-mlp reproduce trains model after model in one process, each with new tf.functions. The same process
    # shows what the start-up freezes: TensorFlow's objects at once, and at exit everything (this script's
    # handler runs after the start-up's own, as atexit runs them last in, first out).
    script = (
        "import atexit, gc\n"
        "atexit.register(lambda: print('at exit', gc.get_freeze_count(), len(gc.get_objects())))\n"
        "from tf_mlp import startup\n"
        "startup.import_tensorflow()\n"
        "assert gc.isenabled()\n"
        "print('after import', gc.get_freeze_count(), len(gc.get_objects()))\n"
        "import tensorflow as tf\n"
        "for _ in range(8):\n"
        "    tf.function(lambda x: x + 1)(tf.constant(1.0))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and result.stderr == "", result.stderr
    counts = {line.rsplit(" ", 2)[0]: [int(count) for count in line.split()[-2:]]
              for line in result.stdout.splitlines()}
    (frozen_at_import, collectable_at_import), (frozen_at_exit, collectable_at_exit) = (
        counts["after import"], counts["at exit"])
    assert frozen_at_import > 100_000 and collectable_at_import < 1_000, counts  # TensorFlow's modules, frozen
    assert frozen_at_exit > frozen_at_import and collectable_at_exit < 10, counts  # the tf.functions too
