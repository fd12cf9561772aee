"""A version's `model.tflite` served by TensorFlow Lite (--prefer_tflite_model).

The SignatureDefs are, as in TensorFlow Serving's TfLiteSession, those stored
in the model's `signature_defs_metadata` (a flexbuffer map of serialized
SignatureDefs, tensor names matched with or without their `:0`); failing
that, the model's own TFLite signatures (aliases as the signature names them,
method predict); failing that, the one TensorFlow Serving generates:
`serving_default`, aliases the tensor names without their `:0`, shapes the
tensors' current dims. Runs feed and fetch by tensor name, like the session
runner; an interpreter is not thread-safe, so runs take turns.
"""

from __future__ import annotations

import pathlib
import struct
import threading
import warnings

import numpy as np
import tensorflow as tf
from flatbuffers import encode, flexbuffers, number_types, packer, table
from google.protobuf.message import DecodeError
from tensorflow.core.protobuf import meta_graph_pb2

from tf_mlp import contract
from tf_mlp.server.core.status import Code, ServingError, invalid_argument, one_line

_SIGNATURE_METADATA = b"signature_defs_metadata"
# Field numbers in TFLite's schema.fbs: Model.buffers, Model.metadata; Metadata.name, .buffer; Buffer.data.
_MODEL_BUFFERS, _MODEL_METADATA = 4, 6
_METADATA_NAME, _METADATA_BUFFER = 0, 1
_BUFFER_DATA = 0


def _tensor_info(name: str, dtype, shape) -> meta_graph_pb2.TensorInfo:
    info = meta_graph_pb2.TensorInfo(name=name, dtype=tf.as_dtype(dtype).as_datatype_enum)
    for size in shape:
        info.tensor_shape.dim.add(size=int(size))
    return info


def _legacy_name(tensor_name: str) -> str:
    """TfToTfLiteLegacyTensorName: the name before its ':index'."""
    return tensor_name.split(":", 1)[0]


def _tables(buffer: bytearray, parent: table.Table, field: int) -> list:
    """The tables of a vector field of a flatbuffer table."""
    offset = parent.Offset(4 + 2 * field)
    if not offset:
        return []
    start = parent.Vector(offset)
    return [table.Table(buffer, parent.Indirect(start + 4 * index)) for index in range(parent.VectorLen(offset))]


def metadata_signature_defs(model_bytes: bytes) -> dict:
    """key -> SignatureDef stored in a TFLite model's signature_defs_metadata ({} if it has none)."""
    buffer = bytearray(model_bytes)
    model = table.Table(buffer, encode.Get(packer.uoffset, buffer, 0))
    for metadata in _tables(buffer, model, _MODEL_METADATA):
        name_offset = metadata.Offset(4 + 2 * _METADATA_NAME)
        if not name_offset or metadata.String(name_offset + metadata.Pos) != _SIGNATURE_METADATA:
            continue
        buffer_offset = metadata.Offset(4 + 2 * _METADATA_BUFFER)
        index = metadata.Get(number_types.Uint32Flags, buffer_offset + metadata.Pos) if buffer_offset else 0
        data = _tables(buffer, model, _MODEL_BUFFERS)[index]
        data_offset = data.Offset(4 + 2 * _BUFFER_DATA)
        start = data.Vector(data_offset)
        signature_map = flexbuffers.GetRoot(bytes(buffer[start:start + data.VectorLen(data_offset)])).AsMap
        definitions = {}
        for key, value in zip(signature_map.Keys, signature_map.Values):
            definition = meta_graph_pb2.SignatureDef()
            definition.ParseFromString(value.AsStringBytes)
            definitions[key.AsKey] = definition
        return definitions
    return {}


