"""`tf-mlp serve` as a process: serving/run.sh, tensorflow_model_server's flags, start-up failures.

serving/run.sh without TensorFlow Serving or Docker starts `tf-mlp serve`
with the shipped configs, stopped by SIGTERM: a request parked in a batch
(its timeout is far beyond the test) is in flight when SIGTERM arrives; the
server must answer it, then exit 0, and accept no connection afterwards.

The other tests start the server with flags and check what
tensorflow_model_server does with them: a UNIX socket, channel arguments,
the profiler service, ports in use, a base path that does not exist, a bad
config file, a model that fails to load, and the README's models.config
command. The start-up failures run `tf-mlp serve` in this process
(tests/commands.py): their exit status and one-line error are the command's,
whichever process runs it.
"""

import os
import pathlib
import queue
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

import grpc
import pytest
import requests
import tensorflow as tf
from tensorflow_serving.apis import get_model_status_pb2, model_management_pb2, model_service_pb2_grpc

from tests import commands, serving_helpers
from tests.conftest import free_port
from tf_mlp.server import process
from tf_mlp.server.grpc import profiler
from tf_mlp.server.process import ServerProcess

REPO = pathlib.Path(__file__).resolve().parents[1]
RUN_SCRIPT = REPO / "serving" / "run.sh"
TOOLS = ("bash", "mkdir", "ln", "cksum", "cut", "realpath", "dirname", "basename")
IMAGE = [[0] * 28] * 28
GRPC_CORE_LOG_LINE = re.compile(r"[EWI]\d{4} \d\d:\d\d:\d\d\.\d+ +\d+ \S+\.cc:\d+\] ")


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


