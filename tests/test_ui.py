"""`tf-mlp ui`'s server: the page's files, and a proxy that forwards exactly one model's three REST requests.

The model server behind it is the embedded TensorFlow-Serving-compatible server with the tiny export of
tests/serving_helpers; every forwarded answer is compared with the same request sent to it directly. The page
itself, in a real browser, is tested in tests/test_ui_browser.py.
"""

from __future__ import annotations

import configparser
import http.server
import json
import pathlib
import re
import socket
import threading
import time

import pytest
import requests
from click.testing import CliRunner

from tests import serving_helpers
from tests.conftest import free_port
from tf_mlp import contract
from tf_mlp.cli import main
from tf_mlp.errors import ConfigError, TfMlpError
from tf_mlp.server.options import DISABLED_PORT
from tf_mlp.ui.server import STATIC_DIR, ModelPaths, UiOptions, UiServer

IMAGE = [[0] * 28 for _ in range(28)]


@pytest.fixture(scope="module")
def model_server(tmp_path_factory):
    base = serving_helpers.model_base(tmp_path_factory.mktemp("ui-proxy"), versions=(1, 2))
    server = serving_helpers.start_server(model_base_path=str(base), port=DISABLED_PORT)  # REST only
    yield server
    server.stop()


def _ui(model_server, **options) -> UiServer:
    return UiServer(UiOptions(server=f"rest://127.0.0.1:{model_server.rest_port}", port=0, **options)).start()


@pytest.fixture(scope="module")
def ui(model_server):
    with _ui(model_server) as server:
        yield server


def _predict_body(signature=contract.SERVING_SIGNATURE) -> bytes:
    return json.dumps({"signature_name": signature, "instances": [IMAGE]}).encode()


# --- Forwarding -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("method, path", [
    ("GET", "v1/models/tf_mlp"),
    ("GET", "v1/models/tf_mlp/metadata"),
    ("POST", "v1/models/tf_mlp:predict"),
])
def test_the_three_model_requests_answer_as_the_model_server_does(ui, model_server, method, path):
    body = _predict_body() if method == "POST" else None
    through_page = requests.request(method, ui.url + path, data=body, timeout=30)
    direct = requests.request(method, f"{model_server.rest_url}/{path}", data=body, timeout=30)
    assert through_page.status_code == direct.status_code == 200
    assert through_page.json() == direct.json()
    assert through_page.headers["Content-Type"].startswith("application/json")


def test_a_refused_request_keeps_the_model_servers_status_and_message(ui, model_server):
    body = json.dumps({"instances": [[1, 2, 3]]}).encode()
    through_page = requests.post(ui.url + "v1/models/tf_mlp:predict", data=body, timeout=30)
    direct = requests.post(f"{model_server.rest_url}/v1/models/tf_mlp:predict", data=body, timeout=30)
    assert through_page.status_code == direct.status_code == 400
    assert through_page.json() == direct.json() and "shape" in through_page.json()["error"]


@pytest.mark.parametrize("method, path", [
    ("POST", "v1/models/tf_mlp:classify"),
    ("POST", "v1/models/tf_mlp:regress"),
    ("GET", "v1/models/tf_mlp/versions/1"),
    ("POST", "v1/models/tf_mlp/versions/1:predict"),
    ("POST", "v1/models/tf_mlp/labels/stable:predict"),
    ("GET", "v1/models/other"),
    ("POST", "v1/models/other:predict"),
    ("GET", "v1/models/tf_mlp:predict"),
    ("PUT", "v1/models/tf_mlp:predict"),
    ("DELETE", "v1/models/tf_mlp"),
    ("GET", "v1/models/tf_mlp%2Fversions%2F1"),
    ("GET", "monitoring/prometheus/metrics"),
    ("GET", "static/../server.py"),
    ("GET", "static/%2e%2e/server.py"),
])
def test_nothing_else_is_forwarded(ui, method, path):
    answer = requests.request(method, ui.url + path, data=_predict_body() if method != "GET" else None, timeout=30)
    assert answer.status_code in (403, 404, 405), answer.text
    assert "error" in answer.json()
    if path.startswith("v1/"):
        allowed = "GET /v1/models/tf_mlp, GET /v1/models/tf_mlp/metadata, POST /v1/models/tf_mlp:predict"
        assert f"forwards only {allowed}" in answer.json()["error"]


def test_a_version_or_label_is_asked_for_in_every_forwarded_url():
    assert ModelPaths.of(UiOptions(version=2)) == ModelPaths(
        "/v1/models/tf_mlp/versions/2", "/v1/models/tf_mlp/versions/2/metadata", "/v1/models/tf_mlp/versions/2:predict")
    # TensorFlow Serving answers status per model or version, not per label.
    assert ModelPaths.of(UiOptions(label="canary")) == ModelPaths(
        "/v1/models/tf_mlp", "/v1/models/tf_mlp/labels/canary/metadata", "/v1/models/tf_mlp/labels/canary:predict")
    # A name cannot smuggle in path segments.
    assert ModelPaths.of(UiOptions(model="a/../b")).predict == "/v1/models/a%2F..%2Fb:predict"


