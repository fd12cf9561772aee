import keras
import numpy as np
import pytest
import tensorflow as tf

from tf_mlp import config, model
from tf_mlp.config import ModelConfig


@pytest.mark.parametrize(
    "hidden_units, expected",
    [((), 7850), ((1024,), 814090), ((1024, 512, 256), 1_462_538), ((16,), 785 * 16 + 17 * 10)],
)
def test_parameter_count_follows_the_lesson_and_matches_keras(hidden_units, expected):
    model_config = ModelConfig(hidden_units=hidden_units)
    assert model.parameter_count(model_config) == expected
    assert model.build_model(model_config).count_params() == expected


def test_model_takes_raw_uint8_pixels_and_returns_logits():
    network = model.build_model(ModelConfig(hidden_units=(8,)))
    images = np.random.default_rng(0).integers(0, 256, size=(5, 28, 28)).astype(np.uint8)
    logits = network(images)
    assert network.input.dtype == "uint8"
    assert logits.shape == (5, 10) and logits.dtype == tf.float32
    # Scaling happens inside: black and white images differ by exactly the first layer's response to 1.0 pixels.
    assert not np.allclose(network(np.zeros((1, 28, 28), np.uint8)), network(np.full((1, 28, 28), 255, np.uint8)))


def test_dropout_is_active_only_in_training():
    network = model.build_model(ModelConfig(hidden_units=(64,), dropout_rate=0.5))
    images = np.full((4, 28, 28), 200, np.uint8)
    np.testing.assert_array_equal(network(images, training=False), network(images, training=False))
    assert not np.allclose(network(images, training=True), network(images, training=False))


def test_l2_adds_a_penalty_on_kernels_only():
    plain = model.build_model(ModelConfig(hidden_units=(8,)))
    penalised = model.build_model(ModelConfig(hidden_units=(8,), l2=0.01))
    assert plain.losses == []
    kernels = [layer.kernel for layer in penalised.layers if hasattr(layer, "kernel")]
    expected = sum(0.01 * float(tf.reduce_sum(tf.square(kernel))) for kernel in kernels)
    assert float(tf.add_n(penalised.losses)) == pytest.approx(expected, rel=1e-5)


def test_same_seed_same_initial_weights():
    first = model.build_model(ModelConfig(hidden_units=(8,)), seed=3)
    second = model.build_model(ModelConfig(hidden_units=(8,)), seed=3)
    for a, b in zip(first.variables, second.variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_training_memory_estimate_counts_optimizer_slots():
    model_config = config.preset("mlp").model
    sgd = model.training_memory_bytes(model_config, 128, "sgd")
    momentum = model.training_memory_bytes(model_config, 128, "momentum")
    adam = model.training_memory_bytes(model_config, 128, "adam")
    assert sgd["weights"] == sgd["gradients"] == 814090 * 4
    assert (sgd["optimizer_slots"], momentum["optimizer_slots"], adam["optimizer_slots"]) == \
        (0, 814090 * 4, 2 * 814090 * 4)
    assert adam["total"] == sum(value for key, value in adam.items() if key != "total")


def test_activation_memory_matches_a_hand_computation_for_two_layer_shapes():
    # 784-1024-10 at batch 128: the pixels (784 floats), the ReLU output (1024), the loss's softmax - onehot (10).
    mlp = ModelConfig(hidden_units=(1024,))
    assert model.training_memory_bytes(mlp, 128, "sgd")["activations"] == 128 * 4 * (784 + 1024 + 10) == 930_816
    # 784-1024-512-256-10 with dropout: each hidden unit also keeps a 1-byte mask and the 4-byte dropped-out output.
    deep = ModelConfig(hidden_units=(1024, 512, 256), dropout_rate=0.3)
    layers = model.activations_by_layer(deep)
    assert [layer.total for layer in layers] == [784 * 4 + 1024 * 9, 512 * 9, 256 * 9, 10 * 4]
    assert model.training_memory_bytes(deep, 1024, "adam")["activations"] == 1024 * (784 * 4 + 1792 * 9 + 40)


@pytest.mark.parametrize(
    "model_config",
    [ModelConfig(hidden_units=()), ModelConfig(hidden_units=(16,)),
     ModelConfig(hidden_units=(16, 8), dropout_rate=0.5, input_dropout_rate=0.2, l2=0.01)],
    ids=["logistic", "one_hidden", "two_hidden_dropout_l2"],
)
def test_activation_estimate_is_what_the_gradient_tape_keeps(model_config):
    """The analytic count against the tensors TensorFlow's tape really keeps for the backward pass.

    A tf.function called under a GradientTape runs a rewritten forward
    function whose extra outputs are exactly what the backward function
    reads. No public API lists them, so this reads the concrete function's
    private cache; if TensorFlow renames it this test fails and the estimate
    must be checked again, which is the point.
    """
    batch = 5  # no layer is 5 wide, so batch-shaped tensors are the activations and [fan_in, fan_out] ones the kernels
    network = model.build_model(model_config)
    images = tf.constant(np.random.default_rng(0).integers(0, 256, (batch, 28, 28)), tf.uint8)
    labels = tf.constant(np.arange(batch), tf.int64)

    @tf.function
    def loss_function(images, labels):
        logits = network(images, training=True)
        loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True))
        return loss + tf.add_n(network.losses) if network.losses else loss

    with tf.GradientTape():
        loss_function(images, labels)
    (functions,) = loss_function.get_concrete_function(images, labels)._first_order_tape_functions.values()
    kept = [tensor for tensor in functions._forward_graph.outputs[1:] if tensor.shape.rank and tensor.shape[0] == batch]
    kept_bytes = sum(tensor.shape.num_elements() * tensor.dtype.size for tensor in kept)
    assert kept_bytes == batch * sum(layer.total for layer in model.activations_by_layer(model_config))


def test_input_dropout_drops_pixels_only_in_training_and_adds_no_parameters():
    model_config = ModelConfig(hidden_units=(16,), input_dropout_rate=0.5)
    network = model.build_model(model_config)
    assert network.count_params() == model.parameter_count(model_config)
    images = np.full((8, 28, 28), 200, np.uint8)
    np.testing.assert_array_equal(network(images, training=False), network(images, training=False))
    assert not np.allclose(network(images, training=True), network(images, training=False))


def test_flop_count_matches_a_hand_computation_for_two_layer_shapes():
    # 784-1024-10: forward 2*(784*1024 + 1024*10); backward twice that but the first layer's input gradient.
    mlp = config.ModelConfig(hidden_units=(1024,))
    forward = 2 * (784 * 1024 + 1024 * 10)
    assert model.training_flops_per_example(mlp) == 3 * forward - 2 * 784 * 1024 == 3_272_704
    # Logistic 784-10: one layer, so backward is only the weight gradient, equal to the forward.
    logistic = config.ModelConfig(hidden_units=())
    (layer,) = model.flops_by_layer(logistic)
    assert (layer.forward, layer.weight_gradient, layer.input_gradient) == (2 * 7840, 2 * 7840, 0)
