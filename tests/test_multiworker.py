"""Multi-worker training: two worker processes on localhost, configured by TF_CONFIG."""

import json
import os
import pathlib
import socket
import subprocess
import sys
import tempfile

import numpy as np
import pytest

from tests.conftest import write_idx_data_set
from tf_mlp.config import DataConfig
from tf_mlp.data import load_splits
from tf_mlp.training.runs import latest_checkpoint, read_evaluation, read_metrics


def _free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for sock in sockets:
        sock.bind(("127.0.0.1", 0))
    ports = [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports


def _train_command(idx_dir, data_dir, run_dir, strategy):
    return [
        sys.executable, "-m", "tf_mlp.cli", "train", "--data", "idx", "--source-dir", str(idx_dir),
        "--data-dir", str(data_dir), "--validation-size", "128", "--hidden", "32", "--epochs", "2",
        "--batch-size", "64", "--optimizer", "momentum", "--learning-rate", "0.05", "--l2", "0.0001",
        "--checkpoint-every", "10", "--strategy", strategy, "--run-dir", str(run_dir),
    ]


@pytest.mark.slow
def test_two_workers_match_one_worker_at_the_same_global_batch(tmp_path, tiny_splits):
    idx_dir = write_idx_data_set(tmp_path / "idx", tiny_splits)
    data_dir = tmp_path / "tfds"
    # Prepare the data set once, before two processes would race to do it.
    load_splits(DataConfig(name="idx", source_dir=str(idx_dir), data_dir=str(data_dir), validation_size=128))
    environment = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")

    worker_directories_before = set(pathlib.Path(tempfile.gettempdir()).glob("tf-mlp-worker-*"))
    # The one-worker run trains alongside the two workers (three processes start TensorFlow at once).
    single = subprocess.Popen(_train_command(idx_dir, data_dir, tmp_path / "single", "default"), env=environment,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    ports = _free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
    workers = []
    for index in range(2):
        task = {"cluster": cluster, "task": {"type": "worker", "index": index}}
        log = (tmp_path / f"worker-{index}.log").open("w")
        command = _train_command(idx_dir, data_dir, tmp_path / "multi", "multiworker")
        workers.append((subprocess.Popen(command, env=dict(environment, TF_CONFIG=json.dumps(task)), stdout=log,
                                         stderr=subprocess.STDOUT), log))
    _, single_errors = single.communicate(timeout=300)
    for process, log in workers:
        process.wait(timeout=300)
        log.close()
    assert single.returncode == 0, single_errors[-3000:]
    for index, (process, _) in enumerate(workers):
        assert process.returncode == 0, (tmp_path / f"worker-{index}.log").read_text()[-3000:]

    single_rows, multi_rows = read_metrics(tmp_path / "single"), read_metrics(tmp_path / "multi")
    assert [row["step"] for row in multi_rows] == [row["step"] for row in single_rows] == [8, 16]
    np.testing.assert_allclose([row["train_loss"] for row in multi_rows], [row["train_loss"] for row in single_rows],
                               rtol=1e-4)
    single_evaluation, multi_evaluation = read_evaluation(tmp_path / "single"), read_evaluation(tmp_path / "multi")
    assert abs(multi_evaluation["test_accuracy"] - single_evaluation["test_accuracy"]) <= 1 / 128
    # Chief-only outputs: the run directory has one set of checkpoints, and the
    # other worker's temporary checkpoint directory is gone.
    assert latest_checkpoint(tmp_path / "multi").endswith("ckpt-16")
    assert set(pathlib.Path(tempfile.gettempdir()).glob("tf-mlp-worker-*")) == worker_directories_before
    chief_log, other_log = (tmp_path / "worker-0.log").read_text(), (tmp_path / "worker-1.log").read_text()
    # Only the chief reports: its epochs and the final test accuracy, once.
    assert "epoch 1" in chief_log and chief_log.count("test accuracy:") == 1
    assert "epoch 1" not in other_log and "test accuracy" not in other_log
