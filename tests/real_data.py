"""One real Fashion-MNIST run per test session, shared by the real-data tests of every module.

Preparing Fashion-MNIST, training the default model on it and exporting it
take tens of seconds; each real-data test used to do all three for itself.
Now the `fashion_mnist_run` fixture (tests/conftest.py) does them once, as a
user would (the data prepared from Debian's files in a fresh TFDS directory
with the network forbidden, `tf-mlp train --epochs 1`, then the export),
and each test checks its own part of the result. Under pytest-xdist the
first worker to ask makes the run in the session's shared temporary
directory while the others wait on a file lock, then read it back (the
pytest-xdist docs' pattern for session fixtures made once).
"""

from __future__ import annotations

import dataclasses
import fcntl
import json
import pathlib
import subprocess

import numpy as np


@dataclasses.dataclass(frozen=True)
class FashionMnistRun:
    data_dir: pathlib.Path
    """The TFDS directory the data set was prepared in (pass it as --data-dir to read it again)."""
    splits: object
    """The DataSplits that load_splits gave while the network was forbidden."""
    run_dir: pathlib.Path
    train: subprocess.CompletedProcess
    """`tf-mlp train --epochs 1` of the default model (tests/commands.run_in_process)."""
    export: object
    """tf_mlp.export.export_run's result for run_dir (its path is version 1's directory)."""
    test_probabilities: np.ndarray
    """float32 [10000, 10]: serving_default of the export on the test split, in chunks of 1000, in this process."""


def must_not_connect(host, timeout=5.0):
    """Stands in for tf_mlp.data.sources._reachable where nothing may try the network."""
    raise AssertionError(f"tried to reach {host}")


def prepare_train_and_export(root: pathlib.Path) -> FashionMnistRun:
    import pytest
    import tensorflow as tf

    from tests import commands
    from tf_mlp import contract, data
    from tf_mlp.config import DataConfig
    from tf_mlp.data import sources
    from tf_mlp.export import export_run

    data_dir, run_dir = root / "tfds", root / "run"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sources, "_reachable", must_not_connect)
        splits = data.load_splits(DataConfig(data_dir=str(data_dir)))
    train = commands.run_in_process("train", "--epochs", 1, "--data-dir", data_dir, "--run-dir", run_dir)
    assert train.returncode == 0, train.stdout[-2000:] + train.stderr[-2000:]
    export = export_run(run_dir, root / "models")
    serve = tf.saved_model.load(str(export.path)).signatures[contract.SERVING_SIGNATURE]
    images = splits.test.images
    probabilities = np.concatenate([serve(images=tf.constant(images[start:start + 1000]))["probabilities"].numpy()
                                    for start in range(0, len(images), 1000)])
    return FashionMnistRun(data_dir, splits, run_dir, train, export, probabilities)


def shared_run(root: pathlib.Path) -> FashionMnistRun:
    """The run in `root`: made by the first process to get there, read back from its files by the others."""
    root.mkdir(parents=True, exist_ok=True)
    with open(root / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # the kernel releases it when the block ends or the worker dies
        if (root / "run.json").is_file():
            return _load(root)
        run = prepare_train_and_export(root)
        _save(run, root)
        return run


def _save(run: FashionMnistRun, root: pathlib.Path) -> None:
    from tf_mlp.files import write_atomically

    arrays = {f"{name}_{part}": getattr(getattr(run.splits, name), part)
              for name in ("train", "validation", "test") for part in ("images", "labels")}
    np.savez(root / "splits.npz", test_probabilities=run.test_probabilities, **arrays)
    splits = {field: getattr(run.splits, field) for field in ("class_names", "name", "skipped_files",
                                                               "dropped_overlap")}
    export = dataclasses.asdict(run.export) | {"path": str(run.export.path)}
    train = {"args": run.train.args, "returncode": run.train.returncode, "stdout": run.train.stdout,
             "stderr": run.train.stderr}
    document = {"data_dir": str(run.data_dir), "run_dir": str(run.run_dir), "splits": splits, "export": export,
                "train": train}
    # Written last, in one rename: its presence says every other file is complete.
    write_atomically(root / "run.json", json.dumps(document).encode())


def _load(root: pathlib.Path) -> FashionMnistRun:
    from tf_mlp.data.splits import DataSplits, Split
    from tf_mlp.export.exporter import ExportResult

    document = json.loads((root / "run.json").read_text())
    with np.load(root / "splits.npz") as arrays:
        parts = {name: Split(arrays[f"{name}_images"], arrays[f"{name}_labels"])
                 for name in ("train", "validation", "test")}
        probabilities = arrays["test_probabilities"]
    fields = document["splits"]
    splits = DataSplits(**parts, class_names=tuple(fields["class_names"]), name=fields["name"],
                        skipped_files=fields["skipped_files"], dropped_overlap=fields["dropped_overlap"])
    export = ExportResult(**document["export"] | {"path": pathlib.Path(document["export"]["path"])})
    return FashionMnistRun(pathlib.Path(document["data_dir"]), splits, pathlib.Path(document["run_dir"]),
                           subprocess.CompletedProcess(**document["train"]), export, probabilities)
