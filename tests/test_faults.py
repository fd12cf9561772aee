"""Fault injection: SIGKILLed training and exports, a SIGKILLed server under the batch script, deleted versions.

Kill points come from a seeded generator, so a failure names a reproducible
schedule; what happens at a kill point still depends on timing, which is the
point, and the assertions hold whatever the timing was. FAULTS counts the
faults injected and survived (tests/robustness_report.py writes docs/ROBUSTNESS.md).
"""

from __future__ import annotations

import collections
import os
import pathlib
import random
import re
import shutil
import signal
import subprocess
import sys
import threading
import time

import grpc
import numpy as np
import pytest
import requests
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from tests import commands, robustness_report, serving_helpers, synthetic
from tests.conftest import REPO_ROOT, write_idx_data_set
from tf_mlp import batch, client, contract, layout
from tf_mlp.export import versions
from tf_mlp.server.process import ServerProcess
from tf_mlp.training.runs import read_evaluation

# Unbuffered: a SIGKILLed child keeps nothing back, so its output shows where it resumed from.
ENVIRONMENT = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1")
IMAGE = [[0] * 28] * 28
# Between one client's requests: a steady hundred or so a second from each client samples every moment of a
# version change, without the clients and the in-process server taking a whole core from the processes under test.
CLIENT_PAUSE_SECONDS = 0.005
# How often paused clients look whether to go on.
CLIENT_IDLE_SECONDS = 0.05
# Each test adds its faults only after its assertions pass.
FAULTS = robustness_report.FAULTS


def _wait(predicate, process, timeout, message):
    """Poll predicate while the process lives; return its value (or None if the process ended first)."""
    deadline = time.monotonic() + timeout
    while process.poll() is None:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {message}"
        time.sleep(0.01)
    return None


# ---- training ------------------------------------------------------------------------------------------------


def _checkpoint_steps(run_dir) -> list[int]:
    state = tf.train.get_checkpoint_state(str(layout.checkpoint_dir(run_dir)))
    return [int(path.rsplit("-", 1)[1]) for path in state.all_model_checkpoint_paths] if state else []


def _read_every_checkpoint(run_dir) -> collections.Counter:
    """Read every tensor of every checkpoint listed or on disk (best/ included); counts of what was found.

    The state file (`checkpoint`) is what a restart restores from, so every checkpoint it lists must read
    back whole, the newest one always. Two leftovers of a kill are allowed and counted: a listed entry whose
    files are gone ("stale": CheckpointManager.save deletes the oldest checkpoint before it rewrites the
    state file), and an unlisted, half-written index ("torn": the kill landed while TensorFlow merged the
    shards; nothing ever restores it, and the resumed run writes that step again).
    """
    found = collections.Counter()
    for directory in (layout.checkpoint_dir(run_dir), layout.best_checkpoint_dir(run_dir)):
        state = tf.train.get_checkpoint_state(str(directory))
        listed = set(state.all_model_checkpoint_paths) if state else set()
        on_disk = {str(path.with_suffix("")) for path in directory.glob("*.index")}
        if state:
            assert pathlib.Path(state.model_checkpoint_path + ".index").is_file(), "the newest checkpoint is gone"
        for path in sorted(listed | on_disk):
            if not pathlib.Path(path + ".index").is_file():
                found["stale"] += 1
                continue
            try:
                reader = tf.train.load_checkpoint(path)
                for name in reader.get_variable_to_shape_map():
                    reader.get_tensor(name)
            except (tf.errors.OpError, RuntimeError):
                assert path not in listed, f"{path} is listed in the state file but unreadable"
                found["torn"] += 1
                continue
            found["read"] += 1
    return found


def _trained_variables(run_dir) -> dict:
    """The model's and optimizer's tensors in the newest checkpoint (not the clock or the save counter)."""
    reader = tf.train.load_checkpoint(tf.train.latest_checkpoint(str(layout.checkpoint_dir(run_dir))))
    return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()
            if name.startswith(("model", "optimizer")) and "OBJECT_GRAPH" not in name}


