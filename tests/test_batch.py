"""Batch inference: every input and output format, identical files over REST, gRPC and in-process,
nothing lost under failures (a flaky proxy, a server outage, SIGKILL and --resume), one-line errors.

The reference for every comparison is the SavedModel called directly on the
same pixels, all at once, in another process with the other oneDNN setting
(tests/predictions.py): the batch tool's chunks must give its class ids, and
its probabilities within tests.predictions.PROBABILITY_TOLERANCE, as they
would on another machine.
"""

from __future__ import annotations

import json
import os
import pathlib
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from click.testing import CliRunner

from tests import commands, serving_helpers, synthetic
from tests.conftest import free_port, png_bytes
from tests.flaky_proxy import FlakyProxy
from tests.predictions import assert_no_near_ties, assert_predictions_match, near_ties, other_kernels_reference
from tf_mlp import batch, client, predict_cli
from tf_mlp.batch.journal import Journal
from tf_mlp.data import idx
from tf_mlp.errors import ConfigError
from tf_mlp.training.runs import read_evaluation

BATCH_COMMAND = [sys.executable, "-m", "tf_mlp.cli", "batch-predict"]
FAST_RETRIES = client.RetryPolicy(max_attempts=6, initial_backoff=0.01, max_backoff=0.05)
COUNT = 120



def run_script(*arguments):
    return CliRunner().invoke(predict_cli.batch_predict, ["--no-progress", *map(str, arguments)])


@pytest.fixture(scope="module")
def dataset():
    return synthetic.make_split(COUNT, seed=21)


@pytest.fixture(scope="module")
def local_model(targets):
    with client.connect(targets["local"]) as model:
        yield model


@pytest.fixture(scope="module")
def reference(dataset):
    """(class ids [N], float32 probabilities [N, K]): the SavedModel called on all images at once, in another
    process, with the other kernels."""
    class_ids, probabilities = other_kernels_reference(serving_helpers.exported_version_dir(), dataset.images)
    assert_no_near_ties(probabilities)  # the rows' class ids can be compared exactly
    return class_ids, probabilities


@pytest.fixture(scope="module")
def npy_inputs(tmp_path_factory, dataset):
    directory = tmp_path_factory.mktemp("npy")
    np.save(directory / "images.npy", dataset.images)
    np.save(directory / "labels.npy", dataset.labels)
    return directory / "images.npy", directory / "labels.npy"


def assert_rows_match_reference(rows, reference, dataset, order=None):
    """One row per input, in input order, each with the reference prediction (order maps row -> dataset index)."""
    class_ids, probabilities = reference
    order = list(range(len(rows))) if order is None else order
    assert [row["index"] for row in rows] == list(range(len(rows)))
    assert all(row["error"] is None for row in rows), rows
    assert [row["class_name"] for row in rows] == [str(row["class_id"]) for row in rows]
    assert_predictions_match([row["class_id"] for row in rows], [row["probability"] for row in rows],
                             class_ids[order], probabilities[order, class_ids[order]])


# ---- inputs ---------------------------------------------------------------------------------------------------


def _write_format(kind: str, directory: pathlib.Path, dataset) -> tuple[list, dict, list | None]:
    """(script arguments naming the inputs, open_inputs keywords, dataset index of each input or None)."""
    if kind == "idx-gz-pair":
        idx.write_idx(directory / "t10k-images-idx3-ubyte.gz", dataset.images)
        idx.write_idx(directory / "t10k-labels-idx1-ubyte.gz", dataset.labels.astype(np.uint8))
        return [directory / "t10k-images-idx3-ubyte.gz"], {}, None
    if kind == "idx-raw-labels-option":
        idx.write_idx(directory / "pixels.idx3", dataset.images)
        idx.write_idx(directory / "truth.idx1", dataset.labels.astype(np.uint8))
        return [directory / "pixels.idx3", "--labels", directory / "truth.idx1"], {
            "labels": str(directory / "truth.idx1")}, None
    if kind == "npz":
        np.savez(directory / "arrays.npz", x_test=dataset.images.reshape(-1, 784), y_test=dataset.labels)
        return [directory / "arrays.npz"], {}, None
    if kind == "directory":
        for index, (image, label) in enumerate(zip(dataset.images, dataset.labels)):
            (directory / str(label)).mkdir(exist_ok=True)
            (directory / str(label) / f"{index:04d}.png").write_bytes(png_bytes(image))
        paths = sorted(directory.rglob("*.png"), key=lambda path: path.relative_to(directory).as_posix())
        return [directory], {}, [int(path.stem) for path in paths]
    raise ValueError(kind)


