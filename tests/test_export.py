"""Export: signatures against the in-memory model, warmup, atomic versions, errors, CLI.

One tiny synthetic run is trained and exported once per module; tests that
need their own export base export the restored model again (about 2 s each).
"""

import json

import numpy as np
import pytest
import tensorflow as tf
from click.testing import CliRunner

from tests.predictions import assert_probabilities_close, near_ties
from tf_mlp import contract, layout
from tf_mlp.errors import CheckpointError, ExportError
from tf_mlp.export import card, describe, exporter, verify, versions, warmup
from tf_mlp.model import build_model
from tf_mlp.training.runs import load_config, read_evaluation


@pytest.fixture(scope="module")
def exported(run, splits, tmp_path_factory):
    base = tmp_path_factory.mktemp("models")
    result = exporter.export_run(run, base, verification_images=splits.test.images[:64])
    return result, tf.saved_model.load(str(result.path))


def _export(model, base, splits, **options):
    return exporter.export_model(
        model, splits.class_names, base, model_card={}, verification_images=splits.test.images[:16], **options
    )


def _serve(loaded, pixels):
    return loaded.signatures[contract.SERVING_SIGNATURE](images=tf.constant(pixels, dtype=tf.uint8))


def _encoded(loaded, files):
    return loaded.signatures[contract.ENCODED_SIGNATURE](image_bytes=tf.constant(files, dtype=tf.string))


def _png(image: np.ndarray) -> bytes:
    return tf.io.encode_png(image if image.ndim == 3 else image[:, :, np.newaxis]).numpy()


# --- What ships in a version -------------------------------------------------


def test_export_publishes_version_1_with_labels_warmup_and_model_card(exported, run, splits):
    result, _ = exported
    assert result.version == 1 and result.path.name == "1" and result.path.parent.name == contract.MODEL_NAME
    assert versions.list_versions(result.path.parents[1]) == [1]
    assert [child.name for child in result.path.parent.iterdir()] == ["1"], "no staging directory left"
    assert (result.path / "assets" / contract.LABELS_ASSET).read_text().splitlines() == list(splits.class_names)
    model_card = card.read(result.path)
    evaluation = read_evaluation(run)
    assert model_card["version"] == 1 and model_card["data_set"] == "synthetic"
    assert model_card["run_finished"] is True and "unfinished_reason" not in model_card
    assert model_card["test_accuracy"] == evaluation["test_accuracy"]
    assert model_card["parameters"] == 785 * 32 + 33 * 10
    assert model_card["train_seconds"] == evaluation["train_seconds"] > 0
    assert model_card["config"]["model"]["hidden_units"] == [32]
    assert model_card["tensorflow_version"] == tf.__version__
    assert model_card["git_commit"] is None or len(model_card["git_commit"]) == 40
    assert model_card["exported_at"].endswith("+00:00") and model_card["export_seconds"] > 0
    assert model_card["verification"]["images"] == 64 and model_card["verification"]["source"] == "given images"
    assert model_card["verification"]["loaders"] == ["session", "tf.saved_model.load"]
    assert not (result.path / "fingerprint.pb").exists(), "a fingerprint of saved_model.pb before its edit"
    assert set(model_card["signatures"]) == {"serving_default", "predict_encoded", "predict_raw", "predict_images",
                                             "classify"}


def test_git_state_is_none_outside_a_checkout(tmp_path):
    assert card.git_state(tmp_path) == (None, None)


