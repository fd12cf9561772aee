"""The train step and the eval step, separate from the loop that drives them.

The train step records the forward pass on a GradientTape, takes gradients
(the chain rule, derived by TensorFlow from the graph), applies them, and
returns named sums (StepSums) the loop turns into loss and accuracy. It is
written once for every placement: under a tf.distribute strategy each replica computes its
share of the global batch, the loss is averaged over the *global* batch
(tf.nn.compute_average_loss) and the L2 penalty divided among replicas
(tf.nn.scale_regularization_loss), so summing the replicas' gradients gives
exactly the single-device gradient.
"""

from __future__ import annotations

import typing

import keras
import tensorflow as tf

from tf_mlp.config import TrainConfig
from tf_mlp.training import optimizers
from tf_mlp.training.pipeline import ResidentSplit, augment, augmentation_seed


class StepSums(typing.NamedTuple):
    """What one call of the train function returns: sums over its steps, each over the whole global batch."""

    loss_sum: typing.Any
    """The data loss (cross-entropy) summed over the examples."""
    correct: typing.Any
    """Examples the model classified correctly (before the step's update)."""
    count: typing.Any
    """Examples trained on."""
    regularization: typing.Any
    """The L2 penalty summed over the steps: one value per step, not per example."""

    def numpy(self) -> StepSums:
        """The same sums as Python floats."""
        return StepSums(*(float(value) for value in self))


def make_learning_rate(config: TrainConfig):
    """A constant rate, or lr * decay_rate ** (step / decay_steps)."""
    if config.decay_rate == 1.0:
        return config.learning_rate
    return keras.optimizers.schedules.ExponentialDecay(
        config.learning_rate, decay_steps=config.decay_steps, decay_rate=config.decay_rate
    )


def make_optimizer(config: TrainConfig) -> keras.optimizers.Optimizer:
    return optimizers.build(config, make_learning_rate(config))


def current_learning_rate(optimizer: keras.optimizers.Optimizer) -> float:
    inner = getattr(optimizer, "inner_optimizer", optimizer)
    return float(keras.ops.convert_to_numpy(inner.learning_rate))


def make_train_function(
    model, optimizer, strategy: tf.distribute.Strategy, data: ResidentSplit, global_batch_size: int, *,
    jit_compile: bool, seed: int = 0, label_smoothing: float = 0.0, flip: bool = False, shift: int = 0,
):
    """train(permutation, epoch, first_batch, num_steps) -> StepSums over those steps.

    One call runs num_steps steps, batches first_batch, first_batch + 1, ...
    of the epoch whose example order is `permutation` (ResidentSplit.permutation);
    the sums cover all of them. Everything a step needs is already in memory,
    so the loop is one TensorFlow while loop with no iterator and no Python
    on the per-step path: each step slices its batch's indices from the
    permutation and gathers the rows from the resident arrays. Under a
    strategy every replica takes its contiguous part of the global batch (by
    its global replica id, so across workers too), which is exactly what a
    single device would see split in order.
    """
    part = global_batch_size // strategy.num_replicas_in_sync
    augmenting = flip or bool(shift)

    def learn(images, labels):
        with tf.GradientTape() as tape:
            logits = model(images, training=True)
            if label_smoothing:
                targets = tf.one_hot(labels, tf.shape(logits)[-1])
                per_example_loss = keras.losses.categorical_crossentropy(
                    targets, logits, from_logits=True, label_smoothing=label_smoothing
                )
            else:
                per_example_loss = keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True)
            loss = tf.nn.compute_average_loss(per_example_loss, global_batch_size=global_batch_size)
            regularization = tf.add_n(model.losses) if model.losses else tf.constant(0.0)
            loss += tf.nn.scale_regularization_loss(regularization)
            scaled_loss = optimizer.scale_loss(loss)
        gradients = tape.gradient(scaled_loss, model.trainable_variables)
        optimizer.apply(gradients, model.trainable_variables)
        correct = tf.reduce_sum(tf.cast(tf.equal(tf.argmax(logits, axis=-1), labels), tf.float32))
        sums = StepSums(
            loss_sum=tf.reduce_sum(per_example_loss),
            correct=correct,
            count=tf.cast(tf.shape(labels)[0], tf.float32),
            # The same on every replica; divided so the SUM reduce counts it once.
            regularization=regularization / strategy.num_replicas_in_sync,
        )
        # One vector, in StepSums' field order: the replicas' sums are reduced
        # in one all-reduce per step, not one per field.
        return tf.stack(list(sums))

    if jit_compile:
        # XLA compiles the arithmetic; the gather stays with the host-resident data.
        learn = tf.function(learn, jit_compile=True)

    def replica_step(batch_indices, epoch, batch_number):
        offset = tf.distribute.get_replica_context().replica_id_in_sync_group * part
        images, labels = data.gather(batch_indices[offset:offset + part])
        if augmenting:
            images = augment(images, augmentation_seed(seed, epoch, batch_number), flip, shift,
                             offset=offset, total=global_batch_size)
        return learn(images, labels)

    @tf.function
    def train(permutation, epoch, first_batch, num_steps):
        totals = tf.zeros([len(StepSums._fields)], tf.float32)
        for step in tf.range(num_steps):
            batch_number = first_batch + step
            batch_indices = permutation[batch_number * global_batch_size:(batch_number + 1) * global_batch_size]
            per_replica = strategy.run(replica_step, args=(batch_indices, epoch, batch_number))
            totals += strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)
        # Named from here on; split on the host, where the loop reads them once per call.
        with tf.device("/cpu:0"):
            return StepSums(*tf.unstack(totals))

    return train


def make_eval_function(model):
    """evaluate(images, labels) -> (data-loss sum, correct, logits) for one batch."""

    @tf.function
    def evaluate(images, labels):
        logits = model(images, training=False)
        per_example_loss = keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True)
        correct = tf.reduce_sum(tf.cast(tf.equal(tf.argmax(logits, axis=-1), labels), tf.float32))
        return tf.reduce_sum(per_example_loss), correct, logits

    return evaluate
