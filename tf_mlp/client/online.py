"""The online client's work: classify a few image files, and show results, status and metadata as text.

    results = classify_files(model, ["shoe.png", "-"], top_k=3)     # "-" reads one image from stdin
    print(format_results(results))                                  # or results_json(results)

All files go in one request; if the server refuses it (one file is not an
image), each file is sent alone, so the good ones are still classified and
the bad one carries the server's message. Dark-on-light images are turned
around first under the `polarity` rule (tf_mlp.client.polarity; default
as-is, and an image sent as it is with a light border is flagged).
"""

from __future__ import annotations

import dataclasses
import pathlib
import sys

from tf_mlp.client.base import Client
from tf_mlp.client.errors import RequestError
from tf_mlp.client.polarity import (
    AS_IS,
    DEFAULT_FOR_ENCODED,
    POLARITIES,
    apply_to_encoded,
    border_is_light,
    encoded_grayscale,
)
from tf_mlp.client.results import ModelMetadata, ModelStatus
from tf_mlp.errors import ConfigError

STDIN = "-"


@dataclasses.dataclass
class Ranked:
    class_id: int
    class_name: str
    probability: float


@dataclasses.dataclass
class ImageResult:
    image: str
    """The file name as given ("-" for stdin)."""
    top: list
    """Ranked classes, most probable first (empty when the image failed)."""
    error: str | None = None
    light_border: bool = False
    """Sent as it is although its border is light: probably dark on light, which the model does not know."""


def read_images(sources, stdin=None) -> list[bytes]:
    """The bytes of each file ("-": all of stdin); ConfigError naming a file that cannot be read."""
    if list(sources).count(STDIN) > 1:
        raise ConfigError("'-' (stdin) can be given once")
    contents = []
    for source in sources:
        if source == STDIN:
            contents.append((stdin or sys.stdin.buffer).read())
            continue
        try:
            contents.append(pathlib.Path(source).read_bytes())
        except OSError as error:
            raise ConfigError(f"cannot read {source}: {error.strerror or error}") from None
    return contents


def classify_files(model: Client, sources, top_k: int = 3, stdin=None,
                   polarity: str = DEFAULT_FOR_ENCODED) -> list[ImageResult]:
    """Top-k classes of each image file; an image the server refuses gets its error, the others their classes."""
    if top_k < 1:
        raise ConfigError(f"--top-k must be at least 1, got {top_k}")
    if polarity not in POLARITIES:
        raise ConfigError(f"unknown polarity {polarity!r}; choose one of {', '.join(POLARITIES)}")
    sources = list(sources)
    originals = read_images(sources, stdin)
    contents = [apply_to_encoded(data, polarity) for data in originals]
    light = [False] * len(originals)
    if polarity == AS_IS:
        grays = [encoded_grayscale(data) for data in originals]
        light = [gray is not None and border_is_light(gray) for gray in grays]
    try:
        predictions = [(model.predict_encoded(contents), None)]
    except RequestError as error:
        predictions = [(None, error.message)] if len(contents) == 1 else [_alone(model, data) for data in contents]
    names = model.class_names() if top_k > 1 else None
    results = []
    rows = _rows(predictions)
    for source, is_light, (prediction, index, error) in zip(sources, light, rows):
        if prediction is None:
            results.append(ImageResult(source, [], " ".join(error.split())))  # one line, for the table
            continue
        top = []
        for class_id, probability in prediction.top_k(top_k)[index]:
            if class_id == int(prediction.class_ids[index]):
                name = prediction.class_names[index]
            else:
                name = names[class_id] if names and class_id < len(names) else str(class_id)
            top.append(Ranked(class_id, name, probability))
        results.append(ImageResult(source, top, light_border=is_light))
    return results


def light_border_note(result: ImageResult) -> str:
    return (f"note: {result.image} has a light border, so it is probably dark on light; the model knows "
            "light-on-dark images: try --polarity auto or --polarity invert")


def _alone(model: Client, data: bytes):
    try:
        return model.predict_encoded([data]), None
    except RequestError as error:
        return None, error.message


def _rows(predictions):
    """(prediction, row, error) per image, from one batch answer or one answer per image."""
    for prediction, error in predictions:
        if prediction is None:
            yield None, 0, error
        else:
            for index in range(len(prediction)):
                yield prediction, index, None


def results_json(results) -> list[dict]:
    return [{"image": result.image, "predictions": [dataclasses.asdict(ranked) for ranked in result.top],
             "error": result.error} for result in results]


def format_results(results) -> str:
    """A table: image, rank, class id, class name, probability; failed images show their error."""
    lines = [("image", "rank", "class", "name", "probability")]
    for result in results:
        if result.error is not None:
            lines.append((result.image, "-", "-", "error", result.error))
        for rank, ranked in enumerate(result.top, 1):
            lines.append((result.image if rank == 1 else "", str(rank), str(ranked.class_id), ranked.class_name,
                          f"{ranked.probability:.4f}"))
    return _table(lines)


def format_status(status: ModelStatus) -> str:
    lines = [("model", "version", "state", "status")]
    for version in status.versions:
        text = version.error_code if not version.error_message else f"{version.error_code}: {version.error_message}"
        lines.append((status.model, str(version.version), version.state, text))
    return _table(lines)


def format_metadata(metadata: ModelMetadata) -> str:
    """Each signature with its inputs and outputs, as `saved_model_cli show` lists them."""
    lines = [f"model {metadata.model}, version {metadata.version}"]
    for name, signature in sorted(metadata.signatures.items()):
        lines.append(f"signature {name!r} ({signature.method_name})")
        for direction, tensors in (("input", signature.inputs), ("output", signature.outputs)):
            for alias, info in sorted(tensors.items()):
                shape = "unknown rank" if info.shape is None else str(info.shape)
                lines.append(f"  {direction:6} {alias}: {info.dtype} {shape}")
    return "\n".join(lines)


def _table(lines) -> str:
    widths = [max(len(line[column]) for line in lines) for column in range(len(lines[0]))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip() for line in lines)