@pytest.mark.slow
def test_run_script_serves_with_tf_mlp_serve_and_stops_gracefully(tmp_path):
    serving_helpers.model_base(tmp_path)  # tmp_path/models/tf_mlp/1
    parked = tmp_path / "parked-batching.config"
    parked.write_text("max_batch_size { value: 32 } batch_timeout_micros { value: 600000000 }")
    environment = {"PATH": _path_without_servers(tmp_path / "bin"), "TMPDIR": str(tmp_path), "HOME": str(tmp_path),
                   "MODELS_DIR": str(tmp_path / "models"), "REST_PORT": "-1", "GRPC_PORT": "-1",
                   "TF_CPP_MIN_LOG_LEVEL": "2",
                   # The tf-mlp script imports the package from PYTHONPATH first (a worktree under test).
                   "PYTHONPATH": os.environ.get("PYTHONPATH", "")}
    process = subprocess.Popen(
        # --tensorflow_intra_op_parallelism: a tensorflow_model_server flag passed on to the embedded server.
        ["bash", str(RUN_SCRIPT), f"--batching_parameters_file={parked}", "--shutdown_grace_seconds=120",
         "--tensorflow_intra_op_parallelism=2"],
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


def _status_over(target: str) -> int:
    with grpc.insecure_channel(target) as channel:
        request = get_model_status_pb2.GetModelStatusRequest()
        request.model_spec.name = "tf_mlp"
        response = model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus(request, timeout=30)
        return response.model_version_status[0].state


@pytest.mark.slow
def test_tensorflow_model_server_flags_are_honoured_or_named(tmp_path):
    base = serving_helpers.model_base(tmp_path)
    socket_path = tmp_path / "grpc.sock"
    logdir = tmp_path / "profile"
    server = ServerProcess(
        tmp_path / "server.log", f"--model_base_path={base}", f"--grpc_socket_path={socket_path}",
        f"--profiler_output_dir={logdir}",
        "--grpc_channel_arguments=grpc.max_connection_age_ms=2000,grpc.lb_policy_name=grpclb,grpc.so_reuseaddr=1",
        "--tensorflow_intra_op_parallelism=1", "--tensorflow_inter_op_parallelism=1", "--grpc_max_threads=3",
        "--prefer_tflite_model=true", "--enable_signature_method_name_check=false", "--rest_api_enable_cors_support",
        "--num_load_threads=2").start()
    try:
        available = get_model_status_pb2.ModelVersionStatus.AVAILABLE
        assert _status_over(f"unix:{socket_path}") == available
        assert _status_over(server.grpc_target) == available

        # tensorflow.ProfilerService on the gRPC port, called by TensorFlow's own profiler client, which asks for
        # the trace in LOGDIR/plugins/profile: inside --profiler_output_dir, so written there.
        sender = threading.Thread(target=lambda: [requests.post(
            f"{server.rest_url}/v1/models/tf_mlp:predict", json={"instances": [IMAGE]}, timeout=30)
            for _ in range(20)])
        sender.start()
        tf.profiler.experimental.client.trace(server.grpc_target, str(logdir), 1000, num_tracing_attempts=5)
        sender.join()
        (written,) = (logdir / "plugins" / "profile").glob("*/*.xplane.pb")
        assert written.stat().st_size > 0
    finally:
        server.stop()
    log = server.log()
    assert "unknown flag" not in log
    warnings = [line for line in log.splitlines() if "has no effect in tf-mlp serve" in line]
    assert len(warnings) == 2, warnings
    assert "--rest_api_enable_cors_support=true has no effect" in warnings[0]
    assert "--num_load_threads=2 has no effect" in warnings[1]


@pytest.mark.parametrize("api", ["grpc", "rest"])
def test_a_port_in_use_is_a_one_line_error(tmp_path, api):
    base = serving_helpers.model_base(tmp_path)
    with socket.socket() as occupant:
        # SO_REUSEPORT on the occupant, as a grpcio server sets it: only a server that sets it too could share.
        occupant.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        occupant.bind(("127.0.0.1", 0))
        occupant.listen()
        taken = occupant.getsockname()[1]
        other = free_port()
        grpc_port, rest_port = (taken, other) if api == "grpc" else (other, taken)
        result = commands.run_in_process("serve", f"--model_base_path={base}", f"--port={grpc_port}",
                                         f"--rest_api_port={rest_port}")
    assert result.returncode == 1
    name = "gRPC" if api == "grpc" else "REST"
    # gRPC's C++ core logs its own line about the bind (E... add_port.cc); the command's last line is the error.
    own_lines = [line for line in result.stderr.splitlines() if not GRPC_CORE_LOG_LINE.match(line)]
    assert own_lines[-1] == f"Error: cannot listen for {name} on 127.0.0.1:{taken}: Address already in use"


@pytest.mark.slow
def test_a_base_path_that_does_not_exist_is_said_once_and_polled(tmp_path):
    base = tmp_path / "models" / "tf_mlp"
    server = ServerProcess(tmp_path / "server.log", f"--model_base_path={base}",
                           "--file_system_poll_wait_seconds=1").start(ready_status=404)
    try:
        serving_helpers.wait_for(lambda: server.log().count("Could not find base path") >= 1, timeout=60,
                                 message="the missing base path in the log")
        time.sleep(3)  # three more polls
        # The base path appears with its version already inside (one rename), so that no poll sees it empty.
        staged = serving_helpers.add_version(tmp_path / "staging" / "tf_mlp", 1).parent
        base.parent.mkdir(parents=True)
        staged.rename(base)
        serving_helpers.wait_for(
            lambda: requests.get(f"{server.rest_url}/v1/models/tf_mlp", timeout=5).status_code == 200,
            timeout=120, message="the version published after start-up")
    finally:
        server.stop()
    lines = [line for line in server.log().splitlines() if "Could not find base path" in line]
    assert len(lines) == 1, lines
    assert f"Could not find base path {base} for servable tf_mlp with error NOT_FOUND: {base}; " \
           "No such file or directory" in lines[0]
    assert "Did you forget to name your leaf directory" not in server.log()


def test_a_bad_model_config_file_stops_start_up_with_tensorflow_servings_message(tmp_path):
    bad = tmp_path / "bad_model_config.txt"
    bad.write_text("improperly formatted file")
    result = commands.run_in_process("serve", f"--model_config_file={bad}", "--port=-1", "--rest_api_port=-1")
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1].startswith(
        f"Error: Failed to start server. Error: Invalid protobuf file: '{bad}': "
        "Error parsing text-format tensorflow.serving.ModelServerConfig: 1:")


