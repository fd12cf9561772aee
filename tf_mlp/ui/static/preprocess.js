// Image -> the model's input: uint8 28x28, white (255) shape on black (0), as in MNIST and Fashion-MNIST.
//
// Uploads follow the rules the exported model applies to encoded images (tf_mlp/export/images.py), so a file
// gives the same 28x28 pixels here, through the predict_encoded signature and through the Python clients:
//   1. 8-bit grayscale at the file's own resolution: luma 0.2989 R + 0.5870 G + 0.1140 B (tf.image's
//      rgb_to_grayscale weights), rounded half to even like tf.round; a gray file's pixels pass unchanged.
//   2. Polarity (shared with the Python clients, keep it exactly this): "auto" inverts (255 - x) when the mean
//      of the outermost one-pixel ring of the grayscale image is above 127, i.e. a light background;
//      "as-is" never inverts, "invert" always does.
//   3. A 28x28 image is used as is (no re-centring), so a PNG of a test image gives exactly its pixels and the
//      same prediction as the in-process model. Any other size is stretched to 28x28 with area interpolation
//      (each output pixel the mean of the input area it covers), rounded half to even. Uploads are NOT
//      MNIST-centred: Fashion-MNIST's images are not centred by centre of mass either, and centring would make
//      the page disagree with predict_encoded and the Python clients on the same file.
//
// Drawings follow MNIST's own preprocessing, because a stroke can be anywhere and any size on the canvas:
// crop to the bounding box of the ink, scale to fit 20x20 keeping the aspect ratio (area interpolation, the
// anti-aliasing MNIST's normalisation had), then place in a 28x28 field so that the centre of mass of the ink
// is at the field's centre (14, 14), shifted by whole pixels so no pixel is resampled twice, and kept inside.

export const SIZE = 28;
export const FIT = 20;

const LUMA = [Math.fround(0.2989), Math.fround(0.587), Math.fround(0.114)];

export function roundHalfEven(value) {
  const rounded = Math.round(value);
  // Math.round sends .5 up; tf.round sends it to the even neighbour.
  return value - Math.floor(value) === 0.5 && rounded % 2 !== 0 ? rounded - 1 : rounded;
}

function toByte(value) {
  return Math.min(255, Math.max(0, roundHalfEven(value)));
}

/** RGBA bytes (ImageData.data) -> Uint8Array of 8-bit gray, one per pixel. */
export function grayFromRgba(rgba) {
  const gray = new Uint8Array(rgba.length / 4);
  for (let pixel = 0; pixel < gray.length; pixel++) {
    const red = rgba[4 * pixel], green = rgba[4 * pixel + 1], blue = rgba[4 * pixel + 2];
    // A gray pixel is kept exactly (the file was grayscale, or gray ink): no rounding question.
    gray[pixel] = red === green && green === blue
      ? red
      : toByte(Math.fround(Math.fround(Math.fround(red * LUMA[0]) + Math.fround(green * LUMA[1])) +
                           Math.fround(blue * LUMA[2])));
  }
  return gray;
}

/** Mean of the outermost one-pixel ring (every pixel of an image 2 pixels wide or high). */
export function ringMean(gray, width, height) {
  if (width <= 2 || height <= 2) {
    return gray.reduce((sum, value) => sum + value, 0) / gray.length;
  }
  let sum = 0;
  for (let x = 0; x < width; x++) sum += gray[x] + gray[(height - 1) * width + x];
  for (let y = 1; y < height - 1; y++) sum += gray[y * width] + gray[y * width + width - 1];
  return sum / (2 * width + 2 * (height - 2));
}

/** Apply the polarity mode ("auto", "as-is", "invert"); returns {gray, inverted}. */
export function applyPolarity(gray, width, height, mode) {
  if (!["auto", "as-is", "invert"].includes(mode)) throw new Error(`unknown polarity ${mode}`);
  const invert = mode === "invert" || (mode === "auto" && ringMean(gray, width, height) > 127);
  return {gray: invert ? gray.map((value) => 255 - value) : gray, inverted: invert};
}

