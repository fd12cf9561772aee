"""tf.data pipelines over resident uint8 splits.

The split's arrays are placed in memory once as tensors; each epoch draws a
seeded permutation of indices (a stateless shuffle of [seed, epoch]) and
gathers batches from it. Shuffling indices instead of examples is cheap, it is
the same on every worker and every restart, and it makes resuming mid-epoch
exact: the batches already consumed are skipped by index, not replayed.
"""

from __future__ import annotations

import tensorflow as tf

from tf_mlp.data.splits import Split


class ResidentSplit:
    """A split held as tensors, able to produce epoch and evaluation pipelines."""

    def __init__(self, split: Split):
        # Constants on the host: tf.gather on them is a memcpy per batch.
        with tf.device("/cpu:0"):
            self.images = tf.constant(split.images, dtype=tf.uint8)
            self.labels = tf.constant(split.labels, dtype=tf.int64)
        self.size = len(split)

    def steps_per_epoch(self, batch_size: int) -> int:
        """Training drops the last partial batch, so every step has the global batch size."""
        return self.size // batch_size

    def epoch(self, batch_size: int, seed: int, epoch: int, skip_batches: int = 0) -> tf.data.Dataset:
        """The shuffled batches of one epoch, starting after skip_batches of them."""
        permutation = tf.random.experimental.stateless_shuffle(
            tf.range(self.size, dtype=tf.int64), seed=[seed, epoch]
        )
        batches = tf.data.Dataset.from_tensor_slices(permutation).batch(batch_size, drop_remainder=True)
        return self._gather(batches.skip(skip_batches))

    def in_order(self, batch_size: int) -> tf.data.Dataset:
        """All examples in order, last batch partial: for evaluation and prediction."""
        indices = tf.data.Dataset.range(self.size).batch(batch_size).cache()
        return self._gather(indices)

    def _gather(self, index_batches: tf.data.Dataset) -> tf.data.Dataset:
        images, labels = self.images, self.labels
        return index_batches.map(
            lambda indices: (tf.gather(images, indices), tf.gather(labels, indices)),
            num_parallel_calls=tf.data.AUTOTUNE,
            deterministic=True,
        ).prefetch(tf.data.AUTOTUNE)
