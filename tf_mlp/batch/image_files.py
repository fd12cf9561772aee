"""Pixel arrays out as a folder of PNG files, one subfolder per class: what a user's own photos look like.

    write_image_folder(open_inputs("tfds:fashion_mnist/test"), "fashion-png", class_names, invert=True)

Each image becomes <directory>/<class folder>/<index>.png (8-bit grayscale,
28x28). The folder is the class name with "/" written as "_" (a folder name
cannot hold a "/"), which `open_inputs` matches back to the class; images
without a label go to the top level. `invert` writes 255 - x: dark on light,
like ink on paper.
"""

from __future__ import annotations

import pathlib

from tf_mlp.batch.inputs import InputSource
from tf_mlp.client.base import PIXELS
from tf_mlp.errors import ConfigError, DataError


def class_folder(name: str) -> str:
    return name.replace("/", "_")


def write_image_folder(inputs: InputSource, directory, class_names=None, invert: bool = False) -> int:
    """Write every image of pixel-array inputs as a PNG file; return how many were written."""
    from PIL import Image

    if inputs.kind != PIXELS:
        raise DataError(f"{inputs.description}: already image files; give IDX, .npy, .npz or tfds: inputs")
    directory = pathlib.Path(directory)
    if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
        raise ConfigError(f"{directory} exists and is not an empty directory; choose a new one")
    inputs.name_labels(class_names)
    width = len(str(max(len(inputs) - 1, 0)))
    for index, image in enumerate(inputs.images):
        name = inputs.label_names[index]
        if name is None and inputs.label_ids[index] is not None:
            name = str(inputs.label_ids[index])
        folder = directory / class_folder(name) if name is not None else directory
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(255 - image if invert else image).save(folder / f"{index:0{width}d}.png")
    return len(inputs)