/** Area interpolation: each output pixel is the mean of the source area it covers (exact fractional overlap). */
export function areaResize(source, width, height, newWidth, newHeight) {
  const spans = (from, to) => {
    const scale = from / to;
    return Array.from({length: to}, (_, index) => {
      const start = index * scale, end = (index + 1) * scale, parts = [];
      for (let cell = Math.floor(start); cell < end && cell < from; cell++) {
        parts.push([cell, Math.min(cell + 1, end) - Math.max(cell, start)]);
      }
      return {parts, size: scale};
    });
  };
  const columns = spans(width, newWidth), rows = spans(height, newHeight);
  const across = new Float64Array(height * newWidth); // horizontal pass
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < newWidth; x++) {
      let sum = 0;
      for (const [cell, weight] of columns[x].parts) sum += source[y * width + cell] * weight;
      across[y * newWidth + x] = sum / columns[x].size;
    }
  }
  const result = new Float64Array(newHeight * newWidth); // vertical pass
  for (let y = 0; y < newHeight; y++) {
    for (let x = 0; x < newWidth; x++) {
      let sum = 0;
      for (const [cell, weight] of rows[y].parts) sum += across[cell * newWidth + x] * weight;
      result[y * newWidth + x] = sum / rows[y].size;
    }
  }
  return result;
}

/** An uploaded image's gray pixels (after polarity) -> Uint8Array(784). */
export function uploadToModelInput(gray, width, height) {
  if (width === SIZE && height === SIZE) return Uint8Array.from(gray);
  return Uint8Array.from(areaResize(gray, width, height, SIZE, SIZE), toByte);
}

/** A drawing's gray pixels (ink > 0) -> Uint8Array(784), MNIST-centred; null when there is no ink. */
export function drawingToModelInput(gray, width, height) {
  let left = width, top = height, right = -1, bottom = -1;
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      if (gray[y * width + x] > 0) {
        left = Math.min(left, x); right = Math.max(right, x);
        top = Math.min(top, y); bottom = Math.max(bottom, y);
      }
    }
  }
  if (right < 0) return null;
  const boxWidth = right - left + 1, boxHeight = bottom - top + 1;
  const crop = new Float64Array(boxWidth * boxHeight);
  for (let y = 0; y < boxHeight; y++) {
    for (let x = 0; x < boxWidth; x++) crop[y * boxWidth + x] = gray[(top + y) * width + left + x];
  }
  const scale = FIT / Math.max(boxWidth, boxHeight);
  const fitWidth = Math.max(1, Math.round(boxWidth * scale)), fitHeight = Math.max(1, Math.round(boxHeight * scale));
  const fitted = areaResize(crop, boxWidth, boxHeight, fitWidth, fitHeight);

  // Centre of mass in continuous coordinates (pixel x covers [x, x + 1)).
  let mass = 0, massX = 0, massY = 0;
  for (let y = 0; y < fitHeight; y++) {
    for (let x = 0; x < fitWidth; x++) {
      const value = fitted[y * fitWidth + x];
      mass += value; massX += value * (x + 0.5); massY += value * (y + 0.5);
    }
  }
  const clamp = (value, high) => Math.min(high, Math.max(0, value));
  const offsetX = clamp(Math.round(SIZE / 2 - massX / mass), SIZE - fitWidth);
  const offsetY = clamp(Math.round(SIZE / 2 - massY / mass), SIZE - fitHeight);
  const field = new Uint8Array(SIZE * SIZE);
  for (let y = 0; y < fitHeight; y++) {
    for (let x = 0; x < fitWidth; x++) field[(offsetY + y) * SIZE + offsetX + x] = toByte(fitted[y * fitWidth + x]);
  }
  return field;
}

/** Uint8Array(784) -> the nested [28][28] list of the request's instance. */
export function toRows(pixels) {
  return Array.from({length: SIZE}, (_, y) => Array.from(pixels.subarray(y * SIZE, (y + 1) * SIZE)));
}
