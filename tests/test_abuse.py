"""Hostile requests against a real `tf-mlp serve` subprocess, and the server's security defaults.

Hypothesis generates the requests (derandomized: the same ones every run),
class by class; every answer is tallied in ANSWERS (class -> status -> count).
The rule for every class: no 5xx where TensorFlow Serving answers 4xx (503
and 504 are allowed: a busy server and a timed-out request are honest
answers), and for classes with one right answer (413 for oversized bodies,
400 for broken JSON, ...) exactly that answer. The last test checks that
the server is still up, answers a good request with the same probabilities
as before the abuse, and that its memory stayed within a bound of its
memory after warm-up. The tests run in file order and share one server.
"""

from __future__ import annotations

import base64
import http.client
import json
import pathlib
import re
import socket
import struct
import zlib

import grpc
import numpy as np
import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2
from tensorflow_serving.apis import predict_pb2

from tests import robustness_report, serving_helpers
from tests.conftest import png_bytes
from tf_mlp.server import ServerOptions
from tf_mlp.server.process import ServerProcess

# Every test but the package scan at the end shares one `tf-mlp serve` subprocess, which takes about 8 s to
# start (TensorFlow's import and the model's load) before the first of them runs: the module is slow as a whole.
pytestmark = pytest.mark.slow

REPO = pathlib.Path(__file__).resolve().parents[1]
MAX_BODY = 1024 * 1024
TIMEOUT_MS = 3000
RSS_BOUND = 150 * 1024 * 1024
"""Growth of the server's resident memory allowed over the abuse run (allocator slack, caches)."""
ANSWERS = robustness_report.ANSWERS
"""Request class -> status (HTTP code, gRPC code name, or what a raw socket saw) -> count."""
ALLOWED_5XX = {503, 504}


def _settings(examples: int):
    return settings(max_examples=examples, derandomize=True, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                           HealthCheck.data_too_large, HealthCheck.large_base_example])


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("abuse")
    base = serving_helpers.model_base(tmp_path)
    process = ServerProcess(tmp_path / "server.log", f"--model_base_path={base}",
                            f"--rest_api_max_request_bytes={MAX_BODY}", f"--rest_api_timeout_in_ms={TIMEOUT_MS}")
    process.start()
    yield process
    process.stop()


GOOD_IMAGES = serving_helpers.test_images(4)


def _good_probabilities(server) -> list:
    response = requests.post(f"{server.rest_url}/v1/models/tf_mlp:predict",
                             json={"instances": GOOD_IMAGES.tolist()}, timeout=60)
    assert response.status_code == 200, response.text
    return [row["probabilities"] for row in response.json()["predictions"]]


@pytest.fixture(scope="module")
def baseline(server):
    """Probabilities for the good request and the server's RSS, after a warm-up of every kind of good request."""
    encoded = [{"b64": base64.b64encode(png_bytes(image)).decode()} for image in GOOD_IMAGES]
    for _ in range(20):
        _good_probabilities(server)
        requests.post(f"{server.rest_url}/v1/models/tf_mlp:predict",
                      json={"signature_name": "predict_encoded", "instances": encoded}, timeout=60)
        requests.get(f"{server.rest_url}/v1/models/tf_mlp/metadata", timeout=60)
    return {"probabilities": _good_probabilities(server), "rss": server.rss_bytes()}


def _send(server, method: str, path: str, body: bytes | None = None, headers: dict | None = None) -> int:
    """One request on a fresh connection, the path sent exactly as given (no client-side normalising)."""
    connection = http.client.HTTPConnection("127.0.0.1", server.rest_port, timeout=120)
    try:
        connection.putrequest(method, path, skip_host=False, skip_accept_encoding=True)
        all_headers = {"Content-Type": "application/json", **(headers or {})}
        if body is not None and "Transfer-Encoding" not in all_headers:
            all_headers["Content-Length"] = str(len(body))
        for name, value in all_headers.items():
            connection.putheader(name, value)
        connection.endheaders()
        if body is not None:
            if all_headers.get("Transfer-Encoding") == "chunked":
                for start in range(0, len(body), 65536):
                    piece = body[start:start + 65536]
                    connection.send(b"%x\r\n%s\r\n" % (len(piece), piece))
                connection.send(b"0\r\n\r\n")
            else:
                connection.send(body)
        response = connection.getresponse()
        response.read()
        return response.status
    except (ConnectionResetError, BrokenPipeError):
        # The server may answer 413 and close before the whole body is sent; counted as what it is.
        return "reset while sending"
    finally:
        connection.close()


