"""Check a written SavedModel against the in-memory model before it is published.

The SavedModel is loaded afresh with `tf.saved_model.load` (nothing shared
with the objects that saved it) and every signature is called on the same
real images as the in-memory Keras model: probabilities must agree within
1e-6, class ids exactly, class names must be the labels of those ids. The
labels asset, the classify method name and every warmup request are checked
too, because TensorFlow Serving refuses to load a version whose warmup fails.
Any disagreement raises ExportError and the version is not published.
"""

from __future__ import annotations

import pathlib

import numpy as np
import tensorflow as tf

from tf_mlp import contract
from tf_mlp.errors import ExportError
from tf_mlp.export import describe, signatures, warmup

TOLERANCE = 1e-6
"""Largest allowed |probability difference| between the SavedModel and the in-memory model."""


def expected_probabilities(model, pixels: np.ndarray) -> np.ndarray:
    """What every signature must reproduce: softmax of the in-memory model's logits."""
    return tf.nn.softmax(model(tf.constant(pixels, dtype=tf.uint8), training=False), axis=-1).numpy()


def _fail(what: str, detail: str):
    raise ExportError(f"verification failed, version not published: {what}: {detail}")


def _compare(what: str, probabilities, expected: np.ndarray) -> float:
    probabilities = np.asarray(probabilities)
    if probabilities.shape != expected.shape:
        _fail(what, f"shape {probabilities.shape}, expected {expected.shape}")
    difference = float(np.max(np.abs(probabilities - expected))) if expected.size else 0.0
    if not difference <= TOLERANCE:
        _fail(what, f"probabilities differ from the in-memory model by {difference:.3g} (> {TOLERANCE:g})")
    if not np.array_equal(np.argmax(probabilities, axis=-1), np.argmax(expected, axis=-1)):
        _fail(what, "class ids differ from the in-memory model")
    return difference


def _check_predictions(what: str, outputs: dict, expected: np.ndarray, class_names) -> float:
    difference = _compare(what, outputs[contract.PROBABILITIES_OUTPUT], expected)
    expected_ids = np.argmax(expected, axis=-1)
    if not np.array_equal(outputs[contract.CLASS_IDS_OUTPUT].numpy(), expected_ids):
        _fail(what, "class_ids differ from the in-memory model")
    names = [name.decode() for name in outputs[contract.CLASS_NAMES_OUTPUT].numpy()]
    if names != [class_names[index] for index in expected_ids]:
        _fail(what, "class_names are not the labels of class_ids")
    return difference


def _call(loaded, signature: str, **inputs) -> dict:
    try:
        return loaded.signatures[signature](**inputs)
    except (tf.errors.OpError, TypeError, ValueError) as error:
        _fail(f"signature {signature!r}", str(error).strip().splitlines()[0])


def verify_saved_model(saved_model_dir, model, class_names, pixels: np.ndarray) -> dict:
    """Raise ExportError unless the SavedModel behaves like the model; return what was checked."""
    saved_model_dir = pathlib.Path(saved_model_dir)
    pixels = np.asarray(pixels, dtype=np.uint8)
    class_names = list(class_names)
    labels = (saved_model_dir / "assets" / contract.LABELS_ASSET).read_text().splitlines()
    if labels != class_names:
        _fail(f"assets/{contract.LABELS_ASSET}", f"holds {labels}, expected {class_names}")
    summary = describe.signature_summary(saved_model_dir)
    classify_method = summary.get(contract.CLASSIFY_SIGNATURE, {}).get("method")
    if classify_method != contract.CLASSIFY_METHOD_NAME:
        _fail(f"signature {contract.CLASSIFY_SIGNATURE!r}", f"method name {classify_method!r}")

    loaded = tf.saved_model.load(str(saved_model_dir))
    missing = [name for name in signatures.SIGNATURE_NAMES if name not in loaded.signatures]
    if missing:
        _fail("signatures", f"missing {', '.join(missing)}")
    expected = expected_probabilities(model, pixels)
    pngs = tf.constant(warmup.encode_png(pixels), dtype=tf.string)
    differences = {}

    outputs = _call(loaded, contract.SERVING_SIGNATURE, **{contract.IMAGES_INPUT: tf.constant(pixels)})
    differences[contract.SERVING_SIGNATURE] = _check_predictions(
        contract.SERVING_SIGNATURE, outputs, expected, class_names
    )

    outputs = _call(loaded, contract.ENCODED_SIGNATURE, **{contract.ENCODED_INPUT: pngs})
    differences[contract.ENCODED_SIGNATURE] = _check_predictions(
        contract.ENCODED_SIGNATURE, outputs, expected, class_names
    )

    raw = tf.constant([image.tobytes() for image in pixels], dtype=tf.string)
    outputs = _call(loaded, contract.RAW_SIGNATURE, **{contract.RAW_INPUT: raw})
    differences[contract.RAW_SIGNATURE] = _check_predictions(contract.RAW_SIGNATURE, outputs, expected, class_names)

    unit_floats = pixels.reshape(len(pixels), contract.NUM_PIXELS).astype(np.float32) / 255.0
    outputs = _call(loaded, contract.MNIST_EXAMPLE_SIGNATURE, **{contract.IMAGES_INPUT: tf.constant(unit_floats)})
    differences[contract.MNIST_EXAMPLE_SIGNATURE] = _compare(
        contract.MNIST_EXAMPLE_SIGNATURE, outputs[contract.MNIST_EXAMPLE_OUTPUT], expected
    )

    examples = [warmup.make_example(png).SerializeToString() for png in pngs.numpy()]
    serialized = tf.constant(examples, dtype=tf.string)
    outputs = _call(loaded, contract.CLASSIFY_SIGNATURE, **{contract.CLASSIFY_INPUT: serialized})
    differences[contract.CLASSIFY_SIGNATURE] = _compare(
        contract.CLASSIFY_SIGNATURE, outputs[contract.CLASSIFY_SCORES_OUTPUT], expected
    )
    classes = outputs[contract.CLASSIFY_CLASSES_OUTPUT].numpy().astype(str)
    if classes.shape != (len(pixels), len(class_names)) or not all(list(row) == class_names for row in classes):
        _fail(contract.CLASSIFY_SIGNATURE, "classes are not the class names in class-id order")

    try:
        warmup_records = warmup.replay(loaded, saved_model_dir / "assets.extra" / contract.WARMUP_FILE)
    except tf.errors.OpError as error:
        _fail("warmup request", str(error).strip().splitlines()[0])
    return {
        "images": int(len(pixels)),
        "tolerance": TOLERANCE,
        "max_probability_difference": differences,
        "warmup_requests": warmup_records,
    }

