"""The client library and the online client against the embedded server on free ports.

One tiny exported model (tests/serving_helpers) is served once per module
over REST and gRPC and also loaded in-process; every back end must give the
same answers. Misbehaving servers are a FlakyProxy (REST) or a gRPC
servicer that fails on purpose before forwarding.
"""

from __future__ import annotations

import concurrent.futures
import io
import json
import pathlib

import grpc
import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image
from tensorflow_serving.apis import prediction_service_pb2_grpc

from tests import commands, serving_helpers
from tests.conftest import free_port, png_bytes
from tests.flaky_proxy import FlakyProxy
from tests.predictions import PROBABILITY_TOLERANCE
from tf_mlp import client, contract, predict_cli
from tf_mlp.client import retry
from tf_mlp.client.results import Prediction
from tf_mlp.errors import ConfigError

FAST_RETRIES = client.RetryPolicy(max_attempts=4, initial_backoff=0.01, max_backoff=0.05)
LATEST = {"preferred_label": None}
"""Address the latest version outright: the retry tests count requests, and asking whether the server has the
stable label would be one more."""




@pytest.fixture(scope="module")
def images():
    return serving_helpers.test_images(6)


# ---- targets, specs, retry policy ------------------------------------------------------------------------


@pytest.mark.parametrize("text, protocol, expected", [
    ("rest://127.0.0.1:8601", None, ("rest", "127.0.0.1", 8601)),
    ("http://models:8501/", None, ("rest", "models", 8501)),
    ("grpc://127.0.0.1", None, ("grpc", "127.0.0.1", 8500)),
    ("localhost", None, ("rest", "localhost", 8501)),
    ("127.0.0.1:9000", "grpc", ("grpc", "127.0.0.1", 9000)),
    ("[::1]:8501", None, ("rest", "::1", 8501)),
])
def test_parse_target_host_forms(text, protocol, expected):
    target = client.parse_target(text, protocol)
    assert (target.protocol, target.host, target.port) == expected


def test_parse_target_local_forms():
    assert client.parse_target("local:models/tf_mlp").path == "models/tf_mlp"
    assert client.parse_target("models", "local") == client.Target("local", path="models")
    assert str(client.parse_target("local:models")) == "local:models"
    assert str(client.parse_target("[::1]", "grpc")) == "grpc://[::1]:8500"


@pytest.mark.parametrize("text, protocol, message", [
    ("https://host:8501", None, "unsupported target scheme"),
    ("grpc://host:8500", "rest", "contradicts"),
    ("rest://host:http", None, "invalid port"),
    ("rest://host:8501/v1/models", None, "has a path"),
    ("local:", None, "needs a path"),
    ("host", "ftp", "unknown protocol"),
    ("models/nowhere", None, "models/nowhere: no such directory"),
    ("run:", None, "needs a path"),
])
def test_parse_target_rejects(text, protocol, message):
    with pytest.raises(ConfigError, match=message):
        client.parse_target(text, protocol)


def test_model_spec_takes_a_version_or_a_label():
    with pytest.raises(ConfigError, match="not both"):
        client.ModelSpec(version=1, label="stable")
    assert client.ModelSpec().signature_for(client.PIXELS) == contract.SERVING_SIGNATURE
    assert client.ModelSpec().signature_for(client.ENCODED) == contract.ENCODED_SIGNATURE


def test_backoff_grows_exponentially_up_to_the_cap_with_full_jitter():
    policy = client.RetryPolicy(initial_backoff=0.1, multiplier=2.0, max_backoff=0.5)
    upper = [policy.backoff(failures, uniform=lambda low, high: high) for failures in range(1, 6)]
    assert upper == pytest.approx([0.1, 0.2, 0.4, 0.5, 0.5])
    assert all(policy.backoff(failures, uniform=lambda low, high: low) == 0.0 for failures in range(1, 6))


