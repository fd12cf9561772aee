"""The REST API through real HTTP: endpoints, both request formats, b64, errors, metrics, size limit.

Expected results come from the exported SavedModel called in-process; error
messages are TensorFlow Serving's (json_tensor.cc, http_rest_api_handler.cc).
"""

import base64
import json
import socket
import threading

import numpy as np
import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests import serving_helpers
from tf_mlp.contract import PROBABILITY_TOLERANCE
from tf_mlp.export import warmup

MAX_BODY = 1024 * 1024


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("rest")
    monitoring = tmp_path / "monitoring.config"
    monitoring.write_text('prometheus_config { enable: true path: "/monitoring/prometheus/metrics" }')
    base = serving_helpers.model_base(tmp_path)
    server = serving_helpers.start_server(model_base_path=str(base), monitoring_config_file=str(monitoring),
                                          rest_api_max_request_bytes=MAX_BODY)
    yield server
    server.stop()


def _post(server, path, payload=None, data=None):
    return requests.post(f"{server.rest_url}{path}", json=payload, data=data, timeout=30)


def _b64(data: bytes) -> dict:
    return {"b64": base64.b64encode(data).decode("ascii")}


def _check_rows(predictions, expected):
    assert [row["class_ids"] for row in predictions] == expected["class_ids"].tolist()
    assert [row["class_names"] for row in predictions] == [name.decode() for name in expected["class_names"]]
    np.testing.assert_allclose([row["probabilities"] for row in predictions],
                               expected["probabilities"], atol=PROBABILITY_TOLERANCE)


