"""The REST API on aiohttp, routed and answered as TensorFlow Serving's http_rest_api_handler.cc.

    GET  /v1/models/NAME[/versions/N | /labels/L]            model status
    GET  /v1/models/NAME[/versions/N | /labels/L]/metadata   signature defs
    POST /v1/models/NAME[/versions/N | /labels/L]:predict    row or columnar tensors
    POST /v1/models/NAME[/versions/N | /labels/L]:classify   tf.Examples
    POST /v1/models/NAME[/versions/N | /labels/L]:regress    tf.Examples

Paths are matched with upstream's (case-insensitive) regular expressions on
the raw path, so anything else under /v1/ is `400 Malformed request: GET
/v1/...`, as upstream; paths outside /v1/ get 404. Errors are `{"error":
"..."}` with the status of the error's code, every one of them: an exception
nothing expected is logged once with its traceback and answered 500
(INTERNAL), never aiohttp's own page. Everything that grows with the body
(decompressing it, parsing it, turning it into tensors, the error messages
that quote it, the JSON answer) runs on the thread pool once the body is
larger than INLINE_BODY_BYTES, so one large or hostile body does not stall
the small requests beside it; each request's tensors are charged to its
budget (--max_request_tensor_bytes) before they are built.
"""

from __future__ import annotations

import asyncio
import logging
import re
import urllib.parse

import orjson
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from google.protobuf import json_format

from tf_mlp.contract import SERVING_SIGNATURE
from tf_mlp.server.core import inference
from tf_mlp.server.core.limits import RequestBudget
from tf_mlp.server.core.manager import SIGNATURE_DEF_FIELD
from tf_mlp.server.core.status import Code, ServingError, deadline_exceeded, internal_error, invalid_argument, shown
from tf_mlp.server.metrics import CONTENT_TYPE
from tf_mlp.server.rest import bodies, json_codec, json_examples, json_tensors

log = logging.getLogger(__name__)

_API_PATH = re.compile(r"(?i)/v1/.*")
_PREDICTION_PATH = re.compile(
    r"(?i)/v1/models/([^/:]+)(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?:(classify|regress|predict)")
_STATUS_PATH = re.compile(
    r"(?i)/v1/models(?:/([^/:]+))?(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?(?:/(metadata))?")
INLINE_BODY_BYTES = 256 * 1024
"""Bodies up to this size are decoded on the event loop (lowest latency); larger ones on the pool."""


_INT64_DIGITS = 19
"""Digits of the largest int64, 2^63 - 1: a longer version is no version (and int() of 5,000 digits raises)."""
LARGE_BATCH = 256
"""Answers with more rows than this are written on the thread pool."""


def _json_response(status: int, body: bytes) -> web.Response:
    return web.Response(status=status, body=body, content_type="application/json")


def _error_response(error: ServingError) -> web.Response:
    return _json_response(error.http_status, json_codec.error_body(error.message))


def _model_info(groups) -> tuple:
    """ParseModelInfo: decoded name, numeric version, decoded label."""
    name, version_text, label = groups[:3]
    version = None
    if version_text:
        if len(version_text.lstrip("0")) > _INT64_DIGITS or int(version_text) >= 1 << 63:
            raise invalid_argument(f"Failed to convert version: {shown(version_text)} to numeric.")
        version = int(version_text)
    return (urllib.parse.unquote(name) if name else "", version,
            urllib.parse.unquote(label) if label else None)