def test_call_with_retries_retries_only_retryable_failures():
    sleeps, stats = [], retry.CallStats()
    policy = client.RetryPolicy(max_attempts=3, initial_backoff=0.1)

    def always_busy(number):
        raise retry.RetryableFailure(client.UnavailableError("t", "HTTP 503", "busy"))

    with pytest.raises(client.UnavailableError) as caught:
        retry.call_with_retries(always_busy, policy, stats, sleep=sleeps.append)
    assert caught.value.attempts == 3 and len(sleeps) == 2
    assert str(caught.value) == "t: HTTP 503 (after 3 attempts): busy"

    def refused(number):
        raise client.RequestError("t", "HTTP 400", "bad input")

    with pytest.raises(client.RequestError):
        retry.call_with_retries(refused, policy, stats, sleep=sleeps.append)
    assert len(sleeps) == 2  # no sleep, no second attempt
    assert retry.call_with_retries(lambda number: number, policy, stats) == 1
    assert stats.as_dict() == {"calls": 3, "attempts": 5, "retries": 2, "failures": 2}


def test_top_k_orders_by_probability_and_breaks_ties_by_class_id():
    prediction = Prediction(np.array([[0.1, 0.3, 0.3, 0.3], [0.7, 0.1, 0.1, 0.1]], np.float32),
                            np.array([1, 0]), ["b", "a"])
    assert [[class_id for class_id, _ in row] for row in prediction.top_k(3)] == [[1, 2, 3], [0, 1, 2]]
    assert prediction.top_k(10)[0][-1][0] == 0  # k beyond the class count gives every class
    np.testing.assert_array_equal(prediction.probability(), np.array([0.3, 0.7], np.float32))


# ---- the three back ends agree -------------------------------------------------------------------------------


def test_backends_give_identical_predictions_for_pixels_and_encoded_images(targets, images):
    encoded = [png_bytes(image) for image in images]
    answers = {}
    for name, target in targets.items():
        with client.connect(target) as model:
            answers[name] = (model.predict(images), model.predict_encoded(encoded))
    reference = answers["local"][0]
    assert reference.probabilities.shape == (len(images), contract.NUM_CLASSES)
    # Exactly equal: one computation each time (the servers run in this process, the same six images in one
    # batch, the same kernels); predictions computed otherwise agree within tests.predictions' tolerance.
    for name, predictions in answers.items():
        for prediction in predictions:
            np.testing.assert_array_equal(prediction.probabilities, reference.probabilities, err_msg=name)
            np.testing.assert_array_equal(prediction.class_ids, reference.class_ids, err_msg=name)
            assert prediction.class_names == reference.class_names, name


def test_backends_agree_on_status_metadata_and_class_names(targets):
    answers = {}
    for name, target in targets.items():
        with client.connect(target) as model:
            answers[name] = (model.status(), model.metadata(), model.class_names())
    for name, (status, metadata, class_names) in answers.items():
        assert status.available == [1], name
        assert metadata.version == 1 and metadata.model == contract.MODEL_NAME, name
        assert set(metadata.signatures) == {contract.SERVING_SIGNATURE, contract.ENCODED_SIGNATURE,
                                            contract.RAW_SIGNATURE, contract.MNIST_EXAMPLE_SIGNATURE,
                                            contract.CLASSIFY_SIGNATURE}, name
        images_input = metadata.signatures[contract.SERVING_SIGNATURE].inputs[contract.IMAGES_INPUT]
        assert (images_input.dtype, images_input.shape) == ("DT_UINT8", [-1, 28, 28]), name
        assert class_names == tuple(str(index) for index in range(10)), name


@pytest.mark.parametrize("protocol", ["rest", "grpc"])
def test_a_server_without_a_stable_label_is_asked_for_its_latest_version(targets, protocol):
    # The module's server was started with --model_base_path alone: no labels, so no stable to prefer.
    with client.connect(targets[protocol]) as model:
        assert model.metadata().version == 1 and model.addressed_label() is None
        assert model.stats.as_dict()["calls"] == 1
    with client.connect(targets[protocol], label="stable") as model:
        with pytest.raises(client.RequestError, match="Unrecognized servable version label: stable"):
            model.metadata()


