"""Versions as TensorFlow Serving handles them: policies, labels, hot loading, removal, failed loads.

The servers poll their base path every 50 ms; every wait is a poll with a
deadline on what the server reports, never a fixed sleep.
"""

import pathlib
import shutil
import threading

import grpc
import numpy as np
import pytest
import requests
import tensorflow as tf
from google.protobuf import text_format
from tensorflow_serving.apis import (
    model_management_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)
from tensorflow_serving.config import model_server_config_pb2

from tests import serving_helpers
from tf_mlp.contract import PROBABILITY_TOLERANCE
from tf_mlp.errors import ConfigError
from tf_mlp.server.core.status import Code, ServingError
from tf_mlp.server.core.versions import ModelVersions

SHIPPED_CONFIG = pathlib.Path(__file__).resolve().parents[1] / "serving" / "models.config"
IMAGE = [[0] * 28] * 28


def _states(server) -> dict:
    response = requests.get(f"{server.rest_url}/v1/models/tf_mlp", timeout=30)
    if response.status_code != 200:
        return {}
    return {int(entry["version"]): entry["state"] for entry in response.json()["model_version_status"]}


def _status_entry(server, version: int) -> dict:
    response = requests.get(f"{server.rest_url}/v1/models/tf_mlp/versions/{version}", timeout=30)
    return response.json()["model_version_status"][0]


def _predict_request(version=None, label=None) -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "tf_mlp"
    if version is not None:
        request.model_spec.version.value = version
    if label is not None:
        request.model_spec.version_label = label
    request.inputs["images"].CopyFrom(tf.make_tensor_proto(np.zeros((1, 28, 28), np.uint8)))
    return request


def _served_version(server, **spec) -> int:
    with grpc.insecure_channel(server.grpc_target) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        return stub.Predict(_predict_request(**spec), 10.0).model_spec.version.value


def _version_or_none(server, **spec):
    try:
        return _served_version(server, **spec)
    except grpc.RpcError:
        return None


def _write_config(path: pathlib.Path, base: pathlib.Path, policy: str, labels: dict) -> None:
    label_text = "".join(f' version_labels {{ key: "{key}" value: {value} }}' for key, value in labels.items())
    path.write_text(f'model_config_list {{ config {{ name: "tf_mlp" base_path: "{base}" model_platform: "tensorflow"'
                    f" model_version_policy {{ {policy} }}{label_text} }} }}")


def test_only_child_directories_named_by_a_number_are_versions(tmp_path):
    """The base path's scan: "007" is version 7 (upstream parses names as numbers too); other names, plain
    files and the export's staging and retired directories are not versions."""
    for name in ("1", "007", "v3", "3a", "1.5", ".export-9", ".retired-10"):
        (tmp_path / name).mkdir()
    (tmp_path / "8").write_text("a file, not a version")
    config = model_server_config_pb2.ModelConfig(name="tf_mlp", base_path=str(tmp_path))
    config.model_version_policy.all.SetInParent()
    loaded = {}
    model = ModelVersions(config, lambda name, version, path: loaded.setdefault(version, path))
    model.poll()
    assert loaded == {1: tmp_path / "1", 7: tmp_path / "007"}
    assert model.available_versions() == [1, 7]


def test_hot_loading_under_concurrent_requests_has_no_failures(tmp_path):
    base = serving_helpers.model_base(tmp_path, versions=(1,))
    server = serving_helpers.start_server(model_base_path=str(base))
    stop = threading.Event()
    failures, seen, answered = [], set(), [0]

    def rest_client():
        with requests.Session() as session:
            while not stop.is_set():
                response = session.post(f"{server.rest_url}/v1/models/tf_mlp:predict", json={"instances": [IMAGE]},
                                        timeout=30)
                answered[0] += 1
                if response.status_code != 200:
                    failures.append(response.text)

    def grpc_client():
        with grpc.insecure_channel(server.grpc_target) as channel:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            while not stop.is_set():
                try:
                    seen.add(stub.Predict(_predict_request(), 10.0).model_spec.version.value)
                except grpc.RpcError as error:
                    failures.append(error.details())

    clients = [threading.Thread(target=target) for target in (rest_client, rest_client, grpc_client, grpc_client)]
    try:
        for client in clients:
            client.start()
        serving_helpers.wait_for(lambda: 1 in seen, message="version 1 answering")
        serving_helpers.add_version(base, 2)
        serving_helpers.wait_for(lambda: 2 in seen, message="version 2 answering")
        serving_helpers.wait_for(lambda: _states(server) == {2: "AVAILABLE", 1: "END"}, message="version 1 unloaded")
        shutil.rmtree(base / "1")
        serving_helpers.add_version(base, 3)
        serving_helpers.wait_for(lambda: _states(server) == {3: "AVAILABLE", 2: "END", 1: "END"},
                                 message="version 3 replacing 2")
        checkpoint = answered[0]
        serving_helpers.wait_for(lambda: 3 in seen, message="version 3 answering")
        serving_helpers.wait_for(lambda: answered[0] > checkpoint + 10, message="REST requests after the switches")
    finally:
        stop.set()
        for client in clients:
            client.join()
        server.stop()
    assert failures == []
    assert seen == {1, 2, 3}