def test_a_model_that_fails_to_load_at_start_up_stops_the_server(tmp_path):
    version = serving_helpers.model_base(tmp_path) / "1"
    (version / "saved_model.pb").write_bytes(b"not a SavedModel")
    result = commands.run_in_process("serve", f"--model_base_path={version.parent}", "--port=-1",
                                     "--rest_api_port=-1", "--max_num_load_retries=0")
    assert result.returncode == 1
    last = result.stderr.splitlines()[-1]
    # ServerCore::WaitUntilModelsAvailable's text; ServableId::DebugString brings the third brace.
    assert last.startswith("Error: Failed to start server. Error: UNKNOWN: 1 model(s) did not become available: "
                           "{{{name: tf_mlp version: 1} due to error: "), last
    assert last.endswith("}, }")


def _readme_models_config_command() -> list:
    """The README's `tf-mlp serve --model_config_file=serving/models.config ...` example, as arguments."""
    text = (REPO / "README.md").read_text().replace("\\\n", " ")
    (line,) = [line for line in text.splitlines() if line.startswith("tf-mlp serve --model_config_file=")]
    return shlex.split(line.split("#")[0])[2:]


@pytest.mark.slow
def test_the_readme_models_config_example_serves_as_written(tmp_path):
    # The README's command runs in the repository's root: serving/ is the repository's, models/ an export.
    serving_helpers.model_base(tmp_path)
    (tmp_path / "serving").symlink_to(REPO / "serving")
    flags = _readme_models_config_command()
    assert "--model_config_file=serving/models.config" in flags
    server = ServerProcess(tmp_path / "server.log", *flags, cwd=tmp_path)
    # ServerProcess puts its free ports first; the README's flags name none, so they stay.
    server.flags = [*flags, f"--port={server.grpc_port}", f"--rest_api_port={server.rest_port}"]
    server.start()
    try:
        stable = requests.get(f"{server.rest_url}/v1/models/tf_mlp/labels/stable", timeout=30)
        assert stable.status_code == 200 and stable.json()["model_version_status"][0]["version"] == "1"
        answer = requests.post(f"{server.rest_url}/v1/models/tf_mlp/labels/stable:predict",
                               json={"instances": [IMAGE]}, timeout=30)
        assert answer.status_code == 200
        metrics = requests.get(f"{server.rest_url}/monitoring/prometheus/metrics", timeout=30)
        assert metrics.status_code == 200
    finally:
        server.stop()


def test_profiler_service_is_off_with_enable_profiler_false(tmp_path):
    base = serving_helpers.model_base(tmp_path)
    for enabled in (True, False):
        server = serving_helpers.start_server(model_base_path=str(base), enable_profiler=enabled)
        try:
            with grpc.insecure_channel(server.grpc_target) as channel:
                # An empty TerminateRequest: answered when the service is there, UNIMPLEMENTED when it is not.
                terminate = channel.unary_unary("/tensorflow.ProfilerService/Terminate")
                if enabled:
                    assert terminate(b"", timeout=30) == b""
                else:
                    with pytest.raises(grpc.RpcError) as error:
                        terminate(b"", timeout=30)
                    assert error.value.code() == grpc.StatusCode.UNIMPLEMENTED
        finally:
            server.stop()