def test_one_client_serves_many_threads(targets, images):
    with client.connect(targets["rest"], max_connections=4) as model:
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            answers = list(pool.map(lambda index: model.predict(images[index:index + 2]), range(5)))
        assert model.stats.as_dict()["calls"] == 5
    with client.connect(targets["local"]) as model:
        expected = model.predict(images)
    for index, answer in enumerate(answers):
        np.testing.assert_array_equal(answer.class_ids, expected.class_ids[index:index + 2])


# ---- errors ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("protocol, status", [("rest", "HTTP 404"), ("grpc", "NOT_FOUND")])
def test_unknown_model_and_version_raise_not_found_with_the_servers_message(targets, images, protocol, status):
    with client.connect(targets[protocol], model="nope") as model:
        with pytest.raises(client.NotFoundError) as caught:
            model.predict(images)
    assert str(caught.value) == f"{targets[protocol]}: {status}: Servable not found for request: Latest(nope)"
    assert caught.value.attempts == 1
    with client.connect(targets[protocol], version=7) as model:
        with pytest.raises(client.NotFoundError, match=r"Servable not found for request: Specific\(tf_mlp, 7\)"):
            model.metadata()
        with pytest.raises(client.NotFoundError, match="Could not find version 7 of model tf_mlp"):
            model.status()


@pytest.mark.parametrize("protocol", ["rest", "grpc", "local"])
def test_undecodable_image_is_a_request_error_and_is_not_retried(targets, images, protocol):
    with client.connect(targets[protocol], retry=FAST_RETRIES) as model:
        with pytest.raises(client.RequestError, match="image_bytes.* is not a decodable image"):
            model.predict_encoded([png_bytes(images[0]), b"not an image"])
        assert model.stats.as_dict()["attempts"] == 1


@pytest.mark.parametrize("protocol, reason", [("rest", "cannot connect"), ("grpc", "UNAVAILABLE")])
def test_missing_server_raises_unavailable_after_the_retries(images, protocol, reason):
    target = f"{protocol}://127.0.0.1:{free_port()}"
    with client.connect(target, retry=client.RetryPolicy(max_attempts=3, initial_backoff=0.01)) as model:
        with pytest.raises(client.UnavailableError) as caught:
            model.predict(images)
    message = str(caught.value)
    assert message.startswith(f"{target}: {reason}") and "(after 3 attempts)" in message and "\n" not in message


def test_wrong_inputs_are_refused_before_any_request(targets):
    with client.connect(targets["rest"]) as model:
        with pytest.raises(ConfigError, match=r"uint8 images of shape \[N, 28, 28\]"):
            model.predict(np.zeros((2, 28, 28), np.float32))
        with pytest.raises(ConfigError, match="list of images"):
            model.predict_encoded(b"\x89PNG")
        assert model.stats.as_dict()["calls"] == 0


def test_local_target_errors(targets, tmp_path):
    with pytest.raises(client.NotFoundError, match="no SavedModel"):
        client.connect(f"local:{tmp_path}")
    with pytest.raises(ConfigError, match="takes --version instead"):
        client.connect(targets["local"], label="stable")
    with pytest.raises(client.NotFoundError, match="is version 1, not 3"):
        client.connect(targets["local"], version=3)


def test_versions_and_labels_reach_the_server(tmp_path, images):
    base = serving_helpers.model_base(tmp_path, versions=(1, 2))
    config = tmp_path / "models.config"
    config.write_text(f'model_config_list {{ config {{ name: "tf_mlp" base_path: "{base}" model_platform: '
                      '"tensorflow" model_version_policy { all {} } version_labels { key: "stable" value: 1 } } }')
    # As with tensorflow_model_server, a label may name a version not loaded yet only when this is allowed.
    server = serving_helpers.start_server(model_config_file=str(config),
                                          allow_version_labels_for_unavailable_models=True)
    try:
        for target in (f"rest://127.0.0.1:{server.rest_port}", f"grpc://127.0.0.1:{server.grpc_port}"):
            with client.connect(target, version=2) as model:
                assert model.metadata().version == 2
                assert len(model.predict(images)) == len(images)
            with client.connect(target, label="stable") as model:
                assert model.metadata().version == 1
            with client.connect(target, label="canary") as model:
                with pytest.raises(client.RequestError, match="Unrecognized servable version label: canary"):
                    model.predict(images)
            with client.connect(target) as model:
                assert model.status().available == [1, 2]
                # By default the version labelled stable, not the latest; asking which is not one of the calls.
                assert model.metadata().version == 1 and model.addressed_label() == "stable"
                assert model.stats.as_dict()["calls"] == 2
            with client.connect(target, preferred_label=None) as model:
                assert model.metadata().version == 2
    finally:
        server.stop()


