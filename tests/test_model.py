import numpy as np
import pytest
import tensorflow as tf

from tf_mlp import config as config_module
from tf_mlp import model as model_module
from tf_mlp.config import ModelConfig


@pytest.mark.parametrize(
    "hidden_units, expected",
    [((), 7850), ((1024,), 814090), ((1024, 512, 256), 1_462_538), ((16,), 785 * 16 + 17 * 10)],
)
def test_parameter_count_follows_the_lesson_and_matches_keras(hidden_units, expected):
    config = ModelConfig(hidden_units=hidden_units)
    assert model_module.parameter_count(config) == expected
    assert model_module.build_model(config).count_params() == expected


def test_model_takes_raw_uint8_pixels_and_returns_logits():
    model = model_module.build_model(ModelConfig(hidden_units=(8,)))
    images = np.random.default_rng(0).integers(0, 256, size=(5, 28, 28)).astype(np.uint8)
    logits = model(images)
    assert model.input.dtype == "uint8"
    assert logits.shape == (5, 10) and logits.dtype == tf.float32
    # Scaling happens inside: black and white images differ by exactly the first layer's response to 1.0 pixels.
    assert not np.allclose(model(np.zeros((1, 28, 28), np.uint8)), model(np.full((1, 28, 28), 255, np.uint8)))


def test_dropout_is_active_only_in_training():
    model = model_module.build_model(ModelConfig(hidden_units=(64,), dropout_rate=0.5))
    images = np.full((4, 28, 28), 200, np.uint8)
    np.testing.assert_array_equal(model(images, training=False), model(images, training=False))
    assert not np.allclose(model(images, training=True), model(images, training=False))


def test_l2_adds_a_penalty_on_kernels_only():
    plain = model_module.build_model(ModelConfig(hidden_units=(8,)))
    penalised = model_module.build_model(ModelConfig(hidden_units=(8,), l2=0.01))
    assert plain.losses == []
    kernels = [layer.kernel for layer in penalised.layers if hasattr(layer, "kernel")]
    expected = sum(0.01 * float(tf.reduce_sum(tf.square(kernel))) for kernel in kernels)
    assert float(tf.add_n(penalised.losses)) == pytest.approx(expected, rel=1e-5)


def test_same_seed_same_initial_weights():
    first = model_module.build_model(ModelConfig(hidden_units=(8,)), seed=3)
    second = model_module.build_model(ModelConfig(hidden_units=(8,)), seed=3)
    for a, b in zip(first.variables, second.variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_training_memory_estimate_counts_optimizer_slots():
    config = config_module.preset("mlp").model
    sgd = model_module.training_memory_bytes(config, 128, "sgd")
    adam = model_module.training_memory_bytes(config, 128, "adam")
    assert sgd["weights"] == 814090 * 4
    assert adam["optimizer_slots"] == 2 * 814090 * 4 and sgd["optimizer_slots"] == 0
    assert adam["total"] == sum(value for key, value in adam.items() if key != "total")


def test_input_dropout_drops_pixels_only_in_training_and_adds_no_parameters():
    config = ModelConfig(hidden_units=(16,), input_dropout_rate=0.5)
    model = model_module.build_model(config)
    assert model.count_params() == model_module.parameter_count(config)
    images = np.full((8, 28, 28), 200, np.uint8)
    np.testing.assert_array_equal(model(images, training=False), model(images, training=False))
    assert not np.allclose(model(images, training=True), model(images, training=False))


def test_flop_count_matches_a_hand_computation_for_two_layer_shapes():
    # 784-1024-10: forward 2*(784*1024 + 1024*10); backward twice that but the first layer's input gradient.
    mlp = config_module.ModelConfig(hidden_units=(1024,))
    forward = 2 * (784 * 1024 + 1024 * 10)
    assert model_module.training_flops_per_example(mlp) == 3 * forward - 2 * 784 * 1024 == 3_272_704
    # Logistic 784-10: one layer, so backward is only the weight gradient, equal to the forward.
    logistic = config_module.ModelConfig(hidden_units=())
    (layer,) = model_module.flops_by_layer(logistic)
    assert (layer.forward, layer.weight_gradient, layer.input_gradient) == (2 * 7840, 2 * 7840, 0)
