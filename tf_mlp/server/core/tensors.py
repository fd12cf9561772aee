"""Tensors between numpy and TensorFlow's TensorProto, as TensorFlow Serving exchanges them.

Requests may carry values in `tensor_content` (what `tf.make_tensor_proto`
writes) or in the typed repeated fields; responses use the typed fields
(`float_val`, `int64_val`, ...), which is what TensorFlow Serving's Predict
returns and what its MNIST example client reads (`outputs['scores'].float_val`).
Parsing follows `Tensor::FromProto`: fewer values than the shape holds are
padded with the last value, none at all means zeros, more is an error; but a
tensor larger than MAX_ELEMENTS is refused so a tiny request cannot make the
server allocate gigabytes.
"""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2

from tf_mlp.server.core.status import invalid_argument

MAX_ELEMENTS = 1 << 28
"""Largest tensor a request may describe (1 GiB of float32); far beyond any batch of images."""
NUMPY_MAX_RANK = 64
"""numpy's largest number of dimensions (numpy 2)."""


def dtype_name(dtype: int) -> str:
    """DataTypeString: 'float', 'uint8', 'string', ..."""
    if dtype not in types_pb2.DataType.values():
        return f"type{dtype}"
    return types_pb2.DataType.Name(dtype)[len("DT_"):].lower()


# The small integer types keep their values in TensorProto.int_val; every other type in "<DataTypeString>_val".
_INT_VAL_TYPES = (types_pb2.DT_INT32, types_pb2.DT_UINT8, types_pb2.DT_INT16, types_pb2.DT_INT8, types_pb2.DT_UINT16)
_SUPPORTED_TYPES = (*_INT_VAL_TYPES, types_pb2.DT_FLOAT, types_pb2.DT_DOUBLE, types_pb2.DT_HALF, types_pb2.DT_STRING,
                    types_pb2.DT_INT64, types_pb2.DT_BOOL, types_pb2.DT_UINT32, types_pb2.DT_UINT64)
# DataType -> (numpy dtype, TensorProto field holding its values); the numpy dtype from TensorFlow's own map.
_TYPES = {
    dtype: (np.dtype(tf.dtypes.as_dtype(dtype).as_numpy_dtype),
            "int_val" if dtype in _INT_VAL_TYPES else f"{dtype_name(dtype)}_val")
    for dtype in _SUPPORTED_TYPES
}
_BY_NUMPY = {numpy_type: dtype for dtype, (numpy_type, _) in _TYPES.items()}


def numpy_dtype(dtype: int):
    if dtype not in _TYPES:
        raise invalid_argument(f"data type {dtype_name(dtype)} is not supported by this server")
    return _TYPES[dtype][0]


def dtype_of(array: np.ndarray) -> int:
    if array.dtype.kind in "OSU":
        return types_pb2.DT_STRING
    return _BY_NUMPY[array.dtype]


def shape_string(shape) -> str:
    """[?,28,28], unknown sizes as ?, the way PartialTensorShape::DebugString prints them."""
    return "[" + ",".join("?" if size is None else str(size) for size in shape) + "]"


def shape_of(shape_proto: tensor_shape_pb2.TensorShapeProto) -> tuple | None:
    """Dims of a TensorShapeProto with unknown sizes as None; None for an unknown rank."""
    if shape_proto.unknown_rank:
        return None
    return tuple(None if dim.size < 0 else dim.size for dim in shape_proto.dim)


def to_numpy(proto: tensor_pb2.TensorProto, alias: str) -> np.ndarray:
    """The ndarray a request's TensorProto stands for; INVALID_ARGUMENT 'tensor parsing error' if none."""
    parse_error = invalid_argument(f"tensor parsing error: {alias}")
    if proto.dtype not in _TYPES or proto.tensor_shape.unknown_rank:
        raise parse_error
    dims = [dim.size for dim in proto.tensor_shape.dim]
    if any(size < 0 for size in dims):
        raise parse_error
    count = math.prod(dims)
    if count > MAX_ELEMENTS or len(dims) > NUMPY_MAX_RANK or any(size > MAX_ELEMENTS for size in dims):
        # Beyond the last two numpy cannot shape even an empty array (reshape raised ValueError, a 500);
        # TensorFlow could, and would then fail the signature's shape check: INVALID_ARGUMENT either way.
        raise parse_error
    numpy_type = numpy_dtype(proto.dtype)
    if proto.tensor_content and proto.dtype != types_pb2.DT_STRING:
        if len(proto.tensor_content) != count * numpy_type.itemsize:
            raise parse_error
        return np.frombuffer(proto.tensor_content, dtype=numpy_type).reshape(dims)
    field = _TYPES[proto.dtype][1]
    values = getattr(proto, field)
    if len(values) > count:
        raise parse_error
    if proto.dtype == types_pb2.DT_STRING:
        flat = np.empty(count, dtype=object)
        flat[: len(values)] = list(values)
        if 0 < len(values) < count:
            flat[len(values):] = values[-1]
        elif not values:
            flat[:] = b""
        return flat.reshape(dims)
    if proto.dtype == types_pb2.DT_HALF:
        # half_val holds the float16 bit patterns, widened to int32.
        flat = np.array(values, dtype=np.uint16).view(np.float16)
    else:
        flat = np.array(values, dtype=numpy_type)
    if len(flat) < count:
        padding = flat[-1] if len(flat) else numpy_type.type(0)
        flat = np.concatenate([flat, np.full(count - len(flat), padding, dtype=numpy_type)])
    return flat.reshape(dims)


def to_proto(array: np.ndarray) -> tensor_pb2.TensorProto:
    """A TensorProto with the values in the typed field (Tensor::AsProtoField)."""
    dtype = dtype_of(array)
    proto = tensor_pb2.TensorProto(dtype=dtype)
    for size in array.shape:
        proto.tensor_shape.dim.add(size=size)
    field = getattr(proto, _TYPES[dtype][1])
    flat = array.reshape(-1)
    if dtype == types_pb2.DT_STRING:
        field.extend(value if isinstance(value, bytes) else str(value).encode() for value in flat)
    elif dtype == types_pb2.DT_HALF:
        field.extend(flat.view(np.uint16).tolist())
    else:
        field.extend(flat.tolist())
    return proto
