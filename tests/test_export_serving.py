"""Exports judged the way TensorFlow Serving loads them, and the export command's refusals.

TensorFlow Serving (C++ LoadSavedModel) loads the MetaGraph tagged "serve",
restores the variables with the SavedModel's own saver and runs signatures
by tensor name in a Session. Here that is done with TensorFlow's public
tf.compat.v1 loader and with `saved_model_cli run`, never with the
exporter's own verification code. The CLI's refusals run `tf-mlp export`
(tests/commands.py) and check its one-line error, its exit code and that
nothing in the export base changed.
"""

import json
import pathlib
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from tests import commands
from tests.predictions import assert_probabilities_close
from tf_mlp import contract, layout
from tf_mlp.errors import ExportError
from tf_mlp.export import card, exporter, signatures, verify, versions, warmup
from tf_mlp.training.runs import latest_checkpoint, read_evaluation

SAVED_MODEL_CLI = pathlib.Path(sys.executable).parent / "saved_model_cli"
# TensorFlow's C++ start-up lines on stderr (absl logging), not the command's own output.
_TENSORFLOW_LOG_LINE = re.compile(r"^(WARNING: All log messages before absl::InitializeLog\(\)|[IWEF]\d{4} )")


@pytest.fixture(scope="module")
def exported(run, splits, tmp_path_factory):
    return exporter.export_run(run, tmp_path_factory.mktemp("models"), verification_images=splits.test.images[:32])


def _expected(model, pixels):
    return tf.nn.softmax(model(tf.constant(pixels), training=False), axis=-1).numpy()


def _signature_inputs(pixels):
    """{signature: {input key: ndarray}} for the same images through every signature."""
    pngs = np.array(warmup.encode_png(pixels), dtype=object)
    return {
        "serving_default": {"images": pixels},
        "predict_encoded": {"image_bytes": pngs},
        "predict_raw": {"pixels_bytes": np.array([image.tobytes() for image in pixels], dtype=object)},
        "predict_images": {"images": pixels.reshape(len(pixels), 784).astype(np.float32) / 255.0},
        "classify": {"inputs": np.array([warmup.make_example(png).SerializeToString() for png in pngs], dtype=object)},
    }


def _run_in_session(saved_model_dir, requests: list) -> list:
    """TensorFlow Serving's way: v1 loader in a fresh graph and session, run by the SignatureDefs' tensor names.

    requests: [(signature name, {input key: ndarray})]; returns [{output key: ndarray}] in the same order.
    """
    results = []
    graph = tf.Graph()
    with graph.as_default(), tf.compat.v1.Session(graph=graph) as session:
        meta_graph = tf.compat.v1.saved_model.loader.load(session, ["serve"], str(saved_model_dir))
        for name, inputs in requests:
            definition = meta_graph.signature_def[name]
            assert set(definition.inputs) == set(inputs), name
            feed = {definition.inputs[key].name: value for key, value in inputs.items()}
            results.append(session.run({key: info.name for key, info in definition.outputs.items()}, feed))
    return results


def test_every_signature_runs_under_the_session_loader(exported, model, splits):
    pixels = splits.test.images[:24]
    expected = _expected(model, pixels)
    expected_ids = np.argmax(expected, axis=-1)
    requests = _signature_inputs(pixels)
    assert set(requests) == set(signatures.SIGNATURE_NAMES)
    results = dict(zip(requests, _run_in_session(exported.path, list(requests.items()))))
    for name in ("serving_default", "predict_encoded", "predict_raw"):
        assert_probabilities_close(results[name]["probabilities"], expected, name)
        np.testing.assert_array_equal(results[name]["class_ids"], expected_ids, err_msg=name)
        names = [splits.class_names[index] for index in expected_ids]
        assert results[name]["class_names"].astype(str).tolist() == names, name
    assert_probabilities_close(results["predict_images"]["scores"], expected)
    assert_probabilities_close(results["classify"]["scores"], expected)
    assert results["classify"]["classes"].astype(str).tolist() == [list(splits.class_names)] * len(pixels)


def test_warmup_requests_run_under_the_session_loader(exported):
    logs = warmup.read_requests(exported.path / "assets.extra" / contract.WARMUP_FILE)
    requests = [warmup.request_inputs(log) for log in logs]
    assert {signature for signature, _ in requests} == set(signatures.SIGNATURE_NAMES)
    for (signature, inputs), outputs in zip(requests, _run_in_session(exported.path, requests)):
        assert next(iter(outputs.values())).shape[0] == next(iter(inputs.values())).shape[0], signature


