"""The gRPC API: PredictionService and ModelService from tensorflow-serving-api's generated classes.

Predict, Classify, Regress, MultiInference and GetModelMetadata,
GetModelStatus and HandleReloadConfigRequest answer as
prediction_service_impl.cc and model_service_impl.cc do; errors are aborts
with the status code of the ServingError and its message. A client deadline
bounds the run, as upstream turns it into the session's timeout.
"""

from __future__ import annotations

import asyncio

import grpc
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_status_pb2,
    model_management_pb2,
    model_pb2,
    model_service_pb2_grpc,
    prediction_service_pb2_grpc,
    regression_pb2,
)

from tf_mlp.errors import TfMlpError
from tf_mlp.server.core import inference, tensors
from tf_mlp.server.core.status import ServingError, deadline_exceeded, invalid_argument

LARGE_BATCH = 1024
"""Responses with more rows than this are built on the thread pool, off the event loop."""

# Classify and Regress differ only in these: how the request is planned, how the outputs become a result, and
# the response message that carries it.
_EXAMPLE_APIS = {
    "classify": (inference.plan_classify, inference.classification_result, classification_pb2.ClassificationResponse),
    "regress": (inference.plan_regress, inference.regression_result, regression_pb2.RegressionResponse),
}


async def _abort(context, error: ServingError):
    await context.abort(grpc.StatusCode[error.code.name], error.message)


async def _within_deadline(work, context):
    """The result of work, awaited no longer than the client's deadline (DEADLINE_EXCEEDED after it)."""
    try:
        return await asyncio.wait_for(work, context.time_remaining())
    except asyncio.TimeoutError:
        raise deadline_exceeded() from None


def _require_model_spec(request) -> None:
    if not request.HasField("model_spec"):
        raise invalid_argument("Missing ModelSpec")


class PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self, core, runner, metrics, executor):
        self._core = core
        self._runner = runner
        self._metrics = metrics
        self._executor = executor

    async def _run(self, plan, context) -> dict:
        return await _within_deadline(self._runner.run(plan), context)

    async def _serve(self, api: str, request, context, work):
        with self._metrics.request(api, "GRPC") as outcome:
            outcome["model"] = request.model_spec.name
            try:
                _require_model_spec(request)
                return await work()
            except ServingError as error:
                outcome["status"] = error.code.name
                await _abort(context, error)

    async def Predict(self, request, context):
        async def work():
            servable = self._core.servable_for_spec(request.model_spec)
            inputs = {alias: tensors.to_numpy(proto, alias) for alias, proto in request.inputs.items()}
            plan = inference.plan_predict(servable, request.model_spec.signature_name, inputs, request.output_filter)
            outputs = await self._run(plan, context)
            if plan.batch_size > LARGE_BATCH:
                loop = asyncio.get_running_loop()
                return await loop.run_in_executor(self._executor, inference.predict_response, plan, outputs)
            return inference.predict_response(plan, outputs)

        return await self._serve("predict", request, context, work)

    async def _examples(self, api: str, request, context):
        plan_examples, result_of, response_class = _EXAMPLE_APIS[api]

        async def work():
            servable = self._core.servable_for_spec(request.model_spec)
            plan = plan_examples(servable, request.model_spec.signature_name,
                                 inference.serialized_examples(request.input))
            response = response_class()
            response.result.CopyFrom(result_of(plan, await self._run(plan, context)))
            inference.fill_model_spec(response.model_spec, servable, plan.signature.name)
            return response

        return await self._serve(api, request, context, work)

    async def Classify(self, request, context):
        return await self._examples("classify", request, context)

    async def Regress(self, request, context):
        return await self._examples("regress", request, context)

    async def GetModelMetadata(self, request, context):
        try:
            _require_model_spec(request)
            return self._core.metadata(request.model_spec, list(request.metadata_field))
        except ServingError as error:
            await _abort(context, error)

    async def MultiInference(self, request, context):
        """Classify and regress tasks over one model's signatures, run together (multi_inference_helper.cc)."""
        try:
            # The first task's ModelSpec picks the servable (an empty one when there are no tasks).
            spec = request.tasks[0].model_spec if request.tasks else model_pb2.ModelSpec()
            servable = self._core.servable_for_spec(spec)
            plan = inference.plan_multi_inference(servable, request)
            loop = asyncio.get_running_loop()
            return await _within_deadline(loop.run_in_executor(self._executor, plan.run), context)
        except ServingError as error:
            await _abort(context, error)


class ModelService(model_service_pb2_grpc.ModelServiceServicer):
    def __init__(self, core, executor):
        self._core = core
        self._executor = executor

    async def GetModelStatus(self, request, context) -> get_model_status_pb2.GetModelStatusResponse:
        try:
            _require_model_spec(request)
            spec = request.model_spec
            version = spec.version.value if spec.WhichOneof("version_choice") == "version" else None
            return self._core.model_status(spec.name, version)
        except ServingError as error:
            await _abort(context, error)

    async def HandleReloadConfigRequest(self, request, context):
        response = model_management_pb2.ReloadConfigResponse()
        if request.config.WhichOneof("config") != "model_config_list":
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
        response.status.error_code = error.code.value
        response.status.error_message = error.message
        await _abort(context, error)
