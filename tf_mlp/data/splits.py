"""In-memory splits: what every data source hands to training and evaluation.

Images stay uint8 [N, 28, 28] until the model; labels are int64 [N] class ids.
The data sets of this lesson are small (Fashion-MNIST is 55 MB as uint8), so
they are held resident and fed by index (see tf_mlp.training.pipeline).
"""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass
class Split:
    images: np.ndarray
    """uint8 [N, 28, 28]."""
    labels: np.ndarray
    """int64 [N], class ids in [0, num_classes)."""

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def take(self, indices: np.ndarray) -> "Split":
        return Split(self.images[indices], self.labels[indices])


@dataclasses.dataclass
class DataSplits:
    train: Split
    validation: Split
    test: Split
    class_names: tuple[str, ...]
    name: str
    """Data set name (fashion_mnist, mnist, notmnist, idx)."""
    skipped_files: int = 0
    """Unreadable or zero-byte source images that were skipped (notMNIST archives)."""
    dropped_overlap: dict[str, int] = dataclasses.field(default_factory=dict)
    """Per split: images dropped because an exact duplicate is in training."""

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train), "validation": len(self.validation), "test": len(self.test)}

    def split(self, name: str) -> Split:
        if name not in ("train", "validation", "test"):
            from tf_mlp.errors import ConfigError

            raise ConfigError(f"unknown split {name!r}; choose train, validation or test")
        return getattr(self, name)