def _record(kind: str, status, allowed=None):
    ANSWERS[kind][status] += 1
    if allowed is not None:
        assert status in allowed, f"{kind}: answered {status}, expected one of {allowed}"
    assert isinstance(status, int) or status in (allowed or ()), f"{kind}: no HTTP answer ({status})"
    assert not isinstance(status, int) or status < 500 or status in ALLOWED_5XX, f"{kind}: answered {status}"


def _image_json(token: str, position: int) -> bytes:
    """A valid 28x28 zero image as JSON text, with one pixel replaced by the raw token."""
    values = ["0"] * 784
    values[position % 784] = token
    rows = ",".join("[" + ",".join(values[row * 28:(row + 1) * 28]) + "]" for row in range(28))
    return f"[{rows}]".encode()


PREDICT = "/v1/models/tf_mlp:predict"
VALID_BODY = json.dumps({"instances": [[[0] * 28] * 28]}).encode()
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(1 << 70), 1 << 70) | st.floats(allow_nan=True) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=6) | st.dictionaries(st.text(max_size=6), children, max_size=4),
    max_leaves=40)


# ---- the request classes ----------------------------------------------------------------------------------


@_settings(120)
@given(data=st.data())
def test_malformed_json(server, baseline, data):
    body = data.draw(st.one_of(
        st.binary(min_size=1, max_size=300),
        # A valid request cut short or with bytes spliced in.
        st.integers(1, len(VALID_BODY) - 1).map(lambda cut: VALID_BODY[:cut]),
        st.tuples(st.integers(0, len(VALID_BODY)), st.sampled_from([b"}", b",", b"\x00", b"\xff\xfe", b"'", b"\\"]))
        .map(lambda splice: VALID_BODY[:splice[0]] + splice[1] + VALID_BODY[splice[0]:]),
    ))
    try:
        json.loads(body)
        return  # the rare valid document is another class's business
    except ValueError:
        pass
    _record("malformed JSON", _send(server, "POST", PREDICT, body), {400})


@_settings(60)
@given(depth=st.integers(2, 200_000), shape=st.sampled_from(["array-root", "in-instances", "object", "unclosed"]))
def test_deeply_nested_json(server, baseline, depth, shape):
    body = {
        "array-root": b"[" * depth + b"0" + b"]" * depth,
        "in-instances": b'{"instances":' + b"[" * depth + b"0" + b"]" * depth + b"}",
        "object": b'{"a":' * depth + b"0" + b"}" * depth,
        "unclosed": b'{"instances":' + b"[" * depth,
    }[shape]
    _record("deeply nested JSON", _send(server, "POST", PREDICT, body), {400, 413})


@_settings(150)
@given(document=st.one_of(
    st.fixed_dictionaries({"instances": json_values}),
    st.fixed_dictionaries({"inputs": json_values}),
    st.fixed_dictionaries({"inputs": st.dictionaries(st.sampled_from(["images", "image_bytes", "x", ""]), json_values,
                                                     max_size=3)}),
    st.fixed_dictionaries({"instances": st.lists(st.dictionaries(st.sampled_from(["images", "image_bytes", "x"]),
                                                                 json_values, max_size=2), max_size=3)}),
    # Shapes near the right one, and small wrong ones (kept small: Hypothesis prints the examples it ran).
    st.tuples(st.lists(st.integers(0, 12), max_size=4) | st.sampled_from([[1, 28, 27], [1, 29, 28], [2, 28], [28, 28],
                                                                          [1, 28, 28, 1], [0, 28, 28], [1, 28, 28]]),
              st.sampled_from([0, 1.5, "a", True, None, -1]))
    .map(lambda shape_fill: {"instances": np.full(shape_fill[0], shape_fill[1], dtype=object).tolist()}),
    st.dictionaries(st.text(max_size=10), json_values, max_size=4),
    json_values,
), signature=st.sampled_from([None, "serving_default", "predict_images", "predict_encoded", "classify"]))
def test_wrong_shapes_and_dtypes(server, baseline, document, signature):
    if isinstance(document, dict) and signature is not None:
        document = {**document, "signature_name": signature}
    body = json.dumps(document, allow_nan=True).encode()
    _record("wrong shapes and dtypes", _send(server, "POST", PREDICT, body), {400, 200})


