"""A version's `model.tflite` served by TensorFlow Lite (--prefer_tflite_model).

The SignatureDefs are the model's own TFLite signatures (one per signature
key, aliases as the signature names them, method predict). A model with no
signature gets the one TensorFlow Serving generates: `serving_default`,
aliases the tensor names without their `:0`, shapes the tensors' current
dims. Runs feed and fetch by tensor name, like the session runner; an
interpreter is not thread-safe, so runs take turns.
"""

from __future__ import annotations

import threading
import warnings

import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import meta_graph_pb2

from tf_mlp.server.status import Code, ServingError, invalid_argument, one_line

_PREDICT_METHOD = "tensorflow/serving/predict"
_DEFAULT_SIGNATURE = "serving_default"


def _tensor_info(name: str, dtype, shape) -> meta_graph_pb2.TensorInfo:
    info = meta_graph_pb2.TensorInfo(name=name, dtype=tf.as_dtype(dtype).as_datatype_enum)
    for size in shape:
        info.tensor_shape.dim.add(size=int(size))
    return info


def _legacy_name(tensor_name: str) -> str:
    """TfToTfLiteLegacyTensorName: the name before its ':index'."""
    return tensor_name.split(":", 1)[0]


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
        self._runners = {}  # signature key -> SignatureRunner (None: the generated signature)
        self.signature_defs = {}
        for key in self._interpreter.get_signature_list():
            runner = self._interpreter.get_signature_runner(key)
            definition = meta_graph_pb2.SignatureDef(method_name=_PREDICT_METHOD)
            for alias, detail in runner.get_input_details().items():
                definition.inputs[alias].CopyFrom(_tensor_info(detail["name"], detail["dtype"],
                                                               detail["shape_signature"]))
            for alias, detail in runner.get_output_details().items():
                definition.outputs[alias].CopyFrom(_tensor_info(detail["name"], detail["dtype"],
                                                                detail["shape_signature"]))
            self._runners[key] = runner
            self.signature_defs[key] = definition
        if not self.signature_defs:
            definition = meta_graph_pb2.SignatureDef(method_name=_PREDICT_METHOD)
            for detail in self._interpreter.get_input_details():
                definition.inputs[_legacy_name(detail["name"])].CopyFrom(
                    _tensor_info(detail["name"], detail["dtype"], detail["shape"]))
            for detail in self._interpreter.get_output_details():
                definition.outputs[_legacy_name(detail["name"])].CopyFrom(
                    _tensor_info(detail["name"], detail["dtype"], detail["shape"]))
            self._runners[_DEFAULT_SIGNATURE] = None
            self.signature_defs[_DEFAULT_SIGNATURE] = definition

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