@pytest.mark.parametrize("kind", ["idx-gz-pair", "idx-raw-labels-option", "npz", "directory"])
def test_every_input_format_gives_the_reference_predictions_and_labels(kind, tmp_path, dataset, reference,
                                                                       local_model):
    arguments, keywords, order = _write_format(kind, tmp_path, dataset)
    inputs = batch.open_inputs(str(arguments[0]), **keywords)
    assert len(inputs) == COUNT
    # Chunks of 37 (three and a short one), against a reference computed all at once.
    summary = batch.run_batch(local_model, inputs, tmp_path / "out.csv", progress=False, chunk_size=37)
    rows = batch.read_rows(tmp_path / "out.csv")
    assert_rows_match_reference(rows, reference, dataset, order)
    indices = order or list(range(COUNT))
    assert [row["label"] for row in rows] == [int(dataset.labels[index]) for index in indices]
    assert [row["label_name"] for row in rows] == [str(dataset.labels[index]) for index in indices]
    if kind == "directory":
        assert rows[0]["id"] == f"{dataset.labels[indices[0]]}/{indices[0]:04d}.png"
    expected_accuracy = float(np.mean(reference[0][indices] == dataset.labels[indices]))
    assert summary.accuracy == pytest.approx(expected_accuracy) and summary.labelled == COUNT


def test_npy_and_idx_files_without_labels(tmp_path, dataset, reference, local_model, npy_inputs):
    # images.npy finds labels.npy beside it; these names have no sibling to find.
    assert batch.open_inputs(str(npy_inputs[0])).label_ids == dataset.labels.tolist()
    np.save(tmp_path / "pixels.npy", dataset.images)
    idx.write_idx(tmp_path / "only-pixels.idx3", dataset.images)
    for path in (tmp_path / "pixels.npy", tmp_path / "only-pixels.idx3"):
        inputs = batch.open_inputs(str(path))
        assert inputs.label_ids == [None] * COUNT
        summary = batch.run_batch(local_model, inputs, tmp_path / "out.jsonl", progress=False)
        rows = batch.read_rows(tmp_path / "out.jsonl")
        assert_rows_match_reference(rows, reference, dataset)
        assert all(row["label"] is None for row in rows) and summary.accuracy is None and summary.confusion is None


def test_tfds_split_of_a_project_data_set(tmp_path):
    source = tmp_path / "mnist-idx"
    source.mkdir()
    train, test = synthetic.make_split(40, seed=1), synthetic.make_split(24, seed=2)
    for prefix, split in (("train", train), ("t10k", test)):
        idx.write_idx(source / f"{prefix}-images-idx3-ubyte.gz", split.images)
        idx.write_idx(source / f"{prefix}-labels-idx1-ubyte.gz", split.labels.astype(np.uint8))
    inputs = batch.open_inputs("tfds:mnist/test", source_dir=str(source), data_dir=str(tmp_path / "tfds"))
    assert inputs.description == "tfds:mnist/test" and len(inputs) == 24
    np.testing.assert_array_equal(inputs.images, test.images)
    assert inputs.label_ids == test.labels.tolist()
    assert inputs.label_names == [str(label) for label in test.labels]


@pytest.mark.parametrize("spec, keywords, message", [
    ("/no/such/inputs.npy", {}, "no such file or directory"),
    ("tfds:imagenet/test", {}, "unknown data set 'imagenet'"),
    ("tfds:mnist/dev", {}, "unknown split 'dev'"),
])
def test_unusable_inputs_are_one_line_errors(spec, keywords, message):
    with pytest.raises(Exception, match=message) as caught:
        batch.open_inputs(spec, **keywords)
    assert "\n" not in str(caught.value)