# ---- retries against misbehaving servers ----------------------------------------------------------------------


def test_rest_retries_busy_answers_and_dropped_connections(server, targets, images):
    plan = {2: "503", 3: "drop", 5: "429", 6: "drop", 7: "503"}
    with FlakyProxy(server.rest_url, lambda number, request: plan.get(number, "pass")) as proxy:
        with client.connect(proxy.url.replace("http", "rest"), retry=FAST_RETRIES, **LATEST) as model:
            answers = [model.predict(images[index:index + 2]) for index in range(0, 6, 2)]
            stats = model.stats.as_dict()
    assert proxy.counts == {"pass": 3, "503": 2, "429": 1, "drop": 2}
    assert stats == {"calls": 3, "attempts": 8, "retries": 5, "failures": 0}
    with client.connect(targets["local"]) as model:
        expected = model.predict(images).class_ids
    np.testing.assert_array_equal(np.concatenate([answer.class_ids for answer in answers]), expected)


def test_rest_gives_up_after_max_attempts_with_the_last_answer(server, images):
    with FlakyProxy(server.rest_url, lambda number, request: "503") as proxy:
        retry = client.RetryPolicy(max_attempts=3, initial_backoff=0.01)
        with client.connect(proxy.url, retry=retry, **LATEST) as model:
            with pytest.raises(client.UnavailableError) as caught:
                model.predict(images)
    assert str(caught.value) == f"rest://127.0.0.1:{proxy.port}: HTTP 503 (after 3 attempts): flaky proxy says 503"
    assert proxy.counts["503"] == 3


def test_rest_timeouts_are_retried(server, images):
    # The first answer would come after 30 s; the client gives up on it after 1 s and asks again.
    with FlakyProxy(server.rest_url, lambda number, request: "slow" if number == 1 else "pass", delay=30) as proxy:
        with client.connect(proxy.url, timeout=1.0, retry=FAST_RETRIES, **LATEST) as model:
            assert len(model.predict(images)) == len(images)
            assert model.stats.as_dict()["retries"] >= 1
    assert proxy.counts["slow"] == 1 and proxy.counts["pass"] >= 1


def test_rest_never_retries_404_or_400(server, images):
    with FlakyProxy(server.rest_url) as proxy:
        with client.connect(proxy.url, model="nope", retry=FAST_RETRIES, **LATEST) as model:
            with pytest.raises(client.NotFoundError):
                model.predict(images)
        with client.connect(proxy.url, retry=FAST_RETRIES, **LATEST) as model:
            with pytest.raises(client.RequestError):
                model.predict_encoded([b"junk"])
    assert proxy.counts == {"pass": 2}


class _FailingPredictions(prediction_service_pb2_grpc.PredictionServiceServicer):
    """Fails Predict with the given codes, in order, then forwards to the real server."""

    def __init__(self, codes, backend_target):
        self.codes = list(codes)
        self.calls = 0
        self.channel = grpc.insecure_channel(backend_target)
        self.backend = prediction_service_pb2_grpc.PredictionServiceStub(self.channel)

    def Predict(self, request, context):  # noqa: N802 - the gRPC method name
        self.calls += 1
        if self.codes:
            context.abort(self.codes.pop(0), "injected failure")
        return self.backend.Predict(request, timeout=30)


@pytest.fixture
def failing_grpc(server):
    servicers = []

    def start(codes):
        servicer = _FailingPredictions(codes, server.grpc_target)
        grpc_server = grpc.server(concurrent.futures.ThreadPoolExecutor(2))
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(servicer, grpc_server)
        port = grpc_server.add_insecure_port("127.0.0.1:0")
        grpc_server.start()
        servicers.append((grpc_server, servicer))
        return f"grpc://127.0.0.1:{port}", servicer

    yield start
    for grpc_server, servicer in servicers:
        grpc_server.stop(None).wait()
        servicer.channel.close()