def test_describe_signatures_reads_like_saved_model_cli(exported):
    result, _ = exported
    text = describe.describe_signatures(result.path)
    assert text.startswith("MetaGraphDef with tag-set: 'serve' contains the following SignatureDefs:")
    heading = "signature_def['serving_default']:\n  The given SavedModel SignatureDef contains the following input(s):"
    assert heading + "\n" in text
    assert "    inputs['images'] tensor_info:\n        dtype: DT_UINT8\n        shape: (-1, 28, 28)\n" in text
    assert "    inputs['image_bytes'] tensor_info:\n        dtype: DT_STRING\n        shape: (-1)\n" in text
    assert "    outputs['scores'] tensor_info:\n        dtype: DT_FLOAT\n        shape: (-1, 10)\n" in text
    assert "    inputs['pixels_bytes'] tensor_info:\n        dtype: DT_STRING\n        shape: (-1)\n" in text
    assert text.count("Method name is: tensorflow/serving/predict") == 4
    assert text.count("Method name is: tensorflow/serving/classify") == 1
    assert "__saved_model_init_op" not in text
    assert result.signatures == text


# --- Signatures against the in-memory model -----------------------------------


def test_serving_default_matches_the_in_memory_model(exported, model, splits):
    _, loaded = exported
    pixels = splits.test.images
    outputs = _serve(loaded, pixels)
    expected = tf.nn.softmax(model(pixels, training=False)).numpy()
    assert_probabilities_close(outputs["probabilities"].numpy(), expected)
    np.testing.assert_array_equal(outputs["class_ids"].numpy(), np.argmax(expected, axis=-1))
    names = [splits.class_names[index] for index in np.argmax(expected, axis=-1)]
    assert [name.decode() for name in outputs["class_names"].numpy()] == names
    assert np.mean(outputs["class_ids"].numpy() == splits.test.labels) > 0.8, "the trained model, not a fresh one"


def _variants(image: np.ndarray) -> dict:
    """Files that must decode to exactly these 28x28 pixels."""
    gray = image[:, :, np.newaxis]
    opaque = np.full_like(gray, 255)
    return {
        "gray": _png(gray),
        "gray+alpha": _png(np.concatenate([gray, opaque], axis=2)),
        "rgb": _png(np.repeat(gray, 3, axis=2)),
        "rgba": _png(np.concatenate([np.repeat(gray, 3, axis=2), opaque], axis=2)),
        # Area resizing of an exact 2x enlargement averages identical pixels.
        "56x56": _png(np.repeat(np.repeat(gray, 2, axis=0), 2, axis=1)),
        "28x84 (stretched)": _png(np.repeat(gray, 3, axis=1)),
    }


def test_bytes_signature_gives_serving_default_results_for_png_variants(exported, splits):
    _, loaded = exported
    pixels = splits.test.images[:8]
    expected = _serve(loaded, pixels)
    files_by_variant = [_variants(image) for image in pixels]
    for variant in files_by_variant[0]:
        outputs = _encoded(loaded, [files[variant] for files in files_by_variant])
        assert_probabilities_close(outputs["probabilities"], expected["probabilities"], variant)
        np.testing.assert_array_equal(outputs["class_ids"], expected["class_ids"], err_msg=variant)
        np.testing.assert_array_equal(outputs["class_names"], expected["class_names"], err_msg=variant)


def test_bytes_signature_converts_color_to_luma(exported):
    _, loaded = exported
    color = np.random.default_rng(2).integers(0, 256, size=(3, 28, 28, 3)).astype(np.uint8)
    # ITU-R 601 luma, as tf.image.rgb_to_grayscale weighs the channels, rounded.
    luma = np.round(color.astype(np.float64) @ np.array([0.2989, 0.5870, 0.1140])).astype(np.uint8)
    expected = _serve(loaded, luma)
    outputs = _encoded(loaded, [_png(image) for image in color])
    assert_probabilities_close(outputs["probabilities"], expected["probabilities"])


def test_bytes_signature_shrinks_by_area_averaging_and_rounding(exported):
    _, loaded = exported
    large = np.random.default_rng(1).integers(0, 256, size=(3, 84, 84)).astype(np.uint8)
    # Shrinking 84 -> 28 by area: each pixel is the mean of a 3x3 block, rounded.
    block_means = large.reshape(3, 28, 3, 28, 3).astype(np.float64).mean(axis=(2, 4))
    expected = _serve(loaded, np.round(block_means).astype(np.uint8))
    outputs = _encoded(loaded, [_png(image) for image in large])
    assert_probabilities_close(outputs["probabilities"], expected["probabilities"])