def test_wrong_arrays_are_refused(tmp_path):
    np.save(tmp_path / "floats.npy", np.zeros((3, 28, 28), np.float32))
    with pytest.raises(Exception, match="expected uint8 pixels"):
        batch.open_inputs(str(tmp_path / "floats.npy"))
    np.save(tmp_path / "small.npy", np.zeros((3, 20, 20), np.uint8))
    with pytest.raises(Exception, match=r"expected images of shape \[N, 28, 28\]"):
        batch.open_inputs(str(tmp_path / "small.npy"))


# ---- outputs and back ends ---------------------------------------------------------------------------------


def test_rest_grpc_and_local_write_identical_csv_and_jsonl(tmp_path, targets, npy_inputs, dataset, reference):
    images, labels = npy_inputs
    contents = {}
    for name, target in targets.items():
        for output_format in ("csv", "jsonl"):
            output = tmp_path / f"{name}.{output_format}"
            result = run_script(images, "--labels", labels, "-o", output, "--target", target, "--chunk-size", 37,
                                "--concurrency", 2)
            assert result.exit_code == 0, result.output
            contents[name, output_format] = output.read_bytes()
    # Byte for byte: the same chunks through the same kernels (the servers run in this process, batching off), so
    # each probability is the same float32 on every path. The reference, computed otherwise, gets a tolerance.
    for name in targets:
        assert contents[name, "csv"] == contents["local", "csv"], name
        assert contents[name, "jsonl"] == contents["local", "jsonl"], name
    csv_rows = batch.read_rows(tmp_path / "rest.csv")
    assert csv_rows == batch.read_rows(tmp_path / "rest.jsonl")
    assert_rows_match_reference(csv_rows, reference, dataset)
    header = b"index,id,label,label_name,class_id,class_name,probability,error"
    assert contents["local", "csv"].splitlines()[0] == header


def test_summary_is_printed_and_written_as_json(tmp_path, targets, npy_inputs, dataset, reference):
    images, labels = npy_inputs
    summary_path = tmp_path / "summary.json"
    result = run_script(images, "--labels", labels, "-o", tmp_path / "out.csv", "--target", targets["rest"],
                        "--chunk-size", 50, "--summary", summary_path)
    assert result.exit_code == 0, result.output
    summary = json.loads(summary_path.read_text())
    correct = int(np.sum(reference[0] == dataset.labels))
    assert (summary["inputs"], summary["failures"], summary["labelled"], summary["correct"]) == (COUNT, 0, COUNT,
                                                                                                 correct)
    assert summary["accuracy"] == pytest.approx(correct / COUNT)
    matrix = np.array(summary["confusion"]["matrix"])
    assert matrix.sum() == COUNT and np.trace(matrix) == correct
    assert summary["confusion"]["classes"] == [str(index) for index in range(10)]
    assert summary["requests"] == 3 and set(summary["latency_ms"]) == {"p50", "p90", "p99", "max"}
    assert f"accuracy     {correct / COUNT:.4f} ({correct} of {COUNT} labelled)" in result.output
    assert "confusion matrix" in result.output and "images/s" in result.output


# ---- nothing lost ----------------------------------------------------------------------------------------


def test_flaky_server_still_gives_every_row_exactly_once(tmp_path, server, npy_inputs, dataset, reference):
    plan = {3: "503", 5: "drop", 6: "429", 8: "drop", 9: "503", 12: "drop"}
    inputs = batch.open_inputs(str(npy_inputs[0]))
    with FlakyProxy(server.rest_url, lambda number, request: plan.get(number, "pass")) as proxy:
        with client.connect(proxy.url, retry=FAST_RETRIES, max_connections=3, preferred_label=None) as model:
            summary = batch.run_batch(model, inputs, tmp_path / "out.jsonl", chunk_size=10, concurrency=3,
                                      progress=False)
    assert proxy.counts["503"] + proxy.counts["429"] == 3 and proxy.counts["drop"] == 3
    assert summary.client["retries"] == 6 and summary.failures == 0
    assert_rows_match_reference(batch.read_rows(tmp_path / "out.jsonl"), reference, dataset)


