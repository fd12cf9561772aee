"""Warmup at load: a version's assets.extra/tf_serving_warmup_requests replayed before it serves.

As TensorFlow Serving's saved_model_warmup.cc: the file is a TFRecord of
PredictionLog protos (at most 1000); each predict, classify or regress
request is planned and run on the new servable, num_request_iterations
times, so the first real request does not pay for graph set-up. A record of
another kind, or a request that fails, fails the load.

Layering: status, tensors <- servable <- inference <- warmup <- manager; the
manager asks for warmup, and only this module reaches into request handling.
"""

from __future__ import annotations

import logging

import tensorflow as tf

from tf_mlp import contract, layout
from tf_mlp.server.core import inference, tensors
from tf_mlp.server.core.limits import RequestBudget
from tf_mlp.server.core.servable import Servable
from tf_mlp.server.core.status import Code, ServingError, invalid_argument

log = logging.getLogger(__name__)

MAX_RECORDS = 1000
"""saved_model_warmup_util.cc's kMaxNumRecords."""
_TRUSTED = RequestBudget(None)
"""Warmup records come with the model, as its signature defaults do: no request budget applies to them."""


def read_records(version_dir) -> list:
    """The PredictionLog records of the version's warmup file ([] if there is none)."""
    from tensorflow_serving.apis import prediction_log_pb2

    path = layout.assets_extra_path(version_dir, contract.WARMUP_FILE)
    if not path.is_file():
        log.info("No warmup data file found at %s", path)
        return []
    records = []
    try:
        for raw in tf.data.TFRecordDataset(str(path)):
            record = prediction_log_pb2.PredictionLog()
            record.ParseFromString(raw.numpy())
            records.append(record)
            if len(records) > MAX_RECORDS:
                raise invalid_argument(f"Number of warmup records exceeds the maximum ({MAX_RECORDS}) at {path}")
    except tf.errors.DataLossError as error:
        raise ServingError(
            Code.DATA_LOSS, f"{error.message}. Please verify your warmup data is in TFRecord format."
        ) from None
    return records


def replay(servable: Servable, record) -> None:
    """Run one PredictionLog as saved_model_warmup.cc does: predict, classify or regress requests."""
    kind = record.WhichOneof("log_type")
    if kind == "predict_log":
        request = record.predict_log.request
        inputs = {alias: tensors.to_numpy(proto, alias) for alias, proto in request.inputs.items()}
        plan = inference.plan_predict(servable, request.model_spec.signature_name, inputs, request.output_filter)
    elif kind == "classify_log":
        request = record.classify_log.request
        plan = inference.plan_classify(servable, request.model_spec.signature_name,
                                       inference.serialized_examples(request.input, _TRUSTED))
    elif kind == "regress_log":
        request = record.regress_log.request
        plan = inference.plan_regress(servable, request.model_spec.signature_name,
                                      inference.serialized_examples(request.input, _TRUSTED))
    else:
        raise ServingError(Code.UNIMPLEMENTED, f"Unsupported log_type for warmup: {kind}")
    servable.run(plan.signature, plan.inputs, plan.output_aliases)


def warm_up(servable: Servable, iterations: int) -> None:
    """Replay every warmup record `iterations` times (at least once); ServingError if one fails."""
    records = read_records(servable.path)
    for record in records:
        for _ in range(max(iterations, 1)):
            replay(servable, record)
    if records:
        log.info("Finished reading warmup data for model at %s. Number of warmup records read: %d.",
                 servable.path, len(records))
