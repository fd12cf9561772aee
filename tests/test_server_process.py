"""serving/run.sh without TensorFlow Serving or Docker: `tf-mlp serve` with the shipped configs, stopped by SIGTERM.

A request parked in a batch (its timeout is far beyond the test) is in flight
when SIGTERM arrives: the server must answer it, then exit 0, and accept no
connection afterwards.
"""

import pathlib
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading

import requests

from tests import serving_helpers

REPO = pathlib.Path(__file__).resolve().parents[1]
RUN_SCRIPT = REPO / "serving" / "run.sh"
TOOLS = ("bash", "sed", "mkdir", "cksum", "cut", "realpath", "dirname")
IMAGE = [[0] * 28] * 28


def _path_without_servers(directory: pathlib.Path) -> str:
    """A PATH with the tools run.sh needs and tf-mlp, but no tensorflow_model_server and no docker."""
    directory.mkdir()
    for tool in TOOLS:
        (directory / tool).symlink_to(shutil.which(tool))
    (directory / "tf-mlp").symlink_to(pathlib.Path(sys.executable).parent / "tf-mlp")
    return str(directory)


def _in_flight(url: str) -> int:
    text = requests.get(f"{url}/monitoring/prometheus/metrics", timeout=30).text
    return int(re.search(r"^:tf_mlp:serving:requests_in_flight (\d+)$", text, re.M).group(1))


def test_run_script_serves_with_tf_mlp_serve_and_stops_gracefully(tmp_path):
    serving_helpers.model_base(tmp_path)  # tmp_path/models/tf_mlp/1
    parked = tmp_path / "parked-batching.config"
    parked.write_text("max_batch_size { value: 32 } batch_timeout_micros { value: 600000000 }")
    environment = {"PATH": _path_without_servers(tmp_path / "bin"), "TMPDIR": str(tmp_path), "HOME": str(tmp_path),
                   "MODELS_DIR": str(tmp_path / "models"), "REST_PORT": "-1", "GRPC_PORT": "-1",
                   "TF_CPP_MIN_LOG_LEVEL": "2"}
    process = subprocess.Popen(
        ["bash", str(RUN_SCRIPT), f"--batching_parameters_file={parked}", "--shutdown_grace_seconds=120"],
        env=environment, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    lines = queue.Queue()
    log = []
    reader = threading.Thread(target=lambda: [lines.put(line) for line in process.stderr], daemon=True)
    reader.start()
    try:
        def rest_address():
            while not lines.empty():
                log.append(lines.get())
                found = re.search(r"Exporting HTTP/REST API at:(\S+) ", log[-1])
                if found:
                    return found.group(1)
            assert process.poll() is None, "".join(log)
            return None

        url = "http://" + serving_helpers.wait_for(rest_address, timeout=120, message="the REST port in the log")
        assert "starting the embedded server (tf-mlp serve)" in "".join(log)
        status = requests.get(f"{url}/v1/models/tf_mlp", timeout=30).json()
        assert status["model_version_status"][0]["state"] == "AVAILABLE"

        answer = {}
        client = threading.Thread(target=lambda: answer.update(response=requests.post(
            f"{url}/v1/models/tf_mlp:predict", json={"instances": [IMAGE]}, timeout=300)))
        client.start()
        serving_helpers.wait_for(lambda: _in_flight(url) == 1, message="the request parked in a batch")
        process.send_signal(signal.SIGTERM)
        client.join()
        assert answer["response"].status_code == 200
        assert len(answer["response"].json()["predictions"][0]["probabilities"]) == 10
        assert process.wait(timeout=120) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        reader.join()
        process.stderr.close()
    while not lines.empty():
        log.append(lines.get())
    assert "Shutting down: finishing requests in flight" in "".join(log)
    try:
        requests.get(f"{url}/v1/models/tf_mlp", timeout=5)
        raise AssertionError("the server still accepts connections after exiting")
    except requests.ConnectionError:
        pass
