"""Batch inference on Apache Beam: the same file as the batch script, byte for byte, on Beam's local FnApiRunner
with two workers (processes and threads) and on the PortableRunner with Beam's own job service and SDK workers in
a separate worker pool (as Flink and Spark run them); error rows for bad images; one-line errors.

Byte identity is legitimate here: the same chunks (--chunk-size) meet the same TensorFlow kernels on the
same machine, so every row is computed the same way. Across machines or batch compositions, compare class
ids and probabilities within tf_mlp.contract.PROBABILITY_TOLERANCE instead.

Skipped where the `beam` extra is not installed; `make test` installs it.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
from click.testing import CliRunner

pytest.importorskip("apache_beam")

from tests import commands, serving_helpers, synthetic  # noqa: E402
from tests.conftest import png_bytes  # noqa: E402
from tf_mlp import batch, predict_cli  # noqa: E402
from tf_mlp import beam as tf_mlp_beam  # noqa: E402
from tf_mlp.server.process import free_port  # noqa: E402

COUNT = 120
CHUNK = 25
"""Five chunks of 25 and one of 20: several chunks for two workers, and a short last one."""
TWO_PROCESSES = ["--direct_num_workers=2", "--direct_running_mode=multi_processing"]
TWO_THREADS = ["--direct_num_workers=2", "--direct_running_mode=multi_threading"]
SERVICE_START_SECONDS = 120


def run_batch_script(*arguments):
    return CliRunner().invoke(predict_cli.batch_predict, ["--no-progress", *map(str, arguments)])


def run_beam_script(*arguments):
    return CliRunner().invoke(predict_cli.beam_predict, list(map(str, arguments)))


@pytest.fixture(scope="module")
def model_base(tmp_path_factory):
    """<tmp>/models/tf_mlp with version 1: the tiny exported model the server tests use."""
    return serving_helpers.model_base(tmp_path_factory.mktemp("beam"))


@pytest.fixture(scope="module")
def npy_inputs(tmp_path_factory):
    dataset = synthetic.make_split(COUNT, seed=31)
    directory = tmp_path_factory.mktemp("npy")
    np.save(directory / "images.npy", dataset.images)
    np.save(directory / "labels.npy", dataset.labels)
    return directory / "images.npy", directory / "labels.npy"


@pytest.mark.parametrize("output_name, workers", [
    pytest.param("out.csv", TWO_PROCESSES, marks=pytest.mark.slow),  # two worker processes start TensorFlow
    ("out.jsonl", TWO_THREADS),
])
def test_two_workers_write_the_batch_scripts_file_byte_for_byte(tmp_path, model_base, npy_inputs, output_name,
                                                                workers):
    images, labels = npy_inputs
    expected, output = tmp_path / f"batch-{output_name}", tmp_path / output_name
    reference = run_batch_script(images, "--labels", labels, "-o", expected, "--target", f"local:{model_base}",
                                 "--chunk-size", CHUNK)
    assert reference.exit_code == 0, reference.output
    result = run_beam_script(images, "--labels", labels, "-o", output, "--model-path", model_base, "--chunk-size",
                             CHUNK, *workers)
    assert result.exit_code == 0, result.output
    assert output.read_bytes() == expected.read_bytes()
    rows = batch.read_rows(output)
    assert [row["index"] for row in rows] == list(range(COUNT)) and all(row["error"] is None for row in rows)
    correct = sum(row["label"] == row["class_id"] for row in rows)
    assert result.output.startswith(f"wrote {COUNT} rows to {output}\nfailures     0\n")
    assert f"accuracy     {correct / COUNT:.4f} ({correct} of {COUNT} labelled)" in result.output


def test_bad_images_get_the_batch_scripts_error_rows(tmp_path, model_base):
    images = synthetic.make_split(6, seed=5).images
    folder = tmp_path / "images"
    for index, image in enumerate(images):
        (folder / str(index % 2)).mkdir(parents=True, exist_ok=True)
        (folder / str(index % 2) / f"{index}.png").write_bytes(png_bytes(image))
    (folder / "1" / "2b-corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n but the rest is junk")
    (folder / "0" / "4b-gone.png").symlink_to(tmp_path / "deleted.png")
    expected, output = tmp_path / "batch.csv", tmp_path / "beam.csv"
    # Chunks of 4: the corrupt image shares its chunk, which the model refuses and which is halved to find it.
    reference = run_batch_script(folder, "-o", expected, "--target", f"local:{model_base}", "--chunk-size", 4)
    assert reference.exit_code == predict_cli.EXIT_FAILED_INPUTS, reference.output
    result = run_beam_script(folder, "-o", output, "--model-path", model_base, "--chunk-size", 4, *TWO_THREADS)
    assert result.exit_code == predict_cli.EXIT_FAILED_INPUTS, result.output
    assert output.read_bytes() == expected.read_bytes()
    errors = {row["id"]: row["error"] for row in batch.read_rows(output) if row["error"]}
    assert set(errors) == {"1/2b-corrupt.png", "0/4b-gone.png"}
    assert errors["0/4b-gone.png"] == "cannot read 0/4b-gone.png: No such file or directory"
    assert errors["1/2b-corrupt.png"].startswith(f"local:{model_base}: INVALID_ARGUMENT: ")
    assert "failures     2" in result.output and "accuracy     " in result.output


def test_a_model_url_is_copied_to_each_worker_and_staged_inputs_are_deleted(tmp_path, model_base, npy_inputs):
    images, _ = npy_inputs
    expected, output = tmp_path / "batch.csv", tmp_path / "beam.csv"
    staging = tmp_path / "temp-location"
    staging.mkdir()
    reference = run_batch_script(images, "-o", expected, "--target", f"local:{model_base}")
    assert reference.exit_code == 0, reference.output
    summary = tf_mlp_beam.run(str(images), str(output), f"file://{model_base}/1",
                              [f"--temp_location={staging}"])
    assert output.read_bytes() == expected.read_bytes()
    assert (summary.rows, summary.failures, summary.labelled) == (COUNT, 0, COUNT)  # labels.npy found beside
    assert list(staging.iterdir()) == []


def test_with_no_runner_named_the_job_runs_locally_without_fetching_prism(tmp_path, model_base, npy_inputs,
                                                                         monkeypatch):
    # Beam's default DirectRunner would first download its Prism runner from GitHub and run the job there.
    from apache_beam.runners.portability import prism_runner

    tried = []
    monkeypatch.setattr(prism_runner.PrismRunner, "run_pipeline", lambda *arguments: tried.append(arguments))
    images, labels = npy_inputs
    result = run_beam_script(images, "--labels", labels, "-o", tmp_path / "out.csv", "--model-path", model_base)
    assert result.exit_code == 0, result.output
    assert tried == [] and result.output.startswith(f"wrote {COUNT} rows to ")


def test_a_pipeline_that_lost_a_row_writes_nothing(tmp_path):
    rows = [{"index": index} for index in (0, 1, 3)]
    with pytest.raises(tf_mlp_beam.MissingRowsError, match="gave 3 rows for 4 inputs"):
        tf_mlp_beam.pipeline.write_rows(rows, str(tmp_path / "out.csv"), "csv", 4)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("arguments, message", [
    (["{missing}/images.npy", "-o", "{tmp}/out.csv", "--model-path", "{model}"], "no such file or directory"),
    (["{images}", "-o", "{tmp}/out.txt", "--model-path", "{model}"], "cannot tell the output format"),
    (["{images}", "-o", "{missing}/out.csv", "--model-path", "{model}"], "no such directory for the output"),
    (["{images}", "-o", "{tmp}/out.csv", "--model-path", "{missing}"], "does not exist"),
    (["{images}", "-o", "{tmp}/out.csv", "--model-path", "{model}", "--version", "7"], "no version 7 of model"),
    (["{images}", "-o", "{tmp}/out.csv", "--model-path", "file://{missing}"], "no saved_model.pb there"),
])
def test_bad_options_are_one_line_errors_before_the_job(tmp_path, model_base, npy_inputs, arguments, message):
    values = {"missing": tmp_path / "missing", "tmp": tmp_path, "model": model_base, "images": npy_inputs[0]}
    result = run_beam_script(*[argument.format(**values) for argument in arguments])
    assert result.exit_code == 1, result.output
    assert result.output.startswith("Error: ") and message in result.output
    assert result.output.count("\n") == 1
    assert not (tmp_path / "out.csv").exists()


def test_no_images_is_an_error_not_an_empty_job(tmp_path, model_base):
    np.save(tmp_path / "empty.npy", np.zeros((0, 28, 28), np.uint8))
    result = run_beam_script(tmp_path / "empty.npy", "-o", tmp_path / "out.csv", "--model-path", model_base)
    assert result.exit_code == 1 and result.output == f"Error: {tmp_path / 'empty.npy'}: no images to classify\n"


def test_worker_copy_of_a_model_url_is_a_complete_version(tmp_path, model_base):
    from tf_mlp.beam import handler

    # __wrapped__: past the per-process cache, so this copy is this test's own to delete.
    local = pathlib.Path(handler.stage_locally.__wrapped__(f"file://{model_base}/1"))
    copied = sorted(path.relative_to(local).as_posix() for path in local.rglob("*") if path.is_file())
    original = sorted(path.relative_to(model_base / "1").as_posix()
                      for path in (model_base / "1").rglob("*") if path.is_file())
    assert copied == original and "saved_model.pb" in copied
    shutil.rmtree(local)


@pytest.mark.parametrize("output, message", [
    pytest.param("read-only/out.csv", "Error: read-only: cannot create files there for the output out.csv "
                                      "(Permission denied)", marks=pytest.mark.slow),  # a process, as root
    ("file.txt/out.csv", "Error: file.txt is not a directory; cannot write the output out.csv there"),
])
def test_an_unwritable_output_fails_before_the_job_runs(tmp_path, npy_inputs, output, message):
    from tests.test_batch import _as_unprivileged, _snapshot, _without_tensorflow_noise

    (tmp_path / "file.txt").write_text("a file\n")
    (tmp_path / "read-only").mkdir()
    (tmp_path / "no-model").mkdir()  # an error about the model would mean the output was checked after it
    os.chmod(tmp_path / "read-only", 0o555)
    try:
        before = _snapshot(tmp_path)
        arguments = ["beam-predict", str(npy_inputs[0]), "-o", output, "--model-path", "no-model"]
        if output.startswith("read-only/") and os.geteuid() == 0:
            # Root writes anywhere: a process without that capability is needed to see the refusal.
            command = _as_unprivileged([*commands.COMMAND, *arguments])
            result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=120)
        else:
            result = commands.run_in_process(*arguments, cwd=tmp_path)
        assert result.returncode == 1, result.stderr
        assert _without_tensorflow_noise(result.stderr) == [message]
        assert result.stdout == "" and _snapshot(tmp_path) == before
    finally:
        os.chmod(tmp_path / "read-only", 0o755)


def test_polarity_is_applied_as_the_batch_command_applies_it(tmp_path, model_base, npy_inputs):
    images, _ = npy_inputs
    expected, output = tmp_path / "expected.csv", tmp_path / "out.csv"
    reference = run_batch_script(images, "-o", expected, "--target", f"local:{model_base}", "--polarity", "invert")
    assert reference.exit_code == 0, reference.output
    result = run_beam_script(images, "-o", output, "--model-path", model_base, "--polarity", "invert", *TWO_THREADS)
    assert result.exit_code == 0, result.output
    assert output.read_bytes() == expected.read_bytes()
    plain = tmp_path / "plain.csv"
    assert run_batch_script(images, "-o", plain, "--target", f"local:{model_base}").exit_code == 0
    assert plain.read_bytes() != expected.read_bytes()


def test_importing_the_beam_package_prints_no_optional_client_warning():
    # Beam's BigQuery package logs "apitools not found" on import; tf-mlp never uses BigQuery.
    # TF_CPP_MIN_LOG_LEVEL only quiets TensorFlow's C++ lines, so anything left comes from Python logging.
    result = subprocess.run([sys.executable, "-c", "import logging, tf_mlp.beam; logging.warning('still logging')"],
                            capture_output=True, text=True, timeout=120,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert result.returncode == 0, result.stderr
    assert "apitools" not in result.stderr
    assert "WARNING:root:still logging" in result.stderr  # other warnings still reach the user


class _BeamService:
    """One of Beam's own services (`python -m MODULE ARGS`) in its own process and working directory."""

    def __init__(self, module: str, port: int, directory: pathlib.Path, *arguments: str):
        self.port = port
        self.log_path = directory / f"{module.rsplit('.', 1)[-1]}.log"
        # The worker pool starts each SDK worker as `python -c ...` found on PATH: put this interpreter's first,
        # as Beam's SDK container has its own Python (with tf-mlp installed) on PATH.
        path = f"{pathlib.Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen([sys.executable, "-m", module, *arguments], cwd=directory, stdout=log,
                                            stderr=subprocess.STDOUT, env={**os.environ, "PATH": path})

    def wait_until_listening(self) -> None:
        deadline = time.monotonic() + SERVICE_START_SECONDS
        while True:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"{self.log_path.stem} did not start: {self.log()[-2000:]}")
            time.sleep(0.1)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        # SIGINT: the worker pool's clean stop (it stops its SDK workers); SIGKILL if it does not exit.
        if self.process.poll() is None:
            self.process.send_signal(2)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@pytest.fixture(scope="module")
