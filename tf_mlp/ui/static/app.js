// The page: draw or drop an image, send it to the model's serving_default signature through the page's own
// server (a narrow proxy to TensorFlow Serving's REST API, see tf_mlp/ui/server.py), show what came back.
import {
  SIZE, applyPolarity, drawingToModelInput, grayFromRgba, toRows, uploadToModelInput,
} from "./preprocess.js";

// The brush: 22 px on the 280 px canvas. A shape drawn to fill the dashed 200 px guide box is scaled to 20 px
// (MNIST's fitted size), so a stroke becomes about 2.2 px wide at 28x28, MNIST's typical 2-3 px pen.
const BRUSH = 22;
const KEY_STEP = 10, KEY_FINE_STEP = 2;
const MAX_FILE_BYTES = 20 * 1024 * 1024; // decoded in the browser only; a bigger "image" is a mistake
const SIGNATURE = "serving_default";

const $ = (id) => document.getElementById(id);
const state = {config: null, classNames: null, lastFile: null, latestRequest: 0};

class ApiError extends Error {
  constructor(status, message, unreachable) {
    super(message);
    this.status = status;
    this.unreachable = Boolean(unreachable);
  }
}

// ---- Talking to the model (through the page's server) ------------------------------------------------

async function api(method, path, body) {
  let response;
  try {
    response = await fetch(path, {
      method, body, headers: body === undefined ? {} : {"Content-Type": "application/json"}, cache: "no-store",
    });
  } catch (error) {
    throw new ApiError(0, `The page's own server (tf-mlp ui) does not answer (${error.message}); ` +
      "start it again and reload the page.", true);
  }
  let answer;
  try {
    answer = await response.json();
  } catch {
    answer = {error: `HTTP ${response.status} with a body that is not JSON`};
  }
  if (!response.ok) {
    throw new ApiError(response.status, answer.error || JSON.stringify(answer), answer.unreachable);
  }
  return answer;
}

function modelDescription() {
  const {model, version, label} = state.config;
  const which = version !== null ? ` version ${version}` : label !== null ? ` label “${label}”` : "";
  return `model “${model}”${which}`;
}

function explain(error) {
  if (error.status === 0) return error.message;
  if (error.unreachable) {
    return `The model server is not reachable: ${error.message}. Start it (for example ` +
      "tf-mlp serve --model_base_path=models/tf_mlp) and press “Check again”.";
  }
  if (error.status === 404) {
    return `The ${modelDescription()} is not on the server at ${state.config.server}: ${error.message}`;
  }
  return `The model server refused the request (HTTP ${error.status}): ${error.message}`;
}

function showMessage(text, kind = "error") {
  const box = $("message");
  box.textContent = text;
  box.className = kind;
  box.hidden = !text;
}

// ---- Model name, version, state and signature -------------------------------------------------------

function describeTensor(name, info) {
  const dims = info.tensor_shape?.unknown_rank ? "?" :
    `[${(info.tensor_shape?.dim || []).map((dim) => (Number(dim.size) < 0 ? "?" : dim.size)).join(", ")}]`;
  return `${name} ${(info.dtype || "").replace(/^DT_/, "").toLowerCase()} ${dims}`;
}

async function refreshModel() {
  const {paths, server, model} = state.config;
  $("model-name").textContent = model;
  $("model-server").textContent = server;
  const [status, metadata] = await Promise.allSettled([api("GET", paths.status), api("GET", paths.metadata)]);
  if (status.status === "rejected") {
    $("model-version").textContent = "–";
    $("model-state").textContent = status.reason.unreachable ? "server unreachable" :
      status.reason.status === 404 ? "not found" : "unknown";
    $("model-signature").textContent = "";
    showMessage(explain(status.reason));
    return false;
  }
  const versions = status.value.model_version_status || [];
  const resolved = metadata.status === "fulfilled" ? metadata.value.model_spec?.version : undefined;
  const chosen = versions.find((entry) => String(entry.version) === String(state.config.version ?? resolved)) ||
    versions.filter((entry) => entry.state === "AVAILABLE")
      .sort((a, b) => Number(b.version) - Number(a.version))[0] || versions[0];
  $("model-version").textContent = chosen ? chosen.version : "none";
  $("model-state").textContent = chosen ? chosen.state : "no versions";
  if (metadata.status === "rejected") {
    $("model-signature").textContent = "";
    showMessage(explain(metadata.reason));
    return false;
  }
  const signatures = metadata.value.metadata?.signature_def?.signature_def || {};
  const signature = signatures[SIGNATURE];
  if (!signature) {
    $("model-signature").textContent = `This model has no ${SIGNATURE} signature; predictions will fail.`;
  } else {
    const inputs = Object.entries(signature.inputs || {}).map(([name, info]) => describeTensor(name, info));
    const outputs = Object.keys(signature.outputs || {}).sort();
    $("model-signature").textContent = `${SIGNATURE}: ${inputs.join(", ")} → ${outputs.join(", ")}`;
  }
  showMessage("");
  if (!state.classNames && signatures.classify?.outputs?.classes) await loadClassNames();
  return true;
}

