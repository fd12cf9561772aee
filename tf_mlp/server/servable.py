"""One loaded model version: its SignatureDefs and the functions that run them.

The SignatureDefs are read from the version's `saved_model.pb` (the `serve`
meta graph), so metadata, tensor names, dtypes, shapes and method names are
exactly what TensorFlow Serving would report; the functions come from
`tf.saved_model.load`, TensorFlow's own runtime. A Servable is immutable once
loaded; requests that hold one keep it alive while a newer version replaces
it, which is how an unload never fails a request in flight.
"""

from __future__ import annotations

import dataclasses
import logging
import pathlib

import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import meta_graph_pb2, saved_model_pb2

from tf_mlp.server import tensors
from tf_mlp.server.status import Code, ServingError, from_tensorflow_error, invalid_argument

log = logging.getLogger(__name__)

SERVE_TAG = "serve"
DEFAULT_SIGNATURE = "serving_default"
PREDICT_METHOD = "tensorflow/serving/predict"
CLASSIFY_METHOD = "tensorflow/serving/classify"
REGRESS_METHOD = "tensorflow/serving/regress"
INIT_OP_SIGNATURE = "__saved_model_init_op"
WARMUP_FILE = pathlib.Path("assets.extra") / "tf_serving_warmup_requests"


@dataclasses.dataclass(frozen=True)
class TensorSpec:
    name: str
    """Graph tensor name, e.g. serving_default_images:0."""
    dtype: int
    """tensorflow DataType enum value."""
    shape: tuple | None
    """Dims with None for unknown sizes; None for an unknown rank."""


@dataclasses.dataclass(frozen=True)
class Signature:
    name: str
    method_name: str
    inputs: dict
    """alias -> TensorSpec, aliases sorted."""
    outputs: dict
    """alias -> TensorSpec, aliases sorted."""
    definition: meta_graph_pb2.SignatureDef


def _tensor_specs(tensor_infos) -> dict:
    return {
        alias: TensorSpec(info.name, info.dtype, tensors.shape_of(info.tensor_shape))
        for alias, info in sorted(tensor_infos.items())
    }


def read_signature_defs(path) -> dict:
    """name -> SignatureDef of the SavedModel's serve meta graph (NOT_FOUND if there is none)."""
    saved_model_file = pathlib.Path(path) / "saved_model.pb"
    saved_model = saved_model_pb2.SavedModel()
    try:
        saved_model.ParseFromString(saved_model_file.read_bytes())
    except OSError:
        raise ServingError(
            Code.NOT_FOUND, f"Could not find SavedModel .pb or .pbtxt at supplied export directory path: {path}"
        ) from None
    for meta_graph in saved_model.meta_graphs:
        if SERVE_TAG in meta_graph.meta_info_def.tags:
            return dict(meta_graph.signature_def)
    raise ServingError(
        Code.NOT_FOUND,
        f"Could not find meta graph def matching supplied tags: {{ {SERVE_TAG} }}. "
        "To inspect available tag-sets in the SavedModel, please use the SavedModel CLI: `saved_model_cli`",
    )