def test_grpc_retries_unavailable_resource_exhausted_and_deadline_exceeded(failing_grpc, targets, images):
    codes = [grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.DEADLINE_EXCEEDED]
    target, servicer = failing_grpc(codes)
    with client.connect(target, retry=FAST_RETRIES, **LATEST) as model:
        answer = model.predict(images)
        assert model.stats.as_dict() == {"calls": 1, "attempts": 4, "retries": 3, "failures": 0}
    with client.connect(targets["local"]) as model:
        # Exactly equal: the same batch through the same kernels (the server runs in this process).
        np.testing.assert_array_equal(answer.probabilities, model.predict(images).probabilities)
    assert servicer.calls == 4


@pytest.mark.parametrize("code, error", [(grpc.StatusCode.INVALID_ARGUMENT, client.RequestError),
                                         (grpc.StatusCode.NOT_FOUND, client.NotFoundError),
                                         (grpc.StatusCode.INTERNAL, client.ServerError)])
def test_grpc_does_not_retry_refusals(failing_grpc, images, code, error):
    target, servicer = failing_grpc([code])
    with client.connect(target, retry=FAST_RETRIES, **LATEST) as model:
        with pytest.raises(error, match=f"{code.name}: injected failure"):
            model.predict(images)
    assert servicer.calls == 1


# ---- the online client (tf-mlp predict) --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def image_files(tmp_path_factory, images):
    directory = tmp_path_factory.mktemp("images")
    paths = []
    for index, image in enumerate(images[:3]):
        path = directory / f"image{index}.png"
        path.write_bytes(png_bytes(image))
        paths.append(str(path))
    return paths


def _classify(*arguments, input=None):
    return CliRunner().invoke(predict_cli.predict, [str(argument) for argument in arguments], input=input)


def _assert_same_ranking(ranked, expected):
    """The same classes in the same order, each probability within tests.predictions' tolerance (the expected
    ranks are further apart than twice the tolerance, so rounding cannot swap two of them)."""
    probabilities = [entry["probability"] for entry in expected]
    assert all(higher - lower > 2 * PROBABILITY_TOLERANCE for higher, lower in zip(probabilities, probabilities[1:]))
    assert [entry["class_id"] for entry in ranked] == [entry["class_id"] for entry in expected]
    assert [entry["class_name"] for entry in ranked] == [entry["class_name"] for entry in expected]
    np.testing.assert_allclose([entry["probability"] for entry in ranked],
                               [entry["probability"] for entry in expected], rtol=0, atol=PROBABILITY_TOLERANCE)


def test_classify_prints_top_k_table_identical_over_rest_and_grpc(targets, image_files, images):
    outputs = {}
    for protocol in ("rest", "grpc"):
        result = _classify("--server", targets[protocol], "-k", 3, *image_files)
        assert result.exit_code == 0, result.output
        outputs[protocol] = result.output
    assert outputs["rest"] == outputs["grpc"]  # one server in this process, the same batch: the same computation
    lines = outputs["rest"].splitlines()
    assert lines[0].split() == ["image", "rank", "class", "name", "probability"]
    assert len(lines) == 1 + 3 * len(image_files)
    with client.connect(targets["local"]) as model:
        expected = model.predict(images[:3])
    for index, path in enumerate(image_files):
        first, second, third = (line.split() for line in lines[1 + 3 * index: 4 + 3 * index])
        assert first[:3] == [path, "1", str(expected.class_ids[index])]
        assert [second[0], third[0]] == ["2", "3"]
        probabilities = [float(first[-1]), float(second[-1]), float(third[-1])]
        assert probabilities == sorted(probabilities, reverse=True)


def test_classify_json_reads_stdin(targets, image_files, images):
    image = pathlib.Path(image_files[1]).read_bytes()
    result = _classify("--server", targets["grpc"], "--json", "-k", 2, "-", input=image)
    assert result.exit_code == 0, result.output
    (answer,) = json.loads(result.output)["results"]
    assert answer["image"] == "-" and answer["error"] is None
    with client.connect(targets["local"]) as model:
        expected = model.predict(images[1:2])
    top = answer["predictions"]
    assert len(top) == 2 and top[0]["class_id"] == int(expected.class_ids[0])
    assert top[0]["probability"] == pytest.approx(float(expected.probability()[0]))


