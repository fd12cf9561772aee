"""Where training runs: one device, all local devices, or several workers.

The same train step serves all three; only the strategy differs. To exercise
the multi-device path without GPUs, split the CPU into logical devices first
(`split_cpu(2)`) and use the mirrored strategy: tests do exactly that.
"""

from __future__ import annotations

import tensorflow as tf

from tf_mlp.errors import ConfigError


def split_cpu(count: int) -> None:
    """Expose the physical CPU as `count` logical devices (before TensorFlow initialises them)."""
    cpu = tf.config.list_physical_devices("CPU")[0]
    try:
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * count)
    except RuntimeError as error:
        raise ConfigError(f"cannot split the CPU into {count} devices once TensorFlow has started ({error})") from None


def make_strategy(name: str) -> tf.distribute.Strategy:
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        gpus = tf.config.list_logical_devices("GPU")
        # With GPUs, mirror across them; without, across the logical CPUs
        # (one unless split_cpu was called), which is how the path is tested.
        devices = [device.name for device in gpus] or [device.name for device in tf.config.list_logical_devices("CPU")]
        return tf.distribute.MirroredStrategy(devices)
    if name == "multiworker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise ConfigError(f"unknown strategy {name!r}; choose default, mirrored or multiworker")
