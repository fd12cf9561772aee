"""A TFDS builder for any data set stored as MNIST-format IDX files.

MNIST, Fashion-MNIST, KMNIST and the IDX conversion of notMNIST all come as
the same four files; this builder reads them from a local directory (the TFDS
manual dir), so none of them needs a download. Recognised layouts:

- ``train-images-idx3-ubyte[.gz]``, ``train-labels-idx1-ubyte[.gz]``,
  ``t10k-images-idx3-ubyte[.gz]``, ``t10k-labels-idx1-ubyte[.gz]``:
  splits ``train`` and ``test`` (a lone train pair gives only ``train``);
- ``images-idx3-ubyte[.gz]`` + ``labels-idx1-ubyte[.gz]`` (as in the notMNIST
  sample): only ``train``, the loader holds a test set out of it.
"""

from __future__ import annotations

import pathlib

import numpy as np
import tensorflow_datasets as tfds

from tf_mlp.contract import NUM_CLASSES
from tf_mlp.data import idx, local_builder
from tf_mlp.errors import DataError

# split -> prefix of its file names; "" is the single-pair layout.
_SPLIT_PREFIXES = {"train": "train-", "test": "t10k-"}
_SINGLE_PREFIX = ""


def find_idx_files(directory: pathlib.Path) -> dict[str, tuple[pathlib.Path, pathlib.Path]]:
    """Map split name -> (images file, labels file) found in ``directory``.

    Empty when the directory holds no recognised IDX pair. A half pair (images
    without labels or the reverse) is an error, since it is surely a mistake.
    """
    pairs = {}
    for split, prefix in [*_SPLIT_PREFIXES.items(), ("train", _SINGLE_PREFIX)]:
        if split in pairs:
            continue  # the standard names win over the single-pair names
        images = _find(directory, f"{prefix}images-idx3-ubyte")
        labels = _find(directory, f"{prefix}labels-idx1-ubyte")
        if images and labels:
            pairs[split] = (images, labels)
        elif images or labels:
            present = images or labels
            missing = f"{prefix}labels-idx1-ubyte" if images else f"{prefix}images-idx3-ubyte"
            raise DataError(f"{present}: found no matching {missing}[.gz] in {directory}")
    if "test" in pairs and "train" not in pairs:
        raise DataError(f"{directory}: has t10k-* IDX files but no train-* files")
    return pairs


def read_pair(images_path: pathlib.Path, labels_path: pathlib.Path) -> tuple[np.ndarray, np.ndarray]:
    """Images and labels of one IDX pair, checked against each other."""
    images = idx.read_idx(images_path, kind="images")
    labels = idx.read_idx(labels_path, kind="labels")
    if len(images) != len(labels):
        raise DataError(f"{images_path} holds {len(images)} images but {labels_path} holds {len(labels)} labels")
    if len(images) == 0:  # TFDS refuses to write an empty split, with a less helpful message
        raise DataError(f"{images_path}: holds no images")
    if labels.max() >= NUM_CLASSES:
        raise DataError(f"{labels_path}: label {int(labels.max())} is out of range (expected 0..{NUM_CLASSES - 1})")
    return images, labels


class IdxImages(local_builder.LocalSourceBuilder, skip_registration=True):
    """28x28 uint8 images with labels 0-9, read from local MNIST-format IDX files."""

    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        "Put train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, "
        "t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz (or a single "
        "images-idx3-ubyte.gz + labels-idx1-ubyte.gz pair) in the manual directory."
    )

    @classmethod
    def source_files(cls, directory: pathlib.Path) -> list[pathlib.Path]:
        return sorted(path for pair in find_idx_files(directory).values() for path in pair)

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        directory = pathlib.Path(dl_manager.manual_dir)
        pairs = find_idx_files(directory)
        if not pairs:
            raise DataError(f"{directory}: no IDX files (expected train-images-idx3-ubyte.gz and friends)")
        # Read and check everything before TFDS starts writing, so a bad file
        # fails fast with our message and leaves no partial preparation.
        arrays = {split: read_pair(*paths) for split, paths in pairs.items()}
        self._record_source(directory)
        return {split: self._generate_examples(*arrays[split]) for split in pairs}

    def _generate_examples(self, images: np.ndarray, labels: np.ndarray):
        for index in range(len(labels)):
            yield index, {"image": images[index], "label": int(labels[index])}


def _find(directory: pathlib.Path, stem: str) -> pathlib.Path | None:
    for name in (f"{stem}.gz", stem):
        if (directory / name).is_file():
            return directory / name
    return None