class Servable:
    """A loaded version of a model; `run` is thread-safe and may be called concurrently."""

    def __init__(self, model_name: str, version: int, path, signature_defs: dict, loaded):
        self.model_name = model_name
        self.version = version
        self.path = pathlib.Path(path)
        self.signature_defs = signature_defs
        self._loaded = loaded
        self.signatures = {
            name: Signature(name, definition.method_name, _tensor_specs(definition.inputs),
                            _tensor_specs(definition.outputs), definition)
            for name, definition in sorted(signature_defs.items())
        }

    @classmethod
    def load(cls, model_name: str, version: int, path) -> "Servable":
        signature_defs = read_signature_defs(path)
        try:
            loaded = tf.saved_model.load(str(path), tags=[SERVE_TAG])
        except (tf.errors.OpError, ValueError, OSError) as error:
            raise from_tensorflow_error(error) from None
        return cls(model_name, version, path, signature_defs, loaded)

    @property
    def id(self) -> str:
        """ServableId::DebugString, as TensorFlow Serving logs it."""
        return f"{{name: {self.model_name} version: {self.version}}}"

    def signature(self, name: str) -> Signature | None:
        return self.signatures.get(name or DEFAULT_SIGNATURE)

    def check_inputs(self, signature: Signature, inputs: dict) -> None:
        """INVALID_ARGUMENT unless inputs match the signature in names, dtypes and shapes.

        Names are checked with TensorFlow Serving's messages (predict_util.cc).
        Dtype and shape mismatches reach TensorFlow Serving's session, which
        fails with a message from deep inside the graph (or, for some shapes,
        silently computes something else); here they are refused up front,
        naming what the signature expects.
        """
        expected = set(signature.inputs)
        sent = set(inputs)
        if len(sent) != len(expected):
            raise invalid_argument(
                f"input size does not match signature: {len(sent)}!={len(expected)} "
                f"len({{{','.join(sorted(sent))}}}) != len({{{','.join(sorted(expected))}}}). "
                f"Sent extra: {{{','.join(sorted(sent - expected))}}}. "
                f"Missing but required: {{{','.join(sorted(expected - sent))}}}."
            )
        for alias in sorted(sent):
            if alias not in expected:
                raise invalid_argument(
                    f"input tensor alias not found in signature: {alias}. "
                    f"Inputs expected to be in the set {{{','.join(sorted(expected))}}}."
                )
        for index, (alias, spec) in enumerate(signature.inputs.items()):
            array = inputs[alias]
            if tensors.dtype_of(array) != spec.dtype:
                raise invalid_argument(
                    f"Expects arg[{index}] to be {tensors.dtype_name(spec.dtype)} but "
                    f"{tensors.dtype_name(tensors.dtype_of(array))} is provided"
                )
            if spec.shape is not None and (
                len(spec.shape) != array.ndim
                or any(want is not None and want != got for want, got in zip(spec.shape, array.shape))
            ):
                raise invalid_argument(
                    f"input tensor {alias} of signature {signature.name} has shape "
                    f"{tensors.shape_string(array.shape)} but the signature expects {tensors.shape_string(spec.shape)}"
                )

    def run(self, signature: Signature, inputs: dict) -> dict:
        """Run the signature on checked inputs; every output as an ndarray (strings as bytes objects)."""
        function = self._loaded.signatures.get(signature.name)
        if function is None:
            raise invalid_argument(f"Failed to get input map for signature: {signature.name}")
        try:
            results = function(**{alias: tf.constant(array) for alias, array in inputs.items()})
        except tf.errors.OpError as error:
            raise from_tensorflow_error(error) from None
        return {alias: tensor.numpy() for alias, tensor in results.items()}

    def warmup_records(self) -> list:
        """The PredictionLog records of assets.extra/tf_serving_warmup_requests ([] if there is none)."""
        from tensorflow_serving.apis import prediction_log_pb2

        path = self.path / WARMUP_FILE
        if not path.is_file():
            log.info("No warmup data file found at %s", path)
            return []
        records = []
        try:
            for raw in tf.data.TFRecordDataset(str(path)):
                record = prediction_log_pb2.PredictionLog()
                record.ParseFromString(raw.numpy())
                records.append(record)
                if len(records) > 1000:
                    raise invalid_argument(f"Number of warmup records exceeds the maximum (1000) at {path}")
        except tf.errors.DataLossError as error:
            raise ServingError(
                Code.DATA_LOSS, f"{error.message}. Please verify your warmup data is in TFRecord format."
            ) from None
        return records


def stack_strings(values) -> np.ndarray:
    """A 1-D object array of bytes (np.array would make a fixed-width 'S' array and strip NULs)."""
    array = np.empty(len(values), dtype=object)
    array[:] = list(values)
    return array