def test_classify_reports_a_bad_image_and_still_classifies_the_others(targets, image_files, tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"this is not a PNG")
    result = _classify("--server", targets["rest"], "--json", image_files[0], bad, image_files[2])
    assert result.exit_code == 1
    answers = json.loads(result.output)["results"]
    assert [answer["error"] is None for answer in answers] == [True, False, True]
    assert "HTTP 400" not in answers[1]["error"] and "is not a decodable image" in answers[1]["error"]
    assert len(answers[0]["predictions"]) == 3


def test_classify_shows_status_and_metadata(targets):
    result = _classify("--server", targets["rest"], "--status", "--metadata")
    assert result.exit_code == 0, result.output
    assert "tf_mlp  1        AVAILABLE  OK" in result.output
    assert "signature 'serving_default' (tensorflow/serving/predict)" in result.output
    assert "input  images: DT_UINT8 [-1, 28, 28]" in result.output


@pytest.mark.parametrize("arguments, message", [
    (["--model", "nope"], "HTTP 404: Servable not found for request: Latest(nope)"),
    (["--version", "9"], "HTTP 404: Servable not found for request: Specific(tf_mlp, 9)"),
])
def test_classify_unknown_model_is_a_one_line_error(targets, image_files, arguments, message):
    result = _classify("--server", targets["rest"], *arguments, image_files[0])
    assert result.exit_code == 1
    assert result.output == f"Error: {targets['rest']}: {message}\n"


def test_classify_missing_server_is_a_one_line_error(image_files):
    port = free_port()
    result = _classify("--server", f"127.0.0.1:{port}", "--max-attempts", 2, image_files[0])
    assert result.exit_code == 1
    assert result.output.startswith(f"Error: rest://127.0.0.1:{port}: cannot connect (is the server running?) "
                                    "(after 2 attempts)")
    assert result.output.count("\n") == 1


def test_classify_usage_errors(image_files):
    assert _classify().exit_code == 2
    missing = _classify("--server", "local:/nowhere", "/no/such/image.png")
    assert missing.exit_code == 1 and "Error:" in missing.output


def test_rest_client_falls_back_to_nested_lists_for_a_model_without_predict_raw(tmp_path, images):
    # A SavedModel with serving_default only, as any model not exported by this project.
    import tensorflow as tf

    class OnlyDefault(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 28, 28], tf.uint8, name=contract.IMAGES_INPUT)])
        def serve(self, pixels):
            class_ids = tf.cast(pixels[:, 0, 0], tf.int64) % contract.NUM_CLASSES
            return {contract.PROBABILITIES_OUTPUT: tf.one_hot(class_ids, contract.NUM_CLASSES),
                    contract.CLASS_IDS_OUTPUT: class_ids}

    module = OnlyDefault()
    version = tmp_path / "models" / contract.MODEL_NAME / "1"
    tf.saved_model.save(module, str(version), signatures={contract.SERVING_SIGNATURE: module.serve})
    server = serving_helpers.start_server(model_base_path=str(version.parent))
    try:
        with client.connect(f"rest://127.0.0.1:{server.rest_port}", retry=FAST_RETRIES) as model:
            for _ in range(2):  # the first call finds predict_raw missing, the second goes straight to lists
                prediction = model.predict(images)
                np.testing.assert_array_equal(prediction.class_ids, images[:, 0, 0] % contract.NUM_CLASSES)
            assert model.stats.as_dict()["failures"] == 1
    finally:
        server.stop()


# ---- polarity: dark-on-light images ---------------------------------------------------------------------------


def _ring_image(border: int, inside: int, shape=(28, 28)) -> np.ndarray:
    image = np.full(shape, inside, dtype=np.uint8)
    image[0, :] = image[-1, :] = image[:, 0] = image[:, -1] = border
    return image


