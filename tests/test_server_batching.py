"""Server-side batching: merging, splitting, padding, limits, deadlines, and results identical to unbatched.

The scheduler tests drive BatchingRunner with a fake servable whose runs
block on an event, so the queue's states are reached deterministically.
"""

import asyncio
import concurrent.futures
import dataclasses
import threading

import grpc
import numpy as np
import pytest
import requests
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from tests import serving_helpers
from tf_mlp import contract
from tf_mlp.contract import PROBABILITY_TOLERANCE
from tf_mlp.server.core.batching import BatchingRunner, BatchingSettings
from tf_mlp.server.core.status import Code, ServingError


class FakeServable:
    """Doubles its input; records the batches it ran; runs wait for `release` when given one."""

    def __init__(self, release: threading.Event | None = None):
        self.batches = []
        self.release = release

    def run(self, signature, inputs, output_aliases=None):
        if self.release is not None:
            self.release.wait(30)
        self.batches.append(inputs["x"].copy())
        return {"y": inputs["x"] * 2}


@dataclasses.dataclass
class FakeSignature:
    name: str = "serving_default"


@dataclasses.dataclass
class FakePlan:
    servable: FakeServable
    inputs: dict
    signature: FakeSignature = dataclasses.field(default_factory=FakeSignature)
    output_aliases: list = dataclasses.field(default_factory=lambda: ["y"])


def _run(coroutine):
    return asyncio.run(coroutine)


@pytest.fixture
def executor():
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        yield pool


def test_concurrent_requests_are_merged_and_split_back(executor):
    servable = FakeServable()
    runner = BatchingRunner(executor, BatchingSettings(max_batch_size=8, batch_timeout_micros=10_000_000,
                                                       num_batch_threads=1))

    async def main():
        tasks = [runner.run(FakePlan(servable, {"x": np.full((size, 2), index)}))
                 for index, size in enumerate((1, 3, 4))]
        return await asyncio.gather(*tasks)

    results = _run(main())
    assert len(servable.batches) == 1 and servable.batches[0].shape == (8, 2)
    for index, (size, result) in enumerate(zip((1, 3, 4), results)):
        np.testing.assert_array_equal(result["y"], np.full((size, 2), index * 2))


def test_padding_to_allowed_batch_sizes(executor):
    servable = FakeServable()
    runner = BatchingRunner(executor, BatchingSettings(max_batch_size=8, batch_timeout_micros=0,
                                                       num_batch_threads=1, allowed_batch_sizes=(4, 8)))
    result = _run(runner.run(FakePlan(servable, {"x": np.arange(3)[:, None]})))
    assert servable.batches[0].shape == (4, 1)
    np.testing.assert_array_equal(servable.batches[0][:, 0], [0, 1, 2, 0])
    np.testing.assert_array_equal(result["y"][:, 0], [0, 2, 4])


def test_task_larger_than_max_batch_size_is_refused(executor):
    runner = BatchingRunner(executor, BatchingSettings(max_batch_size=4))
    with pytest.raises(ServingError) as error:
        _run(runner.run(FakePlan(FakeServable(), {"x": np.zeros((5, 1))})))
    assert error.value.code == Code.INVALID_ARGUMENT
    assert error.value.message == "Task size 5 is larger than maximum input batch size 4"


def test_full_queue_is_unavailable(executor):
    release = threading.Event()
    servable = FakeServable(release)
    runner = BatchingRunner(executor, BatchingSettings(max_batch_size=1, batch_timeout_micros=0,
                                                       num_batch_threads=1, max_enqueued_batches=2))

    async def main():
        running = asyncio.ensure_future(runner.run(FakePlan(servable, {"x": np.zeros((1, 1))})))
        await asyncio.sleep(0)  # the first batch starts on the only thread and blocks there
        queued = [asyncio.ensure_future(runner.run(FakePlan(servable, {"x": np.ones((1, 1))}))) for _ in range(2)]
        await asyncio.sleep(0)
        with pytest.raises(ServingError) as error:
            await runner.run(FakePlan(servable, {"x": np.ones((1, 1))}))
        release.set()
        await asyncio.gather(running, *queued)
        return error.value

    error = _run(main())
    assert error.code == Code.UNAVAILABLE and error.http_status == 503
    assert error.message == "The batch scheduling queue to which this task was submitted is full"


def test_flush_runs_open_batches_at_once(executor):
    servable = FakeServable()
    runner = BatchingRunner(executor, BatchingSettings(max_batch_size=8, batch_timeout_micros=60_000_000))

    async def main():
        waiting = asyncio.ensure_future(runner.run(FakePlan(servable, {"x": np.ones((2, 1))})))
        await asyncio.sleep(0)
        assert not waiting.done()
        await runner.flush()
        return await waiting

    np.testing.assert_array_equal(_run(main())["y"], np.full((2, 1), 2))