// serving_default names only the top class. The full list comes from the model itself, once: its classify
// signature answers every class name with the scores, here for a blank image, through the same :predict path.
async function loadClassNames() {
  const png = await blankPng();
  const example = encodeExample("image", png);
  try {
    const answer = await api("POST", state.config.paths.predict, JSON.stringify(
      {signature_name: "classify", instances: [{b64: btoa(String.fromCharCode(...example))}]}));
    const classes = answer.predictions?.[0]?.classes;
    if (Array.isArray(classes) && classes.every((name) => typeof name === "string")) state.classNames = classes;
  } catch {
    // Names stay unknown: bars are labelled by class id, the top class by the name the model returns.
  }
}

async function blankPng() {
  const canvas = document.createElement("canvas");
  canvas.width = canvas.height = SIZE;
  const context = canvas.getContext("2d");
  context.fillStyle = "#000";
  context.fillRect(0, 0, SIZE, SIZE);
  const blob = await new Promise((resolve) => canvas.toBlob(resolve, "image/png"));
  return new Uint8Array(await blob.arrayBuffer());
}

// A serialized tf.Example {features {feature {key: name, value {bytes_list {value: bytes}}}}}: every message
// in the chain is field 1 (tag 0x0a) except the map entry's value (field 2, tag 0x12).
function encodeExample(name, bytes) {
  const varint = (value) => {
    const out = [];
    while (value > 127) { out.push((value & 127) | 128); value = Math.floor(value / 128); }
    out.push(value);
    return out;
  };
  const field = (tag, payload) => [tag, ...varint(payload.length), ...payload];
  const bytesList = field(0x0a, Array.from(bytes));
  const feature = field(0x0a, bytesList);
  const entry = [...field(0x0a, Array.from(new TextEncoder().encode(name))), ...field(0x12, feature)];
  return Uint8Array.from(field(0x0a, field(0x0a, entry)));
}

// ---- Prediction ----------------------------------------------------------------------------------------

function showSeen(pixels, note) {
  const canvas = $("seen");
  const image = canvas.getContext("2d").createImageData(SIZE, SIZE);
  pixels.forEach((value, index) => image.data.set([value, value, value, 255], 4 * index));
  canvas.getContext("2d").putImageData(image, 0, 0);
  canvas.setAttribute("aria-label", `The 28 by 28 image sent to the model: ${note}`);
  $("seen-note").textContent = note;
}

async function predict(pixels, note) {
  showSeen(pixels, note);
  const request = state.latestRequest = state.latestRequest + 1;
  document.body.dataset.busy = "true";
  try {
    const answer = await api("POST", state.config.paths.predict,
      JSON.stringify({signature_name: SIGNATURE, instances: [toRows(pixels)]}));
    if (request !== state.latestRequest) return; // a newer input was sent meanwhile
    showMessage("");
    showPrediction(answer, note);
  } catch (error) {
    if (request !== state.latestRequest) return;
    showMessage(explain(error));
    $("top").textContent = "No prediction: see the message above.";
    delete $("top").dataset.classId;
    delete $("top").dataset.input;
    $("chart").hidden = true;
    if (error.unreachable || error.status === 404) refreshModel();
  } finally {
    if (request === state.latestRequest) delete document.body.dataset.busy;
  }
}

function numbers(value) {
  return Array.isArray(value) && value.length > 0 && value.every((item) => typeof item === "number");
}

