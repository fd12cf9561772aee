"""In-process back end: the SavedModel loaded with `tf.saved_model.load` and its signatures called directly.

`local:PATH` may name a version directory (PATH/saved_model.pb), a model's
base path (PATH/<version>/, what --model_base_path takes) or an export base
(PATH/<model>/<version>/). Without --version the highest version is used,
as TensorFlow Serving's default version policy does. Errors are raised as
the same ClientError classes the servers' answers become, so a caller
cannot tell the back ends apart except by speed. There is no timeout and no
retry here: the call runs in this process, and nothing in between can fail.
"""

from __future__ import annotations

import pathlib
import re

import tensorflow as tf
from google.protobuf import json_format
from tensorflow.core.protobuf import saved_model_pb2

from tf_mlp import contract, layout
from tf_mlp.client import errors
from tf_mlp.client.base import Client, ModelSpec
from tf_mlp.client.results import ModelMetadata, ModelStatus
from tf_mlp.client.target import Target
from tf_mlp.errors import ConfigError

_SAVED_MODEL = layout.SAVED_MODEL_FILE
# Eager calls wrap the runtime's message in "Graph execution error: Detected at node ..." and end it with
# "[Op:__inference_...]"; a server's answer has neither, so they are cut to make the messages match.
_EAGER_PREFIX = re.compile(r"^Graph execution error:\s*(Detected at node .*?\n<stack traces unavailable>\n)?", re.S)
_EAGER_SUFFIX = re.compile(r"\s*\[Op:[^\]]*\]\s*$")


def resolve_version_dir(path, model_name: str, version: int | None) -> tuple[pathlib.Path, int]:
    """(version directory, version number) that `path` and `version` name; NotFoundError if there is none."""
    path = pathlib.Path(path)
    target = f"local:{path}"
    if not path.exists():
        raise errors.NotFoundError(target, "not found", f"{path} does not exist")
    versions = layout.saved_model_versions(path, model_name)
    if not versions:
        raise errors.NotFoundError(target, "not found", f"no SavedModel in {path} (expected {path}/{_SAVED_MODEL}, "
                                   f"{path}/<version>/ or {path}/{model_name}/<version>/)")
    if (path / _SAVED_MODEL).is_file():  # one version directory: it is the only choice
        number = next(iter(versions))
        if version is not None and version != number:
            raise errors.NotFoundError(target, "not found", f"{path} is version {number}, not {version}")
        return path, number
    chosen = max(versions) if version is None else version
    if chosen not in versions:
        base = next(iter(versions.values())).parent
        raise errors.NotFoundError(target, "not found", f"no version {version} of model {model_name} "
                                   f"in {base} (versions: {', '.join(map(str, versions))})")
    return versions[chosen], chosen


class LocalClient(Client):
    def __init__(self, target: Target, spec: ModelSpec, timeout: float = 30.0, retry=None):
        super().__init__(target, spec, timeout, retry)
        if spec.label is not None:
            raise ConfigError("version labels come from a server's model config; local: takes --version instead")
        self.path, self.version = resolve_version_dir(target.path, spec.name, spec.version)
        self._loaded = tf.saved_model.load(str(self.path))

    def _run(self, signature: str, kind: str, batch) -> dict:
        function = self._loaded.signatures.get(signature)
        if function is None:
            names = ", ".join(sorted(self._loaded.signatures))
            raise errors.RequestError(str(self.target), "INVALID_ARGUMENT",
                                      f'Serving signature name: "{signature}" not found in signature def '
                                      f"(signatures: {names})")
        inputs = function.structured_input_signature[1]
        if len(inputs) != 1:
            raise errors.RequestError(str(self.target), "INVALID_ARGUMENT",
                                      f"signature {signature!r} takes {len(inputs)} inputs, not 1")
        (alias, spec), = inputs.items()
        return call_and_count(self, lambda: function(**{alias: tf.constant(batch, dtype=spec.dtype)}))

    def _status(self) -> ModelStatus:
        # One version is loaded; as TensorFlow Serving's latest-version policy, it alone is AVAILABLE.
        raw = {"model_version_status": [
            {"version": str(self.version), "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}
        ]}
        return ModelStatus.from_json(self.spec.name, raw)

    def _metadata(self) -> ModelMetadata:
        saved_model = saved_model_pb2.SavedModel()
        saved_model.ParseFromString((self.path / _SAVED_MODEL).read_bytes())
        meta_graph = next(graph for graph in saved_model.meta_graphs if contract.SERVE_TAG in graph.meta_info_def.tags)
        signatures = {name: json_format.MessageToDict(definition, preserving_proto_field_name=True)
                      for name, definition in meta_graph.signature_def.items()
                      if not name.startswith("__")}  # __saved_model_init_op is not a signature a server shows
        raw = {
            "model_spec": {"name": self.spec.name, "signature_name": "", "version": str(self.version)},
            "metadata": {"signature_def": {"signature_def": signatures}},
        }
        return ModelMetadata.from_json(raw)

    def _labels(self) -> tuple[str, ...] | None:
        labels = layout.labels_asset_path(self.path)
        if not labels.is_file():
            return None
        return tuple(labels.read_text(encoding="utf-8").splitlines())


def clean_message(message: str) -> str:
    """A TensorFlow error message without the eager wrapping, as a server would send it."""
    return _EAGER_SUFFIX.sub("", _EAGER_PREFIX.sub("", message)).strip()


def call_and_count(client: Client, call) -> dict:
    """Run one in-process signature call: count it, and map TensorFlow's errors as a server's answer would be."""
    try:
        outputs = call()
    except tf.errors.InvalidArgumentError as error:
        client.stats.add(1, failed=True)
        raise errors.RequestError(str(client.target), "INVALID_ARGUMENT", clean_message(error.message)) from None
    except tf.errors.OpError as error:
        client.stats.add(1, failed=True)
        raise errors.ServerError(str(client.target), type(error).__name__, clean_message(error.message)) from None
    client.stats.add(1, failed=False)
    return {name: value.numpy() for name, value in outputs.items()}
