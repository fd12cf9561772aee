"""Check a written SavedModel against the in-memory model before it is published.

The SavedModel is loaded afresh twice, sharing nothing with the objects that
saved it:

- as TensorFlow Serving loads it: `tf.compat.v1.saved_model.loader.load`
  into a new tf.Graph and tf.compat.v1.Session (MetaGraph tagged "serve",
  variables restored by the SavedModel's own saver, the init op run with the
  asset paths), every signature then run by its SignatureDef's tensor names;
- as the local client and the Beam handler load it: `tf.saved_model.load`,
  every signature called as a concrete function.

Through each, every signature runs on the same real images as the in-memory
Keras model: probabilities must agree within 1e-5, class ids exactly, class
names must be the labels of those ids. The labels asset, the classify method
name and every warmup request (replayed through the session, as the server
does before serving a version) are checked too. Any disagreement or failure
raises ExportError and the version is not published.
"""

from __future__ import annotations

import pathlib

import numpy as np
import tensorflow as tf

from tf_mlp import contract, layout
from tf_mlp.errors import ExportError, first_line
from tf_mlp.export import describe, signatures, warmup

TOLERANCE = contract.PROBABILITY_TOLERANCE
"""Largest allowed |probability difference| between the SavedModel and the in-memory model: the graph the
loaders run may fuse or pick other kernels than Keras's eager calls, so the last bits may differ."""

SESSION_LOADER = "session"
"""tf.compat.v1.saved_model.loader.load in a Session, as TensorFlow Serving loads a SavedModel."""
OBJECT_LOADER = "tf.saved_model.load"


def expected_probabilities(model, pixels: np.ndarray) -> np.ndarray:
    """What every signature must reproduce: softmax of the in-memory model's logits."""
    return tf.nn.softmax(model(tf.constant(pixels, dtype=tf.uint8), training=False), axis=-1).numpy()


def _fail(what: str, detail: str):
    raise ExportError(f"verification failed, version not published: {what}: {detail}")


class SessionModel:
    """A SavedModel loaded the way TensorFlow Serving's C++ LoadSavedModel does, in its own graph."""

    def __init__(self, saved_model_dir):
        self.graph = tf.Graph()
        self.session = tf.compat.v1.Session(graph=self.graph)
        logger = tf.get_logger()
        level = logger.level
        # The loader logs that it is deprecated in favour of tf.saved_model.load;
        # it is used on purpose, as the Python twin of TensorFlow Serving's loader.
        logger.setLevel("ERROR")
        try:
            with self.graph.as_default():
                meta_graph = tf.compat.v1.saved_model.loader.load(
                    self.session, [tf.saved_model.SERVING], str(saved_model_dir)
                )
        except BaseException:
            self.close()
            raise
        finally:
            logger.setLevel(level)
        self.signature_defs = dict(meta_graph.signature_def)

    @property
    def signature_names(self):
        return set(self.signature_defs)

    def run(self, signature: str, inputs: dict) -> dict:
        """{output key: ndarray}: feed and fetch by the SignatureDef's tensor names."""
        definition = self.signature_defs[signature]
        if set(inputs) != set(definition.inputs):
            raise ValueError(f"inputs {sorted(inputs)}, the signature takes {sorted(definition.inputs)}")
        feed = {definition.inputs[key].name: value for key, value in inputs.items()}
        fetches = {key: info.name for key, info in definition.outputs.items()}
        return self.session.run(fetches, feed_dict=feed)

    def close(self) -> None:
        self.session.close()


class ObjectModel:
    """A SavedModel loaded with tf.saved_model.load, its signatures called as concrete functions."""

    def __init__(self, saved_model_dir):
        self.loaded = tf.saved_model.load(str(saved_model_dir))

    @property
    def signature_names(self):
        return set(self.loaded.signatures)

    def run(self, signature: str, inputs: dict) -> dict:
        arguments = {key: tf.constant(value) for key, value in inputs.items()}
        return {key: value.numpy() for key, value in self.loaded.signatures[signature](**arguments).items()}

    def close(self) -> None:
        pass


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
    if not np.array_equal(outputs[contract.CLASS_IDS_OUTPUT], expected_ids):
        _fail(what, "class_ids differ from the in-memory model")
    names = [bytes(name).decode() for name in outputs[contract.CLASS_NAMES_OUTPUT]]
    if names != [class_names[index] for index in expected_ids]:
        _fail(what, "class_names are not the labels of class_ids")
    return difference




