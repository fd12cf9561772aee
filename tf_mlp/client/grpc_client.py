"""TensorFlow Serving's gRPC API: PredictionService (Predict, Classify, GetModelMetadata) and ModelService.

Tensors are built as TensorProtos straight from numpy (the pixel batch as
one `tensor_content` byte string, image files as `string_val`) and read
back the same way, without `tf.make_tensor_proto` / `tf.make_ndarray`,
which copy element by element. The protobuf modules still import
TensorFlow (tensorflow_serving's protos import tensorflow.core), so this
module is imported only when a gRPC client is made.
"""

from __future__ import annotations

import grpc
import numpy as np
from google.protobuf import json_format
from tensorflow.core.example import example_pb2
from tensorflow.core.framework import tensor_pb2, types_pb2
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from tf_mlp import contract
from tf_mlp.client import errors
from tf_mlp.client.base import ENCODED, Client, ModelSpec, blank_png, is_unknown_label
from tf_mlp.client.results import ModelMetadata, ModelStatus
from tf_mlp.client.retry import RetryableFailure, RetryPolicy, call_with_retries
from tf_mlp.client.target import Target

RETRY_CODES = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED,
                         grpc.StatusCode.DEADLINE_EXCEEDED})
REQUEST_CODES = frozenset({
    grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.OUT_OF_RANGE,
    grpc.StatusCode.UNIMPLEMENTED, grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED,
    grpc.StatusCode.ALREADY_EXISTS,
})

_CHANNEL_OPTIONS = [
    # TensorFlow Serving accepts messages of any size; so does this client (a 10,000-image batch is 7.8 MB).
    ("grpc.max_send_message_length", -1),
    ("grpc.max_receive_message_length", -1),
    # After a failed connection gRPC waits before dialling again (1 s, growing to 120 s by default), and
    # calls fail at once meanwhile; short waits let our retries find a restarted server quickly.
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
]

_NUMPY_TYPES = {
    types_pb2.DT_FLOAT: (np.float32, "float_val"),
    types_pb2.DT_DOUBLE: (np.float64, "double_val"),
    types_pb2.DT_INT32: (np.int32, "int_val"),
    types_pb2.DT_INT64: (np.int64, "int64_val"),
    types_pb2.DT_UINT8: (np.uint8, "int_val"),
    types_pb2.DT_BOOL: (np.bool_, "bool_val"),
}


