"""The optimizer table (tf_mlp/training/optimizers.py): what each name builds, and what the rest of tf-mlp reads
from it."""

import keras
import pytest

from tf_mlp import config, model
from tf_mlp.errors import ConfigError
from tf_mlp.training import optimizers, steps

SLOTS = {"sgd": 0, "momentum": 1, "adam": 2, "adamw": 2}
"""Slot variables per parameter that each Keras optimizer keeps."""


def test_every_optimizer_is_an_option_and_a_valid_config():
    assert config.OPTIMIZERS == optimizers.NAMES == tuple(SLOTS)
    for name in optimizers.NAMES:
        assert name in optimizers.HELP
        assert config.Config.from_dict({"train": {"optimizer": name}}).train.optimizer == name


@pytest.mark.parametrize("name", list(SLOTS))
def test_the_train_step_gets_the_optimizer_the_table_builds(name):
    train_config = config.TrainConfig(optimizer=name, learning_rate=0.1)
    built = steps.make_optimizer(train_config)
    assert type(built) is type(optimizers.build(train_config, 0.1))
    assert float(keras.ops.convert_to_numpy(built.learning_rate)) == pytest.approx(0.1)
    assert model.optimizer_slots_per_parameter(name) == SLOTS[name]


def test_mixed_precision_wraps_the_optimizer_in_loss_scaling():
    built = optimizers.build(config.TrainConfig(optimizer="sgd", mixed_precision=True), 0.1)
    assert isinstance(built, keras.optimizers.LossScaleOptimizer)


def test_optimizer_slots_follow_the_keras_optimizer():
    # Keras's SGD keeps no velocity when momentum is 0, and the count follows it.
    assert model.optimizer_slots_per_parameter(config.TrainConfig(optimizer="momentum", momentum=0.0)) == 0
    with pytest.raises(ConfigError, match="optimizer must be one of"):
        model.optimizer_slots_per_parameter("rmsprop")


def test_adamw_decays_weights_that_get_no_gradient():
    weights = keras.Variable(keras.ops.ones((2, 2)))
    optimizer = optimizers.build(config.TrainConfig(optimizer="adamw"), 0.1)
    optimizer.apply([keras.ops.zeros((2, 2))], [weights])
    assert keras.ops.convert_to_numpy(weights) == pytest.approx(1 - 0.1 * 0.004)
