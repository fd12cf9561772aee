"""Graph functions that turn what clients send into the model's uint8 [batch, 28, 28] pixels.

Encoded images (the `_bytes` and classify signatures)
-----------------------------------------------------
Each element is the bytes of one PNG or JPEG file (GIF, BMP and WebP decode
too; an animated GIF gives its first frame). Per image, in this order:

1. Decode with `tf.io.decode_image(..., expand_animations=False)` at the
   file's own channel count and 8 bits per channel (16-bit PNGs are scaled
   down by the decoder).
2. Channels: grayscale is used as is; grayscale + alpha keeps the gray
   channel; RGB and RGBA (alpha dropped) become gray with
   `tf.image.rgb_to_grayscale` (ITU-R 601 luma: 0.2989 R + 0.5870 G + 0.1140 B),
   rounded to the nearest integer.
3. Size: a 28x28 image is passed through untouched, so a PNG of the training
   pixels gives exactly those pixels. Any other size is stretched (aspect
   ratio not kept) to 28x28 with `tf.image.resize(method="area")`, each output
   pixel the average of the input pixels it covers (the right filter for
   shrinking, plain pixel replication for enlarging), then rounded to the
   nearest integer and cast to uint8.

Images are decoded one at a time with `tf.map_fn`, because a batch of files
can mix sizes and channel counts. Bytes that are not a PNG, JPEG, GIF, BMP or
WebP file fail with InvalidArgumentError "image_bytes[i] is not a decodable
image ..."; a file with a valid header but corrupt data fails with the
decoder's own InvalidArgumentError (e.g. "Invalid PNG data").

Raw pixels (the `predict_raw` signature)
----------------------------------------
Each element is exactly 784 bytes, the uint8 pixels of one 28x28 image in
row-major order (numpy's `images.tobytes()` per image), reinterpreted with
`tf.io.decode_raw`: no image decoder, no copies beyond the one into the
batch. Any other length fails with InvalidArgumentError "pixels_bytes[i]
holds N bytes; expected 784 ...".

Float pixels (the `predict_images` signature)
---------------------------------------------
TensorFlow Serving's MNIST example sends float32 [batch, 784] in [0, 1].
Values are clipped to [0, 1] and quantized to the nearest of the 256 pixel
levels (round(x * 255)), which gives back exactly the uint8 pixels that
`pixels / 255` came from, so the two signatures agree.
"""

from __future__ import annotations

import tensorflow as tf

from tf_mlp import contract

# File signatures ("magic numbers") of the formats tf.io.decode_image reads;
# checked first so that junk bytes fail with a message naming the bad image.
_MAGIC_PREFIXES = (
    b"\x89PNG\r\n\x1a\n",  # PNG
    b"\xff\xd8\xff",  # JPEG
    b"GIF8",  # GIF87a, GIF89a
    b"BM",  # BMP
)


def _looks_like_image(data: tf.Tensor) -> tf.Tensor:
    """True if the bytes start like a PNG, JPEG, GIF, BMP or WebP file."""
    # substr fails on positions past the end, so short inputs are padded with
    # zero bytes, which occur in none of the signatures.
    header = tf.strings.join([tf.strings.substr(data, 0, 12), b"\0" * 12])
    checks = [tf.strings.substr(header, 0, len(prefix)) == prefix for prefix in _MAGIC_PREFIXES]
    # WebP: "RIFF", a 4-byte size, then "WEBP".
    is_webp = tf.logical_and(tf.strings.substr(header, 0, 4) == b"RIFF", tf.strings.substr(header, 8, 4) == b"WEBP")
    checks.append(is_webp)
    return tf.reduce_any(tf.stack(checks))


def _to_grayscale(image: tf.Tensor) -> tf.Tensor:
    """uint8 [H, W, C] with C in 1..4 -> uint8 [H, W, 1]."""

    def from_color():
        # rgb_to_grayscale keeps a float32 input's range, so the luma is
        # computed on 0..255 values and rounded once.
        gray = tf.image.rgb_to_grayscale(tf.cast(image[:, :, :3], tf.float32))
        return tf.cast(tf.clip_by_value(tf.round(gray), 0.0, 255.0), tf.uint8)

    return tf.cond(tf.shape(image)[2] >= 3, from_color, lambda: image[:, :, :1])