def portable_runner(tmp_path_factory):
    """(pipeline options, worker pool) for Beam's Python job service with SDK workers in a separate worker pool.

    Each service runs in its own directory, as on a cluster, where the launcher's working directory (and any
    relative path in it) does not exist.
    """
    pool_port, job_port = free_port(), free_port()
    pool = _BeamService("apache_beam.runners.worker.worker_pool_main", pool_port,
                        tmp_path_factory.mktemp("worker-pool"), f"--service_port={pool_port}")
    job_service = _BeamService("apache_beam.runners.portability.local_job_service_main", job_port,
                               tmp_path_factory.mktemp("job-service"), f"--port={job_port}")
    try:
        pool.wait_until_listening()
        job_service.wait_until_listening()
        yield ["--runner=PortableRunner", f"--job_endpoint=localhost:{job_port}", "--environment_type=EXTERNAL",
                f"--environment_config=localhost:{pool_port}"], pool
    finally:
        pool.stop()
        job_service.stop()


@pytest.mark.slow
def test_the_portable_runner_with_a_worker_pool_writes_the_batch_scripts_file(tmp_path, model_base, npy_inputs,
                                                                              portable_runner, monkeypatch):
    options, pool = portable_runner
    images, labels = npy_inputs
    expected, output = tmp_path / "batch.csv", tmp_path / "portable.csv"
    reference = run_batch_script(images, "--labels", labels, "-o", expected, "--target", f"local:{model_base}",
                                 "--chunk-size", CHUNK)
    assert reference.exit_code == 0, reference.output
    # A model path relative to the launcher's directory: the workers, elsewhere, must still find the model.
    monkeypatch.chdir(model_base.parent.parent)
    result = run_beam_script(images, "--labels", labels, "-o", output, "--model-path", "models", "--chunk-size",
                             CHUNK, *options)
    assert result.exit_code == 0, result.output
    assert output.read_bytes() == expected.read_bytes()
    assert result.output.startswith(f"wrote {COUNT} rows to {output}\nfailures     0\n")
    assert "Starting worker with command" in pool.log()  # the rows came from an SDK worker the pool started


def test_a_failed_job_is_a_one_line_error(tmp_path, model_base, npy_inputs, monkeypatch):
    from tf_mlp.client.errors import NotFoundError

    def load_model(handler):
        raise NotFoundError(f"local:{handler.model_path}", "not found", "the model vanished from this worker")

    monkeypatch.setattr(tf_mlp_beam.SavedModelHandler, "load_model", load_model)
    result = run_beam_script(npy_inputs[0], "-o", tmp_path / "out.csv", "--model-path", model_base, *TWO_THREADS)
    assert result.exit_code == 1
    # Beam's log of the worker's failure comes first (a cluster's worker log); the command's error is one line.
    error = result.output.strip().splitlines()[-1]
    assert error.startswith("Error: the Beam job failed: ") and error.endswith("the model vanished from this worker")
    assert not (tmp_path / "out.csv").exists()
