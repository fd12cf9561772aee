"""What the clients return, the same from every back end (REST, gRPC, in-process).

`Prediction` holds a batch's outputs as numpy arrays; `ModelStatus` and
`ModelMetadata` are read from the JSON shapes of TensorFlow Serving's
GetModelStatusResponse and GetModelMetadataResponse (what the REST API
answers, and what the gRPC protos turn into with json_format), so a caller
sees one form whichever way it asked.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from tf_mlp import contract


@dataclasses.dataclass
class Prediction:
    probabilities: np.ndarray
    """float32 [N, K]: softmax over the K classes."""
    class_ids: np.ndarray
    """int64 [N]: the most probable class of each input."""
    class_names: list
    """[N] str: the name of each input's most probable class."""

    def __len__(self) -> int:
        return int(self.class_ids.shape[0])

    def probability(self) -> np.ndarray:
        """float32 [N]: the probability of each input's predicted class."""
        return self.probabilities[np.arange(len(self)), self.class_ids]

    def top_k(self, k: int) -> list[list[tuple[int, float]]]:
        """Per input, the k most probable (class id, probability), most probable first; ties by lower id."""
        k = max(1, min(k, self.probabilities.shape[1]))
        # A stable sort of the negated probabilities keeps lower ids first among equals.
        order = np.argsort(-self.probabilities, axis=1, kind="stable")[:, :k]
        return [[(int(class_id), float(row[class_id])) for class_id in ids]
                for ids, row in zip(order, self.probabilities)]

    @classmethod
    def empty(cls, num_classes: int = contract.NUM_CLASSES) -> "Prediction":
        return cls(np.zeros((0, num_classes), np.float32), np.zeros((0,), np.int64), [])

    @classmethod
    def from_outputs(cls, outputs: dict, expected: int, describe: str) -> "Prediction":
        """A Prediction from a signature's outputs by name; ValueError naming `describe` if they do not fit.

        Signatures without class ids or names (TensorFlow Serving's MNIST
        example answers `scores` only) get them from the argmax.
        """
        probabilities = outputs.get(contract.PROBABILITIES_OUTPUT)
        if probabilities is None:
            probabilities = outputs.get(contract.MNIST_EXAMPLE_OUTPUT)
        if probabilities is None and len(outputs) == 1:
            probabilities = next(iter(outputs.values()))
        if probabilities is None:
            raise ValueError(f"{describe} has no {contract.PROBABILITIES_OUTPUT!r} output (got {sorted(outputs)})")
        probabilities = np.asarray(probabilities, dtype=np.float32)
        if probabilities.ndim != 2 or probabilities.shape[0] != expected:
            raise ValueError(f"{describe} answered probabilities of shape {list(probabilities.shape)} "
                             f"for {expected} inputs")
        class_ids = outputs.get(contract.CLASS_IDS_OUTPUT)
        class_ids = np.argmax(probabilities, axis=1) if class_ids is None else class_ids
        class_ids = np.asarray(class_ids, dtype=np.int64).reshape(-1)
        names = outputs.get(contract.CLASS_NAMES_OUTPUT)
        names = [str(class_id) for class_id in class_ids] if names is None else [_text(name) for name in names]
        if class_ids.shape[0] != expected or len(names) != expected:
            raise ValueError(f"{describe} answered {class_ids.shape[0]} class ids and {len(names)} names "
                             f"for {expected} inputs")
        return cls(probabilities, class_ids, names)


def _text(value) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


@dataclasses.dataclass
class VersionStatus:
    version: int
    state: str
    """START, LOADING, AVAILABLE, UNLOADING or END (TensorFlow Serving's ModelVersionStatus.State)."""
    error_code: str = "OK"
    error_message: str = ""


@dataclasses.dataclass
class ModelStatus:
    model: str
    versions: list
    """VersionStatus per version, as the server lists them."""
    raw: dict = dataclasses.field(repr=False, default_factory=dict)
    """The response as JSON (GetModelStatusResponse)."""

    @property
    def available(self) -> list[int]:
        return sorted(status.version for status in self.versions if status.state == "AVAILABLE")

    @classmethod
    def from_json(cls, model: str, raw: dict) -> "ModelStatus":
        versions = []
        for entry in raw.get("model_version_status", []):
            status = entry.get("status", {})
            versions.append(VersionStatus(
                version=int(entry.get("version", 0)),
                state=str(entry.get("state", "UNKNOWN")),
                error_code=str(status.get("error_code", "OK")),
                error_message=str(status.get("error_message", "")),
            ))
        return cls(model, versions, raw)


@dataclasses.dataclass
class TensorInfo:
    dtype: str
    """TensorFlow's enum name, e.g. DT_UINT8."""
    shape: list | None
    """Dimensions, -1 for unknown; None for unknown rank."""


@dataclasses.dataclass
class SignatureInfo:
    method_name: str
    inputs: dict
    """alias -> TensorInfo."""
    outputs: dict
    """alias -> TensorInfo."""


@dataclasses.dataclass
class ModelMetadata:
    model: str
    version: int
    signatures: dict
    """signature name -> SignatureInfo."""
    raw: dict = dataclasses.field(repr=False, default_factory=dict)
    """The response as JSON (GetModelMetadataResponse, signature_def unpacked)."""

    @classmethod
    def from_json(cls, raw: dict) -> "ModelMetadata":
        spec = raw.get("model_spec", {})
        definitions = raw.get("metadata", {}).get("signature_def", {}).get("signature_def", {})
        signatures = {
            name: SignatureInfo(
                method_name=definition.get("method_name", ""),
                inputs={alias: _tensor_info(info) for alias, info in definition.get("inputs", {}).items()},
                outputs={alias: _tensor_info(info) for alias, info in definition.get("outputs", {}).items()},
            )
            for name, definition in definitions.items()
            if not name.startswith("__")  # __saved_model_init_op: the loader's, not a signature to call
        }
        return cls(str(spec.get("name", "")), int(spec.get("version", 0) or 0), signatures, raw)


def _tensor_info(info: dict) -> TensorInfo:
    shape = info.get("tensor_shape", {})
    dims = None if shape.get("unknown_rank") else [int(dim.get("size", -1)) for dim in shape.get("dim", [])]
    return TensorInfo(str(info.get("dtype", "DT_INVALID")), dims)