@_settings(120)
@given(token=st.sampled_from(["NaN", "Infinity", "-Infinity", "1e400", "-1e400", "1e308", "-1", "256", "3.5", "1e-400",
                              "18446744073709551616", "-9223372036854775809", "99999999999999999999999999999999",
                              "0." + "0" * 5000 + "1", "1" * 5000]),
       position=st.integers(0, 783),
       signature=st.sampled_from(["serving_default", "predict_images"]),
       columnar=st.booleans())
def test_nan_infinities_and_huge_numbers(server, baseline, token, position, signature, columnar):
    image = _image_json(token, position)
    if signature == "predict_images":
        image = image.replace(b"],[", b",")[1:-1]  # [784] floats
    key = b'"inputs":[' if columnar else b'"instances":['
    body = b'{"signature_name":"' + signature.encode() + b'",' + key + image + b"]}"
    status = _send(server, "POST", PREDICT, body)
    # uint8 pixels take no fraction, sign, NaN or overflow; float pixels take every finite float32 and NaN/inf.
    _record("NaN, infinities, huge numbers", status, {400} if signature == "serving_default" and token not in (
        "1e-400",) else {200, 400})


@_settings(20)
@given(extra=st.integers(1, 2 * MAX_BODY), chunked=st.booleans(), lie=st.booleans())
def test_oversized_bodies(server, baseline, extra, chunked, lie):
    body = b'{"instances": [' + b"0," * ((MAX_BODY + extra) // 2) + b"0]}"
    headers = {"Transfer-Encoding": "chunked"} if chunked else {}
    if lie and not chunked:
        # A Content-Length under the limit, a body over it: the server reads only what was declared.
        headers = {"Content-Length": str(MAX_BODY // 2)}
        status = _send(server, "POST", PREDICT, body[:MAX_BODY // 2], headers)
        _record("oversized bodies", status, {400})
        return
    _record("oversized bodies", _send(server, "POST", PREDICT, body, headers), {413, "reset while sending"})


@_settings(100)
@given(text=st.one_of(st.text(max_size=60), st.binary(max_size=40).map(
    lambda raw: base64.b64encode(raw).decode()[:-1] + "!")), columnar=st.booleans(),
    wrapper=st.sampled_from(["b64", "list", "number", "extra key"]))
def test_invalid_base64(server, baseline, text, columnar, wrapper):
    value = {"b64": {"b64": text}, "list": {"b64": [text]}, "number": {"b64": 5}, "extra key": {"b64": text, "x": 1}}[
        wrapper]
    document = {"signature_name": "predict_encoded", ("inputs" if columnar else "instances"): [value]}
    _record("invalid base64", _send(server, "POST", PREDICT, json.dumps(document).encode()), {400})


def _lying_png(width: int, height: int) -> bytes:
    """A PNG whose header claims a huge image but whose data is a few bytes."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    chunk = lambda kind, data: struct.pack(">I", len(data)) + kind + data + struct.pack(  # noqa: E731
        ">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(
        b"IEND", b"")


@_settings(100)
@given(kind=st.sampled_from(["random", "truncated png", "png garbage", "jpeg garbage", "gif garbage", "lying png",
                             "empty"]),
       cut=st.integers(1, 200), noise=st.binary(min_size=0, max_size=200),
       # A claimed size whose rows (a filter byte plus width bytes each) need more than the 64 bytes sent:
       # smaller claims are not lies but valid tiny images.
       size=st.tuples(st.integers(1, 1 << 31), st.integers(1, 1 << 31)).filter(lambda s: s[1] * (s[0] + 1) > 64),
       endpoint=st.sampled_from(["predict", "classify"]))
def test_corrupt_images(server, baseline, kind, cut, noise, size, endpoint):
    good = png_bytes(GOOD_IMAGES[0])
    data = {
        "random": noise,
        "truncated png": good[:min(cut, len(good) - 1)],
        "png garbage": good[:33] + noise,
        "jpeg garbage": b"\xff\xd8\xff\xe0" + noise,
        "gif garbage": b"GIF89a" + noise,
        "lying png": _lying_png(*size),
        "empty": b"",
    }[kind]
    value = {"b64": base64.b64encode(data).decode()}
    if endpoint == "predict":
        document, path = {"signature_name": "predict_encoded", "instances": [value]}, PREDICT
    else:
        document, path = {"signature_name": "classify", "examples": [{"image": value}]}, "/v1/models/tf_mlp:classify"
    _record("corrupt images", _send(server, "POST", path, json.dumps(document).encode()), {400})


path_segment = st.text(st.characters(codec="ascii", exclude_characters="\r\n\x00 #?"), max_size=12).map(
    lambda text: re.sub(r"[^\x21-\x7e]", "x", text))


@_settings(150)
@given(method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD", "BREW", "TRACE"]),
       path=st.one_of(
           st.lists(path_segment, min_size=0, max_size=5).map(lambda parts: "/" + "/".join(parts)),
           st.tuples(path_segment, st.sampled_from(["predict", "classify", "regress", "explain", "", "PREDICT"]))
           .map(lambda pair: f"/v1/models/{pair[0] or 'x'}:{pair[1]}"),
           st.tuples(st.integers(-5, 1 << 70), path_segment).map(
               lambda pair: f"/v1/models/tf_mlp/versions/{pair[0]}/{pair[1]}"),
           path_segment.map(lambda label: f"/v1/models/tf_mlp/labels/{label or 'x'}:predict"),
       ),
       signature=st.one_of(st.none(), st.text(max_size=20)))
def test_unknown_paths_methods_and_signatures(server, baseline, method, path, signature):
    document = {"instances": [[[0] * 28] * 28]}
    if signature is not None:
        document["signature_name"] = signature
    status = _send(server, method, path, json.dumps(document).encode() if method != "GET" else None)
    # 200 only for what exists: a version-1 status or metadata GET, or a predict with a real signature name.
    _record("unknown paths, methods, signatures", status, {200, 400, 404, 405, 501})


PATH_TRICKS = [
    "/v1/models/..%2F..%2Fetc:predict", "/v1/models/..%2f..%2fetc%2fpasswd:predict", "/v1/models/%2Fetc%2Fpasswd",
    "/v1/models/%2e%2e/versions/1:predict", "/v1/models/..:predict", "/v1/models/.:predict",
    "/v1/models/tf_mlp/../../../etc/passwd", "/v1/models/tf_mlp%00:predict", "/v1/models/tf_mlp%2F1:predict",
    "/v1/models/%2Ftmp%2Ftf_mlp%2F1", "/v1/models/..%5C..%5Cwindows:predict", "/v1/models/~root:predict",
    "/v1/models/file:%2F%2F%2Fetc%2Fpasswd:predict", "/v1/models/tf_mlp/versions/1/../../../..:predict",
    "/../../etc/passwd", "/v1/models/%252e%252e%252fetc:predict", "/v1/models/tf_mlp/labels/..%2F..:predict",
]


def test_path_tricks_name_no_model_and_load_nothing(server, baseline):
    before = server.log().count("Successfully loaded")  # not relied on: the status below is the contract
    for path in PATH_TRICKS:
        for method in ("GET", "POST"):
            status = _send(server, method, path, VALID_BODY if method == "POST" else None)
            # 404 for a model that is not served; 400 where upstream's router calls the path malformed.
            _record("path tricks (..%2F, %00, absolute)", status, {400, 404})
    status = requests.get(f"{server.rest_url}/v1/models/tf_mlp", timeout=30).json()
    assert [entry["version"] for entry in status["model_version_status"]] == ["1"]
    assert server.log().count("Successfully loaded") == before


def _status_line(data: bytes):
    found = re.match(rb"HTTP/1\.[01] (\d{3})", data)
    return int(found.group(1)) if found else "closed"


def test_slow_clients_do_not_hang_others_and_are_timed_out(server, baseline):
    # Twenty clients send headers and part of a body (or half the headers), then stall.
    stalled = []
    for number in range(20):
        sock = socket.create_connection(("127.0.0.1", server.rest_port), timeout=120)
        if number % 2:
            sock.sendall(f"POST {PREDICT} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         f"Content-Length: {len(VALID_BODY)}\r\n\r\n".encode() + VALID_BODY[:100])
        else:
            sock.sendall(f"POST {PREDICT} HTTP/1.1\r\nHost: x\r\nContent-Le".encode())
        stalled.append(sock)
    try:
        # Meanwhile the server answers everyone else at once.
        assert _good_probabilities(server) == baseline["probabilities"]
        # ... and gives every stalled client an answer or a closed connection, instead of waiting forever.
        outcomes = []
        for sock in stalled:
            try:
                outcomes.append(_status_line(sock.recv(4096)))
            except ConnectionResetError:
                outcomes.append("closed")
    finally:
        for sock in stalled:
            sock.close()
    for outcome in outcomes:
        ANSWERS["slow clients (stalled mid-body or mid-headers)"][outcome] += 1
    assert all(outcome in (408, 504, 400, "closed") for outcome in outcomes), outcomes


PREDICT_METHOD = "/tensorflow.serving.PredictionService/Predict"
DTYPES = [types_pb2.DT_UINT8, types_pb2.DT_FLOAT, types_pb2.DT_STRING, types_pb2.DT_INT64, types_pb2.DT_HALF,
          types_pb2.DT_BOOL, types_pb2.DT_COMPLEX64, types_pb2.DT_RESOURCE, types_pb2.DT_VARIANT, 0, 999]


def _grpc_request(model, signature, key, dtype, dims, content, values):
    request = predict_pb2.PredictRequest()
    if model is not None:
        request.model_spec.name = model
    if signature is not None:
        request.model_spec.signature_name = signature
    tensor = tensor_pb2.TensorProto(dtype=dtype, tensor_shape=tensor_shape_pb2.TensorShapeProto(
        dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=size) for size in dims]))
    if content is not None:
        tensor.tensor_content = content
    if values == "ints":
        tensor.int_val.extend(range(50))
    elif values == "strings":
        tensor.string_val.extend([b"\x89PNG", b""])
    elif values == "floats":
        tensor.float_val.extend([float("nan"), float("inf"), 1e38])
    request.inputs[key].CopyFrom(tensor)
    return request.SerializeToString()


@pytest.fixture(scope="module")
def channel(server):
    with grpc.insecure_channel(server.grpc_target) as channel:
        yield channel


@_settings(200)
@given(raw=st.one_of(
    st.binary(max_size=200).map(lambda data: ("undecodable bytes", data)),
    st.builds(_grpc_request, st.sampled_from(["tf_mlp", "", "other", None, "../tf_mlp"]),
              st.sampled_from([None, "", "serving_default", "predict_encoded", "predict_images", "nope"]),
              st.sampled_from(["images", "image_bytes", "", "x"]), st.sampled_from(DTYPES),
              st.lists(st.sampled_from([-1, 0, 1, 2, 28, 784, 1 << 20, 1 << 40, (1 << 63) - 1]), max_size=4)
              | st.sampled_from([[1] * 70, [1] * 255]),
              st.one_of(st.none(), st.binary(max_size=900)), st.sampled_from([None, "ints", "strings", "floats"]))
    .map(lambda data: ("malformed PredictRequest", data)),
), method=st.sampled_from([PREDICT_METHOD, "/tensorflow.serving.PredictionService/Nope",
                           "/tensorflow.serving.ModelService/GetModelStatus"]))
def test_grpc_malformed_requests(server, baseline, channel, raw, method):
    kind, data = raw
    call = channel.unary_unary(method, request_serializer=None, response_deserializer=None)
    try:
        call(data, timeout=60)
        status = "OK"
    except grpc.RpcError as error:
        status = error.code().name
    ANSWERS[f"gRPC {kind}"][status] += 1
    # PredictionService parses its requests itself: bytes that are no protobuf are INVALID_ARGUMENT. ModelService's
    # fail in grpc.aio's own deserialisation, before any servicer runs, which answers UNKNOWN where grpc++ (so
    # TensorFlow Serving) answers INTERNAL (a known difference, in docs/ROBUSTNESS.md). Anything that decodes must
    # get a client-error code.
    allowed = {"OK", "INVALID_ARGUMENT", "NOT_FOUND", "FAILED_PRECONDITION", "UNIMPLEMENTED", "OUT_OF_RANGE",
               "RESOURCE_EXHAUSTED", "UNAVAILABLE", "DEADLINE_EXCEEDED"}
    if kind == "undecodable bytes" and "ModelService" in method:
        allowed |= {"UNKNOWN"}
    assert status in allowed, (kind, method, status)


# ---- after the abuse ----------------------------------------------------------------------------------------


def test_after_the_abuse_the_server_is_up_correct_and_its_memory_is_stable(server, baseline):
    assert server.alive()
    assert _good_probabilities(server) == baseline["probabilities"]
    rss = server.rss_bytes()
    tried = sum(sum(counts.values()) for counts in ANSWERS.values())
    print(f"\nhostile requests: {tried}; server RSS {baseline['rss'] / 2**20:.0f} MiB after warm-up, "
          f"{rss / 2**20:.0f} MiB after the abuse")
    for kind, counts in ANSWERS.items():
        print(f"  {kind}: {sum(counts.values())} {dict(counts)}")
    assert tried >= 1000
    assert rss - baseline["rss"] < RSS_BOUND
    robustness_report.MEMORY.update({"after warm-up": baseline["rss"], "after the abuse": rss})


# ---- security defaults --------------------------------------------------------------------------------------


def test_server_listens_on_loopback_only_by_default(server):
    assert ServerOptions().host == "127.0.0.1"
    listening = server.listening_addresses()
    assert {port for _, port in listening} == {server.rest_port, server.grpc_port}
    # gRPC may listen on an IPv4-mapped IPv6 socket: ::ffff:127.0.0.1 is the same loopback address.
    assert {ip.removeprefix("::ffff:") for ip, _ in listening} == {"127.0.0.1"}


UNSAFE_CODE = re.compile(r"^\s*(import|from)\s+(pickle|cPickle|marshal|shelve|dill|cloudpickle|jsonpickle)\b"
                         r"|\b(pickle|marshal|dill|cloudpickle)\.(loads?|Unpickler)\b|(?<![.\w])(eval|exec)\("
                         r"|allow_pickle\s*=\s*True|yaml\.load\(|yaml\.unsafe_load", re.M)


def test_the_package_deserialises_nothing_with_pickle_marshal_or_eval():
    sources = sorted((REPO / "tf_mlp").rglob("*.py"))
    assert len(sources) > 20
    offending = {str(path.relative_to(REPO)): UNSAFE_CODE.findall(path.read_text()) for path in sources}
    assert {path: found for path, found in offending.items() if found} == {}
    # The check itself recognises what it is looking for.
    assert UNSAFE_CODE.search("import pickle\n") and UNSAFE_CODE.search("x = eval(text)")
    assert UNSAFE_CODE.search("np.load(path, allow_pickle=True)") and not UNSAFE_CODE.search("model.eval()")
