"""The exported signatures, written with Keras's ExportArchive so TensorFlow Serving can load them.

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
                      even where a server checks method names

The model outputs logits; the softmax is applied here, in the signatures
only. Class names come from `assets/labels.txt` (line number = class id)
through a lookup table, so they always match the shipped labels file. See
tf_mlp.export.images for how encoded images and float pixels become uint8
pixels.

Why ExportArchive: TensorFlow Serving loads a SavedModel with the session
based loader (MetaGraph tagged "serve", variables restored by the
SavedModel's own saver, signatures run by tensor name in a Session). A plain
tf.Module holding a Keras 3 model, saved with tf.saved_model.save, loads in
tf.saved_model.load but not there ("Could not find variable ..."): the
Keras variables are not restored by that saver. ExportArchive tracks the
model's variables itself, which the saver does restore.

Method names: tf.saved_model.save (and so ExportArchive) marks every
signature tensorflow/serving/predict. tensorflow_model_server accepts that
for Classify by default (--enable_signature_method_name_check is off), but
with the check on it refuses it, so the classify SignatureDef is given its
method name in saved_model.pb after saving. fingerprint.pb, a checksum of
saved_model.pb as saved, would then be wrong and is removed; every loader
treats it as optional.
"""

from __future__ import annotations

import pathlib

import keras
import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2

from tf_mlp import contract, layout
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

METHOD_NAMES = {contract.CLASSIFY_SIGNATURE: contract.CLASSIFY_METHOD_NAME}
"""Signatures whose method is not tensorflow/serving/predict."""

FINGERPRINT_FILE = "fingerprint.pb"


def class_table(labels_path: str) -> tf.lookup.StaticHashTable:
    """class id -> class name, read from the labels file (line number = class id).

    The initializer wraps the path in a tf.saved_model.Asset: the file is
    copied into the SavedModel's assets/ under its base name, and loaders
    (the session loader too) feed its path wherever the version lives.
    """
    initializer = tf.lookup.TextFileInitializer(
        labels_path,
        key_dtype=tf.int64,
        key_index=tf.lookup.TextFileIndex.LINE_NUMBER,
        value_dtype=tf.string,
        value_index=tf.lookup.TextFileIndex.WHOLE_LINE,
    )
    return tf.lookup.StaticHashTable(initializer, default_value="")


class ServingFunctions:
    """The signature functions over one Keras model (uint8 pixels -> logits) and its class table."""

    def __init__(self, model, table: tf.lookup.StaticHashTable):
        self.model = model
        self.table = table
        self.num_classes = int(model.output_shape[-1])

    def _predict(self, pixels: tf.Tensor) -> dict:
        probabilities = tf.nn.softmax(self.model(pixels, training=False), axis=-1)
        class_ids = tf.argmax(probabilities, axis=-1, output_type=tf.int64)
        return {
            contract.PROBABILITIES_OUTPUT: probabilities,
            contract.CLASS_IDS_OUTPUT: class_ids,
            contract.CLASS_NAMES_OUTPUT: self.table.lookup(class_ids),
        }

    def serve_pixels(self, images_uint8):
        return self._predict(images_uint8)

    def serve_encoded(self, image_bytes):
        return self._predict(images.decode_images(image_bytes, contract.ENCODED_INPUT))

    def serve_raw(self, pixels_bytes):
        return self._predict(images.pixels_from_raw_bytes(pixels_bytes, contract.RAW_INPUT))

    def serve_unit_floats(self, images_float):
        probabilities = self._predict(images.pixels_from_unit_floats(images_float))[contract.PROBABILITIES_OUTPUT]
        return {contract.MNIST_EXAMPLE_OUTPUT: probabilities}

    def serve_examples(self, serialized_examples):
        features = tf.io.parse_example(
            serialized_examples,
            {contract.CLASSIFY_IMAGE_FEATURE: tf.io.FixedLenFeature([], tf.string)},
        )
        pixels = images.decode_images(features[contract.CLASSIFY_IMAGE_FEATURE], contract.CLASSIFY_IMAGE_FEATURE)
        probabilities = self._predict(pixels)[contract.PROBABILITIES_OUTPUT]
        # Classify answers every class with its score; the label row is the
        # same for every example.
        names = self.table.lookup(tf.range(self.num_classes, dtype=tf.int64))
        classes = tf.tile(names[tf.newaxis, :], [tf.shape(probabilities)[0], 1])
        return {contract.CLASSIFY_CLASSES_OUTPUT: classes, contract.CLASSIFY_SCORES_OUTPUT: probabilities}

    def endpoints(self) -> dict:
        """{signature name: (function, input spec)}; the spec's name is the signature's input key."""
        return {
            contract.SERVING_SIGNATURE: (self.serve_pixels, _PIXELS),
            contract.ENCODED_SIGNATURE: (self.serve_encoded, _ENCODED),
            contract.RAW_SIGNATURE: (self.serve_raw, _RAW),
            contract.MNIST_EXAMPLE_SIGNATURE: (self.serve_unit_floats, _UNIT_FLOATS),
            contract.CLASSIFY_SIGNATURE: (self.serve_examples, _EXAMPLES),
        }


def build_archive(model, labels_path: str) -> keras.export.ExportArchive:
    """An ExportArchive with the model, its class table and one endpoint per signature."""
    table = class_table(labels_path)
    archive = keras.export.ExportArchive()
    archive.track(model)
    # Lookup tables are not found from the endpoints; tracking the table also
    # tracks its initializer and so the labels asset.
    archive.track(table)
    for name, (function, spec) in ServingFunctions(model, table).endpoints().items():
        archive.add_endpoint(name, function, input_signature=[spec])
    return archive


def save(model, class_names, directory) -> None:
    """Write the SavedModel with all signatures into directory (which may exist and be empty)."""
    directory = pathlib.Path(directory)
    # The labels file must be named labels.txt before saving: the Asset keeps
    # its base name inside assets/. It is written beside the SavedModel's
    # files and removed once it has been copied into assets/.
    labels_source = directory / "labels-source" / contract.LABELS_ASSET
    labels_source.parent.mkdir(parents=True)
    labels_source.write_text("".join(f"{name}\n" for name in class_names))
    build_archive(model, str(labels_source)).write_out(str(directory), verbose=False)
    labels_source.unlink()
    labels_source.parent.rmdir()
    set_method_names(directory, METHOD_NAMES)


def set_method_names(directory, method_names: dict) -> None:
    """Give signatures a method name other than predict, in saved_model.pb (see the module docstring)."""
    path = pathlib.Path(directory) / layout.SAVED_MODEL_FILE
    saved_model = saved_model_pb2.SavedModel()
    saved_model.ParseFromString(path.read_bytes())
    for meta_graph in saved_model.meta_graphs:
        for name, method in method_names.items():
            # Indexing a protobuf map inserts missing keys; only edit what exists.
            if name in meta_graph.signature_def:
                meta_graph.signature_def[name].method_name = method
    path.write_bytes(saved_model.SerializeToString())
    # Its checksums describe the file as saved, no longer this one.
    (pathlib.Path(directory) / FINGERPRINT_FILE).unlink(missing_ok=True)
