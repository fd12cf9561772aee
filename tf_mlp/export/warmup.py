"""Warmup requests shipped in assets.extra/tf_serving_warmup_requests.

TensorFlow Serving replays these at load time (with --enable_model_warmup,
its default) so the first real request does not pay for lazy
initialization; a request that fails makes the whole version fail to load,
which is why the export replays them itself before publishing. Format, as
TensorFlow Serving's SavedModel Warmup guide specifies it: a TFRecord file,
each record one serialized `tensorflow.serving.PredictionLog`, at most 1000
records. Built here with the `tensorflow-serving-api` protobuf classes:
PredictRequests for the four predict signatures and ClassificationRequests
for the classify signature, at a few batch sizes each (batch size matters to
the server's batching and to any shape-specialized kernels).
"""

from __future__ import annotations

import pathlib

import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import classification_pb2, predict_pb2, prediction_log_pb2

from tf_mlp import contract, layout
from tf_mlp.errors import ExportError

BATCH_SIZES = (1, 4, 16)
"""Requests per signature: one per batch size."""


def encode_png(pixels: np.ndarray) -> list[bytes]:
    """uint8 [N, 28, 28] -> N grayscale PNG files."""
    return [tf.io.encode_png(image[:, :, np.newaxis]).numpy() for image in np.asarray(pixels, dtype=np.uint8)]


def make_example(png: bytes) -> tf.train.Example:
    """The classify signature's input: a tf.Example with bytes feature "image"."""
    feature = tf.train.Feature(bytes_list=tf.train.BytesList(value=[png]))
    return tf.train.Example(features=tf.train.Features(feature={contract.CLASSIFY_IMAGE_FEATURE: feature}))


def _predict_log(signature: str, input_name: str, values: np.ndarray) -> prediction_log_pb2.PredictionLog:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = contract.MODEL_NAME
    request.model_spec.signature_name = signature
    request.inputs[input_name].CopyFrom(tf.make_tensor_proto(values))
    return prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=request))


def _classify_log(pngs: list[bytes]) -> prediction_log_pb2.PredictionLog:
    request = classification_pb2.ClassificationRequest()
    request.model_spec.name = contract.MODEL_NAME
    request.model_spec.signature_name = contract.CLASSIFY_SIGNATURE
    request.input.example_list.examples.extend(make_example(png) for png in pngs)
    return prediction_log_pb2.PredictionLog(classify_log=prediction_log_pb2.ClassifyLog(request=request))


def build_requests(pixels: np.ndarray) -> list[prediction_log_pb2.PredictionLog]:
    """One request per signature and batch size, made of the given uint8 [N, 28, 28] images."""
    pixels = np.asarray(pixels, dtype=np.uint8)
    if len(pixels) == 0:
        raise ExportError("warmup requests need at least one image")
    logs = []
    for batch_size in BATCH_SIZES:
        # Cycle through the images when there are fewer than the batch size.
        batch = pixels[np.arange(batch_size) % len(pixels)]
        pngs = encode_png(batch)
        logs.append(_predict_log(contract.SERVING_SIGNATURE, contract.IMAGES_INPUT, batch))
        logs.append(_predict_log(contract.ENCODED_SIGNATURE, contract.ENCODED_INPUT, np.array(pngs, dtype=object)))
        raw = np.array([image.tobytes() for image in batch], dtype=object)
        logs.append(_predict_log(contract.RAW_SIGNATURE, contract.RAW_INPUT, raw))
        unit_floats = batch.reshape(batch_size, contract.NUM_PIXELS).astype(np.float32) / 255.0
        logs.append(_predict_log(contract.MNIST_EXAMPLE_SIGNATURE, contract.IMAGES_INPUT, unit_floats))
        logs.append(_classify_log(pngs))
    return logs


def write_requests(saved_model_dir, pixels: np.ndarray) -> pathlib.Path:
    """Write assets.extra/tf_serving_warmup_requests; return its path."""
    path = layout.assets_extra_path(saved_model_dir, contract.WARMUP_FILE)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tf.io.TFRecordWriter(str(path)) as writer:
        for log in build_requests(pixels):
            writer.write(log.SerializeToString())
    return path


def read_requests(path) -> list[prediction_log_pb2.PredictionLog]:
    """Parse every record of a warmup file as a PredictionLog."""
    logs = []
    for record in tf.data.TFRecordDataset(str(path)):
        log = prediction_log_pb2.PredictionLog()
        log.ParseFromString(record.numpy())
        logs.append(log)
    return logs


def request_inputs(log: prediction_log_pb2.PredictionLog) -> tuple[str, dict]:
    """(signature name, {input key: ndarray}) of one warmup request, as the server would feed it."""
    kind = log.WhichOneof("log_type")
    if kind == "predict_log":
        request = log.predict_log.request
        inputs = {name: tf.make_ndarray(tensor) for name, tensor in request.inputs.items()}
    elif kind == "classify_log":
        request = log.classify_log.request
        serialized = [example.SerializeToString() for example in request.input.example_list.examples]
        inputs = {contract.CLASSIFY_INPUT: np.array(serialized, dtype=object)}
    else:
        raise ExportError(f"warmup record of unsupported type {kind!r}")
    return request.model_spec.signature_name or contract.SERVING_SIGNATURE, inputs


def replay(run, path) -> int:
    """Run every request of the warmup file with run(signature, inputs); return how many ran. Errors propagate."""
    logs = read_requests(path)
    if not 0 < len(logs) <= 1000:
        raise ExportError(f"{path}: {len(logs)} warmup records; TensorFlow Serving needs 1 to 1000")
    for log in logs:
        run(*request_inputs(log))
    return len(logs)
