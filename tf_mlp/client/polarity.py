"""Image polarity: the model knows light strokes on a dark background; turn dark-on-light images around.

The training images (Fashion-MNIST, MNIST, notMNIST) are light objects on a
black background. A photo or scan of dark ink on white paper is the
opposite, and the model then answers confidently with an arbitrary class.

    --polarity as-is    send the image unchanged (the default)
    --polarity invert   send 255 - x
    --polarity auto     invert when the image's border is light (the rule below)

Why `as-is` stays the default: see DEFAULT_FOR_ENCODED.

The rule for `auto` (one function, `border_is_light`; every other client
that offers `auto`, such as a web page in JavaScript, must apply exactly
this rule, so a change here is a change of the contract):

1. Convert the image to 8-bit grayscale at its original resolution: the
   gray levels of a grayscale image as they are, colour as
   round(0.2989 R + 0.5870 G + 0.1140 B) (the luma the exported model's own
   decoder uses), alpha ignored, 16-bit levels divided by 257.
2. Take the outermost one-pixel ring: every pixel of the first and last row
   and of the first and last column, each pixel counted once (the whole
   image when it is one or two pixels high or wide).
3. If the mean of those pixels is above 127, invert: x -> 255 - x.

Inversion happens here, in the client, before anything is sent. An encoded
image that is not inverted is sent as its original bytes, so `auto` never
changes what the server sees for a light-on-dark image. An inverted one is
sent as a grayscale PNG of the inverted pixels at the original resolution:
the server still does the resizing (tf_mlp.export.images), so an image gets
exactly the same treatment whether or not it was inverted. Bytes that are
not a PNG, JPEG, GIF, BMP or WebP image are sent unchanged, and the server
names the problem.
"""

from __future__ import annotations

import io

import numpy as np

AUTO = "auto"
AS_IS = "as-is"
INVERT = "invert"
POLARITIES = (AUTO, AS_IS, INVERT)
DEFAULT_FOR_ENCODED = AS_IS
"""Not `auto`, on evidence (README, "Dark-on-light images"): `auto` never touches a Fashion-MNIST image
(0 of 70,000 have a light border) but turns around 20% of notMNIST's letters, which often fill the frame,
and costs a notMNIST model 18 points of accuracy. `tf-mlp predict` prints a note for a light-bordered image."""
DEFAULT_FOR_PIXELS = AS_IS
"""Pixel arrays (IDX, .npy, tfds:) are data-set pixels, already light-on-dark: sent as they are by default."""
LIGHT_BORDER_THRESHOLD = 127
"""A border mean above this is a light background."""
_SERVER_FORMATS = frozenset({"PNG", "JPEG", "GIF", "BMP", "WEBP"})
"""What the exported model decodes; anything else is left for the server to refuse."""
_LUMA = np.array([0.2989, 0.5870, 0.1140])


def border_is_light(gray: np.ndarray) -> bool:
    """True if the mean of the outermost one-pixel ring of a 2-D uint8 image is above 127 (rule step 2-3)."""
    gray = np.asarray(gray)
    if gray.ndim != 2 or gray.size == 0:
        raise ValueError(f"expected a non-empty 2-D grayscale image, got shape {list(gray.shape)}")
    height, width = gray.shape
    if height <= 2 or width <= 2:
        ring = gray.ravel()
    else:
        # Top and bottom rows whole, then the left and right columns without their corners.
        ring = np.concatenate([gray[0], gray[-1], gray[1:-1, 0], gray[1:-1, -1]])
    return float(ring.astype(np.float64).mean()) > LIGHT_BORDER_THRESHOLD


def should_invert(gray: np.ndarray, polarity: str) -> bool:
    """Whether an image with these gray levels is inverted under `polarity`."""
    if polarity not in POLARITIES:
        raise ValueError(f"unknown polarity {polarity!r}; choose one of {', '.join(POLARITIES)}")
    return polarity == INVERT or (polarity == AUTO and border_is_light(gray))


def grayscale(image) -> np.ndarray:
    """uint8 [H, W] gray levels of a PIL image (rule step 1)."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        return np.clip(np.rint(np.asarray(image, dtype=np.float64) / 257.0), 0, 255).astype(np.uint8)
    if image.mode in ("1", "L"):
        return np.asarray(image.convert("L"), dtype=np.uint8)
    if image.mode == "LA":
        return np.asarray(image, dtype=np.uint8)[:, :, 0]
    if image.mode not in ("RGB", "RGBA"):
        image = image.convert("RGBA" if "transparency" in image.info or image.mode == "PA" else "RGB")
    rgb = np.asarray(image, dtype=np.float64)[:, :, :3]
    return np.clip(np.rint(rgb @ _LUMA), 0, 255).astype(np.uint8)


def encoded_grayscale(data: bytes) -> np.ndarray | None:
    """The gray levels of an encoded image (rule step 1), or None if it is not an image the model decodes."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.format not in _SERVER_FORMATS:
                return None
            return grayscale(image)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError):
        return None  # not an image the client can read: the server's error names it


def apply_to_encoded(data: bytes, polarity: str) -> bytes:
    """The bytes to send for one encoded image under `polarity` (see the module docstring)."""
    if polarity == AS_IS:
        return data
    from PIL import Image

    gray = encoded_grayscale(data)
    if gray is None or not should_invert(gray, polarity):
        return data
    buffer = io.BytesIO()
    Image.fromarray(255 - gray).save(buffer, format="PNG")
    return buffer.getvalue()


def apply_to_pixels(images: np.ndarray, polarity: str) -> np.ndarray:
    """uint8 [N, 28, 28] pixels under `polarity`, each image decided on its own."""
    if polarity == AS_IS:
        return images
    flips = np.array([should_invert(image, polarity) for image in images], dtype=bool)
    if not flips.any():
        return images
    result = images.copy()
    result[flips] = 255 - result[flips]
    return result