function showPrediction(answer, note) {
  // Which input this answer is for (read by people through the note beside the image, and by the tests).
  $("top").dataset.input = note;
  $("raw").textContent = JSON.stringify(answer, null, 1);
  $("raw-details").hidden = false;
  const prediction = answer.predictions?.[0];
  // This project's exports answer {probabilities, class_ids, class_names}; another model may answer a bare
  // score vector, or outputs of other names: chart the first score vector found, else show only the answer.
  let scores = null, classId = null, topName = null;
  if (numbers(prediction)) {
    scores = prediction;
  } else if (prediction && typeof prediction === "object" && !Array.isArray(prediction)) {
    scores = [prediction.probabilities, prediction.scores, ...Object.values(prediction)].find(numbers) || null;
    if (Number.isInteger(prediction.class_ids)) classId = prediction.class_ids;
    if (typeof prediction.class_names === "string") topName = prediction.class_names;
  }
  if (!scores) {
    $("top").textContent = "The model answered outputs this page cannot chart; see “What the server answered”.";
    delete $("top").dataset.classId;
    $("chart").hidden = true;
    $("raw-details").open = true;
    return;
  }
  if (classId === null) classId = scores.indexOf(Math.max(...scores));
  const total = scores.reduce((sum, value) => sum + value, 0);
  const probabilities = scores.every((value) => value >= 0 && value <= 1) && Math.abs(total - 1) < 1e-3;
  const names = scores.map((_, index) => state.classNames?.[index] ?? `class ${index}`);
  if (topName !== null) names[classId] = topName;
  const shown = (value) => (probabilities ? `${(100 * value).toFixed(1)}%` : value.toPrecision(4));
  const largest = Math.max(...scores.map(Math.abs)) || 1;

  const top = $("top");
  const label = names[classId] === `class ${classId}` ? names[classId] : `${names[classId]} (class ${classId})`;
  top.textContent = `${label}: ${shown(scores[classId])}` +
    (probabilities ? "" : " (scores, not probabilities)");
  top.dataset.classId = String(classId);
  top.dataset.className = names[classId];
  const body = $("chart").querySelector("tbody");
  body.replaceChildren(...scores.map((value, index) => {
    const row = document.createElement("tr");
    if (index === classId) row.className = "top";
    const name = document.createElement("th");
    name.scope = "row";
    name.textContent = names[index];
    const number = document.createElement("td");
    number.textContent = shown(value);
    const barCell = document.createElement("td");
    barCell.setAttribute("aria-hidden", "true");
    const bar = document.createElement("div");
    bar.className = "bar";
    bar.style.width = `${(100 * Math.max(0, value)) / (probabilities ? 1 : largest)}%`;
    barCell.append(bar);
    row.append(name, number, barCell);
    return row;
  }));
  $("chart").querySelector("th[scope=col]:nth-child(2)").textContent = probabilities ? "Probability" : "Score";
  $("chart").hidden = false;
}

// ---- Drawing (pointer and keyboard) --------------------------------------------------------------------

const drawing = $("drawing");
const pen = drawing.getContext("2d", {willReadFrequently: true});
const cursor = {x: drawing.width / 2, y: drawing.height / 2, down: false};
let pointerStroke = null;

function clearDrawing() {
  pen.fillStyle = "#000";
  pen.fillRect(0, 0, drawing.width, drawing.height);
  pen.strokeStyle = pen.fillStyle = "#fff";
  pen.lineWidth = BRUSH;
  pen.lineCap = pen.lineJoin = "round";
}

function ink(from, to) {
  pen.beginPath();
  pen.moveTo(from.x, from.y);
  pen.lineTo(to.x, to.y);
  pen.stroke();
  // A click without movement still leaves a round dot.
  pen.beginPath();
  pen.arc(to.x, to.y, BRUSH / 2, 0, 2 * Math.PI);
  pen.fill();
}

function canvasPoint(event) {
  const box = drawing.getBoundingClientRect();
  return {x: (event.clientX - box.left) * drawing.width / box.width,
          y: (event.clientY - box.top) * drawing.height / box.height};
}

function predictDrawing() {
  const gray = grayFromRgba(pen.getImageData(0, 0, drawing.width, drawing.height).data);
  const pixels = drawingToModelInput(gray, drawing.width, drawing.height);
  if (!pixels) {
    showMessage("Draw something first: the canvas is empty.", "info");
    return;
  }
  predict(pixels, "the drawing, cropped to its ink, fitted into 20×20 and centred by centre of mass");
}

drawing.addEventListener("pointerdown", (event) => {
  drawing.setPointerCapture(event.pointerId);
  pointerStroke = canvasPoint(event);
  ink(pointerStroke, pointerStroke);
});
drawing.addEventListener("pointermove", (event) => {
  if (!pointerStroke) return;
  const point = canvasPoint(event);
  ink(pointerStroke, point);
  pointerStroke = point;
});
for (const type of ["pointerup", "pointercancel"]) {
  drawing.addEventListener(type, () => {
    if (!pointerStroke) return;
    pointerStroke = null;
    predictDrawing();
  });
}

function showCursor() {
  const overlay = $("cursor").getContext("2d");
  overlay.clearRect(0, 0, drawing.width, drawing.height);
  // Only for keyboard focus: after a mouse stroke the canvas has focus too, but the ring would be noise.
  if (!drawing.matches(":focus-visible")) return;
  overlay.strokeStyle = "#f5a623";
  overlay.lineWidth = 2;
  overlay.beginPath();
  overlay.arc(cursor.x, cursor.y, BRUSH / 2, 0, 2 * Math.PI);
  overlay.stroke();
  drawing.setAttribute("aria-label", `Drawing area, 280 by 280 pixels; pen ${cursor.down ? "down" : "up"} ` +
    `at ${Math.round(cursor.x)}, ${Math.round(cursor.y)}`);
}

