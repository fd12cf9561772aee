"""The serving module: one tf.Module holding the model, its labels and the four signatures.

    serving_default   images uint8 [None, 28, 28]
                      -> probabilities float32 [None, K], class_ids int64 [None], class_names string [None]
    predict_encoded   image_bytes string [None] (PNG/JPEG file bytes; {"b64": ...} in JSON)
                      -> the same three outputs
    predict_raw       pixels_bytes string [None] (784 raw uint8 pixels, row-major; {"b64": ...} in JSON)
                      -> the same three outputs; the compact form for REST (a third of the JSON
                      of nested pixel lists, and base64 decodes far faster than 784 JSON numbers)
    predict_images    images float32 [None, 784] in [0, 1]   (TensorFlow Serving's MNIST example)
                      -> scores float32 [None, K]
    classify          inputs string [None] (serialized tf.Example, bytes feature "image" = PNG/JPEG bytes)
                      -> classes string [None, K] (class names), scores float32 [None, K]
                      method tensorflow/serving/classify, so REST :classify and gRPC Classify work

The model outputs logits; the softmax is applied here, in the signatures
only. Class names come from `assets/labels.txt` (line number = class id)
through a lookup table, so they always match the shipped labels file. See
tf_mlp.export.images for how encoded images and float pixels become uint8
pixels.
"""

from __future__ import annotations

import pathlib

import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow.python.saved_model import fingerprinting_utils

from tf_mlp import contract
from tf_mlp.export import images

SIGNATURE_NAMES = (
    contract.SERVING_SIGNATURE,
    contract.ENCODED_SIGNATURE,
    contract.RAW_SIGNATURE,
    contract.MNIST_EXAMPLE_SIGNATURE,
    contract.CLASSIFY_SIGNATURE,
)

_PIXELS = tf.TensorSpec([None, contract.IMAGE_SIZE, contract.IMAGE_SIZE], tf.uint8, name=contract.IMAGES_INPUT)
_ENCODED = tf.TensorSpec([None], tf.string, name=contract.ENCODED_INPUT)
_RAW = tf.TensorSpec([None], tf.string, name=contract.RAW_INPUT)
_UNIT_FLOATS = tf.TensorSpec([None, contract.NUM_PIXELS], tf.float32, name=contract.IMAGES_INPUT)
_EXAMPLES = tf.TensorSpec([None], tf.string, name=contract.CLASSIFY_INPUT)


