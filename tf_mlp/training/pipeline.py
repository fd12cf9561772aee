"""Resident uint8 splits: the training data path, and tf.data pipelines for evaluation.

A split's arrays are placed in host memory once, as tensors. Training draws no
batches through tf.data: each epoch has a seeded permutation of the example
indices (a stateless shuffle of [seed, epoch]), and the train function slices
batch k of it and gathers those rows itself, inside the graph (see
tf_mlp/training/steps.py). Shuffling indices instead of examples is cheap, it is the
same on every worker and every restart, and it makes resuming mid-epoch exact:
batch k of an epoch is a function of (seed, epoch, k) alone, so a resumed run
starts at batch k with nothing to skip or replay.
"""

from __future__ import annotations

import tensorflow as tf

from tf_mlp.data.splits import Split

# Separates the augmentation seeds of consecutive epochs (more batches than any epoch has).
_BATCHES_PER_EPOCH_BOUND = 1_000_003


class ResidentSplit:
    """A split held as tensors: seeded epoch permutations, batch gathers and evaluation pipelines."""

    def __init__(self, split: Split):
        # Constants on the host: gathering a batch from them is a memcpy.
        with tf.device("/cpu:0"):
            self.images = tf.constant(split.images, dtype=tf.uint8)
            self.labels = tf.constant(split.labels, dtype=tf.int64)
        self.size = len(split)

    def steps_per_epoch(self, batch_size: int) -> int:
        """Training drops the last partial batch, so every step has the global batch size."""
        return self.size // batch_size

    def permutation(self, seed: int, epoch: int) -> tf.Tensor:
        """The epoch's order of example indices: the same for a given (seed, epoch) on every run and worker."""
        with tf.device(self.images.device):
            return tf.random.experimental.stateless_shuffle(tf.range(self.size, dtype=tf.int64), seed=[seed, epoch])

    def gather(self, indices: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """(uint8 images, int64 labels) of the given examples, gathered where the data lives."""
        # Explicit placement: under a multi-GPU strategy the gather would otherwise
        # follow the replica onto its GPU and pull the whole array across.
        with tf.device(self.images.device):
            return tf.gather(self.images, indices), tf.gather(self.labels, indices)

    def in_order(self, batch_size: int) -> tf.data.Dataset:
        """All examples in order, last batch partial: for evaluation and prediction."""
        images, labels = self.images, self.labels
        return tf.data.Dataset.range(self.size).batch(batch_size).map(
            lambda indices: (tf.gather(images, indices), tf.gather(labels, indices)),
            num_parallel_calls=tf.data.AUTOTUNE,
            deterministic=True,
        ).prefetch(tf.data.AUTOTUNE)


def augmentation_seed(seed: int, epoch, batch_number) -> tf.Tensor:
    """The augmentation seed of one global batch: a function of (seed, epoch, batch number) only."""
    epoch, batch_number = tf.cast(epoch, tf.int64), tf.cast(batch_number, tf.int64)
    return tf.stack([tf.constant(seed, tf.int64), epoch * _BATCHES_PER_EPOCH_BOUND + batch_number])


def augment(images: tf.Tensor, seed, flip: bool, shift: int, *, offset=0, total=None) -> tf.Tensor:
    """Random left-right mirror and translation of a uint8 [B, 28, 28] batch (stateless, seeded).

    images may be rows offset..offset+B of a global batch of `total` rows (a
    replica's or worker's part): the random draws are made for the whole
    global batch and sliced, so every row is augmented the same way however
    many replicas share the batch.
    """
    seed = tf.cast(tf.stack(seed), tf.int64)
    batch = tf.shape(images)[0]
    total = batch if total is None else total
    if flip:
        mirror = tf.random.stateless_uniform([total], seed=seed)[offset:offset + batch] < 0.5
        images = tf.where(mirror[:, None, None], tf.reverse(images, axis=[2]), images)
    if shift:
        offsets = tf.random.stateless_uniform([total, 2], seed=seed + 1, minval=-shift, maxval=shift + 1,
                                              dtype=tf.int32)
        offsets = tf.cast(offsets[offset:offset + batch], tf.float32)
        ones, zeros = tf.ones([batch]), tf.zeros([batch])
        # Projective transform rows [a0 a1 a2 b0 b1 b2 c0 c1]: output (x, y) reads input (x - dx, y - dy).
        transforms = tf.stack([ones, zeros, -offsets[:, 0], zeros, ones, -offsets[:, 1], zeros, zeros], axis=1)
        images = tf.raw_ops.ImageProjectiveTransformV3(
            images=images[..., None], transforms=transforms, output_shape=tf.shape(images)[1:3],
            fill_value=0.0, interpolation="NEAREST", fill_mode="CONSTANT",
        )[..., 0]
    return images