def test_the_export_also_loads_with_tf_saved_model_load(exported, model, splits):
    pixels = splits.test.images[:8]
    loaded = tf.saved_model.load(str(exported.path))
    for name, inputs in _signature_inputs(pixels).items():
        outputs = loaded.signatures[name](**{key: tf.constant(value) for key, value in inputs.items()})
        scores = outputs["scores"] if "scores" in outputs else outputs["probabilities"]
        assert_probabilities_close(scores.numpy(), _expected(model, pixels), name)


@pytest.mark.slow
def test_saved_model_cli_run_serves_default_like_the_in_process_model(exported, model, splits, tmp_path):
    pixels = splits.test.images[:10]
    np.save(tmp_path / "x.npy", pixels)
    command = [
        str(SAVED_MODEL_CLI), "run", "--dir", str(exported.path), "--tag_set", "serve",
        "--signature_def", "serving_default", "--inputs", f"images={tmp_path / 'x.npy'}",
        "--outdir", str(tmp_path / "out"),
    ]
    finished = subprocess.run(command, capture_output=True, text=True, timeout=240)
    assert finished.returncode == 0, finished.stderr[-2000:]
    expected = _expected(model, pixels)
    probabilities = np.load(tmp_path / "out" / "probabilities.npy")
    assert_probabilities_close(probabilities, expected)
    np.testing.assert_array_equal(np.load(tmp_path / "out" / "class_ids.npy"), np.argmax(expected, axis=-1))
    names = np.load(tmp_path / "out" / "class_names.npy", allow_pickle=True).astype(str)
    assert names.tolist() == [splits.class_names[index] for index in np.argmax(expected, axis=-1)]


# --- Verification refuses what TensorFlow Serving could not run ---------------------


class _PlainModuleArchive:
    """What tf.saved_model.save of a tf.Module holding the Keras 3 model writes.

    It loads and runs in tf.saved_model.load, but the session loader's saver
    does not restore the Keras variables ("Could not find variable ...").
    """

    def __init__(self, model, labels_path):
        self.module = tf.Module()
        self.module.model = model
        self.module.table = signatures.class_table(labels_path)
        endpoints = signatures.ServingFunctions(model, self.module.table).endpoints()
        self.functions = {
            name: tf.function(function, input_signature=[spec]) for name, (function, spec) in endpoints.items()
        }

    def write_out(self, path, verbose=True):
        tf.saved_model.save(self.module, path, signatures=self.functions)


def test_verification_refuses_an_export_the_session_loader_cannot_run(model, splits, tmp_path, monkeypatch):
    monkeypatch.setattr(signatures, "build_archive", _PlainModuleArchive)
    broken = tmp_path / "broken"
    broken.mkdir()
    signatures.save(model, splits.class_names, broken)
    pixels = splits.test.images[:8]
    # The old way passes tf.saved_model.load...
    outputs = verify.ObjectModel(broken).run("serving_default", {"images": pixels})
    assert_probabilities_close(outputs["probabilities"], _expected(model, pixels))
    # ...and fails as TensorFlow Serving would run it.
    with pytest.raises(tf.errors.FailedPreconditionError, match="Could not find variable"):
        _run_in_session(broken, [("serving_default", {"images": pixels})])

    base = tmp_path / "models"
    refusal = r"verification failed, version not published: signature 'serving_default' \(session\): Could not find"
    with pytest.raises(ExportError, match=refusal) as error:
        exporter.export_model(model, splits.class_names, base, model_card={}, verification_images=pixels)
    assert "\n" not in str(error.value)
    assert list(versions.model_dir(base).iterdir()) == [], "staging removed, nothing renamed into place"


# --- Unfinished runs --------------------------------------------------------------------


def _copy_run(run, tmp_path, name="run-copy"):
    copy = tmp_path / name
    shutil.copytree(run, copy)
    return copy


