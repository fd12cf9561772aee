"""TensorFlow Serving's own kinds of test models (TF1 graphs, a native TF2 module, TFLite) served as it serves them.

The models are built here by tests/tf1_models.py in the layout of
TensorFlow Serving's testdata; the requests and expected answers are those
of its README quick start and of tensorflow_model_server_test.py.
"""

import grpc
import numpy as np
import pytest
import requests
import tensorflow as tf
from tensorflow.core.framework import types_pb2
from tensorflow.core.protobuf import meta_graph_pb2
from tensorflow_serving.apis import (
    classification_pb2,
    inference_pb2,
    predict_pb2,
    prediction_service_pb2_grpc,
    regression_pb2,
)

from tests import serving_helpers, tf1_models
from tf_mlp.errors import ConfigError

CLASSIFY = "tensorflow/serving/classify"
REGRESS = "tensorflow/serving/regress"


@pytest.fixture(scope="module")
def bases(tmp_path_factory):
    root = tmp_path_factory.mktemp("reference-models")
    return {
        "half_plus_two": tf1_models.model_base(root / "half_plus_two", tf1_models.half_plus_two),
        "half_plus_three": tf1_models.model_base(root / "half_plus_three", tf1_models.half_plus_three),
        "half_plus_two_2_versions": tf1_models.model_base(root / "two_versions", tf1_models.half_plus_two,
                                                          versions=(123, 124)),
        "half_plus_two_tf2": tf1_models.model_base(root / "half_plus_two_tf2", tf1_models.half_plus_two_tf2),
    }


@pytest.fixture(scope="module")
def server(bases, tmp_path_factory):
    config = tmp_path_factory.mktemp("config") / "models.config"
    entries = "".join(
        f'config {{ name: "{name}" base_path: "{base}" model_platform: "tensorflow"'
        f'{" model_version_policy { all {} }" if name.endswith("2_versions") else ""} }} '
        for name, base in bases.items())
    config.write_text(f"model_config_list {{ {entries}}}")
    server = serving_helpers.start_server(model_config_file=str(config), max_num_load_retries=0)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def stub(server):
    with grpc.insecure_channel(server.grpc_target) as channel:
        yield prediction_service_pb2_grpc.PredictionServiceStub(channel)


def _post(server, model: str, verb: str, document: dict) -> requests.Response:
    return requests.post(f"{server.rest_url}/v1/models/{model}:{verb}", json=document, timeout=30)


def _predict_x(model: str, shape=(1,), signature_name: str = "") -> predict_pb2.PredictRequest:
    """VerifyPredictRequest's request: x = 2.0 as a float tensor of the given shape."""
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    request.model_spec.signature_name = signature_name
    request.inputs["x"].CopyFrom(tf.make_tensor_proto(np.full(shape, 2.0, np.float32)))
    return request


def _example_input(input_proto) -> None:
    input_proto.example_list.examples.add().features.feature["x"].float_list.value.append(2.0)


def test_readme_quick_start(server):
    response = _post(server, "half_plus_two", "predict", {"instances": [1.0, 2.0, 5.0]})
    assert response.status_code == 200, response.text
    assert response.json() == {"predictions": [2.5, 3.0, 4.5]}
    assert _post(server, "half_plus_two", "predict", {"inputs": [2.0, 3.0, 4.0]}).json() == {
        "outputs": [3.0, 3.5, 4.0]}


@pytest.mark.parametrize("shape", [(1,), (1, 1)])
def test_predict_over_grpc(stub, shape):
    response = stub.Predict(_predict_x("half_plus_two", shape), 10.0)
    assert response.outputs["y"].float_val == [3.0]
    assert list(response.outputs["y"].tensor_shape.dim) == list(tf.make_tensor_proto(np.zeros(shape)).tensor_shape.dim)
    assert (response.model_spec.name, response.model_spec.version.value,
            response.model_spec.signature_name) == ("half_plus_two", 123, "serving_default")


def test_half_plus_three_is_served(server, stub):
    """An older-style TF1 graph (an unshaped placeholder), as testGoodModelConfig serves it."""
    assert stub.Predict(_predict_x("half_plus_three"), 10.0).outputs["y"].float_val == [4.0]
    assert _post(server, "half_plus_three", "predict", {"instances": [1.0, 2.0]}).json() == {
        "predictions": [3.5, 4.0]}