class TfLiteRunner:
    def __init__(self, model_file):
        try:
            with warnings.catch_warnings():
                # tf.lite.Interpreter warns that LiteRT's package will replace it; it is TensorFlow's own here.
                warnings.filterwarnings("ignore", message=".*tf.lite.Interpreter is deprecated", category=UserWarning)
                self._interpreter = tf.lite.Interpreter(model_path=str(model_file))
            self._interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as error:
            raise ServingError(Code.INVALID_ARGUMENT, f"Cannot build Interpreter from {model_file}: "
                                                      f"{one_line(str(error))}") from None
        self._lock = threading.Lock()
        self._runners = {}  # signature key -> SignatureRunner (None: run by tensor names on the main graph)
        self.signature_defs = {}
        try:
            stored = metadata_signature_defs(pathlib.Path(model_file).read_bytes())
        except (ValueError, IndexError, struct.error, DecodeError) as error:
            raise ServingError(Code.INVALID_ARGUMENT, f"Invalid SignatureDefs found in TfLite model: {error}") from None
        if stored:
            tensor_names = {detail["name"] for detail in
                            self._interpreter.get_input_details() + self._interpreter.get_output_details()}
            for key, definition in stored.items():
                for kind, infos in (("input", definition.inputs), ("output", definition.outputs)):
                    for alias, info in infos.items():
                        # FixTfLiteTensorName: early converters dropped the ':0' of TensorFlow's names.
                        if info.name not in tensor_names and _legacy_name(info.name) in tensor_names:
                            info.name = _legacy_name(info.name)
                        if info.name not in tensor_names:
                            raise ServingError(Code.INTERNAL, f"Signature {kind} {alias} references an unknown "
                                                              f"tensor: Unknown tensor '{info.name}'.")
                self._runners[key] = None
                self.signature_defs[key] = definition
            return
        for key in self._interpreter.get_signature_list():
            runner = self._interpreter.get_signature_runner(key)
            definition = meta_graph_pb2.SignatureDef(method_name=contract.PREDICT_METHOD_NAME)
            for alias, detail in runner.get_input_details().items():
                definition.inputs[alias].CopyFrom(_tensor_info(detail["name"], detail["dtype"],
                                                               detail["shape_signature"]))
            for alias, detail in runner.get_output_details().items():
                definition.outputs[alias].CopyFrom(_tensor_info(detail["name"], detail["dtype"],
                                                                detail["shape_signature"]))
            self._runners[key] = runner
            self.signature_defs[key] = definition
        if not self.signature_defs:
            definition = meta_graph_pb2.SignatureDef(method_name=contract.PREDICT_METHOD_NAME)
            for detail in self._interpreter.get_input_details():
                definition.inputs[_legacy_name(detail["name"])].CopyFrom(
                    _tensor_info(detail["name"], detail["dtype"], detail["shape"]))
            for detail in self._interpreter.get_output_details():
                definition.outputs[_legacy_name(detail["name"])].CopyFrom(
                    _tensor_info(detail["name"], detail["dtype"], detail["shape"]))
            self._runners[contract.SERVING_SIGNATURE] = None
            self.signature_defs[contract.SERVING_SIGNATURE] = definition

    def close(self) -> None:
        """Drop the interpreter and its tensors (the version was unloaded and no request holds it)."""
        with self._lock:
            self._runners.clear()
            self._interpreter = None

    def run(self, signature, feeds: dict, fetch_names: list) -> list:
        """Run one signature with feeds (tensor name -> ndarray); the fetched tensors, in order."""
        inputs = {info.name: alias for alias, info in signature.definition.inputs.items()}
        outputs = {info.name: alias for alias, info in signature.definition.outputs.items()}
        unknown = [name for name in list(feeds) + list(fetch_names) if name not in inputs and name not in outputs]
        if unknown:
            raise ServingError(Code.UNIMPLEMENTED, f"Tensor {unknown[0]} is not in TensorFlow Lite signature "
                                                   f"{signature.name}; one run serves one signature")
        try:
            with self._lock:
                runner = self._runners[signature.name]
                if runner is not None:
                    results = runner(**{inputs[name]: array for name, array in feeds.items()})
                    return [results[outputs[name]] for name in fetch_names]
                return self._run_generated(feeds, fetch_names)
        except (ValueError, RuntimeError) as error:
            raise invalid_argument(one_line(str(error))) from None

    def _run_generated(self, feeds: dict, fetch_names: list) -> list:
        """TfLiteSession::Run: resize the inputs to the fed shapes, set, invoke, read."""
        interpreter = self._interpreter
        indices = {detail["name"]: detail["index"] for detail in
                   interpreter.get_input_details() + interpreter.get_output_details()}
        resized = False
        for name, array in feeds.items():
            if tuple(interpreter.get_tensor(indices[name]).shape) != array.shape:
                interpreter.resize_tensor_input(indices[name], list(array.shape))
                resized = True
        if resized:
            interpreter.allocate_tensors()
        for name, array in feeds.items():
            interpreter.set_tensor(indices[name], np.ascontiguousarray(array))
        interpreter.invoke()
        return [interpreter.get_tensor(indices[name]) for name in fetch_names]
