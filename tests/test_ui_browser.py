"""The `tf-mlp ui` page in a real browser (headless Chromium under Playwright) against a real served export.

The session's real Fashion-MNIST model (the default model trained one epoch and exported by tf_mlp.export:
tests/real_data.py) is served by `tf-mlp serve` in a subprocess; the page by `tf-mlp ui` in another. Each test
does what a person would (a mouse stroke, the keyboard, a file picked, the server stopped) and checks what the
page sent and showed against the model run in-process on the same pixels. A screenshot of each state goes to
test-artifacts/ui/ (see tests/ui_helpers.py).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import requests

from tests import ui_helpers
from tests.conftest import FASHION_MNIST_DIR, png_bytes
from tests.predictions import assert_probabilities_close
from tf_mlp import contract
from tf_mlp.data import catalog
from tf_mlp.server.process import ServerProcess

pytestmark = [pytest.mark.slow, pytest.mark.real_data]  # the session's real Fashion-MNIST run

PREDICT_TIMEOUT_MS = 60_000


@pytest.fixture(scope="module")
def fashion(tmp_path_factory, request):
    ui_helpers.require(FASHION_MNIST_DIR.is_dir(), f"{FASHION_MNIST_DIR} is missing (make data installs it)")
    run = request.getfixturevalue("fashion_mnist_run")
    return {"root": tmp_path_factory.mktemp("ui-browser"), "version_dir": run.export.path,
            "images": run.splits.test.images, "labels": run.splits.test.labels}


@pytest.fixture(scope="module")
def in_process(fashion):
    """serving_default of the export, run in this process: the reference every page answer is held to."""
    import tensorflow as tf

    signature = tf.saved_model.load(str(fashion["version_dir"])).signatures[contract.SERVING_SIGNATURE]

    def predict(pixels: np.ndarray) -> dict:
        outputs = signature(images=tf.constant(np.asarray(pixels, np.uint8).reshape(-1, 28, 28)))
        return {name: tensor.numpy() for name, tensor in outputs.items()}

    return predict


@pytest.fixture(scope="module")
def model_server(fashion):
    server = ServerProcess(fashion["root"] / "serve.log", f"--model_base_path={fashion['version_dir'].parent}")
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def page_url(model_server, fashion):
    ui = ui_helpers.UiProcess(fashion["root"] / "ui.log", "--server", f"rest://127.0.0.1:{model_server.rest_port}")
    yield ui.url
    ui.stop()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    ui_helpers.require(ui_helpers.CHROMIUM.exists(), f"{ui_helpers.CHROMIUM} is missing (make browser installs it)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        ui_helpers.require(False, "Playwright is not installed (pip install -e '.[test]')")
    with sync_playwright() as playwright:
        context = ui_helpers.launch_browser(playwright, tmp_path_factory.mktemp("chromium-profile"))
        yield context
        context.close()


@pytest.fixture
def page(browser, page_url):
    page = browser.new_page()
    errors = []
    page.on("pageerror", lambda error: errors.append(error))
    page.goto(page_url)
    page.wait_for_selector("body[data-ready]")
    yield page
    page.close()
    assert not errors, f"the page raised: {errors}"


def _is_serving_default(request) -> bool:
    return request.url.endswith(":predict") and json.loads(request.post_data)["signature_name"] == "serving_default"


def _predicted(page, action, input_starts: str):
    """Do action; return (pixels sent, server's answer) once the page shows the answer for that input."""
    with page.expect_response(lambda response: _is_serving_default(response.request),
                              timeout=PREDICT_TIMEOUT_MS) as answer:
        action()
    document = json.loads(answer.value.request.post_data)
    assert set(document) == {"signature_name", "instances"} and len(document["instances"]) == 1
    pixels = np.array(document["instances"][0])
    assert pixels.shape == (28, 28) and pixels.min() >= 0 and pixels.max() <= 255
    page.wait_for_function("start => (document.querySelector('#top').dataset.input || '').startsWith(start)",
                           arg=input_starts, timeout=PREDICT_TIMEOUT_MS)
    return pixels.astype(np.uint8), answer.value.json()


def _shown(page) -> dict:
    """The page's top class and chart, as shown."""
    rows = page.locator("#chart tbody tr")
    cells = [rows.nth(index) for index in range(rows.count())]
    return {
        "class_id": int(page.locator("#top").get_attribute("data-class-id")),
        "top_text": page.locator("#top").inner_text(),
        "names": [row.locator("th").inner_text() for row in cells],
        "percent": [float(row.locator("td").first.inner_text().rstrip("%")) for row in cells],
        "top_row": page.locator("#chart tr.top th").inner_text(),
    }


def _check_against_in_process(page, pixels, answer, in_process):
    expected = in_process(pixels)
    prediction = answer["predictions"][0]
    # The model server is another process (another batch, maybe other kernels): within the tolerance.
    assert_probabilities_close(prediction["probabilities"], expected["probabilities"][0])
    shown = _shown(page)
    assert shown["class_id"] == prediction["class_ids"] == int(expected["class_ids"][0])
    assert shown["names"] == list(catalog.CATALOG["fashion_mnist"].class_names)  # every name, from the model itself
    assert shown["top_row"] == expected["class_names"][0].decode() == prediction["class_names"]
    np.testing.assert_allclose(shown["percent"], 100 * expected["probabilities"][0], atol=0.051)
    return shown


def _upload(page, path):
    # Found by its label, as a screen reader announces it.
    picker = page.get_by_label("Image file (PNG or JPEG): choose one, or drop it here")
    return _predicted(page, lambda: picker.set_input_files(str(path)), path.name + ":")


# --- Drawing -----------------------------------------------------------------------------------------------


def test_a_mouse_stroke_is_mnist_centred_and_gets_the_models_prediction(page, in_process):
    box = page.locator("#drawing").bounding_box()

    def stroke():
        # A tall, slanted stroke in the upper left of the canvas: the page must crop, fit and centre it.
        page.mouse.move(box["x"] + 60, box["y"] + 40)
        page.mouse.down()
        for step in range(1, 25):
            page.mouse.move(box["x"] + 60 + 2 * step, box["y"] + 40 + 6 * step)
        page.mouse.up()

    pixels, answer = _predicted(page, stroke, "the drawing")
    _check_against_in_process(page, pixels, answer, in_process)
    rows, columns = np.nonzero(pixels)
    assert max(rows.max() - rows.min(), columns.max() - columns.min()) + 1 in (19, 20)  # fitted into 20x20
    weights = pixels[rows, columns].astype(float)
    centre = [np.average(rows + 0.5, weights=weights), np.average(columns + 0.5, weights=weights)]
    np.testing.assert_allclose(centre, [14, 14], atol=0.6)  # centre of mass at the field's centre, whole-pixel shift
    page.screenshot(path=ui_helpers.artifacts_dir() / "drawing.png", full_page=True)


def test_the_canvas_can_be_drawn_and_submitted_with_the_keyboard(page, in_process):
    page.keyboard.press("Tab")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "drawing"
    assert page.evaluate("getComputedStyle(document.activeElement).outlineStyle") == "solid"  # visible focus

    def draw_with_keys():
        page.keyboard.press("Space")  # pen down
        for _ in range(8):
            page.keyboard.press("ArrowDown")
        for _ in range(4):
            page.keyboard.press("ArrowRight")
        page.keyboard.press("Space")  # pen up
        page.keyboard.press("Enter")

    pixels, answer = _predicted(page, draw_with_keys, "the drawing")
    _check_against_in_process(page, pixels, answer, in_process)
    assert "pen up" in page.locator("#drawing").get_attribute("aria-label")
    page.screenshot(path=ui_helpers.artifacts_dir() / "keyboard.png", full_page=True)


# --- Uploads -----------------------------------------------------------------------------------------------


def test_uploaded_test_images_get_the_same_class_as_the_in_process_model(page, fashion, in_process, tmp_path):
    # The first test image of every class, as the PNG files a person would drop.
    agree = 0
    for label in range(10):
        index = int(np.flatnonzero(fashion["labels"] == label)[0])
        image = fashion["images"][index]
        path = tmp_path / f"test-{index}-{label}.png"
        path.write_bytes(png_bytes(image))
        pixels, answer = _upload(page, path)
        np.testing.assert_array_equal(pixels, image)  # a 28x28 file is used exactly as it is
        _check_against_in_process(page, pixels, answer, in_process)
        agree += answer["predictions"][0]["class_ids"] == int(in_process(image)["class_ids"][0])
        assert page.locator("#seen-note").inner_text() == f"{path.name}: 28×28, used as is; not inverted"
        if label == 9:
            page.screenshot(path=ui_helpers.artifacts_dir() / "upload.png", full_page=True)
    assert agree == 10
    print(f"page and in-process model agree on {agree}/10 uploaded Fashion-MNIST test images")


def test_polarity_and_resizing_follow_the_models_own_image_rules(page, fashion, in_process, tmp_path):
    import tensorflow as tf

    from tf_mlp.export.images import decode_one

    image = fashion["images"][0]  # an ankle boot on black
    # Dark on light and three times larger: "auto" sees a light border and inverts; 84 -> 28 by area is exact.
    light = tmp_path / "light-background.png"
    light.write_bytes(png_bytes(255 - np.kron(image, np.ones((3, 3), np.uint8))))
    pixels, answer = _upload(page, light)
    np.testing.assert_array_equal(pixels, image)
    _check_against_in_process(page, pixels, answer, in_process)
    assert "inverted (light border)" in page.locator("#seen-note").inner_text()
    page.screenshot(path=ui_helpers.artifacts_dir() / "upload-inverted.png", full_page=True)

    # Changing the polarity re-sends the same file.
    pixels, _ = _predicted(page, lambda: page.get_by_role("radio", name="as is").check(), light.name + ":")
    np.testing.assert_array_equal(pixels, 255 - image)
    as_is = tmp_path / "as-is.png"
    as_is.write_bytes(png_bytes(image))
    pixels, _ = _predicted(page, lambda: page.get_by_role("radio", name="invert", exact=True).check(), light.name + ":")
    np.testing.assert_array_equal(pixels, image)
    pixels, _ = _upload(page, as_is)
    np.testing.assert_array_equal(pixels, 255 - image)

    # Odd sizes and colour: the page's area resize and luma against the exported model's own (TensorFlow's),
    # which never inverts.
    pixels, _ = _predicted(page, lambda: page.get_by_role("radio", name="as is").check(), as_is.name + ":")
    np.testing.assert_array_equal(pixels, image)
    random = np.random.default_rng(0)
    for name, array in (("odd-size.png", random.integers(0, 256, (37, 51), dtype=np.uint8)),
                        ("colour.png", random.integers(0, 120, (45, 30, 3), dtype=np.uint8))):
        path = tmp_path / name
        path.write_bytes(png_bytes(array))
        pixels, answer = _upload(page, path)
        reference = decode_one(tf.constant(path.read_bytes()), tf.constant(0), "image").numpy()
        difference = np.abs(pixels.astype(int) - reference.astype(int))
        assert difference.max() <= 1 and np.mean(difference == 0) > 0.97, name  # rounding ties only
        _check_against_in_process(page, pixels, answer, in_process)


def test_a_jpeg_dropped_on_the_page_is_read_like_tensorflow_reads_it(page, fashion, in_process, tmp_path):
    import tensorflow as tf

    from tf_mlp.export.images import decode_one

    image = np.kron(fashion["images"][1], np.ones((2, 2), np.uint8))  # a pullover, 56x56
    jpeg = tf.io.encode_jpeg(image[:, :, None], quality=90).numpy()

    def drop():
        # What a drag from the file manager delivers: a DataTransfer holding the file, dropped on the zone.
        transfer = page.evaluate_handle(
            """bytes => { const transfer = new DataTransfer();
                          transfer.items.add(new File([new Uint8Array(bytes)], "pullover.jpg", {type: "image/jpeg"}));
                          return transfer; }""", list(jpeg))
        page.dispatch_event("#drop-zone", "drop", {"dataTransfer": transfer})

    pixels, answer = _predicted(page, drop, "pullover.jpg:")
    reference = decode_one(tf.constant(jpeg), tf.constant(0), "image").numpy()
    # JPEG decoders may differ by a few levels (TensorFlow's and the browser's use different inverse DCTs);
    # PNG, lossless, matches exactly (the tests above).
    difference = np.abs(pixels.astype(int) - reference.astype(int))
    assert difference.max() <= 8 and difference.mean() < 1.5, (difference.max(), difference.mean())
    _check_against_in_process(page, pixels, answer, in_process)
    note = "pullover.jpg: 56×56, stretched to 28×28 with area interpolation; not inverted"
    assert page.locator("#seen-note").inner_text() == note


def test_the_auto_polarity_rule_is_the_mean_of_the_outermost_ring_above_127(page):
    # The rule the Python clients share, on the page's own functions: exactly at 127 stays, just above inverts.
    results = page.evaluate("""async () => {
        const {applyPolarity, ringMean} = await import("/static/preprocess.js");
        const image = (width, height, ring, inside) => Uint8Array.from({length: width * height}, (_, index) => {
            const x = index % width, y = Math.floor(index / width);
            return x === 0 || y === 0 || x === width - 1 || y === height - 1 ? ring : inside; });
        const uneven = image(4, 3, 127, 0); uneven[0] = 128;  // ring mean 127.1
        return {
            at127: applyPolarity(image(5, 4, 127, 255), 5, 4, "auto").inverted,
            above: applyPolarity(uneven, 4, 3, "auto").inverted,
            ringOnly: ringMean(image(5, 4, 200, 0), 5, 4),
            thin: ringMean(Uint8Array.from([10, 20, 30, 40]), 4, 1),
            asIs: applyPolarity(image(3, 3, 255, 0), 3, 3, "as-is").inverted,
            invert: Array.from(applyPolarity(Uint8Array.from([0, 200]), 2, 1, "invert").gray),
        };
    }""")
    assert results == {"at127": False, "above": True, "ringOnly": 200, "thin": 25, "asIs": False, "invert": [255, 55]}


def test_a_file_that_is_not_an_image_is_named_in_a_message(page, tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("not an image")
    page.set_input_files("#file", str(path))
    page.wait_for_selector("#message:not([hidden])")
    assert page.locator("#message").inner_text() == "notes.png is not a PNG or JPEG file."


# --- Other models and servers -------------------------------------------------------------------------------


def test_a_missing_model_is_named(browser, model_server, fashion):
    ui = ui_helpers.UiProcess(fashion["root"] / "ui-missing.log", "--server", model_server.rest_url, "--model", "shoes")
    page = browser.new_page()
    try:
        page.goto(ui.url)
        page.wait_for_selector("body[data-ready]")
        message = page.locator("#message")
        assert message.is_visible()
        where = f"rest://127.0.0.1:{model_server.rest_port}"
        assert message.inner_text().startswith(f"The model “shoes” is not on the server at {where}:")
        # The server's own words for the missing model, passed on.
        servers_error = requests.get(f"{model_server.rest_url}/v1/models/shoes", timeout=30).json()["error"]
        assert message.inner_text().endswith(servers_error) and "shoes" in servers_error
        assert page.locator("#model-state").inner_text() == "not found"
        page.screenshot(path=ui_helpers.artifacts_dir() / "missing-model.png", full_page=True)
    finally:
        page.close()
        ui.stop()


def _generic_model(base, outputs):
    """A SavedModel that is not a tf-mlp export: serving_default takes the same images, answers `outputs`."""
    import tensorflow as tf

    class Generic(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 28, 28], tf.uint8, name="images")])
        def serve(self, images):
            return outputs(tf.reduce_mean(tf.cast(images, tf.float32), axis=[1, 2]))

    module = Generic()
    tf.saved_model.save(module, str(base / "1"), signatures={"serving_default": module.serve})
    return base


