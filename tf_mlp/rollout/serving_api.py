"""What a rollout asks the model server, through TensorFlow Serving's public gRPC API and nothing else.

    ModelService.GetModelStatus              every version's state (START, LOADING, AVAILABLE, UNLOADING, END)
    ModelService.HandleReloadConfigRequest   the new ModelServerConfig: pins and labels
    PredictionService.GetModelMetadata       which version a label names (the response's model_spec)

The messages are tensorflow-serving-api's, so the same calls work against
`tensorflow_model_server` and `tf-mlp serve`. Calls are retried while the
server cannot be reached (a reload is safe to repeat: the same config twice
is one change).

How TensorFlow Serving applies a reload (server_core.cc, ReloadConfig)
decides the order of a rollout's steps: the labels are checked and swapped
first, and a label may only move to a version that is AVAILABLE at that
moment (--allow_version_labels_for_unavailable_models only lets a *new*
label name a version not loaded yet); then versions no longer pinned are
unloaded and newly pinned ones loaded, in the background. So a version is
pinned, then waited for, and only then labelled.
"""

from __future__ import annotations

import dataclasses
import re
import time

import grpc
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_management_pb2,
    model_service_pb2_grpc,
    prediction_service_pb2_grpc,
)

from tf_mlp.client.base import is_unknown_label
from tf_mlp.client.errors import ClientError, NotFoundError, RequestError
from tf_mlp.client.grpc_client import client_error
from tf_mlp.client.retry import RetryPolicy, call_with_retries
from tf_mlp.client.target import Target
from tf_mlp.errors import RolloutError

AVAILABLE = "AVAILABLE"
END = "END"
POLL_SECONDS = 0.1
RETRIES = RetryPolicy(max_attempts=4, initial_backoff=0.2, max_backoff=2.0, max_elapsed=20.0)
_SPECIFIC_REQUEST = re.compile(r"Specific\([^,]*, (\d+)\)")
"""ServableRequest::DebugString of a label's version that is not loaded, in the server's NOT_FOUND answer."""


@dataclasses.dataclass(frozen=True)
class VersionState:
    state: str
    """START, LOADING, AVAILABLE, UNLOADING or END."""
    error: str = ""
    """Why a version ended, when it failed to load (error code and message)."""

    def __str__(self) -> str:
        return f"{self.state} ({self.error})" if self.error else self.state


@dataclasses.dataclass(frozen=True)
class LabelLookup:
    version: int | None
    """The version the label names (None: the server's config has no such label, or it would not say)."""
    serving: bool
    """Whether that version answers requests (is AVAILABLE)."""


class ReloadRefused(RolloutError):
    """The server answered HandleReloadConfigRequest with an error; `code` and `message` are its own."""

    def __init__(self, code: str, message: str):
        self.code = code
        self.message = " ".join(message.split())
        super().__init__(f"{code}: {self.message}")


class ServingApi:
    """One model on one server: its versions' states, its labels, and reloads of the whole config."""

    def __init__(self, target: Target, model: str, timeout: float):
        self.target = target
        self.model = model
        self.timeout = timeout
        self._channel = grpc.insecure_channel(target.address)
        self._models = model_service_pb2_grpc.ModelServiceStub(self._channel)
        self._predictions = prediction_service_pb2_grpc.PredictionServiceStub(self._channel)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> "ServingApi":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def _call(self, method, request, timeout: float):
        def attempt(number):
            try:
                return method(request, timeout=timeout)
            except grpc.RpcError as error:
                raise client_error(str(self.target), error) from None

        return call_with_retries(attempt, RETRIES)

    def statuses(self) -> dict[int, VersionState]:
        """version -> state for every version the server has seen of the model, highest first; {} if none."""
        request = get_model_status_pb2.GetModelStatusRequest()
        request.model_spec.name = self.model
        try:
            response = self._call(self._models.GetModelStatus, request, min(self.timeout, 30.0))
        except NotFoundError:
            return {}  # "Could not find any versions of model ..."
        states = {}
        for entry in response.model_version_status:
            name = get_model_status_pb2.ModelVersionStatus.State.Name(entry.state)
            error = ""
            if entry.status.error_code:
                error = entry.status.error_message or f"error code {entry.status.error_code}"
            states[entry.version] = VersionState(name, error)
        return dict(sorted(states.items(), reverse=True))

    def label(self, label: str) -> LabelLookup:
        """Which version the server's `label` names, and whether it is serving."""
        request = get_model_metadata_pb2.GetModelMetadataRequest()
        request.model_spec.name = self.model
        request.model_spec.version_label = label
        request.metadata_field.append("signature_def")
        try:
            response = self._call(self._predictions.GetModelMetadata, request, min(self.timeout, 30.0))
        except NotFoundError as error:
            # The label names a version that is not loaded: the server says which in its answer.
            match = _SPECIFIC_REQUEST.search(error.message)
            return LabelLookup(int(match.group(1)) if match else None, False)
        except RequestError as error:
            if is_unknown_label(error, label):
                return LabelLookup(None, False)
            raise
        return LabelLookup(response.model_spec.version.value, True)

    def reload(self, config) -> None:
        """HandleReloadConfigRequest; ReloadRefused with the server's code and message if it says no."""
        request = model_management_pb2.ReloadConfigRequest(config=config)
        try:
            # Loading can take a while (tf-mlp serve loads the new versions before it answers).
            self._call(self._models.HandleReloadConfigRequest, request, self.timeout)
        except ClientError as error:
            if isinstance(error, RequestError | NotFoundError) or error.status in _REFUSALS:
                raise ReloadRefused(error.status, error.message) from None
            raise

    def wait_until_available(self, version: int, before: VersionState | None, timeout: float) -> None:
        """Return once `version` is AVAILABLE; RolloutError when it fails to load or the time is up.

        `before` is its state before it was pinned: an END with the same error
        is the last attempt's, still shown until the server starts this one.
        """
        deadline = time.monotonic() + timeout
        stale_until = time.monotonic() + min(timeout, 5.0)
        while True:
            state = self.statuses().get(version)
            if state is not None and state.state == AVAILABLE:
                return
            if state is not None and state.state == END and state.error and (
                    state != before or time.monotonic() > stale_until):
                raise RolloutError(f"version {version} failed to load: {state.error}")
            if time.monotonic() > deadline:
                seen = f"it is {state}" if state else "the server does not list it (is it under the server's " \
                                                      "base path?)"
                raise RolloutError(f"version {version} was not AVAILABLE within {timeout:g} s: {seen}")
            time.sleep(POLL_SECONDS)


# Codes a reload is answered with when the server will not take the config (other failures are transport).
_REFUSALS = frozenset({"UNKNOWN", "INTERNAL", "FAILED_PRECONDITION", "PERMISSION_DENIED", "UNIMPLEMENTED",
                       "INVALID_ARGUMENT", "ALREADY_EXISTS", "ABORTED", "OUT_OF_RANGE"})
