"""Predict requests and responses in JSON: row (`instances`) and columnar (`inputs`) formats.

The conversion rules and error messages are json_tensor.cc's
(FillPredictRequestFromJson, FillTensorProto, AddValueToTensor,
MakeJsonFromTensors). A numeric tensor is first tried the fast way, one
`np.array` over the whole nested list; anything unusual (ragged lists,
mixed types, values out of range, strings, b64 objects, booleans) goes
through the exact element-by-element walk, which accepts what TensorFlow
Serving accepts and refuses the rest with its message.

One deliberate difference: an integer outside the range of a uint8, int8 or
int16 input is refused (as "not of expected type") where TensorFlow Serving
silently wraps it around.
"""

from __future__ import annotations

import base64
import binascii

import numpy as np
from tensorflow.core.framework import types_pb2

from tf_mlp.server.core import tensors
from tf_mlp.server.core.limits import RequestBudget, string_bytes
from tf_mlp.server.core.status import Code, ServingError, invalid_argument, shown
from tf_mlp.server.rest import json_codec

ROW, COLUMNAR = "row", "columnar"
BYTES_SUFFIX = "_bytes"
MAX_RANK = 254
"""TensorShape's largest rank; deeper lists cannot be a tensor."""

_INTEGER_RANGES = {
    types_pb2.DT_INT8: (-(1 << 7), (1 << 7) - 1),
    types_pb2.DT_UINT8: (0, (1 << 8) - 1),
    types_pb2.DT_INT16: (-(1 << 15), (1 << 15) - 1),
    types_pb2.DT_UINT16: (0, (1 << 16) - 1),
    types_pb2.DT_INT32: (-(1 << 31), (1 << 31) - 1),
    types_pb2.DT_UINT32: (0, (1 << 32) - 1),
    types_pb2.DT_INT64: (-(1 << 63), (1 << 63) - 1),
    types_pb2.DT_UINT64: (0, (1 << 64) - 1),
}
# Largest integer a float type holds exactly (IsLosslessDecimal) and its finite range.
_FLOAT_LIMITS = {
    types_pb2.DT_FLOAT: ((1 << 24) - 1, float(np.finfo(np.float32).max)),
    types_pb2.DT_DOUBLE: ((1 << 53) - 1, float(np.finfo(np.float64).max)),
}


def _type_error(value, dtype) -> ServingError:
    return invalid_argument(f"JSON Value: {json_codec.value_to_string(value)} Type: {json_codec.type_name(value)} "
                            f"is not of expected type: {tensors.dtype_name(dtype)}")


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def is_base64_object(value) -> bool:
    return isinstance(value, dict) and len(value) == 1 and isinstance(value.get("b64"), str)


def decode_base64(value) -> bytes:
    if not is_base64_object(value):
        raise invalid_argument(
            f"JSON Value: {json_codec.value_to_string(value)} not formatted correctly for base64 data")
    text = value["b64"].strip()
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise invalid_argument("Unable to base64 decode") from None


def _scalar(value, dtype):
    """AddValueToTensor for one JSON value."""
    if dtype in _FLOAT_LIMITS:
        if not _is_number(value):
            raise _type_error(value, dtype)
        largest_integer, largest = _FLOAT_LIMITS[dtype]
        lossless = abs(value) <= largest_integer if isinstance(value, int) else (
            value != value or abs(value) == float("inf") or abs(value) <= largest)
        if not lossless:
            raise invalid_argument(f"Cannot convert JSON value: {json_codec.value_to_string(value)} to "
                                   f"{tensors.dtype_name(dtype)} without loss of precision.")
        return value
    if dtype in _INTEGER_RANGES:
        low, high = _INTEGER_RANGES[dtype]
        if not (isinstance(value, int) and not isinstance(value, bool) and low <= value <= high):
            raise _type_error(value, dtype)
        return value
    if dtype == types_pb2.DT_STRING:
        if not isinstance(value, str):
            raise _type_error(value, dtype)
        return value.encode("utf-8", "surrogateescape")
    if dtype == types_pb2.DT_BOOL:
        if not isinstance(value, bool):
            raise _type_error(value, dtype)
        return value
    raise ServingError(Code.UNIMPLEMENTED, f"Conversion of JSON Value: {json_codec.value_to_string(value)} "
                                           f"to type: {tensors.dtype_name(dtype)}")