@pytest.mark.slow
def test_training_sigkilled_at_five_random_points_resumes_to_the_uninterrupted_weights(tmp_path):
    # 2048 training images at batch 32: 64 steps, a checkpoint every 2 (dropout on, so its random state must
    # survive too). Planned kills: five distinct checkpoint steps, then a random delay so the signal lands
    # anywhere, mid-save included.
    idx_dir = write_idx_data_set(tmp_path / "idx", synthetic.make_splits(train=2048, validation=128, test=128))

    def arguments(run_dir, data_dir):
        return ["train", "--data", "idx", "--source-dir", str(idx_dir), "--data-dir", str(data_dir),
                "--validation-size", "128", "--hidden", "64", "--dropout", "0.2", "--epochs", "1", "--batch-size",
                "32", "--checkpoint-every", "2", "--seed", "7", "--run-dir", str(run_dir)]

    planned = 2048 // 32
    schedule = random.Random(8)
    targets = sorted(schedule.sample(range(2, planned - 12, 2), 5))
    killed_run, reference_run = tmp_path / "killed", tmp_path / "reference"
    # The uninterrupted run, and the last restart below, run in this process: only a kill needs a process of
    # its own. (Its own TFDS directory: a run never prepares the data set another is reading.)
    reference = commands.run_in_process(*arguments(reference_run, tmp_path / "tfds-reference"))
    assert reference.returncode == 0, reference.stdout[-2000:] + reference.stderr[-2000:]
    faulted = arguments(killed_run, tmp_path / "tfds")
    resumed_at, leftovers = [], collections.Counter()
    for target in targets:
        # A kill's delay may let the run pass the next target: each run still saves one checkpoint of its own.
        target = max(target, max(_checkpoint_steps(killed_run), default=0) + 2)
        process = subprocess.Popen([*commands.COMMAND, *faulted], env=ENVIRONMENT, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, text=True)
        reached = _wait(lambda target=target: [step for step in _checkpoint_steps(killed_run) if step >= target],
                        process, 300, f"a checkpoint at step {target}")
        assert reached, f"the run ended before step {target}: {process.communicate()[0][-2000:]}"
        time.sleep(schedule.uniform(0, 0.1))
        process.send_signal(signal.SIGKILL)
        output = process.communicate()[0]
        assert process.returncode == -signal.SIGKILL, f"the run finished before the kill: {output[-2000:]}"
        found = re.search(r"resuming from \S+ at step (\d+) of", output)
        resumed_at.append(int(found.group(1)) if found else 0)
        # Whatever the kill interrupted, every checkpoint a restart may restore reads back whole.
        found = _read_every_checkpoint(killed_run)
        assert found["read"] > 0
        leftovers += found

    result = commands.run_in_process(*faulted)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    resumed_at.append(int(re.search(r"resuming from \S+ at step (\d+) of", result.stdout).group(1)))

    # Each restart went on from where the one before was killed, never from the start.
    assert resumed_at[0] == 0 and all(step > 0 for step in resumed_at[1:]), resumed_at
    assert resumed_at == sorted(resumed_at), resumed_at
    assert read_evaluation(killed_run)["steps"] == planned
    killed, uninterrupted = _trained_variables(killed_run), _trained_variables(reference_run)
    assert killed.keys() == uninterrupted.keys() and any(name.startswith("model") for name in killed)
    # Bit for bit: both runs take the same batches through the same kernels (this machine, these settings, in
    # whichever process), so a resume that restores everything (weights, optimizer, random state, position)
    # reproduces every rounding.
    for name, value in uninterrupted.items():
        np.testing.assert_array_equal(killed[name], value, err_msg=name)
    FAULTS["training SIGKILL (restarted with the same command)"] += len(targets)
    FAULTS["(after a training kill: stale state-file entries, never restored)"] += leftovers["stale"]
    FAULTS["(after a training kill: torn unlisted index files, never restored)"] += leftovers["torn"]