def test_a_version_is_served_and_a_missing_version_is_the_servers_404(model_server):
    # The server's default version policy serves the latest version only: 2 of the base's 1 and 2.
    with _ui(model_server, version=2) as ui:
        config = requests.get(ui.url + "ui/config", timeout=30).json()
        assert config["paths"]["predict"] == "/v1/models/tf_mlp/versions/2:predict" and config["version"] == 2
        metadata = requests.get(ui.url + "v1/models/tf_mlp/versions/2/metadata", timeout=30).json()
        assert metadata["model_spec"]["version"] == "2"
        assert requests.post(ui.url + "v1/models/tf_mlp:predict", data=_predict_body(), timeout=30).status_code == 404
    with _ui(model_server, version=1) as ui:
        answer = requests.post(ui.url + "v1/models/tf_mlp/versions/1:predict", data=_predict_body(), timeout=30)
        direct = requests.post(f"{model_server.rest_url}/v1/models/tf_mlp/versions/1:predict", data=_predict_body(),
                               timeout=30)
        assert answer.status_code == direct.status_code == 404 and answer.json() == direct.json()
        assert "Servable not found" in answer.json()["error"]


def test_without_version_or_label_the_page_gets_the_stable_version_where_the_server_has_that_label(
        tmp_path, ui, model_server):
    # The module's server has no labels: the page gets its latest version (2), as the server's own default.
    assert requests.get(ui.url + "v1/models/tf_mlp/metadata", timeout=30).json()["model_spec"]["version"] == "2"
    base = serving_helpers.model_base(tmp_path, versions=(1, 2))
    config = tmp_path / "models.config"
    config.write_text(f'model_config_list {{ config {{ name: "tf_mlp" base_path: "{base}" model_platform: '
                      '"tensorflow" model_version_policy { specific { versions: 1 versions: 2 } } '
                      'version_labels { key: "stable" value: 1 } } }')
    labelled = serving_helpers.start_server(model_config_file=str(config), port=DISABLED_PORT,
                                            allow_version_labels_for_unavailable_models=True)
    try:
        with _ui(labelled) as page:
            assert requests.get(page.url + "ui/config", timeout=30).json()["preferred_label"] == "stable"
            metadata = requests.get(page.url + "v1/models/tf_mlp/metadata", timeout=30).json()
            assert metadata["model_spec"]["version"] == "1"
            answer = requests.post(page.url + "v1/models/tf_mlp:predict", data=_predict_body(), timeout=30)
            direct = requests.post(f"{labelled.rest_url}/v1/models/tf_mlp/labels/stable:predict",
                                   data=_predict_body(), timeout=30)
            assert answer.status_code == 200 and answer.json() == direct.json()
    finally:
        labelled.stop()


# --- Limits and origin -----------------------------------------------------------------------------------


def test_a_body_over_the_limit_is_refused_with_413(model_server):
    with _ui(model_server, max_request_bytes=4096) as ui:
        answer = requests.post(ui.url + "v1/models/tf_mlp:predict", data=b" " * 4097, timeout=30)
        assert answer.status_code == 413
        assert answer.json() == {"error": "the request body exceeds 4096 bytes"}
        small = requests.post(ui.url + "v1/models/tf_mlp:predict", data=_predict_body(), timeout=30)
        assert small.status_code == 200 and len(_predict_body()) < 4096


def test_an_answer_over_the_limit_is_not_relayed(model_server):
    with _ui(model_server, max_response_bytes=200) as ui:
        answer = requests.get(ui.url + "v1/models/tf_mlp/metadata", timeout=30)
        assert answer.status_code == 502
        assert "answered with more than 200 bytes" in answer.json()["error"]


def test_other_host_names_and_cross_origin_posts_are_refused(ui):
    rebound = requests.get(ui.url + "v1/models/tf_mlp", headers={"Host": f"attacker.example:{ui.port}"}, timeout=30)
    assert rebound.status_code == 403 and "attacker.example" in rebound.json()["error"]
    assert requests.get(ui.url, headers={"Host": f"localhost:{ui.port}"}, timeout=30).status_code == 200
    cross = requests.post(ui.url + "v1/models/tf_mlp:predict", data=_predict_body(),
                          headers={"Origin": "http://attacker.example"}, timeout=30)
    assert cross.status_code == 403
    same = requests.post(ui.url + "v1/models/tf_mlp:predict", data=_predict_body(),
                         headers={"Origin": ui.url.rstrip("/")}, timeout=30)
    assert same.status_code == 200


# --- Model server down -------------------------------------------------------------------------------------


