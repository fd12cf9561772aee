"""Tensors between numpy and TensorFlow's TensorProto, as TensorFlow Serving exchanges them.

Requests may carry values in `tensor_content` (what `tf.make_tensor_proto`
writes) or in the typed repeated fields; responses use the typed fields
(`float_val`, `int64_val`, ...), which is what TensorFlow Serving's Predict
returns and what its MNIST example client reads (`outputs['scores'].float_val`).
Parsing follows `Tensor::FromProto`: fewer values than the shape holds are
padded with the last value, none at all means zeros, more is an error. Unlike
there, what a tensor will cost is known first (`declared_bytes`, charged to
the request's budget before `to_numpy` allocates anything), and a padded
tensor may decode to at most PADDED_TENSOR_MAX_BYTES: enough for the splat
`tf.make_tensor_proto(0, shape=[n, 28, 28])` writes, not for a 90-byte
request that asks for gigabytes of zeros.
"""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2

from tf_mlp.server.core.limits import STRING_ELEMENT_BYTES, size_text
from tf_mlp.server.core.status import invalid_argument, shown

NUMPY_MAX_RANK = 64
"""numpy's largest number of dimensions (numpy 2)."""
PADDED_TENSOR_MAX_BYTES = 1 << 20
"""Largest tensor a request may describe with fewer values than its shape holds (the rest repeat the last)."""
_COPY_CHUNK = 1 << 14
"""Typed values are copied this many at a time: each copy holds the GIL ~1 ms, so other threads (the event
loop) run between them, and no Python object is made for more than a chunk at once."""


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


def element_bytes(dtype: int) -> int:
    """What one element of a tensor of this type costs decoded (a string: its overhead, without its bytes);
    types this server does not decode count as the widest, 8."""
    if dtype == types_pb2.DT_STRING:
        return STRING_ELEMENT_BYTES
    return _TYPES[dtype][0].itemsize if dtype in _TYPES else 8


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


def _element_count(proto: tensor_pb2.TensorProto, alias: str) -> int:
    """The number of elements the shape declares; INVALID_ARGUMENT 'tensor parsing error' if it is no shape."""
    if proto.dtype not in _TYPES or proto.tensor_shape.unknown_rank:
        raise invalid_argument(f"tensor parsing error: {shown(alias)}")
    dims = [dim.size for dim in proto.tensor_shape.dim]
    # numpy cannot shape even an empty array beyond NUMPY_MAX_RANK dimensions; TensorFlow could, and would then
    # fail the signature's rank check: INVALID_ARGUMENT either way.
    if any(size < 0 for size in dims) or len(dims) > NUMPY_MAX_RANK:
        raise invalid_argument(f"tensor parsing error: {shown(alias)}")
    return math.prod(dims)


def _checked_value_count(proto: tensor_pb2.TensorProto, alias: str, count: int) -> int:
    """The number of values the proto carries; INVALID_ARGUMENT 'tensor parsing error' if they cannot fill the shape."""
    if proto.tensor_content and proto.dtype != types_pb2.DT_STRING:
        if len(proto.tensor_content) != count * _TYPES[proto.dtype][0].itemsize:
            raise invalid_argument(f"tensor parsing error: {shown(alias)}")
        return count
    values = len(getattr(proto, _TYPES[proto.dtype][1]))
    if values > count:
        raise invalid_argument(f"tensor parsing error: {shown(alias)}")
    return values


def declared_bytes(proto: tensor_pb2.TensorProto, alias: str) -> int:
    """What to_numpy(proto) will allocate, from the dtype, the shape and the values' count, allocating nothing.

    INVALID_ARGUMENT for what to_numpy would refuse, and for a padded tensor
    (fewer values than its shape holds) beyond PADDED_TENSOR_MAX_BYTES.
    Requests are checked with it before to_numpy; a model's own warmup
    records and signature defaults are not.
    """
    count = _element_count(proto, alias)
    values = _checked_value_count(proto, alias, count)
    total = count * element_bytes(proto.dtype)
    if proto.dtype == types_pb2.DT_STRING:
        total += proto.ByteSize()  # the proto's own size bounds the strings' bytes without reading them
    if values < count and total > PADDED_TENSOR_MAX_BYTES:
        raise invalid_argument(
            f"tensor parsing error: {shown(alias)}: its shape holds {count} values but it carries {values}; a tensor "
            f"padded with its last value (or zeros) may hold at most {size_text(PADDED_TENSOR_MAX_BYTES)}, "
            f"this one {size_text(total)}")
    return total


def _copied(values, out: np.ndarray, wire_type=None) -> np.ndarray:
    """out[:len(values)] = values, a chunk at a time (see _COPY_CHUNK).

    wire_type: how the field holds the values (int32 for int_val and
    half_val), cast to out's type as Tensor::FromProto casts (uint8 300 -> 44).
    """
    for start in range(0, len(values), _COPY_CHUNK):
        chunk = values[start:start + _COPY_CHUNK]
        out[start:start + len(chunk)] = chunk if wire_type is None else np.array(chunk, dtype=wire_type)
    return out


def to_numpy(proto: tensor_pb2.TensorProto, alias: str) -> np.ndarray:
    """The ndarray a TensorProto stands for; INVALID_ARGUMENT 'tensor parsing error' if none."""
    count = _element_count(proto, alias)
    _checked_value_count(proto, alias, count)
    dims = [dim.size for dim in proto.tensor_shape.dim]
    numpy_type = _TYPES[proto.dtype][0]
    if proto.tensor_content and proto.dtype != types_pb2.DT_STRING:
        return np.frombuffer(proto.tensor_content, dtype=numpy_type).reshape(dims)
    values = getattr(proto, _TYPES[proto.dtype][1])
    if proto.dtype == types_pb2.DT_STRING:
        flat = _copied(values, np.empty(count, dtype=object))
        flat[len(values):] = values[-1] if values else b""
        return flat.reshape(dims)
    if proto.dtype == types_pb2.DT_HALF:
        # half_val holds the float16 bit patterns, widened to int32.
        flat = _copied(values, np.empty(count, dtype=np.uint16), np.int32).view(np.float16)
    else:
        flat = _copied(values, np.empty(count, dtype=numpy_type), np.int32 if proto.dtype in _INT_VAL_TYPES else None)
    if len(values) < count:
        flat[len(values):] = flat[len(values) - 1] if len(values) else 0
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