def test_bytes_signature_reads_jpeg(exported, splits):
    _, loaded = exported
    image = splits.test.images[0][:, :, np.newaxis]
    outputs = _encoded(loaded, [tf.io.encode_jpeg(image, quality=100).numpy()])
    np.testing.assert_allclose(np.sum(outputs["probabilities"].numpy()), 1.0, atol=1e-5)
    assert outputs["class_ids"].numpy()[0] == _serve(loaded, splits.test.images[:1])["class_ids"].numpy()[0]


def test_corrupt_image_is_an_invalid_argument_naming_the_image(exported, splits):
    _, loaded = exported
    good = _png(splits.test.images[0])
    for junk in (b"this is not an image", b"junk", b""):
        with pytest.raises(tf.errors.InvalidArgumentError, match=r"image_bytes\[1\] is not a decodable image"):
            _encoded(loaded, [good, junk, good])
    with pytest.raises(tf.errors.InvalidArgumentError, match="PNG"):
        _encoded(loaded, [good[:60]])
    # The loaded model still answers after the errors.
    assert _encoded(loaded, [good])["class_ids"].shape == (1,)


def test_raw_signature_gives_serving_default_results(exported, splits):
    _, loaded = exported
    pixels = splits.test.images[:8]
    expected = _serve(loaded, pixels)
    raw = tf.constant([image.tobytes() for image in pixels], dtype=tf.string)
    outputs = loaded.signatures[contract.RAW_SIGNATURE](pixels_bytes=raw)
    # Exactly equal: the same pixels in the same batch through the same loaded model, in this process.
    np.testing.assert_array_equal(outputs["probabilities"], expected["probabilities"])
    np.testing.assert_array_equal(outputs["class_names"], expected["class_names"])


def test_raw_signature_names_an_input_of_the_wrong_length(exported, splits):
    _, loaded = exported
    raw = [splits.test.images[0].tobytes(), b"\0" * 783]
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"pixels_bytes\[1\] holds 783 bytes; expected 784"):
        loaded.signatures[contract.RAW_SIGNATURE](pixels_bytes=tf.constant(raw))


def test_predict_images_takes_the_mnist_example_float_pixels(exported, splits):
    _, loaded = exported
    pixels = splits.test.images[:32]
    unit_floats = pixels.reshape(32, 784).astype(np.float32) / 255.0
    outputs = loaded.signatures[contract.MNIST_EXAMPLE_SIGNATURE](images=tf.constant(unit_floats))
    assert set(outputs) == {"scores"}
    assert_probabilities_close(outputs["scores"], _serve(loaded, pixels)["probabilities"])


def test_classify_signature_takes_serialized_tf_examples(exported, splits):
    result, loaded = exported
    pixels = splits.test.images[:8]
    examples = [warmup.make_example(_png(image)).SerializeToString() for image in pixels]
    outputs = loaded.signatures[contract.CLASSIFY_SIGNATURE](inputs=tf.constant(examples))
    assert_probabilities_close(outputs["scores"], _serve(loaded, pixels)["probabilities"])
    assert outputs["classes"].numpy().astype(str).tolist() == [list(splits.class_names)] * 8
    assert describe.signature_summary(result.path)["classify"]["method"] == "tensorflow/serving/classify"
    pixels_feature = tf.train.Feature(int64_list=tf.train.Int64List(value=[0]))
    wrong_feature = tf.train.Example(features=tf.train.Features(feature={"pixels": pixels_feature}))
    with pytest.raises(tf.errors.InvalidArgumentError, match="image"):
        loaded.signatures[contract.CLASSIFY_SIGNATURE](inputs=tf.constant([wrong_feature.SerializeToString()]))