class ServingModule(tf.Module):
    """The exported object: `model` (logits), `labels` (asset) and the signature functions."""

    def __init__(self, model, labels_path: str):
        super().__init__(name="tf_mlp_serving")
        self.model = model
        # The Asset is copied into the SavedModel's assets/ under its base name
        # and its path is rewritten on load, wherever the version lives.
        self.labels = tf.saved_model.Asset(labels_path)
        initializer = tf.lookup.TextFileInitializer(
            self.labels,
            key_dtype=tf.int64,
            key_index=tf.lookup.TextFileIndex.LINE_NUMBER,
            value_dtype=tf.string,
            value_index=tf.lookup.TextFileIndex.WHOLE_LINE,
        )
        self.class_table = tf.lookup.StaticHashTable(initializer, default_value="")
        self.num_classes = int(model.output_shape[-1])

    def _predict(self, pixels: tf.Tensor) -> dict:
        probabilities = tf.nn.softmax(self.model(pixels, training=False), axis=-1)
        class_ids = tf.argmax(probabilities, axis=-1, output_type=tf.int64)
        return {
            contract.PROBABILITIES_OUTPUT: probabilities,
            contract.CLASS_IDS_OUTPUT: class_ids,
            contract.CLASS_NAMES_OUTPUT: self.class_table.lookup(class_ids),
        }

    @tf.function(input_signature=[_PIXELS])
    def serve_pixels(self, images_uint8):
        return self._predict(images_uint8)

    @tf.function(input_signature=[_ENCODED])
    def serve_encoded(self, image_bytes):
        return self._predict(images.decode_images(image_bytes, contract.ENCODED_INPUT))

    @tf.function(input_signature=[_RAW])
    def serve_raw(self, pixels_bytes):
        return self._predict(images.pixels_from_raw_bytes(pixels_bytes, contract.RAW_INPUT))

    @tf.function(input_signature=[_UNIT_FLOATS])
    def serve_unit_floats(self, images_float):
        probabilities = self._predict(images.pixels_from_unit_floats(images_float))[contract.PROBABILITIES_OUTPUT]
        return {contract.MNIST_EXAMPLE_OUTPUT: probabilities}

    @tf.function(input_signature=[_EXAMPLES])
    def serve_examples(self, serialized_examples):
        features = tf.io.parse_example(
            serialized_examples,
            {contract.CLASSIFY_IMAGE_FEATURE: tf.io.FixedLenFeature([], tf.string)},
        )
        pixels = images.decode_images(features[contract.CLASSIFY_IMAGE_FEATURE], contract.CLASSIFY_IMAGE_FEATURE)
        probabilities = self._predict(pixels)[contract.PROBABILITIES_OUTPUT]
        # Classify answers every class with its score; the label row is the
        # same for every example.
        names = self.class_table.lookup(tf.range(self.num_classes, dtype=tf.int64))
        classes = tf.tile(names[tf.newaxis, :], [tf.shape(probabilities)[0], 1])
        return {contract.CLASSIFY_CLASSES_OUTPUT: classes, contract.CLASSIFY_SCORES_OUTPUT: probabilities}

    def signatures(self) -> dict:
        return {
            contract.SERVING_SIGNATURE: self.serve_pixels,
            contract.ENCODED_SIGNATURE: self.serve_encoded,
            contract.RAW_SIGNATURE: self.serve_raw,
            contract.MNIST_EXAMPLE_SIGNATURE: self.serve_unit_floats,
            contract.CLASSIFY_SIGNATURE: self.serve_examples,
        }


METHOD_NAMES = {contract.CLASSIFY_SIGNATURE: contract.CLASSIFY_METHOD_NAME}
"""Signatures whose method is not tensorflow/serving/predict."""


def save(model, class_names, directory) -> None:
    """Write the SavedModel with all signatures into directory (which may exist and be empty)."""
    directory = pathlib.Path(directory)
    # The labels file must be named labels.txt before saving: the Asset keeps
    # its base name inside assets/. It is written beside the SavedModel's
    # files and removed once it has been copied into assets/.
    labels_source = directory / "labels-source" / contract.LABELS_ASSET
    labels_source.parent.mkdir(parents=True)
    labels_source.write_text("".join(f"{name}\n" for name in class_names))
    module = ServingModule(model, str(labels_source))
    tf.saved_model.save(module, str(directory), signatures=module.signatures())
    labels_source.unlink()
    labels_source.parent.rmdir()
    set_method_names(directory, METHOD_NAMES)


def set_method_names(directory, method_names: dict) -> None:
    """Give signatures a method name other than predict.

    tf.saved_model.save marks every signature tensorflow/serving/predict and
    has no option to change it (tensorflow/tensorflow#38081), but TensorFlow
    Serving's Classify API refuses a signature unless its method name is
    tensorflow/serving/classify. So the SignatureDefs in saved_model.pb are
    edited after saving, and the fingerprint, which checksums that file, is
    written again.
    """
    path = pathlib.Path(directory) / "saved_model.pb"
    saved_model = saved_model_pb2.SavedModel()
    saved_model.ParseFromString(path.read_bytes())
    for meta_graph in saved_model.meta_graphs:
        for name, method in method_names.items():
            # Indexing a protobuf map inserts missing keys; only edit what exists.
            if name in meta_graph.signature_def:
                meta_graph.signature_def[name].method_name = method
    path.write_bytes(saved_model.SerializeToString())
    fingerprinting_utils.write_fingerprint(str(directory))