def test_requests_whose_inner_shapes_differ_never_share_a_batch(executor):
    # Before: one batch, np.concatenate's ValueError for all three (a 500 each).
    servable = FakeServable()
    runner = BatchingRunner(executor, BatchingSettings(max_batch_size=8, batch_timeout_micros=100_000,
                                                       num_batch_threads=1))

    async def main():
        shapes = [(1, 2), (1, 3), (2, 2), (1, 2, 1)]
        return await asyncio.gather(*(runner.run(FakePlan(servable, {"x": np.ones(shape)})) for shape in shapes))

    results = _run(main())
    assert sorted(batch.shape for batch in servable.batches) == [(1, 2, 1), (1, 3), (3, 2)]
    assert [result["y"].shape for result in results] == [(1, 2), (1, 3), (2, 2), (1, 2, 1)]


class PickyServable(FakeServable):
    """Refuses any batch holding a negative value, as a graph refuses a corrupt image."""

    def run(self, signature, inputs, output_aliases=None):
        self.batches.append(inputs["x"].copy())
        if (inputs["x"] < 0).any():
            raise ServingError(Code.INVALID_ARGUMENT, "negative input")
        return {"y": inputs["x"] * 2}


def test_a_failing_request_fails_alone_and_the_others_in_its_batch_get_their_results(executor):
    servable = PickyServable()
    runner = BatchingRunner(executor, BatchingSettings(max_batch_size=8, batch_timeout_micros=100_000,
                                                       num_batch_threads=1))
    values = [1, 2, -1, 3, 4]

    async def main():
        return await asyncio.gather(*(runner.run(FakePlan(servable, {"x": np.full((1, 1), value)}))
                                      for value in values), return_exceptions=True)

    results = _run(main())
    for value, result in zip(values, results):
        if value < 0:
            assert isinstance(result, ServingError) and result.message == "negative input"
        else:
            np.testing.assert_array_equal(result["y"], [[2 * value]])
    # One batch of 5, then halves down to the bad request: 5 -> 2 + 3 -> (2 ok) + 1 + 2 -> ... at most 2n runs.
    assert servable.batches[0].shape == (5, 1) and len(servable.batches) <= 2 * len(values)


@pytest.fixture(scope="module")
def images():
    return serving_helpers.test_images(32)


@pytest.fixture(scope="module")
def unbatched(images):
    """Each image alone through the exported model, in-process."""
    loaded = tf.saved_model.load(str(serving_helpers.exported_version_dir()))
    function = loaded.signatures[contract.SERVING_SIGNATURE]
    return [function(images=tf.constant(image[None]))["probabilities"].numpy()[0] for image in images]


def test_batched_results_equal_unbatched(tmp_path, images, unbatched):
    batching = tmp_path / "batching.config"
    # The batch runs only when full (its timeout is far beyond the test's
    # length), so all 32 single-image requests must be merged into one batch
    # for any of them to be answered, however slowly they arrive.
    batching.write_text("max_batch_size { value: 32 } batch_timeout_micros { value: 600000000 } "
                        "num_batch_threads { value: 1 }")
    base = serving_helpers.model_base(tmp_path)
    with serving_helpers.start_server(model_base_path=str(base), enable_batching=True,
                                      batching_parameters_file=str(batching), rest_api_timeout_in_ms=600000) as server:
        def predict(image):
            response = requests.post(f"{server.rest_url}/v1/models/tf_mlp:predict",
                                     json={"instances": [image.tolist()]}, timeout=600)
            assert response.status_code == 200, response.text
            return response.json()["predictions"][0]["probabilities"]

        with concurrent.futures.ThreadPoolExecutor(len(images)) as pool:
            batched = list(pool.map(predict, images))
    # Row by row the same computation; only the float rounding of the
    # matrix kernels may differ between a batch of one and a batch of 32.
    np.testing.assert_allclose(batched, unbatched, rtol=0, atol=PROBABILITY_TOLERANCE)
    assert [int(np.argmax(row)) for row in batched] == [int(np.argmax(row)) for row in unbatched]


def test_deadline_exceeded_while_queued(tmp_path):
    batching = tmp_path / "batching.config"
    # The batch would wait 60 s for company; the request's deadline is far shorter.
    batching.write_text("max_batch_size { value: 32 } batch_timeout_micros { value: 60000000 }")
    base = serving_helpers.model_base(tmp_path)
    with serving_helpers.start_server(model_base_path=str(base), enable_batching=True,
                                      batching_parameters_file=str(batching), rest_api_timeout_in_ms=300) as server:
        response = requests.post(f"{server.rest_url}/v1/models/tf_mlp:predict",
                                 json={"instances": [[[0] * 28] * 28]}, timeout=60)
        assert response.status_code == 504
        assert response.json() == {"error": "Timed out waiting for notification"}
        request = predict_pb2.PredictRequest()
        request.model_spec.name = "tf_mlp"
        request.inputs["images"].CopyFrom(tf.make_tensor_proto(np.zeros((1, 28, 28), np.uint8)))
        with grpc.insecure_channel(server.grpc_target) as channel:
            with pytest.raises(grpc.RpcError) as error:
                prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(request, 0.3)
        assert error.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
