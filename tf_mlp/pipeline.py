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

    def epoch(
        self, batch_size: int, seed: int, epoch: int, skip_batches: int = 0, *,
        flip: bool = False, shift: int = 0, shard: tuple[int, int] | None = None,
    ) -> tf.data.Dataset:
        """The shuffled (and optionally augmented) batches of one epoch, starting after skip_batches of them.

        With shard=(index, count), each batch is this shard's contiguous
        1/count slice of the global batch of batch_size (a worker's part).
        """
        permutation = tf.random.experimental.stateless_shuffle(
            tf.range(self.size, dtype=tf.int64), seed=[seed, epoch]
        )
        batches = tf.data.Dataset.from_tensor_slices(permutation).batch(batch_size, drop_remainder=True)
        if shard is not None:
            index, count = shard
            part = batch_size // count
            batches = batches.map(lambda indices: indices[index * part:(index + 1) * part])
        dataset = self._gather(batches.skip(skip_batches), prefetch=not (flip or shift))
        if not (flip or shift):
            return dataset
        # Augmentation randomness is keyed on (seed, epoch, batch number), so a
        # resumed run augments the remaining batches exactly as before.
        numbered = tf.data.Dataset.zip(tf.data.Dataset.range(skip_batches, self.size), dataset)
        return numbered.map(
            lambda number, batch: (augment(batch[0], [seed, epoch * 1_000_003 + number], flip, shift), batch[1]),
            num_parallel_calls=tf.data.AUTOTUNE,
            deterministic=True,
        ).prefetch(tf.data.AUTOTUNE)

    def in_order(self, batch_size: int) -> tf.data.Dataset:
        """All examples in order, last batch partial: for evaluation and prediction."""
        indices = tf.data.Dataset.range(self.size).batch(batch_size).cache()
        return self._gather(indices)

    def _gather(self, index_batches: tf.data.Dataset, prefetch: bool = True) -> tf.data.Dataset:
        images, labels = self.images, self.labels
        dataset = index_batches.map(
            lambda indices: (tf.gather(images, indices), tf.gather(labels, indices)),
            num_parallel_calls=tf.data.AUTOTUNE,
            deterministic=True,
        )
        return dataset.prefetch(tf.data.AUTOTUNE) if prefetch else dataset


def augment(images: tf.Tensor, seed, flip: bool, shift: int) -> tf.Tensor:
    """Random left-right mirror and translation of a uint8 [B, 28, 28] batch (stateless, seeded)."""
    seed = tf.cast(tf.stack(seed), tf.int64)
    batch = tf.shape(images)[0]
    if flip:
        mirror = tf.random.stateless_uniform([batch], seed=seed) < 0.5
        images = tf.where(mirror[:, None, None], tf.reverse(images, axis=[2]), images)
    if shift:
        offsets = tf.random.stateless_uniform([batch, 2], seed=seed + 1, minval=-shift, maxval=shift + 1, dtype=tf.int32)
        offsets = tf.cast(offsets, tf.float32)
        ones, zeros = tf.ones([batch]), tf.zeros([batch])
        # Projective transform rows [a0 a1 a2 b0 b1 b2 c0 c1]: output (x, y) reads input (x - dx, y - dy).
        transforms = tf.stack([ones, zeros, -offsets[:, 0], zeros, ones, -offsets[:, 1], zeros, zeros], axis=1)
        images = tf.raw_ops.ImageProjectiveTransformV3(
            images=images[..., None], transforms=transforms, output_shape=tf.shape(images)[1:3],
            fill_value=0.0, interpolation="NEAREST", fill_mode="CONSTANT",
        )[..., 0]
    return images