def test_unreadable_and_corrupt_images_get_error_rows_and_the_others_are_classified(
        tmp_path, targets, dataset, reference):
    for index in range(6):
        (tmp_path / "images").mkdir(exist_ok=True)
        (tmp_path / "images" / f"{index}.png").write_bytes(png_bytes(dataset.images[index]))
    (tmp_path / "images" / "2b-corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n but the rest is junk")
    (tmp_path / "images" / "4b-gone.png").symlink_to(tmp_path / "deleted.png")
    output = tmp_path / "out.csv"
    result = run_script(tmp_path / "images", "-o", output, "--target", targets["rest"], "--chunk-size", 4)
    assert result.exit_code == predict_cli.EXIT_FAILED_INPUTS, result.output
    rows = batch.read_rows(output)
    assert [row["id"] for row in rows] == ["0.png", "1.png", "2.png", "2b-corrupt.png", "3.png", "4.png",
                                           "4b-gone.png", "5.png"]
    errors = {row["id"]: row["error"] for row in rows if row["error"]}
    assert set(errors) == {"2b-corrupt.png", "4b-gone.png"}
    assert "HTTP 400" in errors["2b-corrupt.png"]
    assert errors["4b-gone.png"] == "cannot read 4b-gone.png: No such file or directory"
    good = [row for row in rows if not row["error"]]
    assert [row["class_id"] for row in good] == reference[0][:6].tolist()
    assert "failures     2" in result.output


def test_missing_server_is_a_one_line_error_and_writes_nothing(tmp_path, npy_inputs):
    port = free_port()
    output = tmp_path / "out.csv"
    result = run_script(npy_inputs[0], "-o", output, "--target", f"rest://127.0.0.1:{port}")
    assert result.exit_code == 1
    # The first request gets a few attempts only (not the minute a running job spends riding out a restart).
    assert result.output.startswith(f"Error: rest://127.0.0.1:{port}: cannot connect (is the server running?) "
                                    f"(after {batch.STARTUP_ATTEMPTS} attempts)")
    assert result.output.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


def test_unknown_model_surfaces_the_404_message(tmp_path, targets, npy_inputs):
    result = run_script(npy_inputs[0], "-o", tmp_path / "out.csv", "--target", targets["grpc"], "--model", "nope")
    assert result.exit_code == 1
    assert result.output == f"Error: {targets['grpc']}: NOT_FOUND: Servable not found for request: Latest(nope)\n"
    assert list(tmp_path.iterdir()) == []


def test_server_outage_stops_the_run_and_resume_finishes_it(tmp_path, server, npy_inputs, dataset, reference):
    inputs = batch.open_inputs(str(npy_inputs[0]))
    output = tmp_path / "out.csv"
    state = {"down": False}
    # Request 1 asks for the class names; requests 2-4 are chunks; then the server "goes down". (The clients
    # address the latest version outright: asking whether the server has the stable label would be one more.)
    with FlakyProxy(server.rest_url, lambda number, request: "503" if state["down"] or number > 4 else "pass") as proxy:
        retry = client.RetryPolicy(max_attempts=2, initial_backoff=0.01)
        with client.connect(proxy.url, retry=retry, preferred_label=None) as model:
            with pytest.raises(batch.BatchAborted) as caught:
                batch.run_batch(model, inputs, output, chunk_size=20, concurrency=1, progress=False)
        message = str(caught.value)
        assert "HTTP 503 (after 2 attempts)" in message and "60 of 120 inputs are saved" in message
        assert message.endswith("rerun with --resume to continue")
        assert not output.exists() and batch.journal_path(output).exists()

        with client.connect(proxy.url, retry=retry, preferred_label=None) as model:
            with pytest.raises(ConfigError, match="pass --resume to continue it or --restart"):
                batch.run_batch(model, inputs, output, progress=False)
    with client.connect(f"rest://127.0.0.1:{server.rest_port}") as model:
        summary = batch.run_batch(model, inputs, output, chunk_size=20, resume=True, progress=False)
    assert (summary.resumed, summary.processed, summary.inputs) == (60, 60, COUNT)
    assert_rows_match_reference(batch.read_rows(output), reference, dataset)
    assert not batch.journal_path(output).exists()


