"""Tiny data sets written to temporary directories for the data-layer tests.

A few dozen random 28x28 images are enough to exercise every path of the
loaders; labels cycle through the ten classes so stratification has something
to stratify.
"""

from __future__ import annotations

import io
import pathlib
import tarfile

import numpy as np

from tests.conftest import png_bytes
from tf_mlp.data import idx

SHARED_SAMPLE = pathlib.Path(__file__).resolve().parents[1].parent / "shared/data/notmnist-sample"
LETTERS = "ABCDEFGHIJ"


def make_images(count: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Distinct random images uint8 [count, 28, 28] and labels 0..9 cycling."""
    generator = np.random.default_rng(seed)
    images = generator.integers(0, 256, size=(count, 28, 28), dtype=np.uint8)
    labels = np.arange(count, dtype=np.uint8) % 10
    return images, labels


def write_idx_pair(
    directory: pathlib.Path, prefix: str, images: np.ndarray, labels: np.ndarray, suffix: str = ".gz"
) -> None:
    """Write ``<prefix>images-idx3-ubyte<suffix>`` and the matching labels file."""
    directory.mkdir(parents=True, exist_ok=True)
    idx.write_idx(directory / f"{prefix}images-idx3-ubyte{suffix}", images)
    idx.write_idx(directory / f"{prefix}labels-idx1-ubyte{suffix}", labels)


def make_idx_dir(
    directory: pathlib.Path, train: int = 40, test: int = 20, seed: int = 0
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """A Fashion-MNIST-style directory with train-* and t10k-* files."""
    arrays = {"train": make_images(train, seed), "test": make_images(test, seed + 1)}
    write_idx_pair(directory, "train-", *arrays["train"])
    write_idx_pair(directory, "t10k-", *arrays["test"])
    return arrays


def corrupt_png() -> bytes:
    """A PNG signature and header followed by garbage: Pillow cannot decode it."""
    good = png_bytes(np.zeros((28, 28), dtype=np.uint8))
    return good[:33] + b"\x00garbage, not a zlib stream" * 4


def notmnist_members(images: np.ndarray, labels: np.ndarray, top: str, bad: bool = True) -> dict[str, bytes]:
    """Archive member name -> bytes: one PNG per image in ``top/<Letter>/``,
    plus (when ``bad``) a corrupt and a zero-byte PNG, as the real archives have."""
    members = {
        f"{top}/{LETTERS[label]}/image{index:04d}.png": png_bytes(image)
        for index, (image, label) in enumerate(zip(images, labels))
    }
    if bad:
        members[f"{top}/A/corrupt.png"] = corrupt_png()
        members[f"{top}/B/empty.png"] = b""
    return members


def write_tar(path: pathlib.Path, members: dict[str, bytes]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))


def write_folder(directory: pathlib.Path, members: dict[str, bytes]) -> None:
    for name, data in members.items():
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def sorted_pairs(images: np.ndarray, labels: np.ndarray) -> list[tuple[int, bytes]]:
    """Order-free view of a data set, for comparing two layouts of the same images."""
    return sorted((int(label), image.tobytes()) for image, label in zip(images, labels))
