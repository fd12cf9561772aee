"""The train step and the eval step, separate from the loop that drives them.

The train step records the forward pass on a GradientTape, takes gradients
(the chain rule, derived by TensorFlow from the graph), applies them, and
returns sums the loop turns into loss and accuracy. It is written once for
every placement: under a tf.distribute strategy each replica computes its
share of the global batch, the loss is averaged over the *global* batch
(tf.nn.compute_average_loss) and the L2 penalty divided among replicas
(tf.nn.scale_regularization_loss), so summing the replicas' gradients gives
exactly the single-device gradient.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from tf_mlp.config import TrainConfig


def make_learning_rate(config: TrainConfig):
    """A constant rate, or lr * decay_rate ** (step / decay_steps)."""
    if config.decay_rate == 1.0:
        return config.learning_rate
    return keras.optimizers.schedules.ExponentialDecay(
        config.learning_rate, decay_steps=config.decay_steps, decay_rate=config.decay_rate
    )


def make_optimizer(config: TrainConfig) -> keras.optimizers.Optimizer:
    from tf_mlp import optimizers

    return optimizers.build(config, make_learning_rate(config))


def current_learning_rate(optimizer: keras.optimizers.Optimizer) -> float:
    inner = getattr(optimizer, "inner_optimizer", optimizer)
    return float(keras.ops.convert_to_numpy(inner.learning_rate))


def make_train_function(
    model, optimizer, strategy: tf.distribute.Strategy, global_batch_size: int, *, jit_compile: bool, label_smoothing: float = 0.0
):
    """train(iterator, num_steps) -> [data-loss sum, correct, count, regularization loss].

    Several steps run inside one tf.function call so that the Python loop is
    not on the per-step path; the sums cover all steps of the call.
    """

    def replica_step(images, labels):
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
        count = tf.cast(tf.shape(labels)[0], tf.float32)
        # The regularization term is the same on every replica; divide so the SUM reduce gives it once.
        return tf.stack([
            tf.reduce_sum(per_example_loss),
            correct,
            count,
            regularization / strategy.num_replicas_in_sync,
        ])

    if jit_compile:
        replica_step = tf.function(replica_step, jit_compile=True)

    @tf.function
    def train(iterator, num_steps):
        totals = tf.zeros([4], tf.float32)
        for _ in tf.range(num_steps):
            per_replica = strategy.run(replica_step, args=next(iterator))
            totals += strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)
        return totals

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