# ---- export under a polling server -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def idx_run(tmp_path_factory):
    """A tiny run trained from an IDX directory through TFDS, so `tf-mlp export` can load its test images."""
    from tf_mlp.config import preset
    from tf_mlp.training import train_and_evaluate

    root = tmp_path_factory.mktemp("faults-run")
    idx_dir = write_idx_data_set(root / "idx", synthetic.make_splits())
    config = (preset("mlp").override("model", hidden_units=(32,)).override("train", epochs=1, batch_size=32)
              .override("data", name="idx", source_dir=str(idx_dir), data_dir=str(root / "tfds"),
                        validation_size=128))
    train_and_evaluate(config, root / "run", verbose=False)
    return root / "run"


def _predict_request() -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = contract.MODEL_NAME
    request.inputs["images"].CopyFrom(tf.make_tensor_proto(np.zeros((1, 28, 28), np.uint8)))
    return request


class _Clients:
    """Threads sending requests until stopped, recording every failure and every version that answered.

    `rest_paths` are REST prediction paths (one thread each), plus `grpc` gRPC threads asking for the default
    version; a watcher records every (version, state, error code) the status endpoint ever shows. They send
    only while `sampling` is set, so a test can leave out the stretches where nothing can change.
    """

    def __init__(self, server, rest_paths=(":predict",), grpc_threads=1):
        self.server = server
        self.stop = threading.Event()
        self.sampling = threading.Event()
        self.sampling.set()
        self.failures = collections.defaultdict(list)
        self.answered = collections.Counter()
        self.versions_answering = set()
        self.status_seen = set()
        self.threads = [threading.Thread(target=self._rest, args=(path,)) for path in rest_paths]
        self.threads += [threading.Thread(target=self._grpc) for _ in range(grpc_threads)]
        self.threads.append(threading.Thread(target=self._watch))

    def __enter__(self):
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc_info):
        self.stop.set()
        for thread in self.threads:
            thread.join()

    def _sample(self) -> bool:
        """Wait while sampling is paused; False once the clients are stopped."""
        while not self.stop.is_set():
            if self.sampling.wait(CLIENT_IDLE_SECONDS):
                return True
        return False

    def _rest(self, path):
        with requests.Session() as session:
            while self._sample():
                response = session.post(f"{self.server.rest_url}/v1/models/tf_mlp{path}",
                                        json={"instances": [IMAGE]}, timeout=60)
                self.answered[path] += 1
                if response.status_code != 200:
                    self.failures[path].append((time.monotonic(), response.status_code, response.text))
                self.stop.wait(CLIENT_PAUSE_SECONDS)

    def _grpc(self):
        with grpc.insecure_channel(self.server.grpc_target) as channel:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            while self._sample():
                try:
                    self.versions_answering.add(stub.Predict(_predict_request(), 60.0).model_spec.version.value)
                    self.answered["grpc"] += 1
                except grpc.RpcError as error:
                    self.failures["grpc"].append((time.monotonic(), error.code(), error.details()))
                self.stop.wait(CLIENT_PAUSE_SECONDS)

    def _watch(self):
        with requests.Session() as session:
            while self._sample():
                document = session.get(f"{self.server.rest_url}/v1/models/tf_mlp", timeout=60).json()
                for entry in document.get("model_version_status", []):
                    self.status_seen.add((int(entry["version"]), entry["state"], entry["status"]["error_code"]))
                time.sleep(0.005)