def test_keep_going_turns_an_outage_into_error_rows(tmp_path, server, npy_inputs, reference):
    inputs = batch.open_inputs(str(npy_inputs[0]))
    with FlakyProxy(server.rest_url, lambda number, request: "503" if number > 2 else "pass") as proxy:
        with client.connect(proxy.url, retry=client.RetryPolicy(max_attempts=2, initial_backoff=0.01),
                            preferred_label=None) as model:
            summary = batch.run_batch(model, inputs, tmp_path / "out.csv", chunk_size=40, concurrency=1,
                                      keep_going=True, progress=False)
    rows = batch.read_rows(tmp_path / "out.csv")
    assert [row["class_id"] for row in rows[:40]] == reference[0][:40].tolist()
    assert all("HTTP 503 (after 2 attempts)" in row["error"] for row in rows[40:])
    assert summary.failures == 80 and len(rows) == COUNT


def test_a_server_restart_during_the_run_loses_nothing(tmp_path, dataset, reference):
    base = serving_helpers.model_base(tmp_path)
    server = serving_helpers.start_server(model_base_path=str(base))
    ports = {"port": server.grpc_port, "rest_api_port": server.rest_port}
    # Many one-image chunks make a run long enough to stop the server in its middle.
    inputs = batch.open_inputs(str(_tiled(tmp_path, dataset, times=5)))
    output = tmp_path / "out.csv"
    outcome = {}

    def run():
        with client.connect(f"rest://127.0.0.1:{server.rest_port}") as model:  # the default, patient policy
            outcome["summary"] = batch.run_batch(model, inputs, output, chunk_size=1, concurrency=1, progress=False)

    worker = threading.Thread(target=run)
    worker.start()
    try:
        journal = batch.journal_path(output)
        serving_helpers.wait_for(lambda: journal.exists() and journal.read_bytes().count(b"\n") > 20,
                                 message="the run to journal 20 chunks")
        server.stop()
        time.sleep(1.0)  # down for a while: requests are refused and retried
        server = serving_helpers.start_server(model_base_path=str(base), **ports)
        worker.join(timeout=120)
    finally:
        server.stop()
    summary = outcome["summary"]
    assert summary.failures == 0 and summary.client["retries"] > 0
    rows = batch.read_rows(output)
    assert len(rows) == 5 * COUNT
    assert_rows_match_reference(rows, reference, dataset, order=[index % COUNT for index in range(5 * COUNT)])


def _tiled(directory: pathlib.Path, dataset, times: int) -> pathlib.Path:
    path = directory / "tiled.npy"
    np.save(path, np.tile(dataset.images, (times, 1, 1)))
    return path