class RestApi:
    def __init__(self, core, runner, metrics, executor, options, prometheus_path: str | None):
        self._core = core
        self._runner = runner
        self._metrics = metrics
        self._executor = executor
        self._timeout = options.rest_api_timeout_in_ms / 1000 if options.rest_api_timeout_in_ms > 0 else None
        self._max_body = options.rest_api_max_request_bytes
        self._budget_bytes = options.request_budget_bytes()
        self._prometheus_path = prometheus_path
        self._requests_begun = 0
        self._all_answered = asyncio.Event()
        self._all_answered.set()
        self._draining = False

    def application(self) -> web.Application:
        app = web.Application(client_max_size=self._max_body)
        app.router.add_route("*", "/{tail:.*}", self.handle)
        return app

    async def drain(self, timeout: float) -> bool:
        """Let the requests already begun finish (within timeout), each answered with `Connection: close`.

        For shutdown, once the port is closed. aiohttp's own cleanup stops reading every connection at once,
        so a request whose body was still arriving could only wait out the grace period and be cut off.
        True if every request was answered in time.
        """
        self._draining = True
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        try:
            # Idle twice in a row: a request parsed in this loop iteration has entered handle() by the next.
            while True:
                if not self._all_answered.is_set():  # (wait_for with no time left fails even on a set Event)
                    await asyncio.wait_for(self._all_answered.wait(), max(0.0, deadline - loop.time()))
                await asyncio.sleep(0)
                if self._all_answered.is_set():
                    return True
        except asyncio.TimeoutError:
            return False

    async def handle(self, request: web.Request) -> web.Response:
        self._requests_begun += 1
        self._all_answered.clear()
        try:
            response = await self._answer(request)
        finally:
            self._requests_begun -= 1
            if not self._requests_begun:
                self._all_answered.set()
        if self._draining:
            response.force_close()  # the client opens its next connection elsewhere (this port is closed)
        return response

    async def _answer(self, request: web.Request) -> web.Response:
        path = request.rel_url.raw_path
        if self._prometheus_path is not None and path == self._prometheus_path:
            page = await asyncio.get_running_loop().run_in_executor(self._executor, self._metrics.render)
            return web.Response(body=page, headers={"Content-Type": CONTENT_TYPE})
        if not _API_PATH.fullmatch(path):
            return _json_response(404, json_codec.error_body(f"Not found: {request.method} {shown(path)}"))
        prediction = _PREDICTION_PATH.fullmatch(path) if request.method == "POST" else None
        api = prediction.group(4) if prediction else None
        if api not in ("predict", "classify", "regress"):
            response, _ = await self._respond(self._no_body_request(request.method, path), request)
            return response
        with self._metrics.request(api, "REST") as outcome:
            outcome["model"] = urllib.parse.unquote(prediction.group(1))
            response, code = await self._respond(self._inference_request(request, api, prediction), request)
            outcome["status"] = code.name
            return response

    async def _respond(self, work, request: web.Request) -> tuple:
        """(response, canonical code) for a request's work, every error included."""
        try:
            status, body = await asyncio.wait_for(work, self._timeout)
            return _json_response(status, body), Code.OK
        except ServingError as error:
            return _error_response(error), error.code
        except asyncio.TimeoutError:
            return _error_response(deadline_exceeded()), Code.DEADLINE_EXCEEDED
        except web.HTTPRequestEntityTooLarge:
            return _error_response(bodies.BodyTooLarge(self._max_body)), Code.RESOURCE_EXHAUSTED
        except HttpProcessingError as error:  # a chunked body that breaks its framing, ...
            failure = invalid_argument(f"the request body could not be read: {shown(error.message)}")
            return _error_response(failure), failure.code
        except ConnectionError:  # the client went away while its body was read: nobody to answer
            return _error_response(ServingError(Code.CANCELLED, "the client closed the connection")), Code.CANCELLED
        except Exception as error:  # noqa: BLE001 - answered as a status and logged once, never aiohttp's 500 page
            log.exception("Unexpected error answering %s %s", request.method, shown(request.path))
            failure = internal_error(error)
            return _error_response(failure), failure.code

    async def _off_loop(self, big: bool, function, *arguments):
        if not big:
            return function(*arguments)
        return await asyncio.get_running_loop().run_in_executor(self._executor, function, *arguments)

    async def _no_body_request(self, method: str, path: str) -> tuple:
        match = _STATUS_PATH.fullmatch(path) if method == "GET" else None
        if match is None:
            raise invalid_argument(f"Malformed request: {method} {shown(path)}")
        name, version, label = _model_info(match.groups())
        if not name:
            raise invalid_argument("Missing model name in request.")
        if match.group(4) == "metadata":
            return 200, self._metadata(name, version, label)
        # GetModelStatus answers for every version when the request names a label.
        return 200, json_codec.proto_json(self._core.model_status(name, version))

    def _metadata(self, name: str, version, label) -> bytes:
        model_spec, signature_map = self._core.model_metadata(name, version, label)
        options = dict(preserving_proto_field_name=True, always_print_fields_with_no_presence=True)
        document = {
            "model_spec": json_format.MessageToDict(model_spec, **options),
            "metadata": {SIGNATURE_DEF_FIELD: json_format.MessageToDict(signature_map, **options)},
        }
        return orjson.dumps(document, option=orjson.OPT_INDENT_2)

    async def _read_body(self, request: web.Request) -> bytes:
        if request.content_length is not None and request.content_length > self._max_body:
            raise bodies.BodyTooLarge(self._max_body)
        encoding = bodies.encoding_of(request.headers)
        body = await request.read()
        return await self._off_loop(bool(encoding) and len(body) > INLINE_BODY_BYTES // 16, bodies.decoded, body,
                                    encoding, self._max_body)

    async def _inference_request(self, request: web.Request, api: str, match) -> tuple:
        name, version, label = _model_info(match.groups())
        body = await self._read_body(request)
        big = len(body) > INLINE_BODY_BYTES
        budget = RequestBudget(self._budget_bytes)
        document = await self._off_loop(big, json_codec.parse, body, budget)
        if api == "predict":
            return 200, await self._predict(name, version, label, document, body, big, budget)
        # Classify and regress read their examples before looking the model up, as upstream.
        signature_name, serialized = await self._off_loop(big, json_examples.examples_request, document, budget)
        plan_examples, answer = _EXAMPLE_APIS[api]
        with self._core.serving(name, version, label) as servable:
            plan = plan_examples(servable, signature_name, serialized)
            outputs = await self._runner.run(plan)
        return 200, await self._off_loop(plan.batch_size > LARGE_BATCH, answer, plan, outputs)

    async def _predict(self, name, version, label, document, body: bytes, big: bool, budget) -> bytes:
        signature_name = json_tensors.signature_name_of(document)
        with self._core.serving(name, version, label) as servable:
            signature = servable.signature(signature_name)
            if signature is None:
                raise invalid_argument(f'Serving signature name: "{shown(signature_name or SERVING_SIGNATURE)}" '
                                       "not found in signature def")
            plan, request_format = await self._off_loop(big, _plan_predict, servable, signature, document, body,
                                                        budget)
            outputs = inference.selected(plan, await self._runner.run(plan))
        return await self._off_loop(big or plan.batch_size > LARGE_BATCH, json_tensors.predict_response, outputs,
                                    request_format)


def _classification_json(plan, outputs) -> bytes:
    return json_examples.classification_json(inference.classification_result(plan, outputs))


def _regression_json(plan, outputs) -> bytes:
    return json_examples.regression_json(inference.regression_result(plan, outputs))


# Classify and regress differ only in how the request is planned and how its outputs become the JSON answer.
_EXAMPLE_APIS = {"classify": (inference.plan_classify, _classification_json),
                 "regress": (inference.plan_regress, _regression_json)}


def _plan_predict(servable, signature, document: dict, body: bytes, budget) -> tuple:
    """(plan, request format): the body's tensors, checked, ready to run."""
    request_format, inputs = json_tensors.predict_inputs(document, signature, body, budget)
    return inference.plan_predict(servable, signature.name, inputs), request_format