def test_model_status(server):
    response = requests.get(f"{server.rest_url}/v1/models/tf_mlp", timeout=30)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    assert response.json() == {"model_version_status": [
        {"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}]}
    one = requests.get(f"{server.rest_url}/v1/models/tf_mlp/versions/1", timeout=30)
    assert one.json() == response.json()


def test_model_metadata(server):
    response = requests.get(f"{server.rest_url}/v1/models/tf_mlp/metadata", timeout=30)
    assert response.status_code == 200
    document = response.json()
    assert document["model_spec"] == {"name": "tf_mlp", "version": "1", "signature_name": ""}
    signatures = document["metadata"]["signature_def"]["signature_def"]
    assert {"serving_default", "predict_encoded", "predict_images", "classify"} <= set(signatures)
    images_input = signatures["serving_default"]["inputs"]["images"]
    assert images_input["dtype"] == "DT_UINT8"
    assert [dim["size"] for dim in images_input["tensor_shape"]["dim"]] == ["-1", "28", "28"]
    assert signatures["classify"]["method_name"] == "tensorflow/serving/classify"


def test_predict_row_format(server, images, expected):
    response = _post(server, "/v1/models/tf_mlp:predict", {"instances": images.tolist()})
    assert response.status_code == 200, response.text
    _check_rows(response.json()["predictions"], expected)


def test_shapes_are_left_to_the_graph(server, images, expected):
    """As TensorFlow Serving: no up-front shape check; what the graph computes is served, the rest is a 400
    with the session's message on one line."""
    flat = _post(server, "/v1/models/tf_mlp:predict", {"instances": images.reshape(len(images), -1).tolist()})
    assert flat.status_code == 200, flat.text  # [n,784] into [?,28,28]: the model flattens its input anyway
    _check_rows(flat.json()["predictions"], expected)
    bad = _post(server, "/v1/models/tf_mlp:predict", {"instances": [[0] * 10]})
    assert bad.status_code == 400
    error = bad.json()["error"]
    assert error.startswith("Input to reshape is a tensor with 10 values, but the requested shape has 784 (node ")
    assert "\n" not in error and "[[" not in error


def test_predict_columnar_format(server, images, expected):
    response = _post(server, "/v1/models/tf_mlp/versions/1:predict",
                     {"signature_name": "serving_default", "inputs": {"images": images.tolist()}})
    assert response.status_code == 200, response.text
    outputs = response.json()["outputs"]
    assert outputs["class_ids"] == expected["class_ids"].tolist()
    np.testing.assert_allclose(outputs["probabilities"],
                               expected["probabilities"], atol=PROBABILITY_TOLERANCE)


def test_predict_encoded_images_as_b64(server, images, expected):
    pngs = [_b64(png) for png in warmup.encode_png(images)]
    rows = _post(server, "/v1/models/tf_mlp:predict", {"signature_name": "predict_encoded", "instances": pngs})
    assert rows.status_code == 200, rows.text
    _check_rows(rows.json()["predictions"], expected)
    columns = _post(server, "/v1/models/tf_mlp:predict", {"signature_name": "predict_encoded", "inputs": pngs})
    assert columns.json()["outputs"]["class_ids"] == expected["class_ids"].tolist()


def test_predict_images_float_pixels(server, images, expected):
    pixels = (images.reshape(len(images), -1) / 255.0).tolist()
    response = _post(server, "/v1/models/tf_mlp:predict", {"signature_name": "predict_images", "instances": pixels})
    assert response.status_code == 200, response.text
    np.testing.assert_allclose(response.json()["predictions"],
                               expected["probabilities"], atol=PROBABILITY_TOLERANCE)


def test_classify(server, images, expected):
    examples = [{"image": _b64(png)} for png in warmup.encode_png(images)]
    response = _post(server, "/v1/models/tf_mlp:classify", {"signature_name": "classify", "examples": examples})
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [[label for label, _ in row] for row in results] == [[str(digit) for digit in range(10)]] * len(images)
    np.testing.assert_allclose([[score for _, score in row] for row in results],
                               expected["probabilities"], atol=PROBABILITY_TOLERANCE)


def test_nan_and_infinity_are_accepted_tokens(server):
    body = b'{"signature_name": "predict_images", "instances": [[NaN, Infinity, -Infinity' + b", 0.5" * 781 + b"]]}"
    response = _post(server, "/v1/models/tf_mlp:predict", data=body)
    assert response.status_code == 200, response.text
    assert len(response.json()["predictions"][0]) == 10


IMAGE = [[0] * 28] * 28


@pytest.mark.parametrize(
    "method, path, payload, status, message",
    [
        ("POST", "/v1/models/foo:predict", {"instances": [IMAGE]}, 404, "Servable not found for request: Latest(foo)"),
        ("POST", "/v1/models/tf_mlp/versions/7:predict", {"instances": [IMAGE]}, 404,
         "Servable not found for request: Specific(tf_mlp, 7)"),
        ("POST", "/v1/models/tf_mlp/labels/nope:predict", {"instances": [IMAGE]}, 400,
         "Unrecognized servable version label: nope"),
        ("POST", "/v1/models/tf_mlp:predict", b'{"instances": [1,', 400,
         "JSON Parse error: Invalid value. at offset: 17"),
        ("POST", "/v1/models/tf_mlp:predict", b'{"instances": [1 2]}', 400,
         "JSON Parse error: Missing a comma or ']' after an array element. at offset: 17"),
        ("POST", "/v1/models/tf_mlp:predict", b"", 400, "JSON Parse error: The document is empty"),
        ("POST", "/v1/models/tf_mlp:predict", b"[1]", 400, "JSON Value: [\n    1\n] Is not object"),
        ("POST", "/v1/models/tf_mlp:predict", {"instances": [[[1.5] * 28] * 28]}, 400,
         "Failed to process element: 0 of 'instances' list. Error: INVALID_ARGUMENT: JSON Value: 1.5 Type: Number "
         "is not of expected type: uint8"),
        ("POST", "/v1/models/tf_mlp:predict", {"instances": [[0] * 10]}, 400,
         "Input to reshape is a tensor with 10 values, but the requested shape has 784 (node "),
        ("POST", "/v1/models/tf_mlp:predict", {"instances": [IMAGE, IMAGE[:27]]}, 400,
         "Failed to process element: 1 of 'instances' list. Error: INVALID_ARGUMENT: Expecting tensor size: 784 "
         "but got: 756"),
        ("POST", "/v1/models/tf_mlp:predict", {"signature_name": "nope", "instances": [IMAGE]}, 400,
         'Serving signature name: "nope" not found in signature def'),
        ("POST", "/v1/models/tf_mlp:predict", {"signature_name": 7, "instances": [IMAGE]}, 400,
         "not formatted correctly. 'signature_name' key must be a string value."),
        ("POST", "/v1/models/tf_mlp:predict", {"instance": [IMAGE]}, 400, "Missing 'inputs' or 'instances' key"),
        ("POST", "/v1/models/tf_mlp:predict", {"instances": []}, 400, "No values in 'instances' array"),
        ("POST", "/v1/models/tf_mlp:predict", {"instances": [IMAGE], "inputs": [IMAGE]}, 400,
         "Not formatted correctly expecting only one of 'inputs' or 'instances' keys to exist"),
        ("POST", "/v1/models/tf_mlp:predict", {"signature_name": "predict_encoded", "instances": [{"b64": "!!"}]},
         400, "Failed to process element: 0 of 'instances' list. Error: INVALID_ARGUMENT: Unable to base64 decode"),
        ("POST", "/v1/models/tf_mlp:predict", b'{"instances": ["\xff\xfe"]}', 400,
         "JSON Value: \"\ufffd\ufffd\" Type: String is not of expected type: uint8"),
        ("POST", "/v1/models/tf_mlp:predict", {"instances": [[[300] * 28] * 28]}, 400,
         "JSON Value: 300 Type: Number is not of expected type: uint8"),
        # The method-name check is off by default (as in TensorFlow Serving): serving_default is refused by
        # the classify and regress signature checks instead.
        ("POST", "/v1/models/tf_mlp:classify", {"examples": [{"image": "x"}]}, 400,
         "Expected one or two output Tensors, found 3"),
        ("POST", "/v1/models/tf_mlp:classify", {"signature_name": "classify"}, 400,
         "When method is classify, key 'examples' is expected and was not found"),
        ("POST", "/v1/models/tf_mlp:regress", {"examples": [{"x": 1.0}]}, 400, "Expected one output Tensor."),
        ("GET", "/v1/models/tf_mlp/versions/x", None, 400, "Malformed request: GET /v1/models/tf_mlp/versions/x"),
        ("POST", "/v1/models/tf_mlp", {}, 400, "Malformed request: POST /v1/models/tf_mlp"),
        ("DELETE", "/v1/models/tf_mlp", None, 400, "Malformed request: DELETE /v1/models/tf_mlp"),
        ("GET", "/v1/models", None, 400, "Missing model name in request."),
        ("GET", "/v1/models/foo", None, 404, "Could not find any versions of model foo"),
        ("GET", "/v1/models/tf_mlp/versions/9", None, 404, "Could not find version 9 of model tf_mlp"),
        ("GET", "/v1/models/foo/metadata", None, 404, "Servable not found for request: Latest(foo)"),
        ("GET", "/v2/models/tf_mlp", None, 404, "Not found: GET /v2/models/tf_mlp"),
    ],
)
def test_errors_are_tensorflow_servings(server, method, path, payload, status, message):
    data = payload if isinstance(payload, bytes) else None
    payload = None if isinstance(payload, bytes) else payload
    response = requests.request(method, f"{server.rest_url}{path}", json=payload, data=data, timeout=30)
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"] == "application/json"
    assert message in response.json()["error"]


def test_body_size_limit(server):
    oversized = b'{"instances": [' + b"0," * (MAX_BODY // 2) + b"0]}"
    response = _post(server, "/v1/models/tf_mlp:predict", data=oversized)
    assert response.status_code == 413
    assert "larger than the limit of 1048576 bytes" in response.json()["error"]

    def chunks():  # no Content-Length: the limit must hold while reading
        yield b'{"instances": ['
        for _ in range(MAX_BODY // 1000 + 100):
            yield b"0," * 500
        yield b"0]}"

    streamed = requests.post(f"{server.rest_url}/v1/models/tf_mlp:predict", data=chunks(), timeout=30)
    assert streamed.status_code == 413
    # The server still answers afterwards.
    assert _post(server, "/v1/models/tf_mlp:predict", {"instances": [IMAGE]}).status_code == 200


def test_metrics(server):
    _post(server, "/v1/models/tf_mlp:predict", {"instances": [IMAGE]})
    _post(server, "/v1/models/tf_mlp:predict", {"instances": [[0]]})
    response = requests.get(f"{server.rest_url}/monitoring/prometheus/metrics", timeout=30)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    text = response.text
    # TensorFlow Serving's names, as its dashboards query them: the counter without prometheus_client's _total.
    assert "# TYPE :tensorflow:serving:request_count counter" in text
    assert "\n:tensorflow:serving:request_count{" in text and "_total" not in text and "_created" not in text
    assert "# TYPE :tensorflow:serving:request_latency histogram" in text
    samples = {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
               for family in text_string_to_metric_families(text) for sample in family.samples}
    count = ":tensorflow:serving:request_count_total"  # the parser's name for it
    assert samples[(count, (("model_name", "tf_mlp"), ("status", "OK")))] >= 1
    assert samples[(count, (("model_name", "tf_mlp"), ("status", "INVALID_ARGUMENT")))] >= 1
    latency, model = (("API", "predict"), ("entrypoint", "REST")), ("model_name", "tf_mlp")
    assert samples[(":tensorflow:serving:request_latency_bucket", (*latency, ("le", "+Inf"), model))] \
        == samples[(":tensorflow:serving:request_latency_count", (*latency, model))] >= 2


def test_bytes_outputs_are_b64_and_non_finite_floats_are_tokens():
    """MakeJsonFromTensors' rules for outputs our model does not have: *_bytes strings, NaN and infinities."""
    from tf_mlp.server.rest import json_tensors

    outputs = {
        "thumbnail_bytes": np.array([b"\x00\xff"], dtype=object),
        "name": np.array([b"boot"], dtype=object),
        "score": np.array([[np.nan, np.inf, -np.inf, 0.5]], dtype=np.float32),
    }
    rows = json_tensors.predict_response(outputs, json_tensors.ROW)
    assert rows == (b'{"predictions":[{"name":"boot","score":[NaN,Infinity,-Infinity,0.5],'
                    b'"thumbnail_bytes":{"b64":"AP8="}}]}')
    columns = json_tensors.predict_response({"thumbnail_bytes": outputs["thumbnail_bytes"]}, json_tensors.COLUMNAR)
    assert columns == b'{"outputs":[{"b64":"AP8="}]}'


def _request_count(server, status: str) -> float:
    text = requests.get(f"{server.rest_url}/monitoring/prometheus/metrics", timeout=30).text
    samples = {tuple(sorted(sample.labels.items())): sample.value for family in text_string_to_metric_families(text)
               for sample in family.samples if sample.name == ":tensorflow:serving:request_count_total"}
    return samples.get((("model_name", "tf_mlp"), ("status", status)), 0)


def test_an_unexpected_exception_is_a_json_500_logged_once_and_counted_internal(server, monkeypatch, caplog):
    def broken(*args, **kwargs):
        raise RuntimeError("a bug deep inside")

    internal_before = _request_count(server, "INTERNAL")
    ok_before = _request_count(server, "OK")
    monkeypatch.setattr(server.core, "serving", broken)
    monkeypatch.setattr(server.core, "model_status", broken)
    with caplog.at_level("ERROR", logger="tf_mlp.server.rest.api"):
        predict = _post(server, "/v1/models/tf_mlp:predict", {"instances": [IMAGE]})
        status = requests.get(f"{server.rest_url}/v1/models/tf_mlp", timeout=30)
    for answer in (predict, status):
        assert answer.status_code == 500
        assert answer.json() == {"error": "internal error: RuntimeError (logged by the server)"}
    tracebacks = [record for record in caplog.records if record.exc_info]
    assert len(tracebacks) == 2 and "a bug deep inside" in str(tracebacks[0].exc_info[1])
    # Counted as what it was, never as OK (before: the status defaulted to OK and was set only on success).
    assert _request_count(server, "INTERNAL") == internal_before + 1
    assert _request_count(server, "OK") == ok_before


def test_request_bodies_are_inflated_within_the_body_limit():
    import gzip
    import zlib

    from tf_mlp.server.core.status import ServingError
    from tf_mlp.server.rest import bodies

    text = b'{"instances": [1]}'
    raw_deflate = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    two_members = gzip.compress(text[:5], mtime=0) + gzip.compress(text[5:], mtime=0)
    assert bodies.decoded(two_members, "gzip", 100) == text
    assert bodies.decoded(zlib.compress(text), "deflate", 100) == text
    assert bodies.decoded(raw_deflate.compress(text) + raw_deflate.flush(), "deflate", 100) == text
    assert bodies.encoding_of({"Content-Encoding": " GZIP "}) == "gzip" and bodies.encoding_of({}) == ""
    for body, encoding, limit, status, message in [
        (gzip.compress(text, mtime=0)[:-9], "gzip", 100, 400,
         "not valid gzip: the compressed data ends before its end marker"),
        (gzip.compress(b"0" * 101, mtime=0), "gzip", 100, 413, "larger than the limit of 100 bytes"),
        (b"plain", "deflate", 100, 400, "not valid deflate"),
    ]:
        with pytest.raises(ServingError) as error:
            bodies.decoded(body, encoding, limit)
        assert (error.value.http_status, message in error.value.message) == (status, True), error.value.message



def test_a_request_whose_body_arrives_after_stop_began_is_answered(tmp_path, caplog):
    # A client's headers and body often arrive as separate segments. aiohttp's cleanup alone stopped reading
    # every connection at once, so a request caught between the two waited out the whole grace period and was
    # cut off unanswered: the batch script stalled for the grace period at some server restarts.
    server = serving_helpers.start_server(model_base_path=str(serving_helpers.model_base(tmp_path)),
                                          shutdown_grace_seconds=20)
    body = json.dumps({"instances": [IMAGE]}).encode()
    headers = (f"POST /v1/models/tf_mlp:predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
               f"Content-Length: {len(body)}\r\n\r\n").encode()
    stopper = threading.Thread(target=server.stop)
    try:
        with socket.create_connection(("127.0.0.1", server.rest_port), timeout=60) as connection:
            connection.sendall(headers)
            serving_helpers.wait_for(lambda: server.metrics.in_flight == 1, message="the request to be read")
            with caplog.at_level("INFO", logger="tf_mlp.server.server"):
                stopper.start()
                serving_helpers.wait_for(lambda: "REST port closed" in caplog.text, message="the port to close")
            connection.sendall(body)
            answer = b""
            while chunk := connection.recv(65536):
                answer += chunk
    finally:
        if stopper.ident is None:
            server.stop()
        stopper.join()
    head, _, payload = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 "), answer[:300]
    assert b"\r\nConnection: close" in head  # the client's next request goes elsewhere
    assert len(json.loads(payload)["predictions"][0]["probabilities"]) == 10