def test_deleted_version_falls_back_and_failed_load_keeps_previous_serving(tmp_path):
    base = serving_helpers.model_base(tmp_path, versions=(1, 2))
    server = serving_helpers.start_server(model_base_path=str(base), max_num_load_retries=0)
    try:
        assert _states(server) == {2: "AVAILABLE"}
        shutil.rmtree(base / "2")
        serving_helpers.wait_for(lambda: _states(server) == {2: "END", 1: "AVAILABLE"}, message="fallback to 1")
        assert _served_version(server) == 1

        # A version whose warmup data is not a TFRecord fails to load (so
        # warmup really is replayed); version 1 keeps serving.
        broken = base / ".staging-3"
        shutil.copytree(serving_helpers.exported_version_dir(), broken)
        (broken / "assets.extra" / "tf_serving_warmup_requests").write_bytes(b"not a tfrecord file")
        broken.rename(base / "3")
        serving_helpers.wait_for(lambda: _states(server).get(3) == "END", message="version 3 failing")
        entry = _status_entry(server, 3)
        assert entry["status"]["error_code"] == "DATA_LOSS"
        assert "Please verify your warmup data is in TFRecord format." in entry["status"]["error_message"]
        assert _states(server)[1] == "AVAILABLE" and _served_version(server) == 1
        response = requests.post(f"{server.rest_url}/v1/models/tf_mlp:predict", json={"instances": [IMAGE]},
                                 timeout=30)
        assert response.status_code == 200
    finally:
        server.stop()


def test_all_policy_and_removed_versions(tmp_path):
    base = serving_helpers.model_base(tmp_path, versions=(1, 2, 3))
    config = tmp_path / "models.config"
    _write_config(config, base, "all {}", {})
    server = serving_helpers.start_server(model_config_file=str(config))
    try:
        assert _states(server) == {3: "AVAILABLE", 2: "AVAILABLE", 1: "AVAILABLE"}
        assert [_served_version(server, version=number) for number in (1, 2, 3)] == [1, 2, 3]
        assert _served_version(server) == 3
        shutil.rmtree(base / "2")
        serving_helpers.wait_for(lambda: _states(server)[2] == "END", message="version 2 unloaded")
        response = requests.post(f"{server.rest_url}/v1/models/tf_mlp/versions/2:predict",
                                 json={"instances": [IMAGE]}, timeout=30)
        assert response.status_code == 404
        assert response.json() == {"error": "Servable not found for request: Specific(tf_mlp, 2)"}
    finally:
        server.stop()


def test_labels_need_available_versions_at_startup_unless_allowed(tmp_path):
    base = serving_helpers.model_base(tmp_path, versions=(1,))
    config = tmp_path / "models.config"
    _write_config(config, base, "latest {}", {"stable": 1})
    with pytest.raises(ConfigError, match="Failed to start server. Error: FAILED_PRECONDITION: Request to assign "
                                          "label to version 1 of model tf_mlp, which is not currently available"):
        serving_helpers.start_server(model_config_file=str(config))


def test_shipped_config_specific_policy_labels_and_config_polling(tmp_path):
    base = serving_helpers.model_base(tmp_path, versions=(1, 2, 3))
    config = tmp_path / "models.config"
    # The shipped models.config, pointed at this test's base path as run.sh does.
    config.write_text(SHIPPED_CONFIG.read_text().replace('base_path: "models/tf_mlp"', f'base_path: "{base}"'))
    server = serving_helpers.start_server(model_config_file=str(config), model_config_file_poll_wait_seconds=0.05,
                                          allow_version_labels_for_unavailable_models=True)
    try:
        # specific { versions: 1 }, stable and canary on it: versions 2 and 3 wait on disk, unserved.
        assert _states(server) == {1: "AVAILABLE"}
        assert _served_version(server, label="stable") == _served_version(server, label="canary") == 1
        # A new label may name a version that is not loaded (the flag allows it); it answers 404 until it is.
        _write_config(config, base, "specific { versions: 1 }", {"stable": 1, "canary": 1, "next": 2})

        def next_label_answer():
            with pytest.raises(grpc.RpcError) as error:
                _served_version(server, label="next")
            return error.value.details() if error.value.code() == grpc.StatusCode.NOT_FOUND else None

        assert serving_helpers.wait_for(next_label_answer, message="the label next") == \
            "Servable not found for request: Specific(tf_mlp, 2)"

        _write_config(config, base, "specific { versions: 1 versions: 3 }", {"stable": 1, "canary": 1})
        serving_helpers.wait_for(lambda: _states(server) == {3: "AVAILABLE", 1: "AVAILABLE"},
                                 message="specific versions 1 and 3")
        assert _served_version(server, label="stable") == 1
        # A label moves to a version once that version is loaded.
        _write_config(config, base, "specific { versions: 1 versions: 3 }", {"stable": 1, "canary": 3})
        serving_helpers.wait_for(lambda: _version_or_none(server, label="canary") == 3, message="canary moved to 3")
        metadata = requests.get(f"{server.rest_url}/v1/models/tf_mlp/labels/stable/metadata", timeout=30).json()
        assert metadata["model_spec"]["version"] == "1"
        response = requests.post(f"{server.rest_url}/v1/models/tf_mlp/labels/canary:predict",
                                 json={"instances": [IMAGE]}, timeout=30)
        assert response.status_code == 200
        unknown = requests.post(f"{server.rest_url}/v1/models/tf_mlp/labels/beta:predict",
                                json={"instances": [IMAGE]}, timeout=30)
        assert (unknown.status_code, unknown.json()) == (400, {"error": "Unrecognized servable version label: beta"})
    finally:
        server.stop()


