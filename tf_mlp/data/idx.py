"""Read and write MNIST-format IDX files (images and labels), gzipped or not.

The IDX format (yann.lecun.com/exdb/mnist) is a 4-byte magic number, one
big-endian uint32 per dimension, then the raw data. The magic number's third
byte is the data type (0x08 = unsigned byte) and its fourth the number of
dimensions, so 0x00000803 is a uint8 [N, rows, cols] image file and
0x00000801 a uint8 [N] label file. Those are the only two layouts the MNIST
family uses, and the only two this module accepts: anything else is far more
likely a wrong or damaged file than a data set we should guess at.

Every fault raises DataError with one line naming the file and what is wrong.
"""

from __future__ import annotations

import gzip
import os
import pathlib
import struct
import zlib

import numpy as np

from tf_mlp import files
from tf_mlp.contract import IMAGE_SIZE
from tf_mlp.errors import DataError

IMAGES_MAGIC = 0x00000803
LABELS_MAGIC = 0x00000801
_UNSIGNED_BYTE = 0x08
_GZIP_MAGIC = b"\x1f\x8b"
_TYPE_NAMES = {
    0x08: "unsigned byte",
    0x09: "signed byte",
    0x0B: "int16",
    0x0C: "int32",
    0x0D: "float32",
    0x0E: "float64",
}
_EXPECTED_MAGIC = {"images": IMAGES_MAGIC, "labels": LABELS_MAGIC}


def read_idx(path: str | os.PathLike, kind: str | None = None) -> np.ndarray:
    """The array stored in an IDX file: uint8 [N, 28, 28] images or uint8 [N] labels.

    ``kind`` ("images" or "labels") says which of the two the caller expects;
    when None it is guessed from the file name ("...images..." / "...labels...")
    and otherwise either is accepted. Gzip is detected by its magic bytes, not
    by the name, because downloaded files are often renamed or decompressed
    without their suffix changing.
    """
    path = pathlib.Path(path)
    kind = kind or _kind_from_name(path.name)
    if kind not in (None, "images", "labels"):
        raise ValueError(f"kind must be 'images', 'labels' or None, got {kind!r}")
    data = _read_bytes(path)

    if len(data) < 4:
        raise DataError(f"{path}: too short to be an IDX file ({len(data)} bytes)")
    magic = int.from_bytes(data[:4], "big")
    if data[0] != 0 or data[1] != 0:
        raise DataError(f"{path}: not an IDX file (magic number 0x{magic:08X} should start with two zero bytes)")
    data_type, dimensions = data[2], data[3]
    if data_type != _UNSIGNED_BYTE:
        type_name = _TYPE_NAMES.get(data_type, "unknown")
        raise DataError(
            f"{path}: IDX data type 0x{data_type:02X} ({type_name}) is not supported (expected 0x08, unsigned byte)"
        )
    expected_magic = _EXPECTED_MAGIC.get(kind)
    if magic not in (IMAGES_MAGIC, LABELS_MAGIC) or (expected_magic is not None and magic != expected_magic):
        raise DataError(f"{path}: wrong IDX magic number 0x{magic:08X} ({_expectation(kind)})")

    header_size = 4 + 4 * dimensions
    if len(data) < header_size:
        raise DataError(f"{path}: truncated IDX header ({len(data)} bytes, expected {header_size})")
    shape = struct.unpack(f">{dimensions}I", data[4:header_size])
    if dimensions == 3 and shape[1:] != (IMAGE_SIZE, IMAGE_SIZE):
        raise DataError(f"{path}: wrong image size {shape[1]}x{shape[2]} (expected {IMAGE_SIZE}x{IMAGE_SIZE})")

    expected_bytes = int(np.prod(shape, dtype=np.int64))
    actual_bytes = len(data) - header_size
    what = "images" if dimensions == 3 else "labels"
    if actual_bytes < expected_bytes:
        raise DataError(
            f"{path}: truncated: the header promises {shape[0]} {what} ({expected_bytes} bytes) "
            f"but only {actual_bytes} bytes follow"
        )
    if actual_bytes > expected_bytes:
        raise DataError(
            f"{path}: {actual_bytes - expected_bytes} unexpected bytes after the {shape[0]} {what} "
            "the header promises (wrong header or two files joined)"
        )
    # frombuffer gives a read-only view of `data`; copy so callers own a normal array.
    return np.frombuffer(data, dtype=np.uint8, offset=header_size).reshape(shape).copy()


def write_idx(path: str | os.PathLike, array: np.ndarray) -> None:
    """Write uint8 [N, 28, 28] images or [N] labels as an IDX file.

    The file is gzipped when its name ends in ``.gz``, and written to a
    temporary name first so a reader never sees half a file. Integer arrays
    of another dtype (labels are int64 in memory) are accepted when every
    value fits in an unsigned byte.
    """
    path = pathlib.Path(path)
    array = np.asarray(array)
    if array.ndim == 3 and array.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE):
        raise DataError(
            f"{path}: wrong image size {array.shape[1]}x{array.shape[2]} (expected {IMAGE_SIZE}x{IMAGE_SIZE})"
        )
    if array.ndim not in (1, 3):
        raise DataError(
            f"{path}: can only write images [N, {IMAGE_SIZE}, {IMAGE_SIZE}] or labels [N], got shape {array.shape}"
        )
    if array.dtype != np.uint8:
        in_range = array.size == 0 or (array.min() >= 0 and array.max() <= 255)
        if not np.issubdtype(array.dtype, np.integer) or not in_range:
            raise DataError(f"{path}: IDX files hold unsigned bytes; got {array.dtype} values that do not fit")
        array = array.astype(np.uint8)

    magic = IMAGES_MAGIC if array.ndim == 3 else LABELS_MAGIC
    header = magic.to_bytes(4, "big") + b"".join(int(size).to_bytes(4, "big") for size in array.shape)
    payload = header + np.ascontiguousarray(array).tobytes()
    if path.name.endswith(".gz"):
        # mtime=0 keeps the output byte-identical for identical input.
        payload = gzip.compress(payload, compresslevel=6, mtime=0)

    path.parent.mkdir(parents=True, exist_ok=True)
    # A reader never sees a half-written IDX file, even after a crash or a power loss.
    files.write_atomically(path, payload)


def _read_bytes(path: pathlib.Path) -> bytes:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a directory, expected an IDX file") from None
    except PermissionError:
        raise DataError(f"{path}: permission denied") from None
    if data[:2] != _GZIP_MAGIC:
        return data
    try:
        return gzip.decompress(data)
    except (EOFError, OSError, zlib.error) as error:
        # EOFError is what a gzip stream cut short raises.
        raise DataError(f"{path}: corrupt or truncated gzip data ({error})") from None


def _kind_from_name(name: str) -> str | None:
    name = name.lower()
    if "images" in name and "labels" not in name:
        return "images"
    if "labels" in name and "images" not in name:
        return "labels"
    return None


def _expectation(kind: str | None) -> str:
    if kind == "images":
        return f"expected 0x{IMAGES_MAGIC:08X} for images"
    if kind == "labels":
        return f"expected 0x{LABELS_MAGIC:08X} for labels"
    return f"expected 0x{IMAGES_MAGIC:08X} for images or 0x{LABELS_MAGIC:08X} for labels"