def _logits(mean):
    import tensorflow as tf

    return {"logits": tf.stack([mean / 100 - 1, -mean / 50, mean / 30 - 2], axis=1)}


def _grid(mean):
    import tensorflow as tf

    return {"grid": tf.reshape(tf.tile(mean[:, None], [1, 4]), [-1, 2, 2])}


@pytest.mark.parametrize("outputs", [_logits, _grid], ids=["scores", "grid"])
def test_a_generic_models_answer_is_charted_when_it_is_a_score_vector_and_shown_as_is_otherwise(
        browser, tmp_path, outputs):
    from tests.serving_helpers import start_server
    from tf_mlp.server.options import DISABLED_PORT
    from tf_mlp.ui.server import UiOptions, UiServer

    base = _generic_model(tmp_path / "generic", outputs)
    server = start_server(model_name="generic", model_base_path=str(base), port=DISABLED_PORT)  # REST only
    ui = UiServer(UiOptions(server=f"rest://127.0.0.1:{server.rest_port}", model="generic", port=0)).start()
    page = browser.new_page()
    try:
        page.goto(ui.url)
        page.wait_for_selector("body[data-ready]")
        assert page.locator("#model-signature").inner_text() == "serving_default: images uint8 [?, 28, 28] → " + \
            next(iter(outputs(np.zeros([1], np.float32))))
        image = np.full((28, 28), 90, np.uint8)
        path = tmp_path / "gray.png"
        path.write_bytes(png_bytes(image))
        _, answer = _upload(page, path)
        if outputs is _logits:
            scores = answer["predictions"][0]
            assert scores == pytest.approx([90 / 100 - 1, -90 / 50, 90 / 30 - 2], abs=1e-5)
            shown = _shown(page)
            assert shown["names"] == ["class 0", "class 1", "class 2"] and shown["class_id"] == 2
            assert page.locator("#top").inner_text() == "class 2: 1.000 (scores, not probabilities)"
        else:
            assert answer["predictions"][0] == [[90, 90], [90, 90]]
            assert page.locator("#chart").is_hidden()
            assert "cannot chart" in page.locator("#top").inner_text()
            assert json.loads(page.locator("#raw").inner_text()) == answer
            assert page.locator("#raw").is_visible()
        page.screenshot(path=ui_helpers.artifacts_dir() / f"generic-{outputs.__name__[1:]}.png", full_page=True)
    finally:
        page.close()
        ui.stop()
        server.stop()


