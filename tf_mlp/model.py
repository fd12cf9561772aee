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


def forward_backward_ratio(config: ModelConfig) -> float:
    """Backward over forward FLOPs of the whole network: 1 for the logistic model, towards 2 for a deep stack."""
    layers = flops_by_layer(config)
    return sum(layer.backward for layer in layers) / sum(layer.forward for layer in layers)


FLOAT32_BYTES = 4
MASK_BYTES = 1  # a dropout keep-mask is a bool tensor, one byte per element


@dataclasses.dataclass(frozen=True)
class LayerActivations:
    """Bytes per example that one Dense layer's part of the network keeps for the backward pass.

    The split follows what TensorFlow's gradient functions read, so a tensor
    two of them share is counted once:
    ``weight_input`` the layer's input x, which the weight gradient x^T @ dy
    needs (the scaled pixels for the first layer; for later layers the
    previous ReLU's output, already counted there, unless dropout made a new
    tensor); ``relu_output`` the ReLU's output, which ReluGrad reads (and,
    without dropout, the next layer's x); ``dropout`` the bool keep-mask
    (SelectV2's gradient) and the dropped-out output (the next layer's x);
    ``loss`` the logits layer's share: sparse softmax cross-entropy computes
    its gradient, softmax minus one-hot, in the forward pass and keeps it.
    """

    name: str
    weight_input: int
    relu_output: int
    dropout: int
    loss: int

    @property
    def total(self) -> int:
        return self.weight_input + self.relu_output + self.dropout + self.loss


def activations_by_layer(config: ModelConfig) -> list[LayerActivations]:
    """What the backward pass keeps per example, float32, for each Dense layer.

    Checked against the tensors TensorFlow's tape actually keeps in
    tests/test_model.py. Nothing is kept for the pixels' scaling or for input
    dropout: no gradient flows into the pixels, so the tape does not record
    them; only the first layer's input (after input dropout) is kept. Biases
    keep nothing (their gradient is a sum of dy). With mixed precision the
    hidden activations would be float16, half of this.
    """
    layers = []
    hidden = config.hidden_units
    for index, (name, fan_in, fan_out, _) in enumerate(parameters_by_layer(config)):
        is_hidden = index < len(hidden)
        layers.append(LayerActivations(
            name,
            weight_input=fan_in * FLOAT32_BYTES if index == 0 else 0,
            relu_output=fan_out * FLOAT32_BYTES if is_hidden else 0,
            dropout=fan_out * (MASK_BYTES + FLOAT32_BYTES) if is_hidden and config.dropout_rate > 0 else 0,
            loss=0 if is_hidden else fan_out * FLOAT32_BYTES,
        ))
    return layers


def optimizer_slots_per_parameter(optimizer) -> int:
    """Slot variables the project's Keras optimizer keeps per parameter (SGD 0, momentum 1, Adam 2).

    ``optimizer`` is a name or a TrainConfig (whose momentum decides whether
    momentum SGD keeps a velocity). Counted on the optimizer itself, built by
    tf_mlp/training/optimizers.py (as the train step's is) over a probe variable, so
    the estimate follows the optimizer the training loop really uses.
    """
    from tf_mlp.config import TrainConfig
    from tf_mlp.errors import ConfigError
    from tf_mlp.training import optimizers

    train_config = TrainConfig(optimizer=optimizer) if isinstance(optimizer, str) else optimizer
    if train_config.optimizer not in optimizers.NAMES:
        raise ConfigError(f"optimizer must be one of {', '.join(optimizers.NAMES)}, got {train_config.optimizer!r}")
    probe_shape = (3, 7)  # a shape no scalar bookkeeping variable (iterations, learning rate) has
    probe = keras.Variable(keras.ops.zeros(probe_shape), name="probe")
    instance = optimizers.build(train_config, train_config.learning_rate)
    instance.build([probe])
    return sum(1 for variable in instance.variables if tuple(variable.shape) == probe_shape)


def training_memory_bytes(config: ModelConfig, batch_size: int, optimizer) -> dict[str, int]:
    """Float32 training memory: weights, gradients, optimizer slots, activations kept for the backward pass.

    Weights and their gradients are one copy of the parameters each; slots
    are optimizer_slots_per_parameter(optimizer) copies (optimizer: a name
    or a TrainConfig); activations are activations_by_layer for the whole
    batch. Left out: the transient
    per-layer gradients dy (two layers' worth at a time), the input batch
    itself and TensorFlow's allocator rounding.
    """
    parameters = parameter_count(config) * FLOAT32_BYTES
    estimate = {
        "weights": parameters,
        "gradients": parameters,
        "optimizer_slots": optimizer_slots_per_parameter(optimizer) * parameters,
        "activations": sum(layer.total for layer in activations_by_layer(config)) * batch_size,
    }
    estimate["total"] = sum(estimate.values())
    return estimate
