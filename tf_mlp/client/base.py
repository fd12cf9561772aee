"""The one client interface the REST, gRPC and in-process back ends share.

A back end implements `_run(signature, kind, batch)`, `_status()`,
`_metadata()` and `_labels()`; this class checks the inputs, picks the
signature and turns outputs into a `Prediction`, so every back end accepts
and returns exactly the same things.
"""

from __future__ import annotations

import abc
import copy
import dataclasses
import threading
from collections.abc import Sequence

import numpy as np

from tf_mlp import contract
from tf_mlp.client import errors
from tf_mlp.client.results import ModelMetadata, ModelStatus, Prediction
from tf_mlp.client.retry import CallStats, RetryPolicy
from tf_mlp.client.target import Target
from tf_mlp.errors import ConfigError

PIXELS = "pixels"
"""Input kind: uint8 [N, 28, 28] arrays, sent to serving_default's `images`."""
ENCODED = "encoded"
"""Input kind: PNG/JPEG file bytes, sent to predict_encoded's `image_bytes`."""

DEFAULT_SIGNATURES = {PIXELS: contract.SERVING_SIGNATURE, ENCODED: contract.ENCODED_SIGNATURE}
DEFAULT_INPUTS = {
    contract.SERVING_SIGNATURE: contract.IMAGES_INPUT,
    contract.ENCODED_SIGNATURE: contract.ENCODED_INPUT,
}
DEFAULT_TIMEOUT = 30.0
"""Seconds per attempt: enough for a large batch on a busy 2-core machine, short enough to notice a hung server."""


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """Which model to ask, as TensorFlow Serving's ModelSpec: name, version or label, signature."""

    name: str = contract.MODEL_NAME
    version: int | None = None
    """None: the version `label` or `preferred_label` names, else the latest version the server has."""
    label: str | None = None
    """A version label from the server's model config (e.g. stable, canary); the server must have it."""
    signature: str | None = None
    """None: serving_default for pixel arrays, predict_encoded for image bytes."""
    preferred_label: str | None = None
    """Used when neither version nor label is given: this label if the server's config has it, else the latest
    version (a server started with --model_base_path alone has no labels). Asked once per client."""

    def __post_init__(self):
        if not self.name:
            raise ConfigError("the model name is empty")
        if self.version is not None and self.label is not None:
            raise ConfigError("give a version or a version label, not both")
        if self.version is not None and self.version < 0:
            raise ConfigError(f"model versions are non-negative integers, got {self.version}")

    def signature_for(self, kind: str) -> str:
        return self.signature or DEFAULT_SIGNATURES[kind]