def test_unfinished_reason_names_why(run, tmp_path):
    assert exporter.unfinished_reason(run, read_evaluation(run)) is None
    assert "no final test evaluation" in exporter.unfinished_reason(run, None)
    evaluation = read_evaluation(run)
    steps = evaluation["steps"]
    stopped = dict(evaluation, planned_steps=steps + 100)
    assert exporter.unfinished_reason(run, stopped) == f"training stopped at step {steps} of {steps + 100}"
    assert exporter.unfinished_reason(run, dict(stopped, stopped_early=True)) is None
    # Resumed for more epochs after the evaluation and interrupted: a newer, higher-numbered checkpoint.
    resumed = _copy_run(run, tmp_path)
    checkpoints = layout.checkpoint_dir(resumed)
    latest = pathlib.Path(latest_checkpoint(resumed)).name
    later = evaluation["steps"] + 16
    for path in checkpoints.glob(f"{latest}.*"):
        shutil.copy(path, checkpoints / path.name.replace(latest, f"ckpt-{later}"))
    (checkpoints / "checkpoint").write_text(f'model_checkpoint_path: "ckpt-{later}"\n')
    reason = exporter.unfinished_reason(resumed, evaluation)
    assert reason == (
        f"training went on after the final test evaluation (step {steps}) to step {later} and has not finished"
    )


def _tf_mlp(*arguments) -> subprocess.CompletedProcess:
    """`tf-mlp export ...` in this process, its stderr as a terminal shows it (a new process would only add
    TensorFlow's start-up lines, which _own_lines drops)."""
    return commands.run_in_process(*arguments)


def _own_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.strip() and not _TENSORFLOW_LOG_LINE.match(line)]


def _snapshot(base: pathlib.Path) -> dict:
    return {
        str(path.relative_to(base)): (path.is_dir(), path.stat().st_size, path.stat().st_mtime_ns)
        for path in sorted(base.rglob("*"))
    }


@pytest.fixture
def base_with_a_version(exported, tmp_path):
    """An export base already holding version 1, to show a refusal changes nothing in it."""
    base = tmp_path / "models"
    shutil.copytree(exported.path, versions.version_dir(base, 1))
    return base


def _assert_refused(outcome, base, before, *phrases):
    assert outcome.returncode == 1, outcome.stdout + outcome.stderr
    assert outcome.stdout == ""
    lines = _own_lines(outcome.stderr)
    assert len(lines) == 1 and lines[0].startswith("Error: "), outcome.stderr
    for phrase in phrases:
        assert phrase in lines[0]
    assert _snapshot(base) == before, "the export base must not change"


def test_cli_refuses_an_unfinished_run_unless_allowed(run, tmp_path, base_with_a_version):
    unfinished = _copy_run(run, tmp_path)
    layout.evaluation_path(unfinished).unlink()
    before = _snapshot(base_with_a_version)
    outcome = _tf_mlp("export", unfinished, "--export-base", base_with_a_version)
    _assert_refused(outcome, base_with_a_version, before, "training has not finished", "--allow-unfinished")

    outcome = _tf_mlp("export", unfinished, "--export-base", base_with_a_version, "--allow-unfinished")
    assert outcome.returncode == 0, outcome.stderr[-2000:]
    assert "warning: exported an unfinished run (training has not finished" in outcome.stdout
    model_card = card.read(versions.version_dir(base_with_a_version, 2))
    assert model_card["run_finished"] is False and "no final test evaluation" in model_card["unfinished_reason"]
    assert model_card["test_accuracy"] is None and model_card["steps"] is None


def test_cli_without_training_data_needs_verify_on(run, splits, tmp_path, base_with_a_version):
    orphan = _copy_run(run, tmp_path)
    config = json.loads(layout.config_path(orphan).read_text())
    config["data"]["source_dir"] = str(tmp_path / "deleted-data")
    layout.config_path(orphan).write_text(json.dumps(config))
    before = _snapshot(base_with_a_version)
    outcome = _tf_mlp("export", orphan, "--export-base", base_with_a_version)
    _assert_refused(outcome, base_with_a_version, before, "cannot verify the export", "--verify-on FILE")

    outcome = _tf_mlp("export", orphan, "--export-base", base_with_a_version, "--verify-on", tmp_path / "missing.npy")
    _assert_refused(outcome, base_with_a_version, before, "--verify-on", "missing.npy: no such file")

    np.save(tmp_path / "images.npy", splits.test.images[:20])
    outcome = _tf_mlp("export", orphan, "--export-base", base_with_a_version, "--verify-on", tmp_path / "images.npy")
    assert outcome.returncode == 0, outcome.stderr[-2000:]
    assert f"verified on 20 images from {tmp_path / 'images.npy'}" in outcome.stdout
    verification = card.read(versions.version_dir(base_with_a_version, 2))["verification"]
    assert verification["images"] == 20 and verification["source"] == str(tmp_path / "images.npy")