def test_two_versions_are_both_served(server, stub):
    status = requests.get(f"{server.rest_url}/v1/models/half_plus_two_2_versions", timeout=30).json()
    assert [(entry["version"], entry["state"]) for entry in status["model_version_status"]] == [
        ("124", "AVAILABLE"), ("123", "AVAILABLE")]
    request = _predict_x("half_plus_two_2_versions")
    request.model_spec.version.value = 123
    assert stub.Predict(request, 10.0).model_spec.version.value == 123
    assert stub.Predict(_predict_x("half_plus_two_2_versions"), 10.0).model_spec.version.value == 124


@pytest.mark.parametrize("model", ["half_plus_two", "half_plus_two_tf2"])
def test_classify_and_regress_over_rest(server, model):
    """testClassifyREST and testRegressREST; the TF2 signatures' method_name is predict, served all the same."""
    classify = _post(server, model, "classify", {"signature_name": "classify_x_to_y", "examples": [{"x": 2.0}]})
    assert classify.status_code == 200, classify.text
    assert classify.json() == {"results": [[["", 3.0]]]}
    regress = _post(server, model, "regress", {"signature_name": "regress_x_to_y", "examples": [{"x": 2.0}]})
    assert regress.status_code == 200, regress.text
    assert regress.json() == {"results": [3.0]}


@pytest.mark.parametrize("model", ["half_plus_two", "half_plus_two_tf2"])
def test_classify_and_regress_over_grpc(stub, model):
    request = classification_pb2.ClassificationRequest()
    request.model_spec.name = model
    request.model_spec.signature_name = "classify_x_to_y"
    _example_input(request.input)
    response = stub.Classify(request, 10.0)
    assert [entry.score for entry in response.result.classifications[0].classes] == [3.0]
    assert (response.model_spec.signature_name, response.model_spec.version.value) == ("classify_x_to_y", 123)
    request = regression_pb2.RegressionRequest()
    request.model_spec.name = model
    request.model_spec.signature_name = "regress_x_to_y"
    _example_input(request.input)
    response = stub.Regress(request, 10.0)
    assert [regression.value for regression in response.result.regressions] == [3.0]


def _multi_inference_request(model: str, tasks) -> inference_pb2.MultiInferenceRequest:
    request = inference_pb2.MultiInferenceRequest()
    for name, signature_name, method in tasks:
        task = request.tasks.add(method_name=method)
        task.model_spec.name = name
        task.model_spec.signature_name = signature_name
    _example_input(request.input)
    return request


@pytest.mark.parametrize("model", ["half_plus_two", "half_plus_two_tf2"])
def test_multi_inference(stub, model):
    """testMultiInference: a regress and a classify task over one input, in one run."""
    request = _multi_inference_request(model, [(model, "regress_x_to_y", REGRESS),
                                               (model, "classify_x_to_y", CLASSIFY)])
    response = stub.MultiInference(request, 10.0)
    assert len(response.results) == 2
    assert response.results[0].regression_result.regressions[0].value == 3.0
    assert response.results[1].classification_result.classifications[0].classes[0].score == 3.0
    for result, signature_name in zip(response.results, ["regress_x_to_y", "classify_x_to_y"]):
        assert (result.model_spec.name, result.model_spec.signature_name, result.model_spec.version.value) == (
            model, signature_name, 123)


