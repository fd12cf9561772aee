"""Shared fixtures and helpers: tiny learnable data and small configs for fast tests, PNG bytes, free ports.

Test modules import the plain helpers (png_bytes, free_port) from here.
"""

import io
import os
import pathlib
import signal
import time

import pytest

from tf_mlp import startup

# As the commands do: TensorFlow imported quietly (its C++ logging down to errors), without collections and
# then frozen, once for the whole worker (most test modules import it; every later full collection in a
# worker would walk its objects again).
startup.import_tensorflow()

from tests import synthetic  # noqa: E402
from tf_mlp import config  # noqa: E402
from tf_mlp.data.catalog import DEBIAN_FASHION_MNIST as FASHION_MNIST_DIR  # noqa: E402
from tf_mlp.server.process import free_port  # noqa: E402,F401 - one free_port for the tests and the package

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
NOTMNIST_SAMPLE = REPO_ROOT.parent / "shared" / "data" / "notmnist-sample"
TF_START_UP_MARKERS = ("cuInit", "oneDNN", "absl::InitializeLog", "cudart_stub", "cuda drivers")
"""Fragments of TensorFlow's start-up lines, which `tf-mlp` and scripts/benchmark.py keep off the screen."""


def png_bytes(image) -> bytes:
    """A uint8 image array (2-D gray, or with 3/4 channels) as PNG file bytes."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The embedded model server over the shared tiny export, one per test module (a module may define its own)."""
    from tests import serving_helpers

    base = serving_helpers.model_base(tmp_path_factory.mktemp("served"))
    server = serving_helpers.start_server(model_base_path=str(base))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def targets(server):
    """{protocol: target} of the module's server, for tf_mlp.client.connect."""
    from tests import serving_helpers

    return serving_helpers.client_targets(server)


@pytest.fixture(scope="module")
def images():
    """Four test images for the shared tiny export (a module may define its own)."""
    from tests import serving_helpers

    return serving_helpers.test_images(4)


@pytest.fixture(scope="module")
def expected(images):
    """serving_default's outputs for `images`, computed in-process: what the servers must answer."""
    from tests import serving_helpers

    return serving_helpers.serving_default_outputs(images)


@pytest.fixture(scope="session")
def fashion_mnist_run(tmp_path_factory):
    """Real Fashion-MNIST prepared, the default model trained one epoch and exported, once per test session
    (tests/real_data.py); skips where Debian's Fashion-MNIST files are not installed."""
    from tests import real_data

    if not FASHION_MNIST_DIR.is_dir():
        pytest.skip(f"{FASHION_MNIST_DIR} is missing (make data installs it)")
    root = tmp_path_factory.getbasetemp()
    # A pytest-xdist worker's base temp is inside the session's, which all the workers share.
    shared = root.parent if os.environ.get("PYTEST_XDIST_WORKER") else root
    return real_data.shared_run(shared / "fashion-mnist")


@pytest.fixture(scope="session")
def tiny_splits():
    return synthetic.make_splits()


@pytest.fixture
def tiny_config():
    """The mlp preset shrunk to seconds: a narrow hidden layer, small batches, two epochs."""
    return (
        config.preset("mlp")
        .override("model", hidden_units=(32,))
        .override("train", epochs=2, batch_size=32, checkpoint_every_steps=5)
    )


@pytest.fixture(scope="module")
def splits():
    """The tiny synthetic splits, one copy per test module."""
    return synthetic.make_splits()


@pytest.fixture(scope="module")
def run(tmp_path_factory, splits):
    """A run directory of the mlp preset shrunk to 32 hidden units, trained one epoch on the tiny splits."""
    from tf_mlp.training import train_and_evaluate

    run_dir = tmp_path_factory.mktemp("trained") / "run"
    run_config = config.preset("mlp").override("model", hidden_units=(32,)).override("train", epochs=1, batch_size=32)
    train_and_evaluate(run_config, run_dir, splits=splits, verbose=False)
    return run_dir


@pytest.fixture(scope="module")
def model(run):
    """The run fixture's restored Keras model."""
    from tf_mlp.training.runs import restore_model

    return restore_model(run)[1]


def write_idx_data_set(directory, splits) -> pathlib.Path:
    """Write a DataSplits' train+validation and test as Fashion-MNIST-style IDX files."""
    import numpy as np

    from tf_mlp.data import idx

    directory.mkdir(parents=True, exist_ok=True)
    train_images = np.concatenate([splits.train.images, splits.validation.images])
    train_labels = np.concatenate([splits.train.labels, splits.validation.labels]).astype(np.uint8)
    idx.write_idx(directory / "train-images-idx3-ubyte.gz", train_images)
    idx.write_idx(directory / "train-labels-idx1-ubyte.gz", train_labels)
    idx.write_idx(directory / "t10k-images-idx3-ubyte.gz", splits.test.images)
    idx.write_idx(directory / "t10k-labels-idx1-ubyte.gz", splits.test.labels.astype(np.uint8))
    return directory


@pytest.fixture
def tiny_idx_dir(tmp_path, tiny_splits):
    """The tiny synthetic data set as an IDX directory, for commands that load data themselves."""
    return write_idx_data_set(tmp_path / "idx", tiny_splits)


LONGEST_FILES = ("test_faults.py", "test_cli.py", "test_replicas.py", "test_first_hour.py", "test_server_process.py",
                 "test_benchmark.py", "test_beam.py", "test_batch.py", "test_export.py", "test_train.py",
                 "test_ui_browser.py")
"""The longest test files, longest first (pytest --durations=0, summed per file, on 2 cores); but test_cli, which
makes the session's Fashion-MNIST run at once, second, so that it starts at the beginning and the files that read
the run (test_batch, test_export, test_ui_browser) find it made rather than sit waiting for it."""


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items):
    # With --dist loadfile (setup.cfg) the workers take whole files in collection order: the longest go first,
    # so that the short ones even out the workers' ends instead of one long file running on alone at the end.
    # A stable sort: the other files, and the tests inside each, keep their order.
    rank = {name: position for position, name in enumerate(LONGEST_FILES)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


_SESSION_STARTED = []


def pytest_sessionstart(session):
    _SESSION_STARTED.append(time.monotonic())
    # A shell starts a background job (`make test &`) with SIGINT ignored, and every process the tests start
    # would inherit that: the Ctrl-C tests' commands would run on to the end, and Beam's services would ignore
    # their clean stop. With Python's own handler here, each child starts with the default one instead.
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def pytest_terminal_summary(terminalreporter, exitstatus):
    # docs/ROBUSTNESS.md quotes the run's outcome, so that the page never claims a pass it did not see.
    from tests import robustness_report

    counts = {kind: len(terminalreporter.stats.get(kind, [])) for kind in ("passed", "failed", "error", "skipped")}
    seconds = time.monotonic() - _SESSION_STARTED[0]
    outcome = ", ".join(f"{number} {kind}" for kind, number in counts.items() if number)
    robustness_report.OUTCOME.append(f"{outcome or 'no tests'} in {seconds:.0f} s (exit status {int(exitstatus)})")