@pytest.mark.slow
def test_resume_after_sigkill_has_no_gaps_and_no_duplicates(tmp_path, server, npy_inputs, dataset, reference):
    images, labels = npy_inputs
    output = tmp_path / "out.csv"
    output.write_text("a previous run's complete output\n")
    journal = batch.journal_path(output)
    with FlakyProxy(server.rest_url, lambda number, request: "slow", delay=0.1) as proxy:
        process = subprocess.Popen(
            [*BATCH_COMMAND, str(images), "--labels", str(labels), "-o", str(output), "--target",
             proxy.url, "--chunk-size", "5", "--concurrency", "1", "--no-progress"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
        try:
            deadline = time.monotonic() + 60
            # Killed once at least four chunks are journaled, while later ones are still being answered.
            while not (journal.exists() and journal.read_bytes().count(b"\n") >= 5):
                assert process.poll() is None, process.communicate()
                assert time.monotonic() < deadline, "the batch script did not journal any chunk"
                time.sleep(0.02)
            process.send_signal(signal.SIGKILL)
        finally:
            process.communicate()
    assert process.returncode == -signal.SIGKILL
    assert output.read_text() == "a previous run's complete output\n"
    journaled = journal.read_bytes().count(b"\n") - 1
    assert 4 <= journaled < COUNT // 5

    refused = run_script(images, "--labels", labels, "-o", output, "--target", f"127.0.0.1:{server.rest_port}")
    assert refused.exit_code == 1 and "pass --resume to continue it" in refused.output

    result = run_script(images, "--labels", labels, "-o", output, "--target", f"127.0.0.1:{server.rest_port}",
                        "--resume")
    assert result.exit_code == 0, result.output
    assert f"({journaled * 5} from the interrupted run's journal)" in result.output
    assert_rows_match_reference(batch.read_rows(output), reference, dataset)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["out.csv"]


@pytest.mark.slow
def test_ctrl_c_stops_with_a_resume_hint(tmp_path, server, npy_inputs):
    output = tmp_path / "out.csv"
    journal = batch.journal_path(output)
    with FlakyProxy(server.rest_url, lambda number, request: "slow", delay=0.1) as proxy:
        process = subprocess.Popen(
            [*BATCH_COMMAND, str(npy_inputs[0]), "-o", str(output), "--target", proxy.url,
             "--chunk-size", "5", "--concurrency", "1", "--no-progress"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            serving_helpers.wait_for(lambda: journal.exists() and journal.read_bytes().count(b"\n") >= 3,
                                     message="two journaled chunks")
            process.send_signal(signal.SIGINT)
        finally:
            _, error = process.communicate(timeout=60)
    assert process.returncode == 1
    assert error.startswith("Error: interrupted; ") and error.rstrip().endswith("rerun with --resume to continue")
    assert f"inputs are saved in {journal}" in error and not output.exists()


def test_a_cut_off_journal_line_is_dropped_and_its_chunk_redone(tmp_path):
    path = tmp_path / "out.csv.journal"
    header = {"inputs": "test", "count": 4, "fingerprint": "abc"}
    journal, done = Journal.open(path, header, resume=False, restart=False)
    journal.append([{"index": 0, "class_id": 1}, {"index": 1, "class_id": 2}])
    journal.close()
    whole = path.read_bytes()
    with open(path, "ab") as file:
        file.write(b'{"rows":[{"index":2,"cla')  # what a SIGKILL in the middle of a write could leave
    journal, done = Journal.open(path, header, resume=True, restart=False)
    assert sorted(done) == [0, 1] and path.read_bytes() == whole
    journal.append([{"index": 2, "class_id": 3}])
    journal.close()
    _, done = Journal.open(path, header, resume=True, restart=False)
    assert sorted(done) == [0, 1, 2]


def test_a_journal_for_other_inputs_is_refused(tmp_path):
    path = tmp_path / "out.csv.journal"
    journal, _ = Journal.open(path, {"inputs": "a", "count": 4, "fingerprint": "abc"}, False, False)
    journal.close()
    with pytest.raises(ConfigError, match="was written for other inputs .* pass --restart"):
        Journal.open(path, {"inputs": "b", "count": 4, "fingerprint": "xyz"}, True, False)
    journal, done = Journal.open(path, {"inputs": "b", "count": 4, "fingerprint": "xyz"}, False, True)
    journal.close()
    assert done == {}


# ---- the real thing ------------------------------------------------------------------------------------------


@pytest.mark.real_data
def test_fashion_mnist_accuracy_over_rest_equals_the_in_process_evaluation(tmp_path, fashion_mnist_run):
    evaluation = read_evaluation(fashion_mnist_run.run_dir)
    server = serving_helpers.start_server(model_base_path=str(fashion_mnist_run.export.path.parent))
    try:
        result = run_script("tfds:fashion_mnist/test", "--data-dir", fashion_mnist_run.data_dir, "-o",
                            tmp_path / "predictions.csv", "--target", f"rest://127.0.0.1:{server.rest_port}",
                            "--summary", tmp_path / "summary.json")
    finally:
        server.stop()
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert (summary["inputs"], summary["failures"], summary["labelled"]) == (10000, 0, 10000)
    # Chunks of 256 over REST against the evaluation's 1000 in this process: the counts of correct class ids agree
    # but for images whose two most probable classes float32 rounding may swap (usually none; tests/predictions.py).
    allowed = int(near_ties(fashion_mnist_run.test_probabilities).sum())
    assert abs(summary["correct"] - round(evaluation["test_accuracy"] * 10000)) <= allowed
    assert summary["accuracy"] == pytest.approx(evaluation["test_accuracy"], abs=allowed / 10000)


# ---- class folders, the summary, polarity --------------------------------------------------------------------


FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                   "Ankle boot")


def test_class_folders_match_class_names_by_the_documented_rule(tmp_path, dataset):
    folders = {"T-shirt_top": 0, "t-shirt top": 0, "ANKLE_BOOT": 9, "ankle-boot": 9, "Bag": 8, "Socks": None}
    for position, folder in enumerate(folders):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / f"{position}.png").write_bytes(png_bytes(dataset.images[position]))
    (tmp_path / "top-level.png").write_bytes(png_bytes(dataset.images[9]))
    inputs = batch.open_inputs(str(tmp_path))
    inputs.name_labels(FASHION_CLASSES)
    by_folder = {identifier.split("/")[0]: (label, name) for identifier, label, name in
                 zip(inputs.ids, inputs.label_ids, inputs.label_names)}
    for folder, class_id in folders.items():
        expected_name = FASHION_CLASSES[class_id] if class_id is not None else folder
        assert by_folder[folder] == (class_id, expected_name), folder
    assert by_folder["top-level.png"] == (None, None)  # no folder, no label: not "unmatched"
    assert inputs.unmatched_folders() == {"Socks": 1}
    assert batch.inputs.folder_key("T-shirt/top") == "t_shirt_top"


def test_unmatched_folders_are_counted_in_the_summary_and_warned_about(tmp_path, targets, dataset):
    for index in range(6):
        folder = tmp_path / "images" / ("3" if index < 3 else "seven")
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{index}.png").write_bytes(png_bytes(dataset.images[index]))
    result = run_script(tmp_path / "images", "-o", tmp_path / "out.csv", "--target", targets["local"],
                        "--summary", tmp_path / "summary.json")
    assert result.exit_code == 0, result.output
    assert result.stderr.splitlines() == [
        "warning: 3 inputs are in folders that match no class name ('seven'); they have no true label and are "
        "left out of accuracy (folder names match class names ignoring case, with any run of other characters "
        "such as '/', ' ', '-' written as '_')"]
    assert "unmatched    3 inputs in folders named after no class (seven)" in result.stdout.splitlines()
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert (summary["labelled"], summary["unmatched"], summary["unmatched_folders"]) == (3, 3, ["seven"])
    rows = batch.read_rows(tmp_path / "out.csv")
    assert [(row["label"], row["label_name"]) for row in rows] == [(3, "3")] * 3 + [(None, "seven")] * 3


def test_confusion_matrix_has_one_labelled_column_per_class_and_nothing_else():
    from tf_mlp.batch.summary import summarize

    rows = [{"label": label, "class_id": predicted, "error": None, "label_name": FASHION_CLASSES[label], "id": "x"}
            for label, predicted in [(0, 0), (0, 6), (9, 9), (6, 0)]]
    summary = summarize(rows, "out.csv", 0, 4, 1.0, [0.01], {}, FASHION_CLASSES)
    lines = batch.format_summary(summary).splitlines()
    start = lines.index("confusion matrix (rows: true class, columns: predicted class)")
    header, *matrix = lines[start + 1:]
    assert header.split() == [str(index) for index in range(10)]
    assert len(matrix) == 10
    for class_id, line in enumerate(matrix):
        assert line.startswith(f"{class_id} {FASHION_CLASSES[class_id]} ")
        counts = line[len(f"{class_id} {FASHION_CLASSES[class_id]}"):].split()
        assert len(counts) == 10 and len(line) == len(header), line  # as many numbers as headed columns
    assert matrix[0].split()[-10:] == ["1", "0", "0", "0", "0", "0", "1", "0", "0", "0"]


def test_polarity_invert_gives_a_dark_on_light_folder_the_originals_predictions(tmp_path, local_model, dataset,
                                                                               reference):
    for index in range(8):
        (tmp_path / "ink").mkdir(exist_ok=True)
        (tmp_path / "ink" / f"{index}.png").write_bytes(png_bytes(255 - dataset.images[index]))
    for polarity in ("invert", "auto"):
        inputs = batch.open_inputs(str(tmp_path / "ink"))
        inputs.set_polarity(polarity)
        batch.run_batch(local_model, inputs, tmp_path / f"{polarity}.csv", progress=False)
        rows = batch.read_rows(tmp_path / f"{polarity}.csv")
        assert len(rows) == 8
        assert_rows_match_reference(rows, reference, dataset)


def test_resume_refuses_a_journal_written_under_another_polarity(tmp_path, dataset):
    np.save(tmp_path / "x.npy", dataset.images[:4])
    headers = {}
    for polarity in ("as-is", "invert"):
        inputs = batch.open_inputs(str(tmp_path / "x.npy"))
        inputs.set_polarity(polarity)
        headers[polarity] = {"inputs": inputs.description, "count": len(inputs), "fingerprint": inputs.fingerprint}
    path = tmp_path / "out.csv.journal"
    journal, _ = Journal.open(path, headers["as-is"], resume=False, restart=False)
    journal.close()
    with pytest.raises(ConfigError, match="was written for other inputs"):
        Journal.open(path, headers["invert"], resume=True, restart=False)


# ---- the output is checked before any work --------------------------------------------------------------------


def _snapshot(directory: pathlib.Path) -> dict:
    return {path.relative_to(directory).as_posix(): path.read_bytes() if path.is_file() else None
            for path in sorted(directory.rglob("*"))}


def _without_tensorflow_noise(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if not line.startswith(("WARNING: All log messages", "I0000",
                                                                         "E0000", "W0000"))]


def _as_unprivileged(command: list) -> list:
    """Root ignores directory permissions; without CAP_DAC_OVERRIDE it obeys them, as any user does."""
    import shutil

    if shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv: a read-only directory cannot be made to refuse writes")
    return ["setpriv", "--bounding-set=-dac_override,-dac_read_search", "--", *command]


@pytest.mark.parametrize("output, message", [
    ("missing/out.csv", "Error: missing: no such directory for the output out.csv"),
    ("file.txt/out.csv", "Error: file.txt is not a directory; cannot write the output out.csv there"),
    pytest.param("read-only/out.csv", "Error: read-only: cannot create files there for the output out.csv "
                                      "(Permission denied)", marks=pytest.mark.slow),  # a process, as root
    ("read-only", "Error: read-only is a directory; give a file name for the output"),
])
def test_an_output_that_cannot_be_written_fails_before_any_work(tmp_path, npy_inputs, output, message):
    (tmp_path / "file.txt").write_text("a file, not a directory\n")
    (tmp_path / "read-only").mkdir()
    (tmp_path / "read-only" / "old.csv").write_text("kept\n")
    # The model is a directory that holds none: an error about it would mean the output was checked too late.
    (tmp_path / "no-model").mkdir()
    os.chmod(tmp_path / "read-only", 0o555)
    try:
        before = _snapshot(tmp_path)
        arguments = [npy_inputs[0], "-o", output, "--format", "csv", "--target", "no-model"]
        if output.startswith("read-only/") and os.geteuid() == 0:
            # Root writes anywhere: a process without that capability is needed to see the refusal.
            command = _as_unprivileged([*BATCH_COMMAND, *map(str, arguments)])
            result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=120)
        else:
            result = commands.run_in_process("batch-predict", *arguments, cwd=tmp_path)
        assert result.returncode == 1, result.stderr
        assert _without_tensorflow_noise(result.stderr) == [message]
        assert result.stdout == "" and _snapshot(tmp_path) == before
    finally:
        os.chmod(tmp_path / "read-only", 0o755)
