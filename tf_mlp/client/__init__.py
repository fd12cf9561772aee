"""Clients of the exported model: REST, gRPC or in-process, one interface.

    from tf_mlp import client

    with client.connect("rest://127.0.0.1:8501") as model:        # or grpc://127.0.0.1:8500, local:models, run:runs/mlp
        prediction = model.predict(images)                         # uint8 [N, 28, 28]
        prediction = model.predict_encoded([png_bytes, jpeg_bytes])
        prediction.probabilities, prediction.class_ids, prediction.class_names, prediction.top_k(3)
        model.status().available, model.metadata().signatures, model.class_names()

A server is asked for the version its config labels `stable` (when it has
that label; else its latest version, as a server started with
--model_base_path alone has no labels); `version=N` or `label="canary"`
address another. In-process targets have no labels: the latest version.

Every call has a timeout (per attempt) and is retried with exponential
backoff and jitter when the server is unreachable or busy (connection
errors, timeouts, HTTP 429/503/504, gRPC UNAVAILABLE/RESOURCE_EXHAUSTED/
DEADLINE_EXCEEDED), never when it refused the request (400, 404...).
Failures raise the ClientError subclasses of tf_mlp.client.errors, whose
one-line message carries the server's own. `model.stats` counts calls,
retries and failures.

Modules: target (parsing rest://, grpc://, local:, run:), base (the
interface), rest, grpc_client, local, run (the back ends), retry, results,
errors, polarity (dark-on-light images), online (top-k tables for the
online client).
"""

from __future__ import annotations

from tf_mlp import contract
from tf_mlp.client.base import DEFAULT_TIMEOUT, ENCODED, PIXELS, Client, ModelSpec
from tf_mlp.client.errors import ClientError, NotFoundError, RequestError, ServerError, UnavailableError
from tf_mlp.client.results import ModelMetadata, ModelStatus, Prediction
from tf_mlp.client.retry import NO_RETRIES, RetryPolicy
from tf_mlp.client.target import PROTOCOLS, Target, parse_target

__all__ = [
    "DEFAULT_TIMEOUT", "ENCODED", "NO_RETRIES", "PIXELS", "PROTOCOLS",
    "Client", "ClientError", "ModelMetadata", "ModelSpec", "ModelStatus", "NotFoundError", "Prediction",
    "RequestError", "RetryPolicy", "ServerError", "Target", "UnavailableError",
    "connect", "parse_target",
]


def connect(target: str | Target, model: str = contract.MODEL_NAME, version: int | None = None,
            label: str | None = None, signature: str | None = None, protocol: str | None = None,
            timeout: float = DEFAULT_TIMEOUT, retry: RetryPolicy | None = None, max_connections: int = 8,
            preferred_label: str | None = contract.STABLE_LABEL) -> Client:
    """A client of `model` at `target` (rest://HOST:PORT, grpc://HOST:PORT, local:PATH or run:RUN_DIR).

    Without `version` or `label`, a server is asked for `preferred_label`'s
    version if its config has that label, else for its latest version
    (`preferred_label=None`: always the latest).

    Connecting is lazy for the servers (the first call dials, with retries);
    a local model is loaded here. `max_connections` bounds the REST pool:
    give at least the number of threads that will call the client at once.
    """
    if not isinstance(target, Target):
        target = parse_target(target, protocol)
    server = target.protocol in ("rest", "grpc")
    spec = ModelSpec(name=model, version=version, label=label, signature=signature,
                     preferred_label=preferred_label if server else None)
    if target.protocol == "rest":
        from tf_mlp.client.rest import RestClient

        return RestClient(target, spec, timeout, retry, max_connections=max_connections)
    if target.protocol == "grpc":
        # Imported here: the gRPC protos import TensorFlow, which takes seconds.
        from tf_mlp.client.grpc_client import GrpcClient

        return GrpcClient(target, spec, timeout, retry)
    if target.protocol == "run":
        from tf_mlp.client.run import RunClient

        return RunClient(target, spec, timeout, retry)
    from tf_mlp.client.local import LocalClient

    return LocalClient(target, spec, timeout, retry)