def _dense_shape(value) -> list:
    """GetDenseTensorShape: sizes along the first element of each level."""
    shape = []
    while isinstance(value, list):
        shape.append(len(value))
        if not value or len(shape) > MAX_RANK:
            break
        value = value[0]
    return shape


def _fill(value, level: int, shape: list, dtype, out: list) -> None:
    """FillTensorProto: every leaf at depth rank, every list of the size its level says."""
    rank = len(shape)
    if not isinstance(value, list):
        if level != rank:
            raise invalid_argument(f"JSON Value: {json_codec.value_to_string(value)} found at incorrect level: "
                                   f"{level + 1} in the JSON DOM. Expected at level: {rank}")
        if isinstance(value, dict):
            if dtype != types_pb2.DT_STRING:
                raise _type_error(value, dtype)
            out.append(decode_base64(value))
        else:
            out.append(_scalar(value, dtype))
        return
    if level >= rank:
        raise invalid_argument(f"Encountered list at unexpected level: {level} expected < {rank}")
    if len(value) != shape[level]:
        raise invalid_argument(f"Encountered list at unexpected size: {len(value)} at level: {level} "
                               f"expected size: {shape[level]}")
    for item in value:
        _fill(item, level + 1, shape, dtype, out)


def _fast(value, dtype):
    """The same tensor as the exact walk for plain rectangular numbers, or None to take the walk."""
    try:
        array = np.array(value)
    except (ValueError, TypeError, OverflowError):
        return None
    kind = array.dtype.kind
    if dtype in _INTEGER_RANGES:
        low, high = _INTEGER_RANGES[dtype]
        if kind not in "iu" or (array.size and (array.min() < low or array.max() > high)):
            return None
    elif dtype in _FLOAT_LIMITS:
        largest_integer, largest = _FLOAT_LIMITS[dtype]
        if kind in "iu":
            if array.size and max(-int(array.min()), int(array.max())) > largest_integer:
                return None
        elif kind != "f" or (array.size and np.abs(array[np.isfinite(array)], dtype=np.float64).max(
                initial=0.0) > largest):
            return None
    elif not (dtype == types_pb2.DT_BOOL and kind == "b"):
        return None
    return array.astype(tensors.numpy_dtype(dtype), copy=False)


