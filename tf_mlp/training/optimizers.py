"""Every optimizer a run can train with, in one table: name, help text, builder.

Adding an optimizer is an entry here (and its test): the --optimizer choices
and help, the config check, the train step's optimizer (steps.make_optimizer
delegates here) and `tf-mlp info`'s slot-variable count (model.py counts
them on the optimizer this module builds) all read this table. Keras is
imported inside the builders, so that the command line can list the
choices without TensorFlow.
"""

from __future__ import annotations

import dataclasses
import typing

if typing.TYPE_CHECKING:
    import keras

    from tf_mlp.config import TrainConfig


@dataclasses.dataclass(frozen=True)
class OptimizerKind:
    name: str
    description: str
    build: typing.Callable[[typing.Any, "TrainConfig"], "keras.optimizers.Optimizer"]
    """(learning rate or schedule, TrainConfig) -> a new Keras optimizer."""


def _sgd(learning_rate, config):
    import keras

    return keras.optimizers.SGD(learning_rate)


def _momentum(learning_rate, config):
    import keras

    return keras.optimizers.SGD(learning_rate, momentum=config.momentum)


def _adam(learning_rate, config):
    import keras

    return keras.optimizers.Adam(learning_rate)


def _adamw(learning_rate, config):
    import keras

    # Keras's default decoupled weight decay (0.004 of each weight per step, times the learning rate);
    # unlike --l2 it is not part of the loss, so Adam's scaling does not dilute it.
    return keras.optimizers.AdamW(learning_rate)


KINDS: dict[str, OptimizerKind] = {kind.name: kind for kind in (
    OptimizerKind("sgd", "plain minibatch SGD", _sgd),
    OptimizerKind("momentum", "SGD with --momentum", _momentum),
    OptimizerKind("adam", "Adam", _adam),
    OptimizerKind("adamw", "Adam with decoupled weight decay", _adamw),
)}

NAMES = tuple(KINDS)
"""Names accepted as TrainConfig.optimizer and by --optimizer."""

HELP = ", ".join(NAMES[:-1]) + " or " + NAMES[-1] + "."
"""--optimizer's help text."""


def build(config: TrainConfig, learning_rate) -> keras.optimizers.Optimizer:
    """config.optimizer at ``learning_rate`` (a number or a schedule), loss-scaled under mixed precision."""
    import keras

    optimizer = KINDS[config.optimizer].build(learning_rate, config)
    if config.mixed_precision:
        # float16 gradients underflow without scaling; the wrapper scales the
        # loss up, unscales the gradients and skips steps that overflow.
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer
