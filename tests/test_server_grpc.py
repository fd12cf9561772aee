"""The gRPC API with tensorflow-serving-api's generated stubs, as TensorFlow Serving's own clients use it."""

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from tf_mlp.export import warmup


@pytest.fixture(scope="module")
def channel(server):
    with grpc.insecure_channel(server.grpc_target) as channel:
        yield channel


@pytest.fixture(scope="module")
def stub(channel):
    return prediction_service_pb2_grpc.PredictionServiceStub(channel)


def _request(signature_name="", **inputs) -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "tf_mlp"
    request.model_spec.signature_name = signature_name
    for name, value in inputs.items():
        request.inputs[name].CopyFrom(tf.make_tensor_proto(value))
    return request


def test_mnist_client_style_predict(stub, images, expected):
    """What tensorflow_serving/example/mnist_client.py does, one image per request."""
    for image, probabilities in zip(images, expected["probabilities"]):
        flat = (image.reshape(-1) / 255.0).astype(np.float32)
        request = predict_pb2.PredictRequest()
        request.model_spec.name = "tf_mlp"
        request.model_spec.signature_name = "predict_images"
        request.inputs["images"].CopyFrom(tf.make_tensor_proto(flat, shape=[1, flat.size]))
        result = stub.Predict.future(request, 5.0).result()
        response = np.array(result.outputs["scores"].float_val)
        assert np.argmax(response) == np.argmax(probabilities)
        np.testing.assert_allclose(response, probabilities, atol=1e-6)
        assert result.model_spec.signature_name == "predict_images"
        assert result.model_spec.version.value == 1


def test_predict_default_signature_with_output_filter(stub, images, expected):
    request = _request(images=images)
    response = stub.Predict(request, 10.0)
    assert set(response.outputs) == {"probabilities", "class_ids", "class_names"}
    assert response.model_spec.signature_name == "serving_default"
    np.testing.assert_allclose(tf.make_ndarray(response.outputs["probabilities"]), expected["probabilities"],
                               atol=1e-6)
    assert list(response.outputs["class_ids"].int64_val) == expected["class_ids"].tolist()
    request.output_filter.append("class_names")
    filtered = stub.Predict(request, 10.0)
    assert set(filtered.outputs) == {"class_names"}
    assert list(filtered.outputs["class_names"].string_val) == expected["class_names"].tolist()


def test_predict_encoded(stub, images, expected):
    pngs = np.array(warmup.encode_png(images), dtype=object)
    response = stub.Predict(_request("predict_encoded", image_bytes=pngs), 10.0)
    assert list(response.outputs["class_ids"].int64_val) == expected["class_ids"].tolist()


def test_classify(stub, images, expected):
    request = classification_pb2.ClassificationRequest()
    request.model_spec.name = "tf_mlp"
    request.model_spec.signature_name = "classify"
    for png in warmup.encode_png(images):
        request.input.example_list.examples.add().CopyFrom(warmup.make_example(png))
    response = stub.Classify(request, 10.0)
    assert response.model_spec.version.value == 1
    scores = [[entry.score for entry in row.classes] for row in response.result.classifications]
    labels = [[entry.label for entry in row.classes] for row in response.result.classifications]
    assert labels == [[str(digit) for digit in range(10)]] * len(images)
    np.testing.assert_allclose(scores, expected["probabilities"], atol=1e-6)


def test_metadata(stub):
    request = get_model_metadata_pb2.GetModelMetadataRequest()
    request.model_spec.name = "tf_mlp"
    request.metadata_field.append("signature_def")
    response = stub.GetModelMetadata(request, 10.0)
    assert response.model_spec.version.value == 1
    signature_map = get_model_metadata_pb2.SignatureDefMap()
    response.metadata["signature_def"].Unpack(signature_map)
    assert signature_map.signature_def["predict_images"].outputs["scores"].dtype == tf.float32.as_datatype_enum
    request.metadata_field[0] = "warmup"
    with pytest.raises(grpc.RpcError) as error:
        stub.GetModelMetadata(request, 10.0)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.value.details() == "Metadata field warmup is not supported"


