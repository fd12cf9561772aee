"""The shared contracts of DESIGN.md, defined once and imported everywhere.

Training, export, the server and the clients all agree on these names; a
change here is a change of the public interface.
"""

from tf_mlp import layout

MODEL_NAME = "tf_mlp"
"""Name of the model in the export layout and in TensorFlow Serving URLs."""

IMAGE_SIZE = 28
"""Images are IMAGE_SIZE x IMAGE_SIZE grayscale, uint8 pixels in [0, 255]."""

NUM_PIXELS = IMAGE_SIZE * IMAGE_SIZE
NUM_CLASSES = 10

PROBABILITY_TOLERANCE = 1e-5
"""Largest |difference| allowed between two float32 softmax probabilities of the same model and image computed
under different batch compositions, kernels or processes.

Why 1e-5. Float32 rounds each partial sum to a relative 2**-24 (6e-8); adding the 784 inputs or the 1024 hidden
units in another order moves a logit by some tens to hundreds of those roundings (a random walk of n roundings
grows like sqrt(n): sqrt(1024) * 6e-8 = 1.9e-6 of the sum of the terms' magnitudes), and softmax passes a change
d of the logits on as at most d/2 in any probability (dp_i = p_i (dz_i - sum_j p_j dz_j)). Measured on an AMD EPYC
with AVX-512 (2 cores, TensorFlow 2.21), every row computed in chunks of 1, 7, 25, 32, 37, 256, 1000 and all at
once, under TF_ENABLE_ONEDNN_OPTS=0 and =1, against all at once with oneDNN: the tests' tiny model (32 hidden
units; 2000 synthetic images) differed by at most 4.2e-7, the default mlp (1024 hidden units, trained 10 epochs;
the 10,000 Fashion-MNIST test images) by at most 1.4e-6, so 1e-6 would not hold for the model users run. 1e-5 is
seven times the largest difference seen, and a thousand times smaller than what a different model, version or
preprocessing changes (1e-2 and more).

Class ids are compared exactly where no image is a near-tie (two classes within 2 * PROBABILITY_TOLERANCE):
the tests' synthetic images have their top two classes at least 3e-3 apart (tests/predictions.py checks).
Real test sets may hold a near-tie: the 10,000 Fashion-MNIST test images' closest pair was 1.8e-4 apart after
one epoch of the default model and 1.3e-3 after ten, so there, counts of correct class ids may differ by at
most the number of near-ties.
"""

# Class names ship with the model (assets/labels.txt), one per class id;
# each data set's are in tf_mlp/data/catalog.py.

# Signature names and tensor names of the exported SavedModel.
SERVING_SIGNATURE = "serving_default"
IMAGES_INPUT = "images"
ENCODED_SIGNATURE = "predict_encoded"
ENCODED_INPUT = "image_bytes"
RAW_SIGNATURE = "predict_raw"
RAW_INPUT = "pixels_bytes"
"""The compact input: one string of NUM_PIXELS raw uint8 pixels (row-major) per image, {"b64": ...} in JSON."""
MNIST_EXAMPLE_SIGNATURE = "predict_images"
MNIST_EXAMPLE_OUTPUT = "scores"
CLASSIFY_SIGNATURE = "classify"
PROBABILITIES_OUTPUT = "probabilities"
CLASS_IDS_OUTPUT = "class_ids"
CLASS_NAMES_OUTPUT = "class_names"

# Version labels of the serving config (model_config's version_labels), moved by `tf-mlp rollout`.
STABLE_LABEL = "stable"
"""The version every client asks for by default (when the server's config has the label)."""
CANARY_LABEL = "canary"
"""The version under trial with a share of the traffic; the stable version when no trial is running."""
PREVIOUS_LABEL = "previous"
"""The version `stable` held before the last promotion: where a rollback returns."""

# Serving defaults, as tensorflow_model_server has them.
DEFAULT_GRPC_PORT = 8500
DEFAULT_REST_PORT = 8501
DEFAULT_HOST = "127.0.0.1"

# TensorFlow Serving's own names (TensorFlow's tag_constants and signature_constants), which the export
# writes and the embedded server reads: the MetaGraph tag it loads, the signature a request without a
# signature name gets (SERVING_SIGNATURE above), and the method names of its Predict, Classify and Regress APIs.
SERVE_TAG = "serve"
PREDICT_METHOD_NAME = "tensorflow/serving/predict"
CLASSIFY_METHOD_NAME = "tensorflow/serving/classify"
REGRESS_METHOD_NAME = "tensorflow/serving/regress"

# The classification signature follows TensorFlow Serving's Classify API
# (REST :classify, gRPC Classify): one input of serialized tf.Example protos
# named "inputs", outputs "classes" (label strings [batch, classes]) and
# "scores" (float32 [batch, classes]). A Regress signature has the same
# input and one output, "outputs".
CLASSIFY_INPUT = "inputs"
CLASSIFY_CLASSES_OUTPUT = "classes"
CLASSIFY_SCORES_OUTPUT = "scores"
REGRESS_OUTPUT = "outputs"
CLASSIFY_IMAGE_FEATURE = "image"
"""tf.Example feature of the classify signature: a bytes feature holding one PNG or JPEG image."""

# What ships inside an exported version, beside the SavedModel itself.
LABELS_ASSET = layout.LABELS_FILE
"""assets/labels.txt: class names, one per line, line number = class id."""
WARMUP_FILE = "tf_serving_warmup_requests"
"""assets.extra/tf_serving_warmup_requests: TFRecord of PredictionLog protos replayed at load."""
MODEL_CARD_FILE = "model_card.json"
"""assets.extra/model_card.json: where the model came from and how well it does."""
GATE_REPORT_FILE = "gate_report.json"
"""assets.extra/gate_report.json: `tf-mlp rollout gate`'s comparison with the stable version, and its verdict."""
GATE_REPORT_PAGE = "gate_report.md"
"""assets.extra/gate_report.md: the same, to read."""
