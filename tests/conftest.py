"""Shared fixtures: tiny learnable data and small configs for fast tests."""

import os
import pathlib

# Quiet TensorFlow's C++ logging in test output; must be set before TF loads.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402

from tests import synthetic  # noqa: E402
from tf_mlp import config as config_module  # noqa: E402

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
NOTMNIST_SAMPLE = REPO_ROOT.parent / "shared" / "data" / "notmnist-sample"
FASHION_MNIST_DIR = pathlib.Path("/usr/share/datasets/fashion-mnist")


@pytest.fixture(scope="session")
def tiny_splits():
    return synthetic.make_splits()


@pytest.fixture
def tiny_config():
    """The mlp preset shrunk to seconds: a narrow hidden layer, small batches, two epochs."""
    return (
        config_module.preset("mlp")
        .override("model", hidden_units=(32,))
        .override("train", epochs=2, batch_size=32, checkpoint_every_steps=5)
    )