def test_warmup_file_holds_prediction_logs_that_run_against_the_model(exported):
    result, loaded = exported
    logs = warmup.read_requests(result.path / "assets.extra" / contract.WARMUP_FILE)
    assert len(logs) == 5 * len(warmup.BATCH_SIZES)
    kinds = {}
    for log in logs:
        kind = log.WhichOneof("log_type")
        request = getattr(log, kind).request
        assert request.model_spec.name == contract.MODEL_NAME
        kinds.setdefault(request.model_spec.signature_name, set()).add(kind)
        signature, inputs = warmup.request_inputs(log)
        outputs = loaded.signatures[signature](**{key: tf.constant(value) for key, value in inputs.items()})
        if kind == "classify_log":
            batch = len(request.input.example_list.examples)
        else:
            batch = next(iter(request.inputs.values())).tensor_shape.dim[0].size
        assert next(iter(outputs.values())).shape[0] == batch
    assert kinds == {
        "serving_default": {"predict_log"},
        "predict_encoded": {"predict_log"},
        "predict_raw": {"predict_log"},
        "predict_images": {"predict_log"},
        "classify": {"classify_log"},
    }


# --- Verification --------------------------------------------------------------


def test_verification_rejects_a_model_that_differs(exported, run, splits):
    result, _ = exported
    other = build_model(load_config(run).model, seed=123)
    with pytest.raises(ExportError, match=r"verification failed.*serving_default.*differ"):
        verify.verify_saved_model(result.path, other, splits.class_names, splits.test.images[:16])


def test_export_that_fails_verification_publishes_nothing(tmp_path, model, splits, monkeypatch):
    real = verify.expected_probabilities
    monkeypatch.setattr(verify, "expected_probabilities", lambda *args: real(*args) + 1e-4)
    with pytest.raises(ExportError, match="verification failed, version not published"):
        _export(model, tmp_path, splits)
    assert list(versions.model_dir(tmp_path).iterdir()) == []



def test_a_graph_error_is_told_by_its_first_informative_line():
    from tf_mlp.errors import first_line

    graph_error = tf.errors.InvalidArgumentError(
        None, None, "Graph execution error:\n\nDetected at node 'decode' defined at (most recent call last):\n"
        "  Input is not a PNG image\n\t [[{{node decode}}]]")
    assert first_line(graph_error) == "Input is not a PNG image"
    assert first_line(ValueError("  \n")) == "ValueError" and first_line(IndexError("a\nb")) == "a"
    eager_error = tf.errors.DataLossError(
        None, None, "{{function_node __wrapped__DatasetToSingleElement_device_/job:localhost/task:0/device:CPU:0}} "
        "truncated record at 47996 [Op:DatasetToSingleElement] name: ")
    assert first_line(eager_error) == "truncated record at 47996"

# --- Versions --------------------------------------------------------------------