def test_auto_inverts_exactly_when_the_outermost_ring_mean_is_above_127():
    from tf_mlp.client import polarity

    assert not polarity.border_is_light(_ring_image(127, 255))  # mean 127 is not "above 127"
    assert polarity.border_is_light(_ring_image(128, 0))
    # Only the one-pixel ring counts, each pixel once: 4 * 27 ring pixels, 54 of them 255 and 54 of them 0.
    half = _ring_image(0, 0)
    half[0, :] = 255
    half[1:, -1] = 255
    assert np.concatenate([half[0], half[-1], half[1:-1, 0], half[1:-1, -1]]).mean() > 127
    assert polarity.border_is_light(half)
    assert polarity.border_is_light(np.full((1, 1), 200, np.uint8))
    assert not polarity.border_is_light(np.array([[255, 0], [0, 0]], np.uint8))  # 2x2: every pixel is ring
    assert polarity.should_invert(_ring_image(0, 0), "invert") and not polarity.should_invert(_ring_image(255, 0),
                                                                                             "as-is")


def _encode(array: np.ndarray, mode=None, image_format="PNG") -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array, mode).save(buffer, format=image_format)
    return buffer.getvalue()


def test_auto_sends_light_on_dark_images_unchanged_and_inverts_dark_on_light_at_full_size():
    from tf_mlp.client import polarity

    rng = np.random.default_rng(0)
    dark = rng.integers(0, 60, size=(40, 30), dtype=np.uint8)
    dark[10:30, 10:20] = 250
    original = _encode(dark)
    assert polarity.apply_to_encoded(original, "auto") == original
    light = _encode(255 - dark)
    sent = polarity.apply_to_encoded(light, "auto")
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(sent))), dark)  # 40x30: the server resizes
    assert polarity.apply_to_encoded(light, "as-is") == light
    # Colour: the luma the exported model uses, alpha ignored.
    rgba = np.zeros((5, 6, 4), np.uint8)
    rgba[..., 0], rgba[..., 1], rgba[..., 2], rgba[..., 3] = 250, 240, 230, 0
    gray = round(0.2989 * 250 + 0.5870 * 240 + 0.1140 * 230)
    inverted = np.asarray(Image.open(io.BytesIO(polarity.apply_to_encoded(_encode(rgba), "auto"))))
    assert inverted.shape == (5, 6) and (inverted == 255 - gray).all()
    for not_for_the_model in (b"not an image", _encode(255 - dark, image_format="TIFF")):
        assert polarity.apply_to_encoded(not_for_the_model, "invert") == not_for_the_model


def test_predict_polarity_makes_a_dark_on_light_file_classify_as_its_original(targets, images, tmp_path):
    normal, inverted = tmp_path / "normal.png", tmp_path / "inverted.png"
    normal.write_bytes(png_bytes(images[0]))
    inverted.write_bytes(png_bytes(255 - images[0]))
    answers = {}
    for polarity in ("as-is", "auto", "invert"):
        result = _classify("--server", targets["local"], "--json", "-k", 10, "--polarity", polarity, normal, inverted)
        assert result.exit_code == 0, result.output
        answers[polarity] = json.loads(result.stdout)["results"]
    # The same pixels in another row of another batch: the same ranking, probabilities within the tolerance.
    assert {key: value for key, value in answers["auto"][0].items() if key != "predictions"} == \
        {key: value for key, value in answers["as-is"][0].items() if key != "predictions"}  # light-on-dark: untouched
    for answer in (answers["auto"][0], answers["auto"][1], answers["invert"][1]):
        _assert_same_ranking(answer["predictions"], answers["as-is"][0]["predictions"])
    default = _classify("--server", targets["local"], normal, inverted)
    assert default.stderr.splitlines() == [
        f"note: {inverted} has a light border, so it is probably dark on light; the model knows light-on-dark "
        "images: try --polarity auto or --polarity invert"]


