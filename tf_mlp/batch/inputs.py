"""Batch inputs: what to classify, with ids and true labels where the source knows them.

    open_inputs("t10k-images-idx3-ubyte.gz")    IDX images; labels from the sibling t10k-labels-idx1-ubyte.gz
    open_inputs("images.idx", labels="y.idx")    an IDX (or .npy) file of labels given explicitly
    open_inputs("x.npy") / open_inputs("d.npz")  uint8 [N, 28, 28] (or [N, 784]); .npz keys images/x, labels/y
    open_inputs("photos/")                       PNG/JPEG/GIF/BMP/WebP files under a directory, sorted by path;
                                                 the first subfolder of each file names its true class
    open_inputs("tfds:fashion_mnist/test")       a split of one of the project's data sets (tf_mlp.image_files)

Pixel arrays are sent as they are (over REST as 784 raw bytes per image to
predict_raw, over gRPC as one uint8 tensor to serving_default); image files are sent as
their bytes (predict_encoded) and read only when their chunk is sent, so a
file that cannot be read fails alone, as an error row.

Class folders: a folder name matches a class name when the two are equal
after lower-casing and writing every run of characters other than letters
and digits as one "_" (`folder_key`). A class name can hold a "/" that no
folder name can ("T-shirt/top"), so "T-shirt_top", "t-shirt top" and
"T_SHIRT_TOP" all name it; "ankle_boot" names "Ankle boot". Files in a
folder that matches no class keep the folder name as label_name, have no
label id, and are counted as unmatched (left out of accuracy).

Polarity (tf_mlp.client.polarity) is applied as inputs are read (default
`as-is` for image files and pixel arrays alike).
"""

from __future__ import annotations

import dataclasses
import hashlib
import pathlib
import re

import numpy as np

from tf_mlp import image_files
from tf_mlp.client.base import ENCODED, PIXELS
from tf_mlp.client.polarity import (
    AS_IS,
    DEFAULT_FOR_ENCODED,
    DEFAULT_FOR_PIXELS,
    POLARITIES,
    apply_to_encoded,
    apply_to_pixels,
)
from tf_mlp.errors import DataError

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".gif", ".bmp", ".webp"})
TFDS_PREFIX = "tfds:"
_IMAGE_KEYS = ("images", "x", "x_test", "x_train")
_LABEL_KEYS = ("labels", "y", "y_test", "y_train")
_SEPARATORS = re.compile(r"[\W_]+")
"""Runs of characters other than letters and digits (\\W is everything but [letters digits _], plus _)."""


def folder_key(name: str) -> str:
    """The form in which folder names and class names are compared: "T-shirt/top" and "t_shirt top" -> "t_shirt_top"."""
    return _SEPARATORS.sub("_", name.casefold()).strip("_")


@dataclasses.dataclass
class InputSource:
    description: str
    kind: str
    """PIXELS (uint8 arrays) or ENCODED (image files)."""
    ids: list
    """Per input: its index as text for arrays, its path relative to the directory for files."""
    label_ids: list
    """Per input: the true class id, or None."""
    label_names: list
    """Per input: the true class name, or None."""
    fingerprint: str
    """Identifies these inputs, so that --resume refuses a journal written for others."""
    images: np.ndarray | None = None
    paths: list | None = None
    polarity: str = AS_IS
    """How images are turned around before sending (set with set_polarity)."""

    def __len__(self) -> int:
        return len(self.ids)

    def set_polarity(self, polarity: str | None) -> None:
        """Use `polarity` (None: the default for this kind of input); part of the fingerprint, so --resume
        never mixes rows made under two polarities."""
        if polarity is None:
            encoded = self.kind == ENCODED
            polarity = DEFAULT_FOR_ENCODED if encoded else DEFAULT_FOR_PIXELS
        if polarity not in POLARITIES:
            raise DataError(f"unknown polarity {polarity!r}; choose one of {', '.join(POLARITIES)}")
        if polarity != self.polarity:
            self.fingerprint = hashlib.sha256(f"{self.fingerprint} polarity={polarity}".encode()).hexdigest()
        self.polarity = polarity

    def read(self, indices):
        """(readable indices, payload for them, {index: error message}) for a chunk of input indices."""
        if self.kind == PIXELS:
            return list(indices), apply_to_pixels(self.images[np.asarray(indices)], self.polarity), {}
        readable, payload, failures = [], [], {}
        for index in indices:
            try:
                payload.append(apply_to_encoded(self.paths[index].read_bytes(), self.polarity))
                readable.append(index)
            except OSError as error:
                failures[index] = f"cannot read {self.ids[index]}: {error.strerror or error}"
        return readable, payload, failures

    def name_labels(self, class_names) -> None:
        """Fill in true class names from ids and ids from names, using the model's class names.

        Names (class folders) match by folder_key; a matched input's label_name becomes the class name.
        """
        if not class_names:
            return
        keys = {}
        for class_id, name in enumerate(class_names):
            keys.setdefault(folder_key(name), []).append(class_id)
        exact = {name: class_id for class_id, name in enumerate(class_names)}
        for index, (class_id, name) in enumerate(zip(self.label_ids, self.label_names)):
            if name is None and class_id is not None and 0 <= class_id < len(class_names):
                self.label_names[index] = class_names[class_id]
            elif class_id is None and name is not None:
                matches = [exact[name]] if name in exact else keys.get(folder_key(name), [])
                if len(matches) == 1:  # two classes with one key: no folder can tell them apart
                    self.label_ids[index] = matches[0]
                    self.label_names[index] = class_names[matches[0]]

    def unmatched_folders(self) -> dict:
        """{folder name: files} of class folders that name no class (after name_labels)."""
        counts = {}
        for class_id, name in zip(self.label_ids, self.label_names):
            if class_id is None and name is not None:
                counts[name] = counts.get(name, 0) + 1
        return counts