def test_a_stopped_page_server_is_told_apart_from_a_stopped_model_server(browser, model_server):
    from tf_mlp.ui.server import UiOptions, UiServer

    ui = UiServer(UiOptions(server=f"rest://127.0.0.1:{model_server.rest_port}", port=0)).start()
    page = browser.new_page()
    try:
        page.goto(ui.url)
        page.wait_for_selector("body[data-ready]")
        ui.stop()
        page.get_by_role("button", name="Check again").click()
        page.wait_for_selector("#message:not([hidden])")
        assert page.locator("#message").inner_text().startswith("The page's own server (tf-mlp ui) does not answer (")
        assert page.locator("#message").inner_text().endswith("start it again and reload the page.")
    finally:
        page.close()
        ui.stop()


def test_the_server_down_message_appears_and_clears_when_it_is_back(page, model_server, in_process):
    assert page.locator("#model-state").inner_text() == "AVAILABLE"
    model_server.stop()
    try:
        page.get_by_role("button", name="Check again").click()
        page.wait_for_selector("#message:not([hidden])")
        message = page.locator("#message").inner_text()
        assert message.startswith(f"The model server is not reachable: cannot reach the model server at "
                                  f"rest://127.0.0.1:{model_server.rest_port}: Connection refused.")
        assert page.locator("#model-state").inner_text() == "server unreachable"
        # Predicting now says the same, and shows no stale answer.
        page.get_by_role("button", name="Predict drawing").click()  # empty canvas: asks for a drawing first
        assert page.locator("#message").inner_text() == "Draw something first: the canvas is empty."
        box = page.locator("#drawing").bounding_box()
        with page.expect_response(lambda response: _is_serving_default(response.request)) as answer:
            page.mouse.move(box["x"] + 140, box["y"] + 60)
            page.mouse.down()
            page.mouse.move(box["x"] + 140, box["y"] + 220, steps=10)
            page.mouse.up()
        assert answer.value.status == 502
        page.wait_for_function("document.querySelector('#top').textContent.startsWith('No prediction:')")
        assert page.locator("#message").inner_text() == message
        assert page.locator("#chart").is_hidden()
        page.screenshot(path=ui_helpers.artifacts_dir() / "server-down.png", full_page=True)
    finally:
        model_server.start()
    page.get_by_role("button", name="Check again").click()
    page.wait_for_selector("#message", state="hidden")
    assert page.locator("#model-state").inner_text() == "AVAILABLE"
    pixels, answer = _predicted(page, lambda: page.get_by_role("button", name="Predict drawing").click(), "the drawing")
    _check_against_in_process(page, pixels, answer, in_process)