def test_predict_from_a_run_directory_matches_its_export(image_files):
    run = serving_helpers.exported_version_dir().parents[2] / "run"
    export_base = serving_helpers.exported_version_dir().parents[1]
    outputs = {}
    for target in (str(run), f"run:{run}", str(export_base)):
        result = _classify("--server", target, "--json", "-k", 3, *image_files)
        assert result.exit_code == 0, result.output
        outputs[target] = json.loads(result.stdout)["results"]
    assert outputs[str(run)] == outputs[f"run:{run}"]  # the same run loaded the same way: the same computation
    for from_run, from_export in zip(outputs[str(run)], outputs[str(export_base)]):
        # The Keras model restored from the checkpoint and the SavedModel run different kernels.
        _assert_same_ranking(from_run["predictions"], from_export["predictions"])
    assert client.parse_target(str(run)) == client.Target("run", path=str(run))
    assert client.parse_target(str(export_base)) == client.Target("local", path=str(export_base))


# ---- tf-mlp as a user runs it: one-line errors, exit codes, nothing written ----------------------------------


def snapshot(directory: pathlib.Path) -> dict:
    return {path.relative_to(directory).as_posix(): path.read_bytes() if path.is_file() else None
            for path in sorted(directory.rglob("*"))}


def tf_mlp_command(*arguments, cwd):
    """`tf-mlp ...` in this process, its stderr as a terminal shows it (a new process would only add TensorFlow's
    start-up lines, which _error_lines drops)."""
    return commands.run_in_process(*arguments, cwd=cwd)


def _error_lines(stderr: str) -> list[str]:
    # TensorFlow's C++ start-up lines (absl, oneDNN, CUDA probing) are not the command's own words.
    return [line for line in stderr.splitlines() if not line.startswith(("WARNING: All log messages", "I0000",
                                                                         "E0000", "W0000"))]


@pytest.mark.parametrize("arguments, code, message", [
    (["exports", "nowhere"], 1, "Error: nowhere does not exist"),
    (["exports", "empty"], 1, "Error: no SavedModel in empty (expected empty/saved_model.pb, empty/<version>/ "
                              "or empty/tf_mlp/<version>/)"),
    (["exports", "broken"], 1, "Error: broken/saved_model.pb: not a readable SavedModel protocol buffer"),
    (["predict", "image.png", "--target", "empty"], 1, "Error: local:empty: not found: no SavedModel in empty "
                                                       "(expected empty/saved_model.pb, empty/<version>/ or "
                                                       "empty/tf_mlp/<version>/)"),
    (["predict", "image.png", "--polarity", "upside-down", "--target", "empty"], 2, None),
])
def test_prediction_commands_fail_with_one_line_and_touch_nothing(tmp_path, image_files, arguments, code, message):
    (tmp_path / "empty").mkdir()
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "saved_model.pb").write_bytes(b"\xff\xff not a protocol buffer")
    (tmp_path / "image.png").write_bytes(pathlib.Path(image_files[0]).read_bytes())
    before = snapshot(tmp_path)
    result = tf_mlp_command(*arguments, cwd=tmp_path)
    assert result.returncode == code, result.stderr
    lines = _error_lines(result.stderr)
    if message is None:
        assert "Invalid value for '--polarity'" in lines[-1]
    else:
        assert lines == [message]
    assert result.stdout == "" and snapshot(tmp_path) == before


def test_exports_lists_versions_signatures_and_model_cards(tmp_path):
    from tf_mlp.export.describe import signature_summary

    base = serving_helpers.model_base(tmp_path, versions=(1, 3))
    result = tf_mlp_command("exports", tmp_path / "models", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    listed = json.loads(result.stdout)
    assert [entry["version"] for entry in listed] == [1, 3]
    assert listed[1]["signatures"] == signature_summary(base / "3")
    assert listed[1]["signatures"]["serving_default"]["inputs"] == {"images": {"dtype": "DT_UINT8",
                                                                               "shape": [-1, 28, 28]}}
    assert listed[0]["class_names"] == [str(index) for index in range(10)]
    assert listed[0]["model_card"]["version"] == 1 and "test_accuracy" in listed[0]["model_card"]
    text = tf_mlp_command("exports", base / "3", cwd=tmp_path).stdout
    assert text.splitlines()[0] == f"version 3  {base / '3'}"
    assert "    input  images: DT_UINT8 [-1, 28, 28]" in text and "  model card: data_set synthetic" in text