def _to_image_size(image: tf.Tensor) -> tf.Tensor:
    """uint8 [H, W, 1] -> uint8 [28, 28, 1]; 28x28 input is returned unchanged."""
    size = contract.IMAGE_SIZE

    def resized():
        area = tf.image.resize(tf.cast(image, tf.float32), [size, size], method="area")
        return tf.cast(tf.clip_by_value(tf.round(area), 0.0, 255.0), tf.uint8)

    is_model_size = tf.reduce_all(tf.shape(image)[:2] == [size, size])
    return tf.ensure_shape(tf.cond(is_model_size, lambda: image, resized), [size, size, 1])


def decode_one(data: tf.Tensor, index: tf.Tensor, input_name: str) -> tf.Tensor:
    """Bytes of one image file -> uint8 [28, 28]; index and input_name only label errors."""
    # The name goes into the template, not through format(), which would quote it.
    message = tf.strings.format(
        input_name + "[{}] is not a decodable image:"
        " expected the bytes of a PNG or JPEG file (GIF, BMP, WebP also read)",
        (index,),
    )
    check = tf.debugging.Assert(_looks_like_image(data), [message], name="check_image_format")
    with tf.control_dependencies([check]):
        image = tf.io.decode_image(data, channels=0, dtype=tf.uint8, expand_animations=False)
    image = tf.ensure_shape(image, [None, None, None])
    return _to_image_size(_to_grayscale(image))[:, :, 0]


def decode_images(encoded: tf.Tensor, input_name: str = contract.ENCODED_INPUT) -> tf.Tensor:
    """string [batch] of PNG/JPEG bytes -> uint8 [batch, 28, 28]."""
    indices = tf.range(tf.shape(encoded, out_type=tf.int64)[0])
    return tf.map_fn(
        lambda item: decode_one(item[0], item[1], input_name),
        (encoded, indices),
        fn_output_signature=tf.TensorSpec([contract.IMAGE_SIZE, contract.IMAGE_SIZE], tf.uint8),
    )


def pixels_from_raw_bytes(raw: tf.Tensor, input_name: str = contract.RAW_INPUT) -> tf.Tensor:
    """string [batch] of 784 raw uint8 pixels each -> uint8 [batch, 28, 28]."""
    lengths = tf.strings.length(raw)
    wrong = tf.where(tf.not_equal(lengths, contract.NUM_PIXELS))
    # decode_raw's own error ("DecodeRaw requires input strings to all be the same
    # size") names neither the input nor the expected size: check first.
    first_wrong = tf.concat([tf.reshape(wrong, [-1]), [-1]], axis=0)[0]
    message = tf.strings.format(
        input_name + "[{}] holds {} bytes; expected " + str(contract.NUM_PIXELS)
        + " (the 28x28 uint8 pixels of one image, row-major)",
        (first_wrong, tf.gather(tf.concat([lengths, [0]], axis=0), tf.maximum(first_wrong, 0))),
    )
    check = tf.debugging.Assert(tf.equal(tf.size(wrong), 0), [message], name="check_raw_length")
    with tf.control_dependencies([check]):
        flat = tf.io.decode_raw(raw, tf.uint8)
    return tf.reshape(flat, [-1, contract.IMAGE_SIZE, contract.IMAGE_SIZE])


def pixels_from_unit_floats(images: tf.Tensor) -> tf.Tensor:
    """float32 [batch, 784] in [0, 1] -> uint8 [batch, 28, 28], rounded to the nearest level."""
    levels = tf.round(tf.clip_by_value(images, 0.0, 1.0) * 255.0)
    return tf.reshape(tf.cast(levels, tf.uint8), [-1, contract.IMAGE_SIZE, contract.IMAGE_SIZE])
