"""Predictions compared across computations: class ids exactly, probabilities within PROBABILITY_TOLERANCE.

A dense layer's sums are rounded to float32 as they go, and the order in which a kernel adds them depends on how
it blocks the matrix product: on the CPU's vector width (AVX2 or AVX-512), on TensorFlow's choice of kernels
(oneDNN or Eigen, switched by TF_ENABLE_ONEDNN_OPTS), on its thread count, and on how many rows the batch has.
The same image classified alone, in a chunk of 37 or among 1000 may therefore get probabilities that differ in
their last bits. Tests compare with == only what one computation gave twice (the same images in the same
batches, in one process, through the same kernels) and say so where they do; anything else goes through here.

`other_kernels_reference` computes a reference the way a different machine would: in another process, with the
other kernel family and one batch of up to 1000 images. A test that compares a file written here in chunks of
37 against it with == fails on any x86 CPU, as it would fail for a user.
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import tempfile

import numpy as np

from tf_mlp.contract import PROBABILITY_TOLERANCE

ONEDNN_VARIABLE = "TF_ENABLE_ONEDNN_OPTS"

_REFERENCE_SCRIPT = """
import sys
import numpy as np
import tensorflow as tf
model_dir, images_path, output_path, chunk = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
images = np.load(images_path)
serve = tf.saved_model.load(model_dir).signatures["serving_default"]
outputs = [serve(images=tf.constant(images[start:start + chunk])) for start in range(0, len(images), chunk)]
np.savez(output_path, probabilities=np.concatenate([output["probabilities"].numpy() for output in outputs]),
         class_ids=np.concatenate([output["class_ids"].numpy() for output in outputs]))
"""


def other_onednn_setting() -> str:
    """TF_ENABLE_ONEDNN_OPTS for the other kernel family than this process's (TensorFlow's x86 default is on)."""
    current = os.environ.get(ONEDNN_VARIABLE, "1").strip().lower()
    return "0" if current in ("1", "true") else "1"


def other_kernels_reference(saved_model_dir, images: np.ndarray, chunk_size: int = 1000):
    """(class ids int64 [N], probabilities float32 [N, K]) of serving_default on the images, computed in a new
    process with the other oneDNN setting, in chunks of chunk_size: what another machine would answer."""
    with tempfile.TemporaryDirectory(prefix="tf-mlp-reference-") as directory:
        images_path, output_path = pathlib.Path(directory, "images.npy"), pathlib.Path(directory, "reference.npz")
        np.save(images_path, images)
        environment = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", **{ONEDNN_VARIABLE: other_onednn_setting()})
        finished = subprocess.run(
            [sys.executable, "-c", _REFERENCE_SCRIPT, str(saved_model_dir), str(images_path), str(output_path),
             str(chunk_size)], env=environment, capture_output=True, text=True, timeout=300)
        assert finished.returncode == 0, finished.stderr[-2000:]
        with np.load(output_path) as arrays:
            return arrays["class_ids"], arrays["probabilities"]


def near_ties(probabilities) -> np.ndarray:
    """bool [N]: rows whose two most probable classes are within 2 * PROBABILITY_TOLERANCE of each other, so that
    rounding alone may give either one as the class id."""
    top_two = np.sort(np.asarray(probabilities), axis=1)[:, -2:]
    return top_two[:, 1] - top_two[:, 0] <= 2 * PROBABILITY_TOLERANCE


def assert_no_near_ties(probabilities) -> None:
    """No near-ties: the rows' class ids may be compared exactly (if this fails for synthetic test images, change
    the images, not the check; real data may have near-ties, see near_ties)."""
    rows = np.flatnonzero(near_ties(probabilities))
    assert rows.size == 0, f"near-ties at rows {rows.tolist()}"


def assert_probabilities_close(probabilities, expected_probabilities, message="") -> None:
    """Every probability within PROBABILITY_TOLERANCE of the expected one."""
    np.testing.assert_allclose(np.asarray(probabilities, dtype=np.float64), np.asarray(expected_probabilities),
                               rtol=0, atol=PROBABILITY_TOLERANCE, err_msg=message)


def assert_predictions_match(class_ids, probabilities, expected_class_ids, expected_probabilities, message=""):
    """Class ids equal; probabilities (of every class [N, K], or of the predicted class [N]) within
    PROBABILITY_TOLERANCE; with every class's expected probabilities, no near-ties among them."""
    expected_probabilities = np.asarray(expected_probabilities)
    if expected_probabilities.ndim == 2:
        assert_no_near_ties(expected_probabilities)
    np.testing.assert_array_equal(np.asarray(class_ids), np.asarray(expected_class_ids), err_msg=message)
    assert_probabilities_close(probabilities, expected_probabilities, message)