def _profile(channel, **fields) -> str:
    """A ProfileRequest of 50 ms; the status code's name."""
    request = profiler.messages()["ProfileRequest"](duration_ms=50, **fields)
    call = channel.unary_unary("/tensorflow.ProfilerService/Profile", request_serializer=None,
                               response_deserializer=None)
    try:
        call(request.SerializeToString(), timeout=60)
        return "OK"
    except grpc.RpcError as error:
        return error.code().name


def _reload(channel, base) -> tuple:
    request = model_management_pb2.ReloadConfigRequest()
    request.config.model_config_list.config.add(name="tf_mlp", base_path=str(base), model_platform="tensorflow")
    try:
        model_service_pb2_grpc.ModelServiceStub(channel).HandleReloadConfigRequest(request, timeout=60)
        return "OK", ""
    except grpc.RpcError as error:
        return error.code().name, error.details()


def test_on_a_non_loopback_bind_the_profiler_and_config_reload_are_off_unless_allowed(tmp_path):
    base = serving_helpers.model_base(tmp_path)
    for allowed in (False, True):
        server = serving_helpers.start_server(model_base_path=str(base), host="0.0.0.0",
                                              allow_profiler_on_non_loopback_host=allowed,
                                              allow_config_reload_on_non_loopback_host=allowed)
        try:
            with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
                status, details = _reload(channel, base)
                # An empty TerminateRequest: answered when the profiler is served, UNIMPLEMENTED when it is not.
                terminate = channel.unary_unary("/tensorflow.ProfilerService/Terminate")
                try:
                    profiler_status = "OK" if terminate(b"", timeout=30) == b"" else "?"
                except grpc.RpcError as error:
                    profiler_status = error.code().name
                if allowed:
                    assert (profiler_status, status) == ("OK", "OK")
                else:
                    assert (profiler_status, status) == ("UNIMPLEMENTED", "PERMISSION_DENIED")
                    assert "--allow_config_reload_on_non_loopback_host=true" in details
        finally:
            server.stop()


def test_the_profiler_writes_only_under_its_output_directory(tmp_path):
    base = serving_helpers.model_base(tmp_path)
    output = tmp_path / "profiles"
    elsewhere = tmp_path / "elsewhere"
    server = serving_helpers.start_server(model_base_path=str(base), profiler_output_dir=str(output))
    try:
        with grpc.insecure_channel(server.grpc_target) as channel:
            # Before: <repository_root>/<session_id>/<host_name>, all three the client's: ../.. climbed out.
            assert _profile(channel, repository_root=str(elsewhere), session_id="../../escaped",
                            host_name="../../../etc/host") == "OK"
            assert _profile(channel, repository_root=str(output / "plugins" / "profile"), session_id="s1",
                            host_name="h:8500") == "OK"
    finally:
        server.stop()
    written = sorted(str(path.relative_to(tmp_path)) for path in tmp_path.rglob("*.xplane.pb"))
    assert written == ["profiles/_.._escaped/_.._.._etc_host.xplane.pb", "profiles/plugins/profile/s1/h_8500.xplane.pb"]
    assert not elsewhere.exists()


@pytest.mark.skipif(not process.EPHEMERAL_PORTS_FILE.is_file(), reason="Linux's ephemeral port range is not there")
def test_free_ports_lie_outside_the_range_the_kernel_gives_outgoing_connections():
    # A server binds its port seconds after it was picked; an outgoing connection must not take it meanwhile.
    ephemeral_low = int(process.EPHEMERAL_PORTS_FILE.read_text().split()[0])
    ports = {free_port() for _ in range(50)}
    assert len(ports) > 1 and all(ephemeral_low - process.FIXED_PORTS_BELOW_EPHEMERAL <= port < ephemeral_low
                                  for port in ports), sorted(ports)
    with socket.socket() as taken:  # a port in use is never given
        taken.bind(("127.0.0.1", min(ports)))
        taken.listen()
        assert min(ports) not in {free_port() for _ in range(200)}