@pytest.mark.slow
def test_export_sigkilled_at_random_points_never_shows_the_polling_server_a_partial_version(tmp_path, idx_run):
    from tf_mlp.export import export_run

    export_base = tmp_path / "models"
    model_dir = versions.model_dir(export_base)
    export_run(idx_run, export_base, version=1, verification_images=synthetic.make_split(16, seed=5).images)
    server = serving_helpers.start_server(model_base_path=str(model_dir), file_system_poll_wait_seconds=0.02,
                                          max_num_load_retries=0)
    schedule = random.Random(3)
    arguments = ["export", str(idx_run), "--export-base", str(export_base)]
    outcomes = collections.Counter()
    try:
        with _Clients(server, rest_paths=(":predict", ":predict"), grpc_threads=1) as clients:
            # Three exports killed a random time after their staging directory appears (while the SavedModel,
            # warmup, verification or card is being written), then one left to finish (in this process: only
            # a kill needs a process of its own).
            for delay in [schedule.uniform(0, 2.5) for _ in range(3)] + [None]:
                before, before_versions = set(model_dir.iterdir()), versions.list_versions(export_base)
                if delay is None:
                    finished = commands.run_in_process(*arguments)
                    assert finished.returncode == 0, finished.stdout[-2000:] + finished.stderr[-2000:]
                else:
                    # Paused while the export starts (TensorFlow's import, the run's loading): nothing it does
                    # before it stages can reach the server, and the requests would take CPU from it.
                    clients.sampling.clear()
                    process = subprocess.Popen([*commands.COMMAND, *arguments], env=ENVIRONMENT,
                                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                    staged = _wait(lambda before=before: [path for path in set(model_dir.iterdir()) - before
                                                          if path.name.startswith(versions.STAGING_PREFIX)],
                                   process, 300, "the export's staging directory")
                    clients.sampling.set()
                    assert staged, "the export ended before it staged anything: " + process.communicate()[0][-2000:]
                    time.sleep(delay)
                    process.send_signal(signal.SIGKILL)
                    process.communicate()
                # A kill after the rename (while the signatures are printed) still published a version.
                published = len(versions.list_versions(export_base)) > len(before_versions)
                outcomes["published" if published else "killed mid-export"] += 1
            published = versions.list_versions(export_base)
            serving_helpers.wait_for(lambda: published[-1] in clients.versions_answering,
                                     message=f"version {published[-1]} answering")
    finally:
        server.stop()

    assert outcomes["killed mid-export"] >= 2, outcomes  # most kills landed inside the export, as planned
    assert dict(clients.failures) == {}
    assert all(count > 0 for count in clients.answered.values())
    # Every version the server ever reported is a complete, published one, and none failed to load.
    complete = {version for version in published
                if (versions.version_dir(export_base, version) / "assets.extra" / "model_card.json").is_file()}
    assert complete == set(published) == set(range(1, outcomes["published"] + 2))
    assert {version for version, _, _ in clients.status_seen} <= complete
    assert {code for _, _, code in clients.status_seen} == {"OK"}
    # What the kills left behind is staging directories, none of them with a numeric name.
    leftovers = [path.name for path in model_dir.iterdir() if not path.name.isdigit()]
    assert len(leftovers) <= outcomes["killed mid-export"]
    assert all(name.startswith(versions.STAGING_PREFIX) for name in leftovers)
    FAULTS["export SIGKILL while a server polls"] += 3
    FAULTS["(export kills that landed before the version was published)"] += outcomes["killed mid-export"]


# ---- the server killed under the batch script ------------------------------------------------------------


@pytest.mark.slow
def test_server_sigkilled_and_restarted_under_the_batch_script_loses_and_repeats_nothing(tmp_path):
    base = serving_helpers.model_base(tmp_path)
    server = ServerProcess(tmp_path / "server.log", f"--model_base_path={base}")
    count = 400
    images = synthetic.make_split(count, seed=31).images
    np.save(tmp_path / "images.npy", images)
    output = tmp_path / "out.jsonl"
    journal = batch.journal_path(output)
    server.start()
    # One image per request at concurrency 2 makes a run long enough to kill the server in its middle;
    # enough attempts to outlast a restart on a busy machine.
    script = subprocess.Popen(
        [sys.executable, str(REPO_ROOT / "scripts" / "batch_predict.py"), str(tmp_path / "images.npy"),
         "-o", str(output), "--target", f"rest://127.0.0.1:{server.rest_port}", "--chunk-size", "1",
         "--concurrency", "2", "--max-attempts", "100", "--no-progress"],
        env=ENVIRONMENT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        reached = _wait(lambda: journal.exists() and journal.read_bytes().count(b"\n") > 40, script, 300,
                        "40 chunks journaled")
        assert reached, "the batch run ended before the server was killed: " + script.communicate()[0][-2000:]
        server.kill()
        server.start()
        result = script.communicate(timeout=300)[0]
    finally:
        if script.poll() is None:
            script.kill()
            script.communicate()
        server.stop()
    assert script.returncode == 0, result[-2000:]
    rows = batch.read_rows(output)
    assert [row["index"] for row in rows] == list(range(count))  # each input once, in order
    assert all(row["error"] is None for row in rows)
    with client.connect(f"local:{serving_helpers.exported_version_dir()}") as model:
        assert [row["class_id"] for row in rows] == model.predict(images).class_ids.tolist()
    FAULTS["server SIGKILL under the batch script"] += 1


# ---- a version deleted while serving ---------------------------------------------------------------------


def _write_config(path, base, policy: str) -> None:
    path.write_text(f'model_config_list {{ config {{ name: "tf_mlp" base_path: "{base}" model_platform: "tensorflow"'
                    f" model_version_policy {{ {policy} }} }} }}")


def _states(server) -> dict:
    document = requests.get(f"{server.rest_url}/v1/models/tf_mlp", timeout=30).json()
    return {int(entry["version"]): entry["state"] for entry in document["model_version_status"]}


@pytest.mark.parametrize("policy, before, after", [
    ("latest { num_versions: 2 }", {3: "AVAILABLE", 2: "AVAILABLE"}, {3: "END", 2: "AVAILABLE", 1: "AVAILABLE"}),
    ("specific { versions: 2 versions: 3 }", {3: "AVAILABLE", 2: "AVAILABLE"}, {3: "END", 2: "AVAILABLE"}),
])
def test_deleting_the_newest_version_while_serving_falls_back_without_a_failed_request(
        tmp_path, policy, before, after):
    base = serving_helpers.model_base(tmp_path, versions=(1, 2, 3))
    config = tmp_path / "models.config"
    _write_config(config, base, policy)
    server = serving_helpers.start_server(model_config_file=str(config), file_system_poll_wait_seconds=0.02)
    try:
        assert _states(server) == before
        with _Clients(server, rest_paths=(":predict", "/versions/2:predict", "/versions/3:predict"),
                      grpc_threads=2) as clients:
            serving_helpers.wait_for(lambda: 3 in clients.versions_answering and clients.answered["/versions/3"
                                                                                                  ":predict"] > 5,
                                     message="version 3 answering")
            deleted_at = time.monotonic()
            shutil.rmtree(base / "3")
            serving_helpers.wait_for(lambda: _states(server) == after, message=f"the fallback to {after}")
            # Requests already in flight when version 3 was unloaded may still finish on it (as they should);
            # let every client thread complete a few requests before watching which versions answer.
            drained = sum(clients.answered.values())
            serving_helpers.wait_for(lambda: sum(clients.answered.values()) > drained + 20,
                                     message="requests in flight at the fallback to finish")
            clients.versions_answering.clear()
            checkpoint = sum(clients.answered.values())
            serving_helpers.wait_for(lambda: sum(clients.answered.values()) > checkpoint + 20,
                                     message="requests after the fallback")
    finally:
        server.stop()
    # Requests for the default version and for version 2 never failed; only ones naming the deleted version
    # explicitly did, after its deletion, and with TensorFlow Serving's 404.
    assert clients.versions_answering == {2}
    explicit = clients.failures.pop("/versions/3:predict", [])
    assert dict(clients.failures) == {}
    assert all(when > deleted_at and status == 404 and "Specific(tf_mlp, 3)" in text
               for when, status, text in explicit)
    FAULTS["version directory deleted while serving"] += 1
