"""Images to classify or verify on, from a pixel file or a data set's split.

Batch inference and export verification read their images here; neither
needs the training pipeline. A pixel file is IDX, .npy or .npz holding
uint8 [N, 28, 28] (or [N, 784]); a data set split goes through the data
catalog's loader (tf_mlp.data), imported only when one is asked for.
"""

from __future__ import annotations

import dataclasses
import pathlib
import typing

import numpy as np

from tf_mlp import contract
from tf_mlp.errors import DataError

if typing.TYPE_CHECKING:
    from tf_mlp.config import DataConfig

SPLITS = ("train", "validation", "test")
_IMAGE_KEYS = ("images", "x", "x_test", "x_train")
_LABEL_KEYS = ("labels", "y", "y_test", "y_train")


def read_pixel_file(path: pathlib.Path, labels: str | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """(images, labels or None) of an IDX, .npy or .npz file, as stored (check_images shapes them).

    Labels: ``labels`` if given, else an .npz's labels array, else a sibling
    file (t10k-images-idx3-ubyte.gz -> t10k-labels-idx1-ubyte.gz) when it exists.
    """
    path = pathlib.Path(path)
    if path.suffix == ".npz":
        if labels:
            raise DataError("--labels does not apply to .npz inputs; store the labels in the archive as 'labels'")
        return _npz_arrays(path)
    images = _load_array(path, "images")
    label_path = pathlib.Path(labels) if labels else _sibling_labels(path)
    return images, _load_array(label_path, "labels") if label_path else None


def check_images(description: str, images: np.ndarray) -> np.ndarray:
    """images as contiguous uint8 [N, 28, 28], or DataError saying what is wrong with them."""
    size = contract.IMAGE_SIZE
    if images.ndim == 2 and images.shape[1] == contract.NUM_PIXELS:
        images = images.reshape(-1, size, size)
    if images.ndim != 3 or images.shape[1:] != (size, size):
        raise DataError(f"{description}: expected images of shape [N, {size}, {size}] or [N, {contract.NUM_PIXELS}], "
                        f"got {list(images.shape)}")
    if images.dtype != np.uint8:
        if images.dtype.kind not in "iu" or (images.size and (images.min() < 0 or images.max() > 255)):
            raise DataError(f"{description}: expected uint8 pixels in [0, 255], got {images.dtype}; "
                            "scale float images to 0-255 and save them as uint8")
        images = images.astype(np.uint8)
    return np.ascontiguousarray(images)


@dataclasses.dataclass
class SplitImages:
    images: np.ndarray
    labels: np.ndarray
    class_names: tuple[str, ...]


def read_split(config: DataConfig, split: str) -> SplitImages:
    """One split of the data set ``config`` names, split as training splits it."""
    from tf_mlp.data import load_splits

    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}; choose {', '.join(SPLITS[:-1])} or {SPLITS[-1]}")
    splits = load_splits(config)
    chosen = splits.split(split)
    return SplitImages(chosen.images, chosen.labels, splits.class_names)


def _load_array(path: pathlib.Path, kind: str) -> np.ndarray:
    if path.suffix == ".npy":
        try:
            return np.load(path, allow_pickle=False)  # never unpickle what a file says
        except (OSError, ValueError) as error:
            raise DataError(f"{path}: not a readable .npy array ({error})") from None
    from tf_mlp.data import idx

    return idx.read_idx(path, kind)


def _sibling_labels(images_path: pathlib.Path) -> pathlib.Path | None:
    """t10k-images-idx3-ubyte.gz -> t10k-labels-idx1-ubyte.gz (and x-images.npy -> x-labels.npy) if it exists."""
    name = images_path.name
    for old, new in (("images-idx3", "labels-idx1"), ("images", "labels")):
        if old in name:
            candidate = images_path.with_name(name.replace(old, new))
            if candidate.is_file():
                return candidate
    return None


def _npz_arrays(path: pathlib.Path):
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
    except (OSError, ValueError) as error:
        raise DataError(f"{path}: not a readable .npz archive ({error})") from None
    images = next((arrays[key] for key in _IMAGE_KEYS if key in arrays), None)
    if images is None:
        candidates = [array for array in arrays.values() if array.ndim >= 2]
        if len(candidates) != 1:
            raise DataError(f"{path}: cannot tell which array holds the images (keys: {', '.join(arrays)}); "
                            f"name it one of {', '.join(_IMAGE_KEYS)}")
        images = candidates[0]
    labels = next((arrays[key] for key in _LABEL_KEYS if key in arrays), None)
    if labels is None:
        candidates = [array for array in arrays.values() if array.ndim == 1]
        labels = candidates[0] if len(candidates) == 1 else None
    return images, labels
