"""Where training runs: one device, all local devices, or several workers.

The same train step serves all three; only the strategy differs. To exercise
the multi-device path without GPUs, split the CPU into logical devices first
(`split_cpu(2)`) and use the mirrored strategy: tests do exactly that.

Several workers are configured the standard way, by the TF_CONFIG
environment variable (cluster addresses and this task's type and index).
Every worker runs the same loop on its slice of each global batch (the
train function picks it by global replica id, tf_mlp/training/steps.py); all of
them take part in saving checkpoints (saving is a collective step), but only
the chief's land in the run directory: the others write to a temporary
directory that is deleted when training ends. Only the chief evaluates on
the test split and reports the result. After a worker dies, restart
every worker with the same command: they all restore the chief's newest
checkpoint and go on from its step.
"""

from __future__ import annotations

import contextlib
import pathlib
import tempfile

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


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """True for the one task that writes the run directory (the only task outside multi-worker)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True
    if resolver.task_type == "chief":
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return resolver.task_type == "worker" and resolver.task_id == 0 and not has_chief


@contextlib.contextmanager
def writable_directory(run_dir: pathlib.Path, chief: bool):
    """The directory this task writes its checkpoints under (laid out like a run directory, tf_mlp/layout.py):
    the run directory itself on the chief, elsewhere a temporary one, deleted when the block ends."""
    if chief:
        yield run_dir
        return
    with tempfile.TemporaryDirectory(prefix="tf-mlp-worker-", ignore_cleanup_errors=True) as temporary:
        yield pathlib.Path(temporary)
