"""Exact-duplicate images between and within splits.

notMNIST in particular holds many identical images (the same glyph rendered
from near-identical fonts), so a random split puts copies of some training
images into validation and test; a model that memorises them looks better than
it is. The course asks how large that overlap is; ``overlap_report`` answers
it and ``overlap_mask`` lets the loader drop the copies (``drop_overlap``).

"Exact" means identical pixel bytes. Each image is reduced to a 128-bit
BLAKE2b digest of its bytes, which makes the check a set lookup and keeps the
memory small; a collision between different images is not a practical worry.
"""

from __future__ import annotations

import hashlib

import numpy as np

from tf_mlp.data.splits import DataSplits


def image_digests(images: np.ndarray) -> list[bytes]:
    """One digest per image of a uint8 [N, ...] array."""
    # An explicit row length: reshape(0, -1) is ambiguous and numpy refuses it.
    flat = np.ascontiguousarray(images).reshape(len(images), int(np.prod(images.shape[1:])))
    return [hashlib.blake2b(row.tobytes(), digest_size=16).digest() for row in flat]


def overlap_mask(train_images: np.ndarray, other_images: np.ndarray) -> np.ndarray:
    """bool [len(other_images)]: True where the image has an exact copy in ``train_images``."""
    train = set(image_digests(train_images))
    return np.fromiter((digest in train for digest in image_digests(other_images)), dtype=bool, count=len(other_images))


def overlap_report(splits: DataSplits) -> dict:
    """How many validation/test images have an exact duplicate in train, and
    how many images repeat within each split.

    Keys: ``validation_in_train``, ``test_in_train``, ``test_in_validation``
    (counts of images of the first split with a copy in the second),
    ``within`` (split -> repeated images) and ``sizes`` (split -> images),
    so fractions can be derived without the splits at hand.
    """
    train = set(image_digests(splits.train.images))
    validation_digests = image_digests(splits.validation.images)
    test_digests = image_digests(splits.test.images)
    validation = set(validation_digests)
    return {
        "validation_in_train": sum(digest in train for digest in validation_digests),
        "test_in_train": sum(digest in train for digest in test_digests),
        "test_in_validation": sum(digest in validation for digest in test_digests),
        "within": {
            "train": len(splits.train) - len(train),
            "validation": len(validation_digests) - len(validation),
            "test": len(test_digests) - len(set(test_digests)),
        },
        "sizes": splits.sizes(),
    }