def test_an_unreachable_model_server_is_a_502_that_says_so():
    port = free_port()  # nothing listens there
    with UiServer(UiOptions(server=f"rest://127.0.0.1:{port}", port=0)) as ui:
        for method, path in (("GET", "v1/models/tf_mlp"), ("POST", "v1/models/tf_mlp:predict")):
            answer = requests.request(method, ui.url + path, data=_predict_body(), timeout=30)
            assert answer.status_code == 502
            assert answer.json() == {
                "error": f"cannot reach the model server at rest://127.0.0.1:{port}: Connection refused",
                "unreachable": True}


class _GatewayPage(http.server.BaseHTTPRequestHandler):
    """A front proxy whose model server is gone (an HTML 502 page), or one that never answers (/v1/models/slow)."""

    def do_GET(self):
        if self.path.startswith("/v1/models/slow"):
            time.sleep(2)
        body = b"<html><body><h1>502 Bad Gateway</h1>\n<p>nginx</p></body></html>"
        try:
            self.send_response(502)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the slow case: the page's server has given up and closed the connection

    def log_message(self, *arguments):
        pass


@pytest.fixture
def gateway():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _GatewayPage)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"rest://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_an_html_error_page_in_front_of_the_model_server_becomes_a_json_error(gateway):
    with UiServer(UiOptions(server=gateway, port=0)) as ui:
        answer = requests.get(ui.url + "v1/models/tf_mlp", timeout=30)
    assert answer.status_code == 502
    assert answer.json() == {"error": f"the model server at {gateway} answered HTTP 502 (text/html): "
                                      "<html><body><h1>502 Bad Gateway</h1> <p>nginx</p></body></html>"}


def test_a_model_server_that_does_not_answer_in_time_is_a_504(gateway):
    with UiServer(UiOptions(server=gateway, model="slow", port=0, timeout_seconds=0.5)) as ui:
        answer = requests.get(ui.url + "v1/models/slow", timeout=30)
    assert answer.status_code == 504
    assert answer.json() == {"error": f"the model server at {gateway} did not answer within 0.5 s",
                             "unreachable": True}


# --- The page's files --------------------------------------------------------------------------------------


def test_the_page_and_its_files_are_served_with_a_strict_content_security_policy(ui):
    page = requests.get(ui.url, timeout=30)
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    policy = page.headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy and "script-src 'self'" in policy and "connect-src 'self'" in policy
    for name in ("app.js", "preprocess.js", "style.css"):
        answer = requests.get(f"{ui.url}static/{name}", timeout=30)
        assert answer.status_code == 200 and answer.text == (STATIC_DIR / name).read_text()
    assert requests.get(f"{ui.url}static/app.js", timeout=30).headers["Content-Type"].startswith("text/javascript")


def test_everything_the_page_loads_ships_in_the_package():
    html = (STATIC_DIR / "index.html").read_text()
    referenced = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert referenced and all(ref.startswith("/static/") or ref == "data:," for ref in referenced), referenced
    for ref in referenced:
        if ref.startswith("/static/"):
            assert (STATIC_DIR / ref[len("/static/"):]).is_file()
    for path in STATIC_DIR.iterdir():
        assert not re.search(r"https?://", path.read_text()), f"{path.name} refers to another site"
    setup_cfg = configparser.ConfigParser()
    setup_cfg.read(pathlib.Path(__file__).resolve().parents[1] / "setup.cfg")
    assert setup_cfg["options.package_data"]["tf_mlp.ui"] == "static/*"


# --- Options and the command -------------------------------------------------------------------------------


@pytest.mark.parametrize("options, message", [
    ({"server": "grpc://127.0.0.1:8500"}, "the page talks to the REST API; give --server rest://HOST:PORT"),
    ({"server": "local:models"}, "the page talks to the REST API"),
    ({"server": "ftp://x"}, "unsupported target scheme"),
    ({"version": 1, "label": "stable"}, "give --version or --label, not both"),
    ({"model": ""}, "the model name is empty"),
    ({"max_request_bytes": 0}, "max_request_bytes must be positive"),
])
def test_bad_options_are_one_line_errors(options, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        UiOptions(**options)


def test_a_port_in_use_is_a_one_line_error():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(TfMlpError, match=r"cannot serve the page on 127\.0\.0\.1:\d+: Address already in use"):
            UiServer(UiOptions(port=taken.getsockname()[1])).start()


def test_the_command_reports_bad_options_in_one_line():
    outcome = CliRunner().invoke(main, ["ui", "--server", "grpc://127.0.0.1:8500"])
    assert outcome.exit_code == 1
    assert outcome.output.strip().splitlines() == [
        "Error: the page talks to the REST API; give --server rest://HOST:PORT, not 'grpc://127.0.0.1:8500'"]
    help_text = CliRunner().invoke(main, ["ui", "--help"]).output
    for option in ("--server", "--model", "--version", "--label", "--host", "--port", "--max-request-bytes"):
        assert option in help_text