@pytest.mark.parametrize(
    "tasks, code, message",
    [
        ([("half_plus_two", "regress_x_to_y", REGRESS), ("half_plus_three", "regress", REGRESS)],
         grpc.StatusCode.INVALID_ARGUMENT,
         "All ModelSpecs in a MultiInferenceRequest must access the same model name."),
        ([("half_plus_two", "regress_x_to_y", REGRESS), ("half_plus_two", "regress_x_to_y", CLASSIFY)],
         grpc.StatusCode.INVALID_ARGUMENT, "Duplicate evaluation of signature: regress_x_to_y"),
        ([("half_plus_two", "nope", REGRESS)], grpc.StatusCode.INVALID_ARGUMENT,
         "Requested signature not found in model graph: nope"),
        ([("half_plus_two", "regress_x_to_y", "tensorflow/serving/predict")], grpc.StatusCode.UNIMPLEMENTED,
         "Unsupported signature method_name: tensorflow/serving/predict"),
        ([("half_plus_two", "serving_default", REGRESS)], grpc.StatusCode.INVALID_ARGUMENT,
         "No regression inputs found in SignatureDef: "),
    ],
)
def test_multi_inference_errors(stub, tasks, code, message):
    with pytest.raises(grpc.RpcError) as error:
        stub.MultiInference(_multi_inference_request(tasks[0][0], tasks), 10.0)
    assert error.value.code() == code
    assert error.value.details().startswith(message)
    assert "\n" not in error.value.details()


def test_scalar_outputs_and_signatures_of_tf_saved_model_save(tmp_path):
    """test_tf_saved_model_save_multiple_signatures: unshaped inputs, scalar outputs, a second signature."""
    root = tf.train.Checkpoint()
    root.f = tf.function(lambda x: {"y": 1.0}, input_signature=[tf.TensorSpec(None, tf.float32)])
    root.g = tf.function(lambda x: {"y": 2.0}, input_signature=[tf.TensorSpec(None, tf.float32)])
    tf.saved_model.save(root, str(tmp_path / "multiple" / "123"),
                        signatures={"serving_default": root.f, "custom_signature_key": root.g})
    server = serving_helpers.start_server(model_base_path=str(tmp_path / "multiple"), model_name="default")
    try:
        with grpc.insecure_channel(server.grpc_target) as channel:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            custom = stub.Predict(_predict_x("default", signature_name="custom_signature_key"), 10.0)
            assert custom.outputs["y"].float_val == [2.0] and not custom.outputs["y"].tensor_shape.dim
            assert stub.Predict(_predict_x("default"), 10.0).outputs["y"].float_val == [1.0]
        # A scalar is one JSON value in the columnar format; the row format needs a batch dimension.
        assert _post(server, "default", "predict", {"inputs": [2.0]}).json() == {"outputs": 1.0}
        row = _post(server, "default", "predict", {"instances": [2.0]})
        assert (row.status_code, row.json()) == (400, {"error": "Tensor name: y has no shape information "})
    finally:
        server.stop()


# The signature's default for z: one tensor, made once (as a default argument's value is anyway).
_Z_DEFAULT = tf.constant([5.0])


class _WithDefault(tf.Module):
    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32), tf.TensorSpec([None], tf.float32)])
    def add(self, x, z=_Z_DEFAULT):
        return {"y": x + z}


def test_signature_defaults_fill_inputs_left_out(tmp_path):
    """A tf.function's default argument is the SignatureDef's default, used by gRPC (saved_model::GetInputValues);
    TensorFlow Serving's JSON conversion still wants every input named."""
    module = _WithDefault()
    tf.saved_model.save(module, str(tmp_path / "defaults" / "1"), signatures={"serving_default": module.add})
    server = serving_helpers.start_server(model_base_path=str(tmp_path / "defaults"), model_name="default")
    try:
        assert _post(server, "default", "predict", {"inputs": {"x": [1.0], "z": [2.0]}}).json() == {"outputs": [3.0]}
        assert _post(server, "default", "predict", {"inputs": {"x": [1.0]}}).json() == {
            "error": "Missing named input: z in 'inputs' object."}
        with grpc.insecure_channel(server.grpc_target) as channel:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            assert stub.Predict(_predict_x("default"), 10.0).outputs["y"].float_val == [7.0]
            request = predict_pb2.PredictRequest()
            request.model_spec.name = "default"
            request.inputs["z"].CopyFrom(tf.make_tensor_proto(np.array([1.0], np.float32)))
            with pytest.raises(grpc.RpcError) as error:
                stub.Predict(request, 10.0)
        assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert error.value.details() == (
            "Signature input alias: x(feed name: serving_default_x:0) not found in request and no default value "
            "provided. Inputs expected to be in the request {z}, or default input alias set: z")
    finally:
        server.stop()


