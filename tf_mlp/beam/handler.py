"""A RunInference model handler for the exported SavedModel: examples in, batch-predict's rows out.

Beam's own TFModelHandlerNumpy cannot be used: under Keras 3 it loads with
`tf.keras.models.load_model`, which refuses a SavedModel, and its module
imports tensorflow_hub. This handler loads the export with
`tf.saved_model.load` through the in-process client (tf_mlp.client.local),
so the predictions, and the messages of inputs the model refuses, are
exactly those of `tf-mlp batch-predict --target local:MODEL`.

Batches are batch-predict's chunks (made by tf_mlp.beam.staging), not
BatchElements' adaptive ones: the model's float32 round-off depends on the
batch size (measured with TensorFlow 2.21's oneDNN kernels: 457 of 500
Fashion-MNIST rows change in their last bits between batches of 100 and
256, while batches of 128 and more agree), so only the same chunks give the
same file. The handler is therefore used
with_no_batching(): each element is one chunk, a tuple of Examples.
"""

from __future__ import annotations

import atexit
import functools
import shutil
import sys
import tempfile
import typing

import numpy as np
from apache_beam.ml.inference import base

from tf_mlp import client, contract, startup
from tf_mlp.batch import writers
from tf_mlp.client.base import ENCODED, PIXELS


class Example(typing.NamedTuple):
    """One input as it travels through the pipeline: plain fields, which Beam's primitive coder stores as they are."""

    index: int
    identifier: str
    label: typing.Optional[int]
    label_name: typing.Optional[str]
    payload: typing.Optional[bytes]
    """uint8 pixels (28*28 bytes, row-major) or an image file's bytes; None when the input could not be read."""
    failure: typing.Optional[str]
    """Why the input could not be read (it gets an error row without asking the model)."""

    def known(self) -> tuple:
        """What every row of this input starts with: index, id, true label id and name."""
        return self.index, self.identifier, self.label, self.label_name


def is_url(path: str) -> bool:
    """gs://, s3://, hdfs://, file:// ...: read with tf.io.gfile, not the local file system."""
    return "://" in path


class SavedModelHandler(base.ModelHandler):
    """Loads one exported version on each worker and classifies batches of Examples into output rows."""

    def __init__(self, model_path: str, version: int | None, kind: str, model_name: str = contract.MODEL_NAME):
        """model_path: what `local:` takes (version dir, model base, export base), or a URL of a version directory.

        The version is pinned by the launcher, so every worker loads the same
        one even if a newer version is exported while the job runs.
        """
        if kind not in (PIXELS, ENCODED):
            raise ValueError(f"unknown input kind {kind!r}")
        super().__init__()
        self.model_path = model_path
        self.version = version
        self.kind = kind
        self.model_name = model_name

    def load_model(self) -> client.Client:
        if "tensorflow" not in sys.modules:
            # A worker process: TensorFlow imported as the commands import it (its start-up lines dropped, its
            # objects frozen out of garbage collection), not as a side effect of loading the model.
            startup.import_tensorflow()
        if is_url(self.model_path):
            return client.connect(f"local:{stage_locally(self.model_path)}", model=self.model_name)
        return client.connect(f"local:{self.model_path}", model=self.model_name, version=self.version)

    def run_inference(self, batch, model, inference_args=None):
        """One row dict (tf_mlp.batch.writers.COLUMNS) per Example, in batch order."""
        rows = {}
        readable = []
        for example in batch:
            if example.failure is not None:
                rows[example.index] = writers.error_row(*example.known(), example.failure)
            else:
                readable.append(example)
        self._classify(model, readable, rows)
        return [rows[example.index] for example in batch]

    def _classify(self, model, examples, rows) -> None:
        if not examples:
            return
        try:
            prediction = self._predict(model, [example.payload for example in examples])
        except client.ClientError as error:
            if len(examples) == 1:
                rows[examples[0].index] = writers.error_row(*examples[0].known(), str(error))
                return
            # As batch-predict does: a refused batch is halved until the inputs that fail alone are found.
            middle = len(examples) // 2
            self._classify(model, examples[:middle], rows)
            self._classify(model, examples[middle:], rows)
            return
        probabilities = prediction.probability()
        for position, example in enumerate(examples):
            rows[example.index] = writers.prediction_row(*example.known(), int(prediction.class_ids[position]),
                                                         prediction.class_names[position], probabilities[position])

    def _predict(self, model, payloads):
        if self.kind == ENCODED:
            return model.predict_encoded(payloads)
        size = contract.IMAGE_SIZE
        return model.predict(np.frombuffer(b"".join(payloads), np.uint8).reshape(-1, size, size))

    def get_num_bytes(self, batch) -> int:
        # Beam's default pickles the whole batch just to measure it.
        return sum(len(example.payload or b"") for example in batch)

    def get_metrics_namespace(self) -> str:
        return "tf_mlp"


@functools.cache
def stage_locally(url: str) -> str:
    """Copy a version directory from a URL (gs://...) to a local temporary directory, once per worker process.

    The in-process client resolves versions and reads labels on the local
    file system; a SavedModel of this size (a few MB) copies in seconds.
    """
    import tensorflow as tf

    local = tempfile.mkdtemp(prefix="tf-mlp-model-")
    atexit.register(shutil.rmtree, local, True)
    root = url.rstrip("/")
    for directory, _, files in tf.io.gfile.walk(root):
        relative = directory[len(root):].lstrip("/")
        tf.io.gfile.makedirs(f"{local}/{relative}")
        for name in files:
            tf.io.gfile.copy(f"{directory}/{name}", f"{local}/{relative}/{name}", overwrite=True)
    return local