def test_reload_config_request(tmp_path):
    base = serving_helpers.model_base(tmp_path, versions=(1, 2))
    server = serving_helpers.start_server(model_base_path=str(base))
    try:
        config = model_server_config_pb2.ModelServerConfig()
        text_format.Parse(f'model_config_list {{ config {{ name: "tf_mlp" base_path: "{base}" '
                          f'model_platform: "tensorflow" model_version_policy {{ specific {{ versions: 1 }} }} }} }}',
                          config)
        with grpc.insecure_channel(server.grpc_target) as channel:
            stub = model_service_pb2_grpc.ModelServiceStub(channel)
            response = stub.HandleReloadConfigRequest(model_management_pb2.ReloadConfigRequest(config=config), 30.0)
            assert response.status.error_code == 0
            assert _states(server) == {2: "END", 1: "AVAILABLE"}
            config.model_config_list.config[0].model_platform = "pytorch"
            with pytest.raises(grpc.RpcError) as error:
                stub.HandleReloadConfigRequest(model_management_pb2.ReloadConfigRequest(config=config), 30.0)
            assert "Model tf_mlp requests unsupported platform pytorch" in error.value.details()
    finally:
        server.stop()


@pytest.mark.slow  # two more versions to load and unload
def test_an_unloaded_version_closes_its_session_when_the_last_request_holding_it_ends(tmp_path):
    base = serving_helpers.model_base(tmp_path, versions=(1,))
    server = serving_helpers.start_server(model_base_path=str(base))
    try:
        images = serving_helpers.test_images(2)
        with server.core.serving("tf_mlp") as old:  # what a request in flight holds
            serving_helpers.add_version(base, 2)
            serving_helpers.wait_for(lambda: _states(server) == {2: "AVAILABLE", 1: "END"}, message="1 unloaded")
            assert not old.closed  # still held: the request in flight finishes on it
            outputs = old.run(old.signature("serving_default"), {"images": images})
            assert outputs["probabilities"].shape == (2, 10)
        assert old.closed  # closed as the last holder let go, not left to the garbage collector
        assert not old.hold()  # and cannot be taken again: a lookup now finds version 2
        # An unloaded version nobody holds is closed at once.
        current = server.core.servable("tf_mlp")
        assert current.version == 2
        serving_helpers.add_version(base, 3)
        serving_helpers.wait_for(lambda: _states(server).get(2) == "END", message="2 unloaded")
        assert current.closed
    finally:
        server.stop()


def test_without_the_private_callable_api_models_still_serve_through_session_run(monkeypatch, caplog):
    from tf_mlp.server.core import servable as servable_module

    name = servable_module.PRIVATE_CALLABLE_API
    owner = next(klass for klass in tf.compat.v1.Session.__mro__ if name in vars(klass))  # BaseSession today
    monkeypatch.delattr(owner, name)
    servable_module._warn_public_fallback.cache_clear()
    loaded = servable_module.Servable.load("tf_mlp", 1, serving_helpers.exported_version_dir())
    images = serving_helpers.test_images(4)
    expected = serving_helpers.serving_default_outputs(images)
    with caplog.at_level("WARNING", logger=servable_module.__name__):
        for _ in range(2):
            outputs = loaded.run(loaded.signature("serving_default"), {"images": images})
    np.testing.assert_array_equal(outputs["class_ids"], expected["class_ids"])
    np.testing.assert_allclose(outputs["probabilities"], expected["probabilities"], atol=PROBABILITY_TOLERANCE)
    assert [record.message for record in caplog.records].count(
        f"tf.compat.v1.Session.{servable_module.PRIVATE_CALLABLE_API} is missing from this TensorFlow: models run "
        "through Session.run, which refuses fed shapes their signatures do not declare") == 1
    # The one difference: a shape the placeholder does not declare is refused before the graph sees it.
    with pytest.raises(ServingError) as error:
        loaded.run(loaded.signature("serving_default"), {"images": np.zeros((1, 27, 27), np.uint8)})
    assert error.value.code == Code.INVALID_ARGUMENT and "Cannot feed value of shape (1, 27, 27)" in error.value.message
    assert "\n" not in error.value.message
    loaded.retire()
    assert loaded.closed