def check_signatures(loaded, loader: str, pixels: np.ndarray, expected: np.ndarray, class_names) -> dict:
    """Run every signature of a loaded SavedModel on pixels; {signature: max probability difference}."""
    missing = [name for name in signatures.SIGNATURE_NAMES if name not in loaded.signature_names]
    if missing:
        _fail(f"signatures ({loader})", f"missing {', '.join(missing)}")
    pngs = np.array(warmup.encode_png(pixels), dtype=object)
    differences = {}

    def check(signature, inputs, outputs_check):
        what = f"signature {signature!r} ({loader})"
        try:
            outputs = loaded.run(signature, inputs)
        except (tf.errors.OpError, TypeError, ValueError, KeyError) as error:
            _fail(what, first_line(error))
        differences[signature] = outputs_check(what, outputs)

    def predictions(what, outputs):
        return _check_predictions(what, outputs, expected, class_names)

    check(contract.SERVING_SIGNATURE, {contract.IMAGES_INPUT: pixels}, predictions)
    check(contract.ENCODED_SIGNATURE, {contract.ENCODED_INPUT: pngs}, predictions)
    raw = np.array([image.tobytes() for image in pixels], dtype=object)
    check(contract.RAW_SIGNATURE, {contract.RAW_INPUT: raw}, predictions)

    unit_floats = pixels.reshape(len(pixels), contract.NUM_PIXELS).astype(np.float32) / 255.0
    check(
        contract.MNIST_EXAMPLE_SIGNATURE,
        {contract.IMAGES_INPUT: unit_floats},
        lambda what, outputs: _compare(what, outputs[contract.MNIST_EXAMPLE_OUTPUT], expected),
    )

    def classified(what, outputs):
        difference = _compare(what, outputs[contract.CLASSIFY_SCORES_OUTPUT], expected)
        classes = np.asarray(outputs[contract.CLASSIFY_CLASSES_OUTPUT]).astype(str)
        if classes.shape != (len(pixels), len(class_names)) or not all(list(row) == class_names for row in classes):
            _fail(what, "classes are not the class names in class-id order")
        return difference

    examples = np.array([warmup.make_example(png).SerializeToString() for png in pngs], dtype=object)
    check(contract.CLASSIFY_SIGNATURE, {contract.CLASSIFY_INPUT: examples}, classified)
    return differences


def _load(loader_class, loader: str, saved_model_dir):
    try:
        return loader_class(saved_model_dir)
    except (tf.errors.OpError, OSError, RuntimeError, ValueError) as error:
        _fail(f"loading ({loader})", first_line(error))


def verify_saved_model(saved_model_dir, model, class_names, pixels: np.ndarray) -> dict:
    """Raise ExportError unless the SavedModel behaves like the model under both loaders; return what was checked."""
    saved_model_dir = pathlib.Path(saved_model_dir)
    pixels = np.asarray(pixels, dtype=np.uint8)
    class_names = list(class_names)
    labels = layout.labels_asset_path(saved_model_dir).read_text().splitlines()
    if labels != class_names:
        _fail(f"assets/{contract.LABELS_ASSET}", f"holds {labels}, expected {class_names}")
    summary = describe.signature_summary(saved_model_dir)
    for name, method in signatures.METHOD_NAMES.items():
        found = summary.get(name, {}).get("method")
        if found != method:
            _fail(f"signature {name!r}", f"method name {found!r}, expected {method!r}")

    expected = expected_probabilities(model, pixels)
    differences = {}
    warmup_records = 0
    for loader_class, loader in ((SessionModel, SESSION_LOADER), (ObjectModel, OBJECT_LOADER)):
        loaded = _load(loader_class, loader, saved_model_dir)
        try:
            differences[loader] = check_signatures(loaded, loader, pixels, expected, class_names)
            if loader == SESSION_LOADER:
                # TensorFlow Serving replays the warmup file in the session it serves from.
                try:
                    warmup_file = layout.assets_extra_path(saved_model_dir, contract.WARMUP_FILE)
                    warmup_records = warmup.replay(loaded.run, warmup_file)
                except (tf.errors.OpError, KeyError, ValueError) as error:
                    _fail(f"warmup request ({loader})", first_line(error))
        finally:
            loaded.close()
    return {
        "images": int(len(pixels)),
        "tolerance": TOLERANCE,
        "loaders": [SESSION_LOADER, OBJECT_LOADER],
        "max_probability_difference": differences,
        "warmup_requests": warmup_records,
    }
