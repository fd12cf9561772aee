"""Helpers for the server tests: one tiny exported model per test process, servers on free ports.

The model is trained (one epoch on tests/synthetic) and exported with
tf_mlp.export once per process, then copied into each test's own export base
as whatever versions the test needs, so tests can add, remove and break
versions freely.
"""

from __future__ import annotations

import atexit
import functools
import pathlib
import shutil
import tempfile
import time

from tests import synthetic
from tf_mlp import contract
from tf_mlp.server import ANY_FREE_PORT, Server, ServerOptions

POLL_SECONDS = 0.02


@functools.cache
def exported_version_dir() -> pathlib.Path:
    """<tmp>/models/tf_mlp/1: a tiny trained run exported by tf_mlp.export (made once per process)."""
    from tf_mlp.config import preset
    from tf_mlp.export import export_run
    from tf_mlp.training import train_and_evaluate

    root = pathlib.Path(tempfile.mkdtemp(prefix="tf-mlp-serving-"))
    atexit.register(shutil.rmtree, root, True)
    splits = synthetic.make_splits()
    config = preset("mlp").override("model", hidden_units=(32,)).override("train", epochs=1, batch_size=32)
    train_and_evaluate(config, root / "run", splits=splits, verbose=False)
    result = export_run(root / "run", root / "models", version=1, verification_images=splits.test.images[:16])
    return pathlib.Path(result.path)


def test_images(count: int = 8):
    """uint8 [count, 28, 28] images the tiny model was not trained on."""
    return synthetic.make_split(count, seed=99).images


def add_version(base: pathlib.Path, version: int) -> pathlib.Path:
    """Publish a copy of the exported model as base/<version>, atomically (staging dir + rename)."""
    base.mkdir(parents=True, exist_ok=True)
    staging = base / f".staging-{version}"
    shutil.copytree(exported_version_dir(), staging)
    target = base / str(version)
    staging.rename(target)
    return target


def model_base(tmp_path: pathlib.Path, versions=(1,)) -> pathlib.Path:
    base = tmp_path / "models" / contract.MODEL_NAME
    for version in versions:
        add_version(base, version)
    return base


def start_server(**options) -> Server:
    """A started Server on free ports (REST and gRPC), polling the file system every 50 ms, no load retries."""
    options.setdefault("port", ANY_FREE_PORT)
    options.setdefault("rest_api_port", ANY_FREE_PORT)
    options.setdefault("file_system_poll_wait_seconds", 0.05)
    # A version that fails to load fails start-up (as TensorFlow Serving); with its default 5 retries a minute
    # apart, that would take 5 minutes to show.
    options.setdefault("max_num_load_retries", 0)
    return Server(ServerOptions(**options)).start()


def wait_for(predicate, timeout: float = 30.0, message: str = "condition"):
    """Poll predicate until it returns a truthy value; AssertionError after timeout seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {message}")
        time.sleep(POLL_SECONDS)


def serving_default_outputs(images) -> dict:
    """serving_default's outputs for the images, computed in-process: what every server path must return."""
    import tensorflow as tf

    loaded = tf.saved_model.load(str(exported_version_dir()))
    outputs = loaded.signatures[contract.SERVING_SIGNATURE](images=tf.constant(images))
    return {name: tensor.numpy() for name, tensor in outputs.items()}


def client_targets(server: Server) -> dict:
    """The same model reached three ways: REST and gRPC on the server, and in-process."""
    return {
        "rest": f"rest://127.0.0.1:{server.rest_port}",
        "grpc": f"grpc://127.0.0.1:{server.grpc_port}",
        "local": f"local:{exported_version_dir()}",
    }
