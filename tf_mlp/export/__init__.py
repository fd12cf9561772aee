"""Export: versioned SavedModels that TensorFlow Serving can load safely.

    from tf_mlp import export
    result = export.export_run("runs/mlp", "models", keep=3)
    print(result.path, result.version)       # models/tf_mlp/1 1
    print(result.signatures)                  # as `saved_model_cli show --all` prints them

Layout of a version (<export_base>/tf_mlp/<version>/):

    saved_model.pb, variables/                    the SavedModel (tag-set "serve")
    assets/labels.txt                             class names, line number = class id
    assets.extra/tf_serving_warmup_requests       PredictionLog TFRecord, replayed by the server at load
    assets.extra/model_card.json                  data set, config, accuracy, versions, git commit

Signatures (tf_mlp.export.signatures; names in tf_mlp.contract):

    serving_default   images uint8 [-1, 28, 28] -> probabilities, class_ids, class_names
    predict_encoded   image_bytes string [-1] (PNG/JPEG bytes) -> probabilities, class_ids, class_names
    predict_raw       pixels_bytes string [-1] (784 raw uint8 pixels per image) -> the same three outputs
    predict_images    images float32 [-1, 784] in [0, 1] -> scores   (TensorFlow Serving's MNIST example)
    classify          inputs string [-1] (serialized tf.Example) -> classes, scores
                      method tensorflow/serving/classify; the tf.Example carries one bytes feature
                      "image" holding a PNG or JPEG file, e.g. in REST:
                      POST /v1/models/tf_mlp:classify
                      {"signature_name": "classify", "examples": [{"image": {"b64": "<base64 PNG>"}}]}

Encoded images are converted to grayscale and, if not 28x28, stretched to
28x28 with area interpolation and rounded (details in tf_mlp.export.images).

Versions are written with Keras's ExportArchive to a non-numeric staging
directory, verified through the session loader TensorFlow Serving uses and
through tf.saved_model.load (tf_mlp.export.verify), and renamed into place in
one step; see tf_mlp.export.versions for overwrite and pruning.
"""

from tf_mlp.export.describe import describe_signatures
from tf_mlp.export.exporter import VERIFICATION_IMAGES, ExportResult, export_model, export_run
from tf_mlp.export.versions import list_versions, model_dir, next_version, prune, version_dir

__all__ = [
    "VERIFICATION_IMAGES",
    "ExportResult",
    "describe_signatures",
    "export_model",
    "export_run",
    "list_versions",
    "model_dir",
    "next_version",
    "prune",
    "version_dir",
]
