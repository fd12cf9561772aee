"""The gRPC API: PredictionService and ModelService with tensorflow-serving-api's messages.

Predict, Classify, Regress, MultiInference and GetModelMetadata,
GetModelStatus and HandleReloadConfigRequest answer as
prediction_service_impl.cc and model_service_impl.cc do; errors are aborts
with the status code of the ServingError and its message. A client deadline
bounds the run, as upstream turns it into the session's timeout.

Beyond upstream: PredictionService takes its requests as bytes and parses
them itself, on the thread pool when they are larger than INLINE_MESSAGE_BYTES
(and so plans them there too: decoding, checks, the messages that quote the
request), so a large or hostile request never stalls the event loop that
answers everyone else; each request's tensors are charged to its budget
(--max_request_tensor_bytes) before any is decoded. Every method answers with
a status: an exception nothing expected is logged once with its traceback
and aborts INTERNAL. HandleReloadConfigRequest is refused (PERMISSION_DENIED)
on a server bound to a non-loopback address unless
--allow_config_reload_on_non_loopback_host.
"""

from __future__ import annotations

import asyncio
import logging

import grpc
from google.protobuf.message import DecodeError
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    inference_pb2,
    model_management_pb2,
    model_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    regression_pb2,
)

from tf_mlp.errors import TfMlpError
from tf_mlp.server.core import inference
from tf_mlp.server.core.limits import RequestBudget
from tf_mlp.server.core.status import (
    Code,
    ServingError,
    deadline_exceeded,
    internal_error,
    invalid_argument,
)

log = logging.getLogger(__name__)

SERVICE = "tensorflow.serving.PredictionService"
INLINE_MESSAGE_BYTES = 256 * 1024
"""Requests up to this size are parsed and planned on the event loop (lowest latency); larger ones on the pool."""
LARGE_BATCH = 1024
"""Responses with more rows than this are built on the thread pool, off the event loop."""

# Classify and Regress differ only in these: how the request is planned, how the outputs become a result, and
# the response message that carries it.
_EXAMPLE_APIS = {
    "classify": (inference.plan_classify, inference.classification_result, classification_pb2.ClassificationResponse),
    "regress": (inference.plan_regress, inference.regression_result, regression_pb2.RegressionResponse),
}


def _serialized(response) -> bytes:
    """A response message, or the bytes it was already serialized to off the event loop."""
    return response if isinstance(response, bytes) else response.SerializeToString()


async def _within_deadline(work, context):
    """The result of work, awaited no longer than the client's deadline (DEADLINE_EXCEEDED after it)."""
    try:
        return await asyncio.wait_for(work, context.time_remaining())
    except asyncio.TimeoutError:
        raise deadline_exceeded() from None


def _require_model_spec(request) -> None:
    if not request.HasField("model_spec"):
        raise invalid_argument("Missing ModelSpec")


async def _answered(method: str, context, work, outcome=None):
    """work's result, or an abort with its ServingError's status; anything unexpected is logged and INTERNAL."""
    try:
        return await work()
    except ServingError as error:
        failure = error
    except asyncio.CancelledError:
        raise
    except grpc.aio.AbortError:
        raise
    except Exception as error:  # noqa: BLE001 - answered as a status and logged once, never grpc's UNKNOWN
        log.exception("Unexpected error answering %s", method)
        failure = internal_error(error)
    if outcome is not None:
        outcome["status"] = failure.code.name
    await context.abort(grpc.StatusCode[failure.code.name], failure.message)


