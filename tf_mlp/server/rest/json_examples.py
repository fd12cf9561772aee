"""Classify and Regress requests and results in JSON (json_tensor.cc's tf.Example half).

A request lists `examples` (each a JSON object of feature name -> value or
list) and an optional `context` shared by all of them. Each feature becomes
a tf.train.Feature by JSON type: strings and `{"b64": ...}` -> bytes_list,
whole numbers and booleans -> int64_list, decimals -> float_list; a list
must not mix kinds. With a context, each serialized example is the context's
serialization followed by the example's, which protobuf parses as the merge.
"""

from __future__ import annotations

import numpy as np
from tensorflow.core.example import example_pb2, feature_pb2

from tf_mlp.server.core.limits import RequestBudget, string_bytes
from tf_mlp.server.core.servable import stack_strings
from tf_mlp.server.core.status import invalid_argument, shown
from tf_mlp.server.rest import json_codec
from tf_mlp.server.rest.json_tensors import decode_base64, is_base64_object, signature_name_of

_KIND_NAMES = {"bytes_list": "bytes", "float_list": "float", "int64_list": "int64", None: "UNKNOWN"}
_FLOAT_LARGEST_INTEGER = (1 << 24) - 1
_FLOAT_LARGEST = float(np.finfo(np.float32).max)


def _add_value(value, name: str, feature: feature_pb2.Feature) -> None:
    """AddValueToFeature."""

    def require(kind: str):
        current = feature.WhichOneof("kind")
        if current not in (None, kind):
            raise invalid_argument(f"Unexpected element type in feature: {shown(name)} expecting type: "
                                   f"{_KIND_NAMES[current]}")
        return getattr(feature, kind)

    if value is None or isinstance(value, list) or (isinstance(value, dict) and not is_base64_object(value)):
        raise invalid_argument(f"Feature: {shown(name)} has element with unexpected JSON type: "
                               f"{json_codec.type_name(value)}")
    if isinstance(value, bool):
        require("int64_list").value.append(1 if value else 0)
    elif isinstance(value, dict):
        require("bytes_list").value.append(decode_base64(value))
    elif isinstance(value, str):
        require("bytes_list").value.append(value.encode("utf-8", "surrogateescape"))
    elif isinstance(value, float):
        target = require("float_list")
        if value == value and abs(value) != float("inf") and abs(value) > _FLOAT_LARGEST:
            raise invalid_argument(f"Cannot convert JSON value: {json_codec.value_to_string(value)} to float "
                                   "without loss of precision.")
        target.value.append(value)
    else:
        target = require("int64_list")
        if value > (1 << 63) - 1:
            raise invalid_argument(f"Feature: {shown(name)} has uint64 element. Only int64 is supported.")
        if value < -(1 << 63):
            raise invalid_argument(f"Feature: {shown(name)} has element with unexpected JSON type: Number")
        target.value.append(value)


def _example(value) -> example_pb2.Example:
    """MakeExampleFromJsonObject."""
    if not isinstance(value, dict):
        raise invalid_argument(f"Example must be JSON object but got JSON {json_codec.type_name(value)}")
    example = example_pb2.Example()
    for name, content in value.items():
        feature = example.features.feature[name]
        for item in content if isinstance(content, list) else [content]:
            _add_value(item, name, feature)
    return example


def examples_request(document: dict, budget: RequestBudget) -> tuple:
    """(signature_name, serialized examples) from a parsed classify or regress request.

    The context is copied into every example, so a large context and many
    small examples multiply: their total is charged to budget before the copies are made.
    """
    signature_name = signature_name_of(document)
    context = None
    if "context" in document:
        context = _example(document["context"]).SerializeToString()
    if "examples" not in document:
        raise invalid_argument(f"JSON Value: {json_codec.value_to_string(document)} When method is classify, "
                               "key 'examples' is expected and was not found")
    examples = document["examples"]
    if not isinstance(examples, list):
        raise invalid_argument(f"JSON Value: {json_codec.value_to_string(document)} Expecting 'examples' value "
                               "to be an list/array")
    if not examples:
        raise invalid_argument(f"JSON Value: {json_codec.value_to_string(document)} 'examples' value is an empty "
                               "array")
    serialized = [_example(value).SerializeToString() for value in examples]
    context = context or b""
    budget.charge("examples", string_bytes(len(serialized), sum(map(len, serialized)) + len(serialized) * len(context)))
    return signature_name, stack_strings([context + example for example in serialized] if context else serialized)


def classification_json(result) -> bytes:
    """MakeJsonFromClassificationResult: {"results": [[[label, score], ...], ...]}."""
    if not result.classifications:
        raise invalid_argument("Cannot convert empty ClassificationResults to JSON")
    rows = [[[entry.label, np.float32(entry.score)] for entry in classifications.classes]
            for classifications in result.classifications]
    finite = all(np.isfinite(score) for row in rows for _, score in row)
    return json_codec.dumps({"results": rows}, finite=finite)


def regression_json(result) -> bytes:
    """MakeJsonFromRegressionResult: {"results": [value, ...]}."""
    if not result.regressions:
        raise invalid_argument("Cannot convert empty RegressionResults to JSON")
    values = np.array([regression.value for regression in result.regressions], dtype=np.float32)
    return json_codec.dumps({"results": values}, finite=bool(np.isfinite(values).all()))
