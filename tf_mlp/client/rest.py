"""TensorFlow Serving's REST API (api_rest.md), over one keep-alive connection pool.

    POST /v1/models/NAME[/versions/N | /labels/L]:predict   {"signature_name": S, "instances": [...]}
    POST /v1/models/NAME[...]:classify                      {"signature_name": "classify", "examples": [...]}
    GET  /v1/models/NAME[/versions/N]                       status (GetModelStatusResponse)
    GET  /v1/models/NAME[/versions/N | /labels/L]/metadata  metadata (GetModelMetadataResponse)

Requests use the row format: one `{"b64": ...}` object per image, holding
its 784 raw pixels (the predict_raw signature) or its PNG/JPEG file. Pixel
arrays go to predict_raw when no signature is named, because nested lists of
784 numbers per image cost the server most of its time in JSON decoding
(docs/PERFORMANCE.md); a model without predict_raw (one not exported by this
project) is answered "signature not found", after which this client sends
nested lists to serving_default, as any TensorFlow Serving client does. Errors come back as
`{"error": "..."}` with an HTTP status; the message is kept in the raised
ClientError. This module imports neither TensorFlow nor its protobufs, so a
REST client starts in well under a second.
"""

from __future__ import annotations

import base64
import json
import urllib.parse

import orjson
import urllib3

from tf_mlp import contract
from tf_mlp.client import errors
from tf_mlp.client.base import ENCODED, Client, ModelSpec, blank_png, is_unknown_label
from tf_mlp.client.results import ModelMetadata, ModelStatus
from tf_mlp.client.retry import RetryableFailure, RetryPolicy, call_with_retries
from tf_mlp.client.target import Target

RETRY_STATUSES = frozenset({429, 503, 504})
"""Too Many Requests, Service Unavailable, Gateway Timeout: the server (or a proxy) says "later"."""

_JSON_HEADERS = {"Content-Type": "application/json"}