class Client(abc.ABC):
    """Predictions, status and metadata of one model; use as a context manager or call close()."""

    def __init__(self, target: Target, spec: ModelSpec, timeout: float = DEFAULT_TIMEOUT,
                 retry: RetryPolicy | None = None):
        if timeout <= 0:
            raise ConfigError(f"the timeout must be positive, got {timeout}")
        self.target = target
        self.spec = spec
        self.timeout = timeout
        self.retry = retry or RetryPolicy()
        self.stats = CallStats()
        """Calls, attempts, retries and failures so far (for summaries)."""
        self._class_names = None
        self._aliases = {}
        # Whether the server has spec.preferred_label (None until asked); a dict so with_retry's twins share it.
        self._preferred_label = {"found": None}
        self._label_lock = threading.Lock()

    # ---- the interface ---------------------------------------------------

    def predict(self, images) -> Prediction:
        """Classify uint8 pixels [N, 28, 28] (one [28, 28] image is a batch of one)."""
        images = np.asarray(images)
        if images.ndim == 2:
            images = images[np.newaxis]
        size = contract.IMAGE_SIZE
        if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (size, size):
            raise ConfigError(f"expected uint8 images of shape [N, {size}, {size}], "
                              f"got {images.dtype} {list(images.shape)}")
        return self._predict(PIXELS, np.ascontiguousarray(images))

    def predict_encoded(self, image_bytes: Sequence[bytes]) -> Prediction:
        """Classify PNG or JPEG files given as bytes (one bytes object per image)."""
        if isinstance(image_bytes, (bytes, bytearray)):
            raise ConfigError("predict_encoded takes a list of images' bytes, not one bytes object")
        image_bytes = [bytes(data) for data in image_bytes]
        return self._predict(ENCODED, image_bytes)

    def status(self) -> ModelStatus:
        """The model's versions and their states (all versions; the spec's version if it names one)."""
        return self._status()

    def metadata(self) -> ModelMetadata:
        """The served version's signatures (SignatureDefs)."""
        return self._metadata()

    def class_names(self) -> tuple[str, ...] | None:
        """All class names in class-id order (from the model's labels), or None if the model does not say."""
        if self._class_names is None:
            self._class_names = self._labels() or ()
        return self._class_names or None

    def with_retry(self, retry: RetryPolicy) -> "Client":
        """This client with another retry policy, sharing its connections and counters (close only one)."""
        twin = copy.copy(self)
        twin.retry = retry
        return twin

    def close(self) -> None:  # noqa: B027 - a back end without connections has nothing to release
        """Release connections; the client cannot be used afterwards."""

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    # ---- shared plumbing -------------------------------------------------

    def addressed_label(self) -> str | None:
        """The label requests name: the spec's label, else its preferred label if the server has it, else None.

        Whether the server has the preferred label is asked once (with the
        client's retries, not counted in `stats`); only the server's
        "Unrecognized servable version label" answer means it has not. A label
        naming a version that is not loaded is still the label: its requests
        then fail, rather than quietly going to another version.
        """
        spec = self.spec
        if spec.version is not None or spec.label is not None or spec.preferred_label is None:
            return spec.label
        with self._label_lock:
            if self._preferred_label["found"] is None:
                self._preferred_label["found"] = self._has_label(spec.preferred_label)
        return spec.preferred_label if self._preferred_label["found"] else None

    def _has_label(self, label: str) -> bool:
        """Whether the server's config has `label` for this model (back ends without labels: never)."""
        return False

    def _predict(self, kind: str, batch) -> Prediction:
        if len(batch) == 0:
            return Prediction.empty()
        signature = self.spec.signature_for(kind)
        try:
            outputs = self._run(signature, kind, batch)
            return Prediction.from_outputs(outputs, len(batch), f"{self.target} signature {signature!r}")
        except ValueError as error:  # outputs that do not fit the contract
            raise errors.ServerError(str(self.target), "bad response", str(error)) from None

    @abc.abstractmethod
    def _run(self, signature: str, kind: str, batch) -> dict:
        """Outputs by name (array-likes, N rows each) of `signature` on `batch`."""

    @abc.abstractmethod
    def _status(self) -> ModelStatus:
        """The model's status, from the back end."""

    @abc.abstractmethod
    def _metadata(self) -> ModelMetadata:
        """The served version's metadata, from the back end."""

    @abc.abstractmethod
    def _labels(self) -> tuple[str, ...] | None:
        """All class names from the model, or None when it has no way to say them."""

    def input_alias(self, signature: str) -> str:
        """The single input of `signature`: from the contract for ours, else asked of the model once."""
        if signature in DEFAULT_INPUTS:
            return DEFAULT_INPUTS[signature]
        if signature not in self._aliases:
            self._aliases[signature] = self._only_input(signature)
        return self._aliases[signature]

    def _only_input(self, signature: str) -> str:
        definition = self.metadata().signatures.get(signature)
        if definition is None:
            raise errors.RequestError(str(self.target), "unknown signature",
                                      f"the model has no signature {signature!r}")
        if len(definition.inputs) != 1:
            raise errors.RequestError(str(self.target), "unsupported signature",
                                      f"signature {signature!r} takes {len(definition.inputs)} inputs, not 1")
        return next(iter(definition.inputs))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.target}, {self.spec})"


UNKNOWN_LABEL = "Unrecognized servable version label: "
"""TensorFlow Serving's answer (INVALID_ARGUMENT, HTTP 400) to a label its config does not have."""


def is_unknown_label(error: errors.ClientError, label: str) -> bool:
    return isinstance(error, errors.RequestError) and error.message.strip() == UNKNOWN_LABEL + label


def blank_png() -> bytes:
    """A black 28x28 grayscale PNG: a valid input for asking a classify signature its class names."""
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("L", (contract.IMAGE_SIZE, contract.IMAGE_SIZE)).save(buffer, format="PNG")
    return buffer.getvalue()