def test_model_status(channel):
    stub = model_service_pb2_grpc.ModelServiceStub(channel)
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = "tf_mlp"
    (status,) = stub.GetModelStatus(request, 10.0).model_version_status
    assert (status.version, status.state) == (1, get_model_status_pb2.ModelVersionStatus.AVAILABLE)
    request.model_spec.name = "foo"
    with pytest.raises(grpc.RpcError) as error:
        stub.GetModelStatus(request, 10.0)
    assert error.value.code() == grpc.StatusCode.NOT_FOUND
    assert error.value.details() == "Could not find any versions of model foo"


def _content_mismatch():
    request = _request(images=np.zeros((1, 28, 28), np.uint8))
    request.inputs["images"].tensor_content = b"\x00" * 10
    return request


def _extra_input():
    return _request(images=np.zeros((1, 28, 28), np.uint8), other=np.zeros(1, np.float32))


def _other_model():
    request = _request(images=np.zeros((1, 28, 28), np.uint8))
    request.model_spec.name = "foo"
    return request


@pytest.mark.parametrize(
    "make_request, code, message",
    [
        (_other_model, grpc.StatusCode.NOT_FOUND, "Servable not found for request: Latest(foo)"),
        (lambda: _request("nope", images=np.zeros((1, 28, 28), np.uint8)), grpc.StatusCode.FAILED_PRECONDITION,
         'Serving signature key "nope" not found.'),
        (lambda: _request(images=np.zeros((1, 28, 28), np.float32)), grpc.StatusCode.INVALID_ARGUMENT,
         "Expects arg[0] to be uint8 but float is provided"),
        # No up-front shape check (as TensorFlow Serving): the graph's own error, on one line.
        (lambda: _request(images=np.zeros((1, 10), np.uint8)), grpc.StatusCode.INVALID_ARGUMENT,
         "Input to reshape is a tensor with 10 values, but the requested shape has 784 (node "),
        (lambda: _request(pixels=np.zeros((1, 28, 28), np.uint8)), grpc.StatusCode.INVALID_ARGUMENT,
         "Signature input alias: images(feed name: serving_default_images:0) not found in request and no default "
         "value provided. Inputs expected to be in the request {pixels}, or default input alias set: "),
        (_extra_input, grpc.StatusCode.INVALID_ARGUMENT,
         "input size does not match signature: 2!=1 len({images,other}) != len({images}). Sent extra: {other}. "
         "Missing but required: {}."),
        (_content_mismatch, grpc.StatusCode.INVALID_ARGUMENT, "tensor parsing error: images"),
    ],
)
def test_predict_errors_are_tensorflow_servings(stub, make_request, code, message):
    with pytest.raises(grpc.RpcError) as error:
        stub.Predict(make_request(), 10.0)
    assert error.value.code() == code
    if message.endswith("(node "):  # the graph's node names are the exporter's; the message up to them is fixed
        assert error.value.details().startswith(message) and "\n" not in error.value.details()
    else:
        assert error.value.details() == message


def test_an_unexpected_exception_is_internal_and_logged_once(server, stub, images, monkeypatch, caplog):
    def broken(*args, **kwargs):
        raise RuntimeError("a bug deep inside")

    monkeypatch.setattr(server.core, "serving_spec", broken)
    with caplog.at_level("ERROR", logger="tf_mlp.server.grpc.services"):
        with pytest.raises(grpc.RpcError) as error:
            stub.Predict(_request(images=images), 10.0)
    # Before: grpc.aio's own UNKNOWN, "Unexpected <class 'RuntimeError'>: ...", with nothing in the server's log.
    assert error.value.code() == grpc.StatusCode.INTERNAL
    assert error.value.details() == "internal error: RuntimeError (logged by the server)"
    assert len([record for record in caplog.records if record.exc_info]) == 1


def test_bytes_that_are_no_request_are_invalid_argument(channel):
    call = channel.unary_unary("/tensorflow.serving.PredictionService/Predict", request_serializer=None,
                               response_deserializer=None)
    with pytest.raises(grpc.RpcError) as error:
        call(b"\xff\xff\xff", timeout=10)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.value.details() == "the request is not a valid tensorflow.serving.PredictRequest"