class RestClient(Client):
    def __init__(self, target: Target, spec: ModelSpec, timeout: float = 30.0, retry: RetryPolicy | None = None,
                 max_connections: int = 8):
        super().__init__(target, spec, timeout, retry)
        # block=True: never more than max_connections sockets; callers beyond that wait for a free one.
        # retries=False: retries are ours (backoff, jitter, counting), not urllib3's.
        self._pool = urllib3.HTTPConnectionPool(
            target.host, target.port, maxsize=max_connections, block=True, retries=False,
            timeout=urllib3.Timeout(connect=min(timeout, 10.0), read=timeout))
        self._raw_signature = True
        """Send pixel arrays to predict_raw; False once the model turned out not to have it."""

    def close(self) -> None:
        self._pool.close()

    # ---- back end --------------------------------------------------------

    def _run(self, signature: str, kind: str, batch) -> dict:
        if kind == ENCODED:
            body = _base64_body(signature, batch)
        elif self.spec.signature is None and self._raw_signature:
            try:
                return self._predictions(_base64_body(contract.RAW_SIGNATURE, (image.tobytes() for image in batch)))
            except errors.RequestError as error:
                if f'"{contract.RAW_SIGNATURE}" not found' not in str(error):
                    raise
                self._raw_signature = False  # not one of our exports: fall back to nested lists from now on
            body = orjson.dumps({"signature_name": signature, "instances": batch}, option=orjson.OPT_SERIALIZE_NUMPY)
        else:
            body = orjson.dumps({"signature_name": signature, "instances": batch}, option=orjson.OPT_SERIALIZE_NUMPY)
        return self._predictions(body)

    def _predictions(self, body: bytes) -> dict:
        answer = self._call("POST", self._model_path() + ":predict", body)
        predictions = answer.get("predictions")
        if not isinstance(predictions, list):
            raise errors.ServerError(str(self.target), "bad response", "the answer has no 'predictions' list")
        # Several outputs come as one object per row; a single output as bare values.
        if predictions and isinstance(predictions[0], dict):
            return {name: [row[name] for row in predictions] for name in predictions[0]}
        return {"predictions": predictions}

    def _status(self) -> ModelStatus:
        path = f"/v1/models/{_quote(self.spec.name)}"
        if self.spec.version is not None:
            path += f"/versions/{self.spec.version}"
        return ModelStatus.from_json(self.spec.name, self._call("GET", path))

    def _metadata(self) -> ModelMetadata:
        return ModelMetadata.from_json(self._call("GET", self._model_path() + "/metadata"))

    def _has_label(self, label: str) -> bool:
        path = f"/v1/models/{_quote(self.spec.name)}/labels/{_quote(label)}/metadata"
        try:
            # Not counted in self.stats: asking which version to address is not one of the caller's calls.
            call_with_retries(lambda attempt: self._attempt("GET", path, None), self.retry)
        except errors.RequestError as error:
            if is_unknown_label(error, label):
                return False
            raise
        except errors.NotFoundError:
            pass  # the label names a version that is not loaded: it is still the label to address
        return True

    def _labels(self) -> tuple[str, ...] | None:
        body = orjson.dumps({
            "signature_name": contract.CLASSIFY_SIGNATURE,
            "examples": [{contract.CLASSIFY_IMAGE_FEATURE: {"b64": base64.b64encode(blank_png()).decode("ascii")}}],
        })
        try:
            answer = self._call("POST", self._model_path() + ":classify", body)
        except errors.RequestError:
            return None  # a model without our classify signature: names stay unknown
        results = answer.get("result") or answer.get("results") or [[]]
        return tuple(str(pair[0]) for pair in results[0]) or None

    # ---- HTTP ------------------------------------------------------------

    def _model_path(self) -> str:
        path = f"/v1/models/{_quote(self.spec.name)}"
        label = self.addressed_label()
        if self.spec.version is not None:
            path += f"/versions/{self.spec.version}"
        elif label is not None:
            path += f"/labels/{_quote(label)}"
        return path

    def _call(self, method: str, path: str, body: bytes | None = None) -> dict:
        """The JSON answer of one request, retried per the policy; ClientError subclasses on failure."""
        return call_with_retries(lambda attempt: self._attempt(method, path, body), self.retry, self.stats)

    def _attempt(self, method: str, path: str, body: bytes | None) -> dict:
        target = str(self.target)
        try:
            response = self._pool.urlopen(method, path, body=body, headers=_JSON_HEADERS if body else None,
                                          preload_content=True)
        except (urllib3.exceptions.HTTPError, OSError) as error:
            # Refused or dropped connections and timeouts: the request may never have run; try again.
            raise RetryableFailure(errors.UnavailableError(target, _transport_status(error, self.timeout),
                                                           _reason(error))) from None
        if response.status == 200:
            return _parse(response.data, target)
        status = f"HTTP {response.status}"
        message = _error_message(response.data)
        if response.status in RETRY_STATUSES:
            raise RetryableFailure(errors.UnavailableError(target, status, message))
        if response.status == 404:
            raise errors.NotFoundError(target, status, message)
        if 400 <= response.status < 500:
            raise errors.RequestError(target, status, message)
        raise errors.ServerError(target, status, message)


def _base64_body(signature: str, items) -> bytes:
    """A row-format predict body of one {"b64": ...} object per bytes item."""
    instances = [{"b64": base64.b64encode(data).decode("ascii")} for data in items]
    return orjson.dumps({"signature_name": signature, "instances": instances})


def _quote(text: str) -> str:
    return urllib.parse.quote(text, safe="")


def _parse(data: bytes, target: str) -> dict:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        pass
    try:
        # TensorFlow Serving writes NaN and Infinity as bare tokens, which only Python's json reads.
        return json.loads(data)
    except ValueError:
        raise errors.ServerError(target, "bad response", f"not JSON: {data[:80]!r}") from None


def _error_message(data: bytes) -> str:
    """The server's {"error": ...} text, or the start of whatever body it sent."""
    try:
        answer = json.loads(data)
        if isinstance(answer, dict) and "error" in answer:
            return str(answer["error"])
    except ValueError:
        pass
    text = data.decode("utf-8", "replace").strip()
    return text[:200] or "(empty body)"


def _transport_status(error: Exception, timeout: float) -> str:
    # NewConnectionError is a kind of ConnectTimeoutError in urllib3 2, so it is asked about first.
    if isinstance(error, urllib3.exceptions.NewConnectionError):
        return "cannot connect (is the server running?)"
    if isinstance(error, urllib3.exceptions.TimeoutError):
        return f"no answer within {timeout:g} s"
    return "connection lost"


def _reason(error: Exception) -> str:
    """The useful end of urllib3's message: "Failed to establish a new connection: [Errno 111] Connection refused"."""
    text = str(getattr(error, "reason", None) or error)
    # urllib3 prefixes the connection's repr ("HTTPConnection(host=..., port=...): "), which the target already says.
    return text.split("): ", 1)[-1] if text.startswith("HTTPConnection") else text
