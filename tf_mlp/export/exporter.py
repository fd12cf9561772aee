"""Export a model (or a run's model) as a new, verified, atomically published version.

Steps, in order; any failure deletes the staging directory and publishes nothing:

1. check the options (version, keep, overwrite) and that the export base is writable;
2. write the SavedModel with its four signatures and assets/labels.txt into a
   staging directory beside the versions (see tf_mlp.export.versions);
3. write assets.extra/tf_serving_warmup_requests (tf_mlp.export.warmup);
4. load it afresh as TensorFlow Serving does (session loader) and with
   tf.saved_model.load, compare every signature with the in-memory model on
   real images, and replay the warmup requests (tf_mlp.export.verify);
5. write assets.extra/model_card.json (tf_mlp.export.card);
6. rename the staging directory to <export_base>/tf_mlp/<version> in one step;
7. prune to the newest `keep` versions if asked.

A run is exported only if it finished: its final test evaluation is what the
model card reports. An unfinished run (interrupted, or resumed for more
epochs and interrupted again) is refused unless allow_unfinished=True; its
card then says so and reports no test accuracy.
"""

from __future__ import annotations

import dataclasses
import pathlib
import re
import time

import numpy as np

from tf_mlp import contract, image_files, layout
from tf_mlp.errors import DataError, ExportError
from tf_mlp.export import card, describe, signatures, verify, versions, warmup
from tf_mlp.training.runs import (
    latest_checkpoint,
    load_config,
    model_checkpoint,
    read_class_names,
    read_evaluation,
    restore_model,
)

VERIFICATION_IMAGES = 1000
"""Test images (the first ones of the test split) a run's export is verified on."""


@dataclasses.dataclass
class ExportResult:
    path: pathlib.Path
    """The published version directory, <export_base>/tf_mlp/<version>."""
    version: int
    signatures: str
    """The signatures, as `saved_model_cli show --all` prints them."""
    model_card: dict
    seconds: float
    """Wall time of the whole export, verification included."""
    pruned: list[int] = dataclasses.field(default_factory=list)
    """Versions deleted by keep=N."""


def _check_images(images) -> np.ndarray:
    pixels = np.asarray(images)
    size = contract.IMAGE_SIZE
    if pixels.dtype != np.uint8 or pixels.ndim != 3 or pixels.shape[1:] != (size, size) or len(pixels) == 0:
        raise ExportError(
            f"verification images must be uint8 [N, {size}, {size}] with N >= 1,"
            f" got {pixels.dtype} {list(pixels.shape)}"
        )
    return pixels


def _check_class_names(class_names, model) -> list[str]:
    names = [str(name) for name in class_names]
    classes = int(model.output_shape[-1])
    if len(names) != classes:
        raise ExportError(f"{len(names)} class names for a model with {classes} outputs")
    if any("\n" in name or "\r" in name for name in names):
        raise ExportError("class names must not contain line breaks (they ship one per line in labels.txt)")
    return names


def export_model(
    model,
    class_names,
    export_base,
    *,
    model_card: dict,
    verification_images,
    verification_source: str = "given images",
    version: int | None = None,
    overwrite: bool = False,
    keep: int | None = None,
) -> ExportResult:
    """Export a Keras model (uint8 [B, 28, 28] -> logits) as <export_base>/tf_mlp/<version>.

    version defaults to one more than the highest existing one. An existing
    version is replaced only with overwrite=True. keep=N deletes all but the
    newest N versions afterwards (never the one just exported).
    model_card holds the training facts (tf_mlp.export.card.training_facts);
    the export adds its own. verification_images: uint8 [N, 28, 28] real
    images the written SavedModel is checked on before it is published;
    verification_source says in the card where they came from.
    """
    start = time.perf_counter()
    class_names = _check_class_names(class_names, model)
    pixels = _check_images(verification_images)
    versions.check_keep(keep)
    version = versions.next_version(export_base) if version is None else versions.check_version(version)
    versions.check_can_publish(export_base, version, overwrite)
    staging = versions.make_staging_dir(export_base, version)
    try:
        signatures.save(model, class_names, staging)
        warmup.write_requests(staging, pixels[: max(warmup.BATCH_SIZES)])
        checked = {"source": verification_source, **verify.verify_saved_model(staging, model, class_names, pixels)}
        completed_card = card.complete(
            model_card,
            version=version,
            export_seconds=time.perf_counter() - start,
            signatures=describe.signature_summary(staging),
            verification=checked,
        )
        card.write(staging, completed_card)
        path = versions.publish(staging, export_base, version, overwrite=overwrite)
    except OSError as error:
        versions.discard(staging)
        raise ExportError(f"cannot write the export in {staging.parent}: {error.strerror or error}") from None
    except BaseException:
        # Also on KeyboardInterrupt: no half-written staging directory stays behind.
        versions.discard(staging)
        raise
    pruned = versions.prune(export_base, keep, protect=(version,)) if keep else []
    return ExportResult(
        path=path,
        version=version,
        signatures=describe.describe_signatures(path),
        model_card=completed_card,
        seconds=time.perf_counter() - start,
        pruned=pruned,
    )