def test_interrupted_export_leaves_no_numeric_directory(tmp_path, model, splits, monkeypatch):
    def crash(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(versions.os, "rename", crash)
    # A hard crash (power loss) also skips the clean-up of the staging directory.
    monkeypatch.setattr(versions, "discard", lambda directory: None)
    with pytest.raises(ExportError, match="cannot publish version 1"):
        _export(model, tmp_path, splits)
    leftovers = [child.name for child in versions.model_dir(tmp_path).iterdir()]
    assert len(leftovers) == 1 and leftovers[0].startswith(".export-1-")
    assert not any(name.isdigit() for name in leftovers)
    assert versions.list_versions(tmp_path) == [] and versions.next_version(tmp_path) == 1


def test_failed_export_removes_its_staging_directory(tmp_path, model, splits, monkeypatch):
    def fail(*args):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(versions.os, "rename", fail)
    with pytest.raises(ExportError):
        _export(model, tmp_path, splits)
    assert list(versions.model_dir(tmp_path).iterdir()) == []


def _fake_version(base, name, marker="old"):
    directory = versions.model_dir(base) / str(name)
    directory.mkdir(parents=True)
    (directory / "marker").write_text(marker)
    return directory


def test_versions_auto_increment_and_prune_to_the_newest(tmp_path, model, splits):
    for name in ("1", "3", "notes", ".export-9-crashed"):
        _fake_version(tmp_path, name)
    assert versions.list_versions(tmp_path) == [1, 3]
    assert _export(model, tmp_path, splits).version == 4
    result = _export(model, tmp_path, splits, keep=2)
    assert result.version == 5 and result.pruned == [1, 3]
    assert versions.list_versions(tmp_path) == [4, 5]
    remaining = sorted(child.name for child in versions.model_dir(tmp_path).iterdir())
    assert remaining == [".export-9-crashed", "4", "5", "notes"], "only versions are pruned"


def test_prune_keeps_the_newest_and_the_protected_version(tmp_path):
    for version in (1, 2, 5, 10):
        _fake_version(tmp_path, version)
    assert versions.prune(tmp_path, 2, protect=(1,)) == [2]
    assert versions.list_versions(tmp_path) == [1, 5, 10]
    with pytest.raises(ExportError, match="keep must be a positive"):
        versions.prune(tmp_path, 0)


@pytest.mark.parametrize("exchange_supported", [True, False])
def test_publish_overwrite_replaces_the_version_in_place(tmp_path, monkeypatch, exchange_supported):
    target = _fake_version(tmp_path, 2, marker="old")
    staging = versions.make_staging_dir(tmp_path, 2)
    (staging / "marker").write_text("new")
    if not exchange_supported:
        monkeypatch.setattr(versions, "_exchange", lambda first, second: False)
    with pytest.raises(ExportError, match="version 2 already exists.*--overwrite"):
        versions.publish(staging, tmp_path, 2, overwrite=False)
    assert (target / "marker").read_text() == "old"
    assert versions.publish(staging, tmp_path, 2, overwrite=True) == target
    assert (target / "marker").read_text() == "new"
    assert [child.name for child in versions.model_dir(tmp_path).iterdir()] == ["2"]


def test_bad_options_fail_before_any_work(tmp_path, run, model, splits):
    with pytest.raises(ExportError, match="version must be a positive integer"):
        exporter.export_run(run, tmp_path, version=0)
    with pytest.raises(ExportError, match="keep must be a positive"):
        exporter.export_run(run, tmp_path, keep=0)
    with pytest.raises(ExportError, match=r"uint8 \[N, 28, 28\]"):
        floats = np.zeros((2, 28, 28), np.float32)
        exporter.export_model(model, splits.class_names, tmp_path, model_card={}, verification_images=floats)
    with pytest.raises(ExportError, match="3 class names for a model with 10 outputs"):
        exporter.export_model(model, ["a", "b", "c"], tmp_path, model_card={}, verification_images=splits.test.images)
    assert not versions.model_dir(tmp_path).exists()


def test_run_without_checkpoint_is_a_checkpoint_error(tmp_path, run):
    with pytest.raises(CheckpointError, match="not a run directory"):
        exporter.export_run(tmp_path / "missing", tmp_path / "models")
    empty_run = tmp_path / "empty-run"
    empty_run.mkdir()
    for name in (layout.CONFIG_FILE, layout.LABELS_FILE):
        (empty_run / name).write_text((run / name).read_text())
    with pytest.raises(CheckpointError, match="no finished checkpoint"):
        exporter.export_run(empty_run, tmp_path / "models")
    assert not (tmp_path / "models").exists()


def test_unwritable_export_base_is_a_one_line_error(tmp_path, model, splits):
    # A path below a regular file cannot be created, even by root.
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(ExportError, match="cannot write to export base") as error:
        _export(model, blocker / "models", splits)
    assert "\n" not in str(error.value)
    assert blocker.read_text() == ""


# --- CLI ----------------------------------------------------------------------------


@pytest.fixture
def cli(monkeypatch, splits):
    """Run `tf-mlp ...`; verification uses synthetic test images instead of loading the run's data set."""
    from tf_mlp.cli import main

    monkeypatch.setattr(exporter, "_test_images", lambda config: splits.test.images[:16])
    return lambda *arguments: CliRunner().invoke(main, [str(argument) for argument in arguments])


def test_cli_export_publishes_and_prints_the_signatures(cli, run, tmp_path):
    outcome = cli("export", run, "--export-base", tmp_path)
    assert outcome.exit_code == 0, outcome.output
    assert "version 1" in outcome.output and str(versions.version_dir(tmp_path, 1)) in outcome.output
    assert "signature_def['predict_encoded']:" in outcome.output
    assert "Method name is: tensorflow/serving/classify" in outcome.output
    assert versions.list_versions(tmp_path) == [1]


def test_cli_refuses_an_existing_version_unless_overwrite(cli, run, tmp_path):
    existing = _fake_version(tmp_path, 3, marker="old")
    outcome = cli("export", run, "--export-base", tmp_path, "--version", 3)
    assert outcome.exit_code == 1
    assert outcome.output.strip().splitlines() == [
        f"Error: version 3 already exists in {versions.model_dir(tmp_path)}; pass --overwrite to replace it"
    ]
    assert (existing / "marker").read_text() == "old"
    outcome = cli("export", run, "--export-base", tmp_path, "--version", 3, "--overwrite", "--keep", 1)
    assert outcome.exit_code == 0, outcome.output
    assert not (existing / "marker").exists() and (existing / "saved_model.pb").is_file()
    assert [child.name for child in versions.model_dir(tmp_path).iterdir()] == ["3"]


@pytest.mark.parametrize("problem", ["no checkpoint", "unwritable base"])
def test_cli_bad_input_is_one_line_error(cli, run, tmp_path, problem):
    base = tmp_path / "models"
    run_dir = run
    if problem == "no checkpoint":
        run_dir = tmp_path / "not-a-run"
        run_dir.mkdir()
    else:
        (tmp_path / "file").write_text("")
        base = tmp_path / "file" / "models"
    outcome = cli("export", run_dir, "--export-base", base)
    assert outcome.exit_code == 1
    lines = outcome.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ")
    assert not base.exists()


def test_cli_export_help_documents_every_option(cli):
    outcome = cli("export", "--help")
    assert outcome.exit_code == 0
    for option in ("--export-base", "--version", "--overwrite", "--keep", "--verify-on", "--allow-unfinished"):
        assert option in outcome.output


# --- Real data ------------------------------------------------------------------------


@pytest.mark.real_data
def test_fashion_mnist_accuracy_is_the_same_through_every_path(fashion_mnist_run):
    real, result = fashion_mnist_run.splits, fashion_mnist_run.export
    loaded = tf.saved_model.load(str(result.path))
    labels = real.test.labels
    served, decoded = [], []
    for start in range(0, len(labels), 1000):
        pixels = real.test.images[start:start + 1000]
        served.append(_serve(loaded, pixels)["class_ids"].numpy())
        decoded.append(_encoded(loaded, [_png(image) for image in pixels])["class_ids"].numpy())
    # Pixels and PNG bytes: the same images in the same batches through one loaded model, the same computation.
    np.testing.assert_array_equal(np.concatenate(decoded), np.concatenate(served))
    correct = int(np.sum(np.concatenate(served) == labels))
    evaluation = read_evaluation(fashion_mnist_run.run_dir)
    assert card.read(result.path)["test_accuracy"] == evaluation["test_accuracy"]
    # The evaluation ran the Keras model in training's process: its count of correct class ids agrees but for
    # images whose two most probable classes float32 rounding may swap (usually none; tests/predictions.py).
    allowed = int(near_ties(fashion_mnist_run.test_probabilities).sum())
    assert abs(correct - round(evaluation["test_accuracy"] * len(labels))) <= allowed
    assert correct / len(labels) > 0.8
    print(json.dumps({"test_accuracy": correct / len(labels), "near_ties": allowed,
                      "export_seconds": result.seconds}))