class GrpcClient(Client):
    def __init__(self, target: Target, spec: ModelSpec, timeout: float = 30.0, retry: RetryPolicy | None = None):
        super().__init__(target, spec, timeout, retry)
        self._channel = grpc.insecure_channel(target.address, options=_CHANNEL_OPTIONS)
        self._predictions = prediction_service_pb2_grpc.PredictionServiceStub(self._channel)
        self._models = model_service_pb2_grpc.ModelServiceStub(self._channel)

    def close(self) -> None:
        self._channel.close()

    # ---- back end --------------------------------------------------------

    def _run(self, signature: str, kind: str, batch) -> dict:
        request = predict_pb2.PredictRequest()
        self._fill_spec(request.model_spec, signature)
        tensor = request.inputs[self.input_alias(signature)]
        if kind == ENCODED:
            tensor.dtype = types_pb2.DT_STRING
            tensor.tensor_shape.dim.add(size=len(batch))
            tensor.string_val.extend(batch)
        else:
            tensor.dtype = types_pb2.DT_UINT8
            for size in batch.shape:
                tensor.tensor_shape.dim.add(size=size)
            tensor.tensor_content = batch.tobytes()
        response = self._call(self._predictions.Predict, request)
        return {name: to_numpy(proto, name) for name, proto in response.outputs.items()}

    def _status(self) -> ModelStatus:
        request = get_model_status_pb2.GetModelStatusRequest()
        request.model_spec.name = self.spec.name
        if self.spec.version is not None:
            request.model_spec.version.value = self.spec.version
        response = self._call(self._models.GetModelStatus, request)
        return ModelStatus.from_json(self.spec.name, _to_json(response))

    def _metadata(self) -> ModelMetadata:
        request = get_model_metadata_pb2.GetModelMetadataRequest()
        self._fill_spec(request.model_spec, None)
        request.metadata_field.append("signature_def")
        response = self._call(self._predictions.GetModelMetadata, request)
        # The signatures come packed in an Any; unpacked, the JSON matches what the REST API answers.
        signature_map = get_model_metadata_pb2.SignatureDefMap()
        response.metadata["signature_def"].Unpack(signature_map)
        raw = {"model_spec": _to_json(response.model_spec), "metadata": {"signature_def": _to_json(signature_map)}}
        return ModelMetadata.from_json(raw)

    def _has_label(self, label: str) -> bool:
        request = get_model_metadata_pb2.GetModelMetadataRequest()
        request.model_spec.name = self.spec.name
        request.model_spec.version_label = label
        request.metadata_field.append("signature_def")
        try:
            # Not counted in self.stats: asking which version to address is not one of the caller's calls.
            call_with_retries(lambda attempt: self._attempt(self._predictions.GetModelMetadata, request), self.retry)
        except errors.RequestError as error:
            # UNIMPLEMENTED: a PredictionService without GetModelMetadata cannot say; address the latest version.
            if is_unknown_label(error, label) or error.status == grpc.StatusCode.UNIMPLEMENTED.name:
                return False
            raise
        except errors.NotFoundError:
            pass  # the label names a version that is not loaded: it is still the label to address
        return True

    def _labels(self) -> tuple[str, ...] | None:
        request = classification_pb2.ClassificationRequest()
        self._fill_spec(request.model_spec, contract.CLASSIFY_SIGNATURE)
        example = example_pb2.Example()
        example.features.feature[contract.CLASSIFY_IMAGE_FEATURE].bytes_list.value.append(blank_png())
        request.input.example_list.examples.append(example)
        try:
            response = self._call(self._predictions.Classify, request)
        except errors.RequestError:
            return None  # a model without our classify signature: names stay unknown
        classifications = response.result.classifications
        return tuple(item.label for item in classifications[0].classes) if classifications else None

    # ---- gRPC ------------------------------------------------------------

    def _fill_spec(self, model_spec, signature: str | None) -> None:
        model_spec.name = self.spec.name
        if signature:
            model_spec.signature_name = signature
        label = self.addressed_label()
        if self.spec.version is not None:
            model_spec.version.value = self.spec.version
        elif label is not None:
            model_spec.version_label = label

    def _call(self, method, request):
        """method(request) with a deadline, retried per the policy; ClientError subclasses on failure."""
        return call_with_retries(lambda attempt: self._attempt(method, request), self.retry, self.stats)

    def _attempt(self, method, request):
        try:
            return method(request, timeout=self.timeout)
        except grpc.RpcError as error:
            raise client_error(str(self.target), error) from None


def client_error(target: str, error: grpc.RpcError) -> Exception:
    code = error.code()
    details = error.details() or code.name
    if code in RETRY_CODES:
        return RetryableFailure(errors.UnavailableError(target, code.name, details))
    if code == grpc.StatusCode.NOT_FOUND:
        return errors.NotFoundError(target, code.name, details)
    if code in REQUEST_CODES:
        return errors.RequestError(target, code.name, details)
    return errors.ServerError(target, code.name, details)


def to_numpy(proto: tensor_pb2.TensorProto, name: str = "tensor"):
    """A TensorProto as a numpy array (a list of bytes for strings), from tensor_content or the typed fields."""
    shape = [dim.size for dim in proto.tensor_shape.dim]
    count = int(np.prod(shape, dtype=np.int64))
    if proto.dtype == types_pb2.DT_STRING:
        values = list(proto.string_val)
        return values * count if len(values) == 1 and count > 1 else values
    if proto.dtype not in _NUMPY_TYPES:
        raise ValueError(f"output {name!r} has unsupported dtype {types_pb2.DataType.Name(proto.dtype)}")
    numpy_type, field = _NUMPY_TYPES[proto.dtype]
    if proto.tensor_content:
        return np.frombuffer(proto.tensor_content, dtype=numpy_type).reshape(shape)
    values = np.asarray(getattr(proto, field), dtype=numpy_type)
    # TensorFlow writes a tensor whose elements are all equal as one value, to be repeated.
    if values.size == 1 and count > 1:
        values = np.full(count, values[0], dtype=numpy_type)
    return values.reshape(shape)


def _to_json(message) -> dict:
    return json_format.MessageToDict(message, preserving_proto_field_name=True,
                                     always_print_fields_with_no_presence=True)