def _test_images(config) -> np.ndarray:
    return image_files.read_split(config.data, "test").images[:VERIFICATION_IMAGES]


def read_verification_images(path) -> np.ndarray:
    """The first VERIFICATION_IMAGES images of a pixel file (.npy, .npz or IDX: what batch inference reads)."""
    if not pathlib.Path(path).is_file():
        raise ExportError(
            f"--verify-on {path}: no such file (give an .npy, .npz or IDX file of uint8 [N, 28, 28] images)"
        )
    images, _ = image_files.read_pixel_file(pathlib.Path(path))
    images = image_files.check_images(str(path), images)
    if not len(images):
        raise ExportError(f"--verify-on {path}: holds no images")
    return images[:VERIFICATION_IMAGES]


_CHECKPOINT_NAME = re.compile(r"ckpt-([0-9]+)")


def unfinished_reason(run_dir, evaluation: dict | None) -> str | None:
    """Why the run has not finished training and evaluation, or None if it has."""
    if evaluation is None:
        return f"training has not finished: the run has no final test evaluation ({layout.EVALUATION_FILE})"
    steps, planned = evaluation.get("steps"), evaluation.get("planned_steps")
    if steps is not None and planned is not None and steps < planned and not evaluation.get("stopped_early"):
        return f"training stopped at step {steps} of {planned}"
    # The training loop numbers its checkpoints by training step: a newer one means the
    # run was resumed after its evaluation and has not finished again.
    match = _CHECKPOINT_NAME.fullmatch(pathlib.Path(latest_checkpoint(run_dir)).name)
    if match and steps is not None and int(match.group(1)) > steps:
        return (
            f"training went on after the final test evaluation (step {steps}) to step {match.group(1)}"
            " and has not finished"
        )
    return None


def export_run(
    run_dir,
    export_base,
    *,
    version: int | None = None,
    overwrite: bool = False,
    keep: int | None = None,
    verification_images=None,
    verify_on=None,
    allow_unfinished: bool = False,
) -> ExportResult:
    """Export the model a training run produced, with its labels, evaluation and config in the card.

    The images to verify on: verification_images (uint8 [N, 28, 28]) if
    given, else those of the file verify_on (read_verification_images),
    else the first VERIFICATION_IMAGES test images of the run's data set.
    An unfinished run (unfinished_reason) is refused unless allow_unfinished.
    """
    versions.check_keep(keep)
    if version is not None:
        versions.check_can_publish(export_base, versions.check_version(version), overwrite)
    config = load_config(run_dir)
    checkpoint = model_checkpoint(run_dir, config)
    evaluation = read_evaluation(run_dir)
    unfinished = unfinished_reason(run_dir, evaluation)
    if unfinished and not allow_unfinished:
        raise ExportError(f"{run_dir}: {unfinished}; finish it with tf-mlp train, or pass --allow-unfinished")
    config, model = restore_model(run_dir, checkpoint)
    class_names = read_class_names(run_dir)
    run_path = pathlib.Path(run_dir).resolve()
    facts = card.training_facts(
        config, evaluation, class_names, run_dir=run_path, checkpoint=checkpoint, unfinished=unfinished
    )
    if verification_images is not None:
        source = "given images"
    elif verify_on is not None:
        verification_images, source = read_verification_images(verify_on), str(pathlib.Path(verify_on).resolve())
    else:
        try:
            verification_images = _test_images(config)
        except DataError as error:
            raise ExportError(
                f"cannot verify the export: the run's test data is not available ({error});"
                " pass --verify-on FILE with uint8 [N, 28, 28] images (.npy, .npz or IDX)"
            ) from None
        source = f"{config.data.name} test split"
    return export_model(
        model,
        class_names,
        export_base,
        model_card=facts,
        verification_images=verification_images,
        verification_source=source,
        version=version,
        overwrite=overwrite,
        keep=keep,
    )