class PredictionService:
    def __init__(self, core, runner, metrics, executor):
        self._core = core
        self._runner = runner
        self._metrics = metrics
        self._executor = executor
        self._budget_bytes = core.options.request_budget_bytes()

    def handler(self) -> grpc.GenericRpcHandler:
        """The service's methods, taking request bytes (parsed by _parse) and answering messages or bytes."""
        methods = {"Predict": self.Predict, "Classify": self.Classify, "Regress": self.Regress,
                   "MultiInference": self.MultiInference, "GetModelMetadata": self.GetModelMetadata}
        return grpc.method_handlers_generic_handler(SERVICE, {
            name: grpc.unary_unary_rpc_method_handler(method, request_deserializer=None,
                                                      response_serializer=_serialized)
            for name, method in methods.items()})

    async def _off_loop(self, big: bool, function, *arguments):
        if not big:
            return function(*arguments)
        return await asyncio.get_running_loop().run_in_executor(self._executor, function, *arguments)

    async def _parse(self, message_class, raw: bytes):
        try:
            return await self._off_loop(len(raw) > INLINE_MESSAGE_BYTES, message_class.FromString, raw)
        except DecodeError:
            raise invalid_argument(f"the request is not a valid {message_class.DESCRIPTOR.full_name}") from None

    async def _run(self, plan, context) -> dict:
        return await _within_deadline(self._runner.run(plan), context)

    async def _counted(self, api: str, message_class, raw: bytes, context, work):
        """Parse, check the ModelSpec and answer work(request), timed and counted under the request's model."""
        with self._metrics.request(api, "GRPC") as outcome:

            async def counted_work():
                request = await self._parse(message_class, raw)
                outcome["model"] = request.model_spec.name
                _require_model_spec(request)
                return await work(request, len(raw) > INLINE_MESSAGE_BYTES)

            response = await _answered(api, context, counted_work, outcome)
            outcome["status"] = outcome["status"] or Code.OK.name
            return response

    async def Predict(self, raw: bytes, context):
        async def work(request, big: bool):
            with self._core.serving_spec(request.model_spec) as servable:
                plan = await self._off_loop(big, inference.plan_predict_request, servable, request,
                                            RequestBudget(self._budget_bytes))
                outputs = await self._run(plan, context)
            return await self._off_loop(plan.batch_size > LARGE_BATCH,
                                        lambda: inference.predict_response(plan, outputs).SerializeToString())

        return await self._counted("predict", predict_pb2.PredictRequest, raw, context, work)

    async def _examples(self, api: str, message_class, raw: bytes, context):
        plan_examples, result_of, response_class = _EXAMPLE_APIS[api]

        def answer(plan, outputs) -> bytes:
            response = response_class()
            response.result.CopyFrom(result_of(plan, outputs))
            inference.fill_model_spec(response.model_spec, plan.servable, plan.signature.name)
            return response.SerializeToString()

        async def work(request, big: bool):
            examples = await self._off_loop(big, inference.serialized_examples, request.input,
                                            RequestBudget(self._budget_bytes))
            with self._core.serving_spec(request.model_spec) as servable:
                plan = plan_examples(servable, request.model_spec.signature_name, examples)
                outputs = await self._run(plan, context)
            return await self._off_loop(plan.batch_size > LARGE_BATCH, answer, plan, outputs)

        return await self._counted(api, message_class, raw, context, work)

    async def Classify(self, raw: bytes, context):
        return await self._examples("classify", classification_pb2.ClassificationRequest, raw, context)

    async def Regress(self, raw: bytes, context):
        return await self._examples("regress", regression_pb2.RegressionRequest, raw, context)

    async def GetModelMetadata(self, raw: bytes, context):
        async def work():
            request = await self._parse(get_model_metadata_pb2.GetModelMetadataRequest, raw)
            _require_model_spec(request)
            return self._core.metadata(request.model_spec, list(request.metadata_field))

        return await _answered("GetModelMetadata", context, work)

    async def MultiInference(self, raw: bytes, context):
        """Classify and regress tasks over one model's signatures, run together (multi_inference_helper.cc)."""

        async def work():
            request = await self._parse(inference_pb2.MultiInferenceRequest, raw)
            # The first task's ModelSpec picks the servable (an empty one when there are no tasks).
            spec = request.tasks[0].model_spec if request.tasks else model_pb2.ModelSpec()
            with self._core.serving_spec(spec) as servable:
                plan = await self._off_loop(len(raw) > INLINE_MESSAGE_BYTES, inference.plan_multi_inference,
                                            servable, request, RequestBudget(self._budget_bytes))
                loop = asyncio.get_running_loop()
                return await _within_deadline(loop.run_in_executor(self._executor, plan.run), context)

        return await _answered("MultiInference", context, work)


class ModelService(model_service_pb2_grpc.ModelServiceServicer):
    def __init__(self, core, executor):
        self._core = core
        self._executor = executor

    async def GetModelStatus(self, request, context) -> get_model_status_pb2.GetModelStatusResponse:
        async def work():
            _require_model_spec(request)
            spec = request.model_spec
            version = spec.version.value if spec.WhichOneof("version_choice") == "version" else None
            return self._core.model_status(spec.name, version)

        return await _answered("GetModelStatus", context, work)

    async def HandleReloadConfigRequest(self, request, context):
        response = model_management_pb2.ReloadConfigResponse()
        options = self._core.options
        if not options.accepts_config_reload():
            error = ServingError(Code.PERMISSION_DENIED,
                                 f"HandleReloadConfigRequest is off on a server bound to --host={options.host}, "
                                 "which is not a loopback address (--allow_config_reload_on_non_loopback_host=true "
                                 "turns it on)")
        elif request.config.WhichOneof("config") != "model_config_list":
            error = invalid_argument("ServerModelConfig type not supported by HandleReloadConfigRequest. "
                                     "Only ModelConfigList is currently supported")
        else:
            loop = asyncio.get_running_loop()
            try:
                # Loading can take seconds: on the pool, not the event loop.
                await loop.run_in_executor(self._executor, self._core.reload_config, request.config)
                return response
            except ServingError as failure:
                error = failure
            except TfMlpError as failure:
                error = invalid_argument(str(failure))
            except Exception as failure:  # noqa: BLE001 - answered as a status and logged once
                log.exception("Unexpected error answering HandleReloadConfigRequest")
                error = internal_error(failure)
        response.status.error_code = error.code.value
        response.status.error_message = error.message
        await context.abort(grpc.StatusCode[error.code.name], error.message)
