"""The lesson's model: raw uint8 pixels -> scale -> [Dense+ReLU (+dropout)]* -> logits.

With no hidden layer this is the logistic classifier (W 784xK, b K). Each
hidden layer of H units inserted between two matrices turns it into a neural
network with (N+1)*H + (H+1)*K parameters. The model outputs logits; softmax
is applied by the loss (from_logits=True) in training and only at serving time
in the exported signatures.
"""

from __future__ import annotations

import dataclasses

import keras

from tf_mlp import contract
from tf_mlp.config import ModelConfig


def build_model(config: ModelConfig, *, seed: int = 0, mixed_precision: bool = False) -> keras.Model:
    """A Keras functional model taking uint8 [batch, 28, 28] and giving float32 logits.

    Scaling to [0, 1] lives inside the model so the exported SavedModel takes
    raw pixels and clients never repeat the training preprocessing.
    """
    # float16 compute with float32 variables; the logits stay float32 so the
    # softmax and the loss are computed at full precision.
    hidden_dtype = "mixed_float16" if mixed_precision else "float32"
    regularizer = keras.regularizers.L2(config.l2) if config.l2 > 0 else None
    images = keras.Input(shape=(contract.IMAGE_SIZE, contract.IMAGE_SIZE), dtype="uint8", name="images")
    x = keras.layers.Rescaling(1.0 / 255.0, dtype=hidden_dtype, name="scale")(images)
    x = keras.layers.Flatten(name="flatten")(x)
    if config.input_dropout_rate > 0:
        x = keras.layers.Dropout(config.input_dropout_rate, seed=seed + 2000, name="input_dropout")(x)
    for index, width in enumerate(config.hidden_units):
        x = keras.layers.Dense(
            width,
            activation="relu",
            kernel_initializer=keras.initializers.HeNormal(seed=seed + index),
            kernel_regularizer=regularizer,
            dtype=hidden_dtype,
            name=f"hidden_{index + 1}",
        )(x)
        if config.dropout_rate > 0:
            x = keras.layers.Dropout(config.dropout_rate, seed=seed + 1000 + index, name=f"dropout_{index + 1}")(x)
    logits = keras.layers.Dense(
        config.num_classes,
        kernel_initializer=keras.initializers.GlorotUniform(seed=seed + 999),
        kernel_regularizer=regularizer,
        dtype="float32",
        name="logits",
    )(x)
    return keras.Model(images, logits, name="tf_mlp")


def layer_widths(config: ModelConfig) -> list[int]:
    """N, H1, ..., K: the widths of the lesson's stack of matrices."""
    return [contract.NUM_PIXELS, *config.hidden_units, config.num_classes]


def parameter_count(config: ModelConfig) -> int:
    """Parameters by the lesson's formula: sum over matrices of (inputs + 1) * outputs."""
    widths = layer_widths(config)
    return sum((fan_in + 1) * fan_out for fan_in, fan_out in zip(widths[:-1], widths[1:]))


def parameters_by_layer(config: ModelConfig) -> list[tuple[str, int, int, int]]:
    """(name, inputs, outputs, parameters) for each Dense layer, in order."""
    widths = layer_widths(config)
    names = [f"hidden_{index + 1}" for index in range(len(config.hidden_units))] + ["logits"]
    return [
        (name, fan_in, fan_out, (fan_in + 1) * fan_out)
        for name, fan_in, fan_out in zip(names, widths[:-1], widths[1:])
    ]


@dataclasses.dataclass(frozen=True)
class LayerFlops:
    """Matrix-multiply FLOPs of one Dense layer per example (2 per multiply-add).

    Only the products count: bias adds, ReLUs and the softmax are a few
    operations per unit against fan_in per unit for the product.
    """

    name: str
    fan_in: int
    fan_out: int
    forward: int
    weight_gradient: int
    input_gradient: int

    @property
    def backward(self) -> int:
        return self.weight_gradient + self.input_gradient


def flops_by_layer(config: ModelConfig) -> list[LayerFlops]:
    """Forward and backward FLOPs per example for each Dense layer, in order.

    Forward: x @ W, 2 * fan_in * fan_out. Backward: the weight gradient
    x^T @ dy costs the same again, and the input gradient dy @ W^T once more,
    except for the first layer, whose input (the pixels) nothing upstream
    consumes, so backprop never computes it. Hence backward is about twice the
    forward for a deep stack, and exactly equal to it for the logistic model.
    """
    layers = []
    for index, (name, fan_in, fan_out, _) in enumerate(parameters_by_layer(config)):
        product = 2 * fan_in * fan_out
        layers.append(LayerFlops(name, fan_in, fan_out, product, product, 0 if index == 0 else product))
    return layers


def training_flops_per_example(config: ModelConfig) -> int:
    """Forward plus backward FLOPs of one training example (the optimizer update not counted)."""
    return sum(layer.forward + layer.backward for layer in flops_by_layer(config))


def training_memory_bytes(config: ModelConfig, batch_size: int, optimizer: str) -> dict[str, int]:
    """Estimate float32 training memory: weights, gradients, optimizer slots, activations.

    Slots: none for plain SGD, one (velocity) for momentum, two (m, v) for
    Adam. Activations are what the backward pass keeps: every layer's output
    for the whole batch (twice for ReLU layers, pre- and post-activation, and
    once more for a dropout mask), which is why the backward pass costs about
    as much memory again as the forward pass.
    """
    bytes_per_float = 4
    parameters = parameter_count(config)
    slots = {"sgd": 0, "momentum": 1, "adam": 2}[optimizer]
    per_example = contract.NUM_PIXELS + config.num_classes * 2  # input + logits + softmax
    for width in config.hidden_units:
        per_example += width * (3 if config.dropout_rate > 0 else 2)
    estimate = {
        "weights": parameters * bytes_per_float,
        "gradients": parameters * bytes_per_float,
        "optimizer_slots": slots * parameters * bytes_per_float,
        "activations": per_example * batch_size * bytes_per_float,
    }
    estimate["total"] = sum(estimate.values())
    return estimate
