"""Tiny, learnable, deterministic image data for fast tests.

Class k lights up a bright 7x7 block at position k of a 4x4 grid (positions
0-9), on top of random noise, so a linear model learns it in a few steps.
"""

import numpy as np

from tf_mlp.data.splits import DataSplits, Split


def make_split(size: int, seed: int) -> Split:
    random = np.random.default_rng(seed)
    labels = random.integers(0, 10, size=size).astype(np.int64)
    images = random.integers(0, 80, size=(size, 28, 28)).astype(np.uint8)
    for index, label in enumerate(labels):
        row, column = divmod(int(label), 4)
        images[index, row * 7:(row + 1) * 7, column * 7:(column + 1) * 7] = 255
    return Split(images, labels)


def make_splits(train: int = 512, validation: int = 128, test: int = 128, seed: int = 0) -> DataSplits:
    return DataSplits(
        train=make_split(train, seed),
        validation=make_split(validation, seed + 1),
        test=make_split(test, seed + 2),
        class_names=tuple(str(index) for index in range(10)),
        name="synthetic",
    )