def test_method_name_check_follows_its_option(bases):
    """enable_signature_method_name_check: off by default (above); on, TF2's predict-method signatures are refused."""
    server = serving_helpers.start_server(model_base_path=str(bases["half_plus_two_tf2"]), model_name="default",
                                          enable_signature_method_name_check=True, max_num_load_retries=0)
    try:
        response = _post(server, "default", "classify", {"signature_name": "classify_x_to_y",
                                                         "examples": [{"x": 2.0}]})
        assert response.status_code == 400
        assert response.json()["error"] == ("Expected classification signature method_name to be "
                                            "tensorflow/serving/classify. Was: tensorflow/serving/predict")
        assert _post(server, "default", "predict", {"instances": [2.0]}).json() == {"predictions": [3.0]}
    finally:
        server.stop()


def test_tflite_model_is_served_when_preferred(tmp_path):
    """--prefer_tflite_model: version 1 holds half_plus_three's SavedModel and half_plus_two's model.tflite."""
    base = tmp_path / "both"
    tf1_models.half_plus_three(base / "1")
    tf1_models.half_plus_two_tflite(base / "1")
    for prefer, expected in [(True, [[2.5], [3.0], [4.5]]), (False, [[3.5], [4.0], [5.5]])]:
        server = serving_helpers.start_server(model_base_path=str(base), model_name="default",
                                              prefer_tflite_model=prefer, max_num_load_retries=0)
        try:
            response = _post(server, "default", "predict", {"instances": [[1.0], [2.0], [5.0]]})
            assert response.status_code == 200, response.text
            assert response.json() == {"predictions": expected}
            with grpc.insecure_channel(server.grpc_target) as channel:
                stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
                assert stub.Predict(_predict_x("default", (1, 1)), 10.0).outputs["y"].float_val == [expected[1][0]]
        finally:
            server.stop()


def test_tflite_signature_defs_stored_in_metadata_are_served(tmp_path):
    """As TfLiteSession: SignatureDefs stored in the model's metadata name the signatures (here, not its own)."""
    version = tf1_models.half_plus_two_tflite(tmp_path / "stored" / "1")
    stored = meta_graph_pb2.SignatureDef(method_name="tensorflow/serving/predict")
    stored.inputs["input_x"].name = "serving_default_x:0"
    stored.inputs["input_x"].dtype = types_pb2.DT_FLOAT
    stored.outputs["output_y"].name = "StatefulPartitionedCall:0"
    stored.outputs["output_y"].dtype = types_pb2.DT_FLOAT
    tf1_models.add_signature_metadata(version, {"from_metadata": stored})
    server = serving_helpers.start_server(model_base_path=str(tmp_path / "stored"), model_name="default",
                                          prefer_tflite_model=True, max_num_load_retries=0)
    try:
        metadata = requests.get(f"{server.rest_url}/v1/models/default/metadata", timeout=30).json()
        assert list(metadata["metadata"]["signature_def"]["signature_def"]) == ["from_metadata"]
        response = _post(server, "default", "predict", {"signature_name": "from_metadata",
                                                        "instances": [{"input_x": [2.0]}]})
        assert response.status_code == 200, response.text
        assert response.json() == {"predictions": [[3.0]]}  # one output: plain values, as json_tensor.cc
    finally:
        server.stop()


def test_a_version_that_fails_to_load_stops_start_up(tmp_path):
    """ServerCore's WaitUntilModelsAvailable: start-up fails with TensorFlow Serving's message."""
    version = tf1_models.half_plus_two(tmp_path / "broken" / "7")
    for variables_file in (version / "variables").iterdir():
        variables_file.write_bytes(b"not a checkpoint")
    with pytest.raises(ConfigError) as error:
        serving_helpers.start_server(model_base_path=str(tmp_path / "broken"), model_name="default",
                                     max_num_load_retries=0)
    message = str(error.value)
    assert message.startswith("Failed to start server. Error: UNKNOWN: 1 model(s) did not become available: "
                              "{{{name: default version: 7} due to error: ")  # ServableId::DebugString's braces too
    assert message.endswith("}, }") and "\n" not in message