def _fast_base64(instances: list, name: str, budget: RequestBudget):
    """A list of {"b64": ...} objects (the _bytes signatures' row form) as a 1-D bytes array, or None.

    The same tensor as the exact walk, without its per-element shape checks
    and stacking; anything else (or bad base64) takes the walk and its messages.
    """
    texts = []
    for value in instances:
        if type(value) is not dict or len(value) != 1:
            return None
        text = value.get("b64")
        if type(text) is not str:
            return None
        texts.append(text)
    budget.check(name, string_bytes(len(texts), sum(len(text) for text in texts) * 3 // 4))
    values = []
    for text in texts:
        try:
            values.append(base64.b64decode(text, validate=True))
        except (binascii.Error, ValueError):
            return None
    budget.charge(name, string_bytes(len(values), sum(len(value) for value in values)))
    array = np.empty(len(values), dtype=object)
    array[:] = values
    return array


def _tensor_bytes(shape: list, dtype) -> int:
    """What a tensor of this shape holds: its numbers, or its strings' overhead (their bytes are counted later)."""
    return int(np.prod(shape, dtype=object)) * tensors.element_bytes(dtype)


def to_tensor(value, dtype, name: str, budget: RequestBudget, may_be_fast: bool = True) -> np.ndarray:
    """A JSON value (scalar or nested lists) as an ndarray of dtype, or INVALID_ARGUMENT; charged to the budget
    (from the sizes of its first elements) before it is built."""
    shape = _dense_shape(value)
    if len(shape) > MAX_RANK:
        raise invalid_argument(f"tensor parsing error: {shown(name)}")
    budget.charge(name, _tensor_bytes(shape, dtype))
    if may_be_fast and dtype != types_pb2.DT_STRING:
        array = _fast(value, dtype)
        if array is not None:
            return array
    values = []
    _fill(value, 0, shape, dtype, values)
    if dtype == types_pb2.DT_STRING:
        budget.charge(name, sum(len(item) for item in values))
    if len(shape) > tensors.NUMPY_MAX_RANK:
        # A valid TensorShape (TensorFlow Serving would fail the signature's rank check next), but numpy
        # cannot hold it, and no signature takes it: refused here instead of failing in reshape (a 500).
        raise invalid_argument(f"{shown(name)}: a tensor of rank {len(shape)} is not supported "
                               f"(at most {tensors.NUMPY_MAX_RANK})")
    if dtype == types_pb2.DT_STRING:
        array = np.empty(len(values), dtype=object)
        array[:] = values
        return array.reshape(shape)
    return np.array(values, dtype=tensors.numpy_dtype(dtype)).reshape(shape)


def signature_name_of(document: dict) -> str:
    """FillSignature: the optional signature_name, which must be a string."""
    name = document.get("signature_name", "")
    if not isinstance(name, str):
        raise invalid_argument(f"JSON Value: {json_codec.value_to_string(document)} not formatted correctly. "
                               "'signature_name' key must be a string value.")
    return name


def _is_element_object(value) -> bool:
    return isinstance(value, dict) and not is_base64_object(value)


def _rows(document: dict, instances: list, input_specs: dict, may_be_fast: bool, budget: RequestBudget) -> dict:
    """FillTensorMapFromInstancesList."""
    if not isinstance(instances, list):
        raise invalid_argument(f"JSON Value: {json_codec.value_to_string(document)} "
                               "Excepting 'instances' to be an list/array")
    if not instances:
        raise invalid_argument(f"JSON Value: {json_codec.value_to_string(document)} No values in 'instances' array")
    if not isinstance(instances[0], dict) and len(input_specs) > 1:
        raise invalid_argument("instances is a plain list, but expecting list of objects as multiple input tensors "
                               "required as per tensorinfo_map")
    objects = _is_element_object(instances[0])
    first_name = next(iter(input_specs))
    if not objects and may_be_fast and input_specs[first_name].dtype != types_pb2.DT_STRING:
        # Checked, and charged once built: when the fast way fails, the walk below charges each element.
        shape = _dense_shape(instances)
        budget.check(first_name, _tensor_bytes(shape, input_specs[first_name].dtype))
        array = _fast(instances, input_specs[first_name].dtype) if len(shape) <= MAX_RANK else None
        if array is not None and array.ndim >= 1:
            budget.charge(first_name, array.nbytes)
            return {first_name: array}
    if not objects and input_specs[first_name].dtype == types_pb2.DT_STRING:
        array = _fast_base64(instances, first_name, budget)
        if array is not None:
            return {first_name: array}
    columns = {}
    shapes = {}
    for index, element in enumerate(instances):
        items = element.items() if objects else [(first_name, element)]
        if objects and not _is_element_object(element):
            raise invalid_argument(f"Expecting object but got list at item {index} of input list")
        if not objects and _is_element_object(element):
            raise invalid_argument(f"Expecting value/list but got object at item {index} of input list")
        for name, value in items:
            where = f"{index} key: {shown(name)}" if objects else f"{index}"
            try:
                if name not in input_specs:
                    raise invalid_argument(f"JSON object: does not have named input: {shown(name)}")
                array = to_tensor(value, input_specs[name].dtype, name, budget, may_be_fast=False)
                if name in shapes and shapes[name] != array.shape:
                    if np.prod(shapes[name]) != array.size:
                        raise invalid_argument(f"Expecting tensor size: {int(np.prod(shapes[name]))} "
                                               f"but got: {array.size}")
                    raise invalid_argument(f"Expecting shape {tensors.shape_string(shapes[name])} "
                                           f"but got: {tensors.shape_string(array.shape)}")
            except ServingError as error:
                raise invalid_argument(f"Failed to process element: {where} of 'instances' list. "
                                       f"Error: {error.to_string()}") from None
            shapes[name] = array.shape
            columns.setdefault(name, []).append(array)
        if objects and set(element) != set(input_specs):
            raise invalid_argument(
                f"Failed to process element: {index} of 'instances' list. JSON object: "
                f"{json_codec.value_to_string(element)} keys must be equal to: {','.join(sorted(input_specs))}")
    return {name: np.stack(arrays) for name, arrays in columns.items()}


def _columns(inputs, input_specs: dict, may_be_fast: bool, budget: RequestBudget) -> dict:
    """FillTensorMapFromInputsMap."""
    if not isinstance(inputs, dict) or is_base64_object(inputs):
        if len(input_specs) > 1:
            raise invalid_argument("inputs is a plain value/list, but expecting an object as multiple input tensors "
                                   "required as per tensorinfo_map")
        name, spec = next(iter(input_specs.items()))
        return {name: to_tensor(inputs, spec.dtype, name, budget, may_be_fast)}
    tensors_by_name = {}
    for name, spec in input_specs.items():
        if name not in inputs:
            raise invalid_argument(f"Missing named input: {name} in 'inputs' object.")
        tensors_by_name[name] = to_tensor(inputs[name], spec.dtype, name, budget, may_be_fast)
    return tensors_by_name


def predict_inputs(document: dict, signature, body: bytes, budget: RequestBudget) -> tuple:
    """(format, alias -> ndarray) from a parsed predict request (FillPredictRequestFromJson), each tensor charged
    to the request's budget before it is built."""
    if not signature.inputs:
        raise invalid_argument(f"Failed to get input map for signature: {signature.name or 'DEFAULT'}")
    # true/false in the body may be booleans inside numbers lists, which
    # np.array would silently turn into 1/0: such bodies take the exact walk.
    may_be_fast = b"true" not in body and b"false" not in body
    if "instances" in document:
        if "inputs" in document:
            raise invalid_argument(f"JSON Value: {json_codec.value_to_string(document)} Not formatted correctly "
                                   "expecting only one of 'inputs' or 'instances' keys to exist ")
        return ROW, _rows(document, document["instances"], signature.inputs, may_be_fast, budget)
    if "inputs" in document:
        return COLUMNAR, _columns(document["inputs"], signature.inputs, may_be_fast, budget)
    raise invalid_argument("Missing 'inputs' or 'instances' key")


def _jsonable(name: str, array: np.ndarray):
    """An output ready for json_codec.dumps: strings decoded, or {"b64": ...} for *_bytes names."""
    if array.ndim == 0:
        # A scalar is written as one value, not a list of one (np.ascontiguousarray makes it 1-D).
        return _jsonable(name, array.reshape(1))[0]
    if array.dtype != object:
        return np.ascontiguousarray(array)
    if name.endswith(BYTES_SUFFIX):
        convert = np.vectorize(lambda item: {"b64": base64.b64encode(item).decode("ascii")}, otypes=[object])
    else:
        convert = np.vectorize(lambda item: item.decode("utf-8", "replace"), otypes=[object])
    return convert(array).tolist() if array.size else array.tolist()


def predict_response(outputs: dict, request_format: str) -> bytes:
    """MakeJsonFromTensors: {"predictions": ...} for row requests, {"outputs": ...} for columnar ones."""
    if not outputs:
        raise invalid_argument("Cannot convert empty tensor map to JSON")
    finite = all(array.dtype.kind != "f" or bool(np.isfinite(array).all()) for array in outputs.values())
    if request_format == COLUMNAR:
        values = {name: _jsonable(name, array) for name, array in outputs.items()}
        return json_codec.dumps({"outputs": values if len(values) > 1 else next(iter(values.values()))},
                                finite=finite)
    batch_size = None
    for name, array in outputs.items():
        if array.ndim == 0:
            raise invalid_argument(f"Tensor name: {name} has no shape information ")
        if batch_size is not None and array.shape[0] != batch_size:
            raise invalid_argument(f"Tensor name: {name} has inconsistent batch size: {array.shape[0]} "
                                   f"expecting: {batch_size}")
        batch_size = array.shape[0]
    values = {name: _jsonable(name, array) for name, array in outputs.items()}
    if len(values) == 1:
        return json_codec.dumps({"predictions": next(iter(values.values()))}, finite=finite)
    names = sorted(values)
    rows = [{name: values[name][index] for name in names} for index in range(batch_size)]
    return json_codec.dumps({"predictions": rows}, finite=finite)