drawing.addEventListener("keydown", (event) => {
  const step = event.shiftKey ? KEY_FINE_STEP : KEY_STEP;
  const moves = {ArrowLeft: [-step, 0], ArrowRight: [step, 0], ArrowUp: [0, -step], ArrowDown: [0, step]};
  if (event.key in moves) {
    const from = {...cursor};
    cursor.x = Math.min(drawing.width, Math.max(0, cursor.x + moves[event.key][0]));
    cursor.y = Math.min(drawing.height, Math.max(0, cursor.y + moves[event.key][1]));
    if (cursor.down) ink(from, cursor);
  } else if (event.key === " ") {
    cursor.down = !cursor.down;
    if (cursor.down) ink(cursor, cursor);
  } else if (event.key === "Enter") {
    cursor.down = false;
    predictDrawing();
  } else {
    return;
  }
  event.preventDefault();
  showCursor();
});
drawing.addEventListener("focus", showCursor);
drawing.addEventListener("blur", showCursor);

$("predict-drawing").addEventListener("click", predictDrawing);
$("clear").addEventListener("click", () => {
  clearDrawing();
  cursor.down = false;
  showCursor();
});

// ---- Uploads -------------------------------------------------------------------------------------------

function polarity() {
  return document.querySelector("input[name=polarity]:checked").value;
}

async function isPngOrJpeg(file) {
  const head = new Uint8Array(await file.slice(0, 8).arrayBuffer());
  const png = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a].every((byte, index) => head[index] === byte);
  const jpeg = head[0] === 0xff && head[1] === 0xd8 && head[2] === 0xff;
  return png || jpeg;
}

async function predictFile(file) {
  if (file.size > MAX_FILE_BYTES) {
    showMessage(`${file.name} is ${(file.size / 1048576).toFixed(1)} MB; images up to 20 MB are read.`);
    return;
  }
  if (!(await isPngOrJpeg(file))) {
    showMessage(`${file.name} is not a PNG or JPEG file.`);
    return;
  }
  let bitmap;
  try {
    // No colour management and no premultiplied alpha: the pixels as stored, like the model's own decoder.
    bitmap = await createImageBitmap(file, {colorSpaceConversion: "none", premultiplyAlpha: "none"});
  } catch {
    showMessage(`${file.name} could not be decoded as an image.`);
    return;
  }
  state.lastFile = file;
  const {width, height} = bitmap;
  const canvas = new OffscreenCanvas(width, height);
  const context = canvas.getContext("2d", {willReadFrequently: true});
  context.drawImage(bitmap, 0, 0);
  bitmap.close();
  const mode = polarity();
  const {gray, inverted} = applyPolarity(grayFromRgba(context.getImageData(0, 0, width, height).data),
                                         width, height, mode);
  const preview = $("upload-preview");
  if (preview.src) URL.revokeObjectURL(preview.src);
  preview.src = URL.createObjectURL(file);
  preview.alt = `The uploaded file ${file.name}`;
  preview.hidden = false;
  const size = width === SIZE && height === SIZE ? "28×28, used as is" :
    `${width}×${height}, stretched to 28×28 with area interpolation`;
  const flipped = inverted ? (mode === "auto" ? "inverted (light border)" : "inverted") : "not inverted";
  predict(uploadToModelInput(gray, width, height), `${file.name}: ${size}; ${flipped}`);
}

$("file").addEventListener("change", () => {
  const [file] = $("file").files;
  if (file) predictFile(file);
});
const zone = $("drop-zone");
zone.addEventListener("dragover", (event) => {
  event.preventDefault();
  zone.classList.add("over");
});
zone.addEventListener("dragleave", () => zone.classList.remove("over"));
zone.addEventListener("drop", (event) => {
  event.preventDefault();
  zone.classList.remove("over");
  const [file] = event.dataTransfer.files;
  if (file) predictFile(file);
});
for (const radio of document.querySelectorAll("input[name=polarity]")) {
  radio.addEventListener("change", () => state.lastFile && predictFile(state.lastFile));
}

// ---- Start ---------------------------------------------------------------------------------------------

$("check-again").addEventListener("click", refreshModel);

async function start() {
  clearDrawing();
  try {
    state.config = await api("GET", "/ui/config");
  } catch (error) {
    showMessage(`The page's server did not answer its configuration: ${error.message}`);
    return;
  }
  await refreshModel();
  document.body.dataset.ready = "true";
}

start();
