"""In-process back end over a training run directory: the newest (or best) weights, no export needed.

`run:RUN_DIR` restores the model a run reported (tf_mlp.training.runs.restore_model)
and wraps it in the exported model's own serving module
(tf_mlp.export.signatures.ServingFunctions), so pixels, encoded images and raw
bytes go through exactly the functions a SavedModel export would contain:
the same decoding, resizing, softmax and class names. A run has no versions
and no SignatureDefs on disk: status shows version 0, and metadata is an
error that says to export the run first.
"""

from __future__ import annotations

import pathlib

import tensorflow as tf

from tf_mlp import layout
from tf_mlp.client import errors
from tf_mlp.client.base import Client, ModelSpec
from tf_mlp.client.local import call_and_count
from tf_mlp.client.results import ModelMetadata, ModelStatus
from tf_mlp.client.target import Target
from tf_mlp.errors import ConfigError
from tf_mlp.training.runs import read_class_names, restore_model


class RunClient(Client):
    def __init__(self, target: Target, spec: ModelSpec, timeout: float = 30.0, retry=None):
        super().__init__(target, spec, timeout, retry)
        if spec.version is not None or spec.label is not None:
            raise ConfigError("a run directory has no versions or labels; export it to choose among versions")
        from tf_mlp.export.signatures import ServingFunctions, class_table

        self.path = pathlib.Path(target.path)
        self._names = read_class_names(self.path)
        _, model = restore_model(self.path)
        # The export's own signature functions, over the run's model and labels: a run answers as its export would.
        serving = ServingFunctions(model, class_table(str(layout.labels_path(self.path))))
        self._functions = {name: tf.function(function, input_signature=[spec])
                           for name, (function, spec) in serving.endpoints().items()}

    def _run(self, signature: str, kind: str, batch) -> dict:
        function = self._functions.get(signature)
        if function is None:
            names = ", ".join(sorted(self._functions))
            raise errors.RequestError(str(self.target), "INVALID_ARGUMENT",
                                      f'Serving signature name: "{signature}" not found (signatures: {names})')
        (spec,) = function.input_signature
        return call_and_count(self, lambda: function(tf.constant(batch, dtype=spec.dtype)))

    def _status(self) -> ModelStatus:
        raw = {"model_version_status": [
            {"version": "0", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}
        ]}
        return ModelStatus.from_json(self.spec.name, raw)

    def _metadata(self) -> ModelMetadata:
        raise ConfigError(f"{self.path} is a training run, which has no SignatureDefs; export it "
                          f"(tf-mlp export {self.path}) and ask the export")

    def _labels(self) -> tuple[str, ...] | None:
        return self._names