def open_inputs(spec: str, labels: str | None = None, source_dir: str | None = None,
                data_dir: str | None = None) -> InputSource:
    """The InputSource `spec` names (see the module docstring); DataError when it cannot be used."""
    if spec.startswith(TFDS_PREFIX):
        if labels:
            raise DataError("--labels does not apply to tfds: inputs, which carry their labels")
        return _tfds_inputs(spec[len(TFDS_PREFIX):], source_dir, data_dir)
    path = pathlib.Path(spec)
    if not path.exists():
        raise DataError(f"{spec}: no such file or directory (inputs are IDX, .npy, .npz, a directory of images, "
                        "or tfds:NAME/SPLIT)")
    if path.is_dir():
        if labels:
            raise DataError("--labels does not apply to a directory of images; its subfolders name the classes")
        return _directory_inputs(path)
    images, label_array = image_files.read_pixel_file(path, labels)
    return _array_inputs(f"{path}", images, label_array)


def _array_inputs(description: str, images: np.ndarray, labels: np.ndarray | None) -> InputSource:
    images = image_files.check_images(description, images)
    count = images.shape[0]
    label_ids = [None] * count
    if labels is not None:
        if labels.ndim != 1 or labels.shape[0] != count or labels.dtype.kind not in "iu":
            raise DataError(f"{description}: labels must be {count} integers, got {labels.dtype} {list(labels.shape)}")
        label_ids = [int(label) for label in labels]
    digest = hashlib.sha256(images.tobytes())
    digest.update(repr(label_ids).encode())
    return InputSource(description, PIXELS, [str(index) for index in range(count)], label_ids, [None] * count,
                       digest.hexdigest(), images=images)


def _directory_inputs(root: pathlib.Path) -> InputSource:
    paths = sorted(
        (path for path in root.rglob("*")
         if path.suffix.lower() in IMAGE_SUFFIXES and not any(part.startswith(".") for part in
                                                              path.relative_to(root).parts)),
        key=lambda path: path.relative_to(root).as_posix())
    paths = [path for path in paths if not path.is_dir()]
    if not paths:
        raise DataError(f"{root}: no image files ({', '.join(sorted(IMAGE_SUFFIXES))}) in it or its subfolders")
    ids = [path.relative_to(root).as_posix() for path in paths]
    # A file in a subfolder belongs to the class that subfolder names; files at the top have no label.
    label_names = [identifier.split("/", 1)[0] if "/" in identifier else None for identifier in ids]
    digest = hashlib.sha256("\n".join(ids).encode())
    return InputSource(f"image files in {root}", ENCODED, ids, [None] * len(ids), label_names, digest.hexdigest(),
                       paths=paths)


def _tfds_inputs(name_and_split: str, source_dir: str | None, data_dir: str | None) -> InputSource:
    from tf_mlp.config import DataConfig
    from tf_mlp.data.catalog import DATA_SETS

    name, _, split = name_and_split.partition("/")
    split = split or "test"
    if name not in DATA_SETS:
        raise DataError(f"tfds:{name_and_split}: unknown data set {name!r}; choose one of {', '.join(DATA_SETS)}")
    if split not in image_files.SPLITS:
        raise DataError(f"tfds:{name_and_split}: unknown split {split!r}; choose train, validation or test")
    config = DataConfig(name=name, source_dir=source_dir, data_dir=data_dir)
    if split == "test":
        # The test split never depends on how much of train is held out for validation, and a small data
        # set may have fewer training images than the default validation size.
        config = dataclasses.replace(config, validation_size=0)
    chosen = image_files.read_split(config, split)
    source = _array_inputs(f"tfds:{name}/{split}", chosen.images, chosen.labels)
    source.label_names = [chosen.class_names[label] if 0 <= label < len(chosen.class_names) else None
                          for label in source.label_ids]
    return source
