"""serving/ files parse with TensorFlow Serving's protobuf classes; flags parse as tensorflow_model_server's."""

import dataclasses
import pathlib
import re
import subprocess

import pytest
from click.testing import CliRunner
from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

from tf_mlp import cli, contract
from tf_mlp.errors import ConfigError
from tf_mlp.server import config_files
from tf_mlp.server.core.batching import BatchingSettings
from tf_mlp.server.core.status import HTTP_STATUS, Code, ServingError
from tf_mlp.server.options import FLAG_HELP, NO_EFFECT, ServerOptions, flags_help, grpc_channel_arguments, parse_flags

SERVING = pathlib.Path(__file__).resolve().parents[1] / "serving"


def _flags(text: str) -> set:
    return set(re.findall(r"--([a-z_]+)=", text))


def test_models_config_is_a_model_server_config():
    config = model_server_config_pb2.ModelServerConfig()
    text_format.Parse((SERVING / "models.config").read_text(), config)
    (model,) = config.model_config_list.config
    assert model.name == contract.MODEL_NAME
    assert model.base_path == "models/tf_mlp"  # relative: the repository root, or / in the container
    assert model.model_platform == "tensorflow"
    # Pinned versions, moved by `tf-mlp rollout`; the first export (version 1) is stable on a fresh clone.
    assert list(model.model_version_policy.specific.versions) == [1]
    assert dict(model.version_labels) == {"stable": 1, "canary": 1}
    config_files.validate_model_server_config(config)


def test_batching_config_is_batching_parameters():
    parameters = config_files.read_batching_parameters(SERVING / "batching.config")
    for name in ("max_batch_size", "batch_timeout_micros", "num_batch_threads", "max_enqueued_batches"):
        assert parameters.HasField(name), name
    assert list(parameters.allowed_batch_sizes)[-1] == parameters.max_batch_size.value
    assert parameters.DESCRIPTOR.full_name == "tensorflow.serving.BatchingParameters"
    settings = BatchingSettings.from_parameters(parameters)
    assert settings.max_batch_size == 256 and settings.allowed_batch_sizes == (4, 8, 16, 32, 64, 128, 256)


def test_monitoring_config_enables_prometheus():
    monitoring = config_files.read_monitoring_config(SERVING / "monitoring.config")
    assert monitoring.DESCRIPTOR.full_name == "tensorflow.serving.MonitoringConfig"
    assert config_files.prometheus_path(monitoring) == "/monitoring/prometheus/metrics"
    assert config_files.prometheus_path(None) is None


def test_compose_file_and_run_script_pass_the_same_flags():
    compose = (SERVING / "docker-compose.yml").read_text()
    script = (SERVING / "run.sh").read_text()
    assert "../models:/models" in compose and "8500:8500" in compose and "8501:8501" in compose
    assert "working_dir: /" in compose and "-w /" in script  # where models.config's relative base_path points
    assert "image: ${TF_SERVING_IMAGE:-tensorflow/serving:" in compose
    expected = {
        "model_config_file", "model_config_file_poll_wait_seconds", "file_system_poll_wait_seconds",
        "allow_version_labels_for_unavailable_models", "enable_batching", "batching_parameters_file",
        "monitoring_config_file", "rest_api_timeout_in_ms",
    }
    command = "\n".join(line for line in compose.splitlines() if line.strip().startswith("- --"))
    assert _flags(command) == expected
    assert expected <= _flags(script)
    assert subprocess.run(["bash", "-n", str(SERVING / "run.sh")], check=False).returncode == 0


def test_text_proto_errors_name_the_file(tmp_path):
    bad = tmp_path / "models.config"
    bad.write_text("model_config_list { config { name: 'a' unknown_field: 1 } }")
    with pytest.raises(ConfigError, match=r"Invalid protobuf file: '.*models.config'.*unknown_field"):
        config_files.read_model_server_config(bad)
    with pytest.raises(ConfigError, match="cannot read"):
        config_files.read_model_server_config(tmp_path / "missing.config")


@pytest.mark.parametrize(
    "text, message",
    [
        ("config { name: 'a' base_path: '/x' model_platform: 'tensorflow' } "
         "config { name: 'a' base_path: '/y' model_platform: 'tensorflow' }",
         "Illegal to list model a multiple times in config list"),
        ("config { name: 'a' base_path: '/x' model_platform: 'pytorch' }", "Model a requests unsupported platform"),
        ("config { name: 'a' base_path: '/x' }", "Illegal setting neither"),
    ],
)
def test_model_config_checks_are_tensorflow_servings(tmp_path, text, message):
    path = tmp_path / "models.config"
    path.write_text(f"model_config_list {{ {text} }}")
    with pytest.raises(ConfigError, match=message):
        config_files.read_model_server_config(path)


@pytest.mark.parametrize(
    "text, message",
    [
        ("max_batch_size { value: 8 } allowed_batch_sizes: 4 allowed_batch_sizes: 2",
         "monotonically increasing"),
        ("max_batch_size { value: 8 } allowed_batch_sizes: 4", "must equal max_batch_size"),
        ("num_batch_threads { value: 0 }", "num_batch_threads must be at least 1"),
        ("max_batch_size: 8", "Expected \"{\""),
    ],
)
def test_batching_parameters_are_checked(tmp_path, text, message):
    path = tmp_path / "batching.config"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        config_files.read_batching_parameters(path)


def test_flags_are_spelled_as_tensorflow_model_server():
    parsed = parse_flags([
        "--port=9000", "--rest_api_port", "9001", "--model_name=m", "--model_base_path=/models/m",
        "--enable_batching", "--file_system_poll_wait_seconds=5", "--rest_api_timeout_in_ms=100",
    ])
    assert (parsed.port, parsed.rest_api_port, parsed.model_name, parsed.model_base_path) == (
        9000, 9001, "m", "/models/m")
    assert parsed.enable_batching is True
    assert parsed.file_system_poll_wait_seconds == 5 and parsed.rest_api_timeout_in_ms == 100
    assert parse_flags(["--model_base_path=x", "--enable_batching=false"]).enable_batching is False
    defaults = parse_flags(["--model_base_path=x"])
    assert (defaults.port, defaults.rest_api_port, defaults.host) == (8500, 8501, "127.0.0.1")


@pytest.mark.parametrize(
    "flags, message",
    [
        ([], "both --model_base_path and --model_config_file are empty"),
        (["--model_base_path=x", "--batching_parameters_file=b"], "without setting --enable_batching"),
        (["--model_base_path=x", "--bogus=1"], "unknown flag --bogus=1"),
        (["--model_base_path=x", "--port=8501"], "must differ from --port"),
        (["--model_base_path=x", "--port=99999"], "is not a port"),
        (["--model_base_path=x", "--enable_batching=maybe"], "expected true or false"),
    ],
)
def test_bad_flags_are_config_errors(flags, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        parse_flags(flags)


def test_every_flag_has_help_and_serve_help_lists_them():
    names = [field.name for field in dataclasses.fields(ServerOptions)]
    assert sorted(names) == sorted(FLAG_HELP)
    result = CliRunner().invoke(cli.main, ["serve", "--help"])
    assert result.exit_code == 0
    for name in names:
        assert f"--{name}=" in result.output


def test_serve_command_reports_flag_errors_in_one_line():
    result = CliRunner().invoke(cli.main, ["serve", "--port=8500"])
    assert result.exit_code == 1
    assert result.output.strip() == "Error: both --model_base_path and --model_config_file are empty; give one of them"


def test_status_codes_map_as_tensorflow_serving():
    expected = {Code.INVALID_ARGUMENT: 400, Code.NOT_FOUND: 404, Code.DEADLINE_EXCEEDED: 504,
                Code.RESOURCE_EXHAUSTED: 429, Code.UNAVAILABLE: 503, Code.FAILED_PRECONDITION: 400,
                Code.UNIMPLEMENTED: 501, Code.INTERNAL: 500}
    for code, status in expected.items():
        assert ServingError(code, "x").http_status == status == HTTP_STATUS[code]


# Every flag `tensorflow_model_server --help` lists (tensorflow_serving/model_servers/main.cc), with a value
# that differs from its default where one can.
TF_SERVING_FLAGS = {
    "port": "9000", "grpc_socket_path": "/tmp/x.sock", "rest_api_port": "9001", "rest_api_num_threads": "3",
    "rest_api_timeout_in_ms": "100", "rest_api_enable_cors_support": "true", "enable_batching": "true",
    "allow_version_labels_for_unavailable_models": "true", "batching_parameters_file": "b.config",
    "enable_per_model_batching_parameters": "true", "model_config_file": "m.config",
    "model_config_file_poll_wait_seconds": "5", "model_name": "m", "model_base_path": "/m",
    "num_load_threads": "2", "num_unload_threads": "2", "max_num_load_retries": "1",
    "load_retry_interval_micros": "10", "file_system_poll_wait_seconds": "2", "flush_filesystem_caches": "false",
    "tensorflow_session_parallelism": "2", "tensorflow_session_config_file": "s.config",
    "tensorflow_intra_op_parallelism": "2", "tensorflow_inter_op_parallelism": "0",
    "use_alts_credentials": "false", "ssl_config_file": "", "platform_config_file": "p.config",
    "per_process_gpu_memory_fraction": "0.5", "saved_model_tags": "serve,gpu",
    "grpc_channel_arguments": "grpc.max_connection_age_ms=2000", "grpc_max_threads": "5",
    "enable_model_warmup": "false", "num_request_iterations_for_warmup": "2", "version": "false",
    "monitoring_config_file": "mon.config", "remove_unused_fields_from_bundle_metagraph": "false",
    "prefer_tflite_model": "true", "num_tflite_pools": "3", "num_tflite_interpreters_per_pool": "2",
    "enable_signature_method_name_check": "true", "xla_cpu_compilation_enabled": "true",
    "xla_gpu_compilation_enabled": "true", "enable_profiler": "false", "thread_pool_factory_config_file": "t.config",
    "mixed_precision": "bfloat16", "skip_initialize_tpu": "true", "enable_grpc_healthcheck_service": "true",
    "enable_serialization_as_tensor_content": "true",
}
HONOURED = set(TF_SERVING_FLAGS) - set(NO_EFFECT) - {"use_alts_credentials", "ssl_config_file"}


def test_every_tensorflow_model_server_flag_is_accepted():
    parsed = parse_flags([f"--{name}={value}" for name, value in TF_SERVING_FLAGS.items()])
    for name, value in TF_SERVING_FLAGS.items():
        field = getattr(parsed, name)
        expected = (value == "true") if isinstance(field, bool) else type(field)(value)
        assert field == expected, name


def test_flags_without_effect_are_named_in_one_line_each_and_honoured_ones_not_at_all():
    parsed = parse_flags([f"--{name}={value}" for name, value in TF_SERVING_FLAGS.items()])
    warnings = parsed.ignored_flag_warnings()
    assert len(warnings) == len(NO_EFFECT)
    for name, line in zip(NO_EFFECT, warnings):
        assert line.startswith(f"--{name}=") and "has no effect in tf-mlp serve: " in line and "\n" not in line
    assert not any(warning.startswith(f"--{name}=") for warning in warnings for name in HONOURED)
    assert parse_flags(["--model_base_path=x"]).ignored_flag_warnings() == []
    assert parse_flags(["--model_base_path=x", "--rest_api_enable_cors_support=false"]
                                      ).ignored_flag_warnings() == []


def test_new_option_fields_default_to_tensorflow_servings():
    defaults = ServerOptions()
    assert defaults.enable_signature_method_name_check is False
    assert defaults.prefer_tflite_model is False
    assert defaults.enable_profiler is True
    assert defaults.grpc_socket_path == "" and defaults.grpc_channel_arguments == ""


@pytest.mark.parametrize("flag", ["--ssl_config_file=ssl.config", "--use_alts_credentials"])
def test_secure_channel_flags_are_refused_not_served_in_plain_text(flag):
    with pytest.raises(ConfigError, match="secure gRPC channels are not supported"):
        parse_flags(["--model_base_path=x", flag])


def test_grpc_channel_arguments_parse_as_tensorflow_serving():
    assert grpc_channel_arguments(
        "grpc.max_connection_age_ms=2000,grpc.lb_policy_name=grpclb,grpc.so_reuseaddr=1") == [
        ("grpc.max_connection_age_ms", 2000), ("grpc.lb_policy_name", "grpclb"), ("grpc.so_reuseaddr", 1)]
    assert grpc_channel_arguments("") == []
    # Beyond int32 stays a string, as absl::SimpleAtoi into an int32 fails.
    assert grpc_channel_arguments("a=4294967296") == [("a", "4294967296")]
    with pytest.raises(ConfigError, match="'grpc.max_connection_age_ms' is not key=value"):
        parse_flags(["--model_base_path=x", "--grpc_channel_arguments=grpc.max_connection_age_ms"])


def test_thread_flags_reach_each_sessions_config_as_in_server_cc():
    from tf_mlp.server.core.servable import LoadSettings

    def counts(*flags):
        settings = LoadSettings.from_options(parse_flags(["--model_base_path=x", *flags]))
        return settings.intra_op_threads, settings.inter_op_threads

    assert counts() == (0, 0)
    assert counts("--tensorflow_session_parallelism=3") == (3, 3)
    assert counts("--tensorflow_intra_op_parallelism=2", "--tensorflow_inter_op_parallelism=1") == (2, 1)
    assert counts("--tensorflow_session_parallelism=3", "--tensorflow_intra_op_parallelism=2") == (2, 0)
    with pytest.raises(ConfigError, match="You cannot configure all."):
        parse_flags(["--model_base_path=x", "--tensorflow_session_parallelism=1",
                                    "--tensorflow_intra_op_parallelism=1", "--tensorflow_inter_op_parallelism=1"])


def test_bad_model_config_says_what_tensorflow_serving_says(tmp_path):
    bad = tmp_path / "bad.config"
    bad.write_text("model_config_list { config { name: 'a' base_path: '/x' bogus: 1 } }")
    with pytest.raises(ConfigError) as error:
        config_files.read_model_server_config(bad)
    assert str(error.value).startswith(f"Invalid protobuf file: '{bad}': Error parsing text-format "
                                       "tensorflow.serving.ModelServerConfig: 1:")
    assert "bogus" in str(error.value) and "\n" not in str(error.value)


def test_version_flag_answers_without_a_model():
    result = CliRunner().invoke(cli.main, ["serve", "--version"])
    assert result.exit_code == 0
    assert result.output.startswith("tf-mlp serve (TensorFlow-Serving-compatible): ")
    assert "TensorFlow Library: 2." in result.output


def test_the_request_budget_defaults_to_eight_times_the_body_limit_and_is_a_flag():
    assert parse_flags(["--model_base_path=x"]).request_budget_bytes() == 8 * 64 * 1024 * 1024
    assert parse_flags(["--model_base_path=x", "--rest_api_max_request_bytes=1000"]).request_budget_bytes() == 8000
    assert parse_flags(["--model_base_path=x", "--max_request_tensor_bytes=5"]).request_budget_bytes() == 5
    with pytest.raises(ConfigError, match="--max_request_tensor_bytes must not be negative"):
        parse_flags(["--model_base_path=x", "--max_request_tensor_bytes=-1"])
    assert "--max_request_tensor_bytes=0" in flags_help() and "RESOURCE_EXHAUSTED" in flags_help()


@pytest.mark.parametrize(("host", "allowed", "served"), [
    ("127.0.0.1", False, True), ("::1", False, True), ("localhost", False, True), ("127.0.0.2", False, True),
    ("0.0.0.0", False, False), ("::", False, False), ("10.0.0.5", False, False), ("myhost.example", False, False),
    ("0.0.0.0", True, True),
])
def test_admin_services_are_off_on_a_non_loopback_host_unless_allowed(host, allowed, served):
    options = parse_flags(["--model_base_path=x", f"--host={host}",
                           f"--allow_profiler_on_non_loopback_host={str(allowed).lower()}",
                           f"--allow_config_reload_on_non_loopback_host={str(allowed).lower()}"])
    assert (options.serves_profiler(), options.accepts_config_reload()) == (served, served)
    assert not dataclasses.replace(options, enable_profiler=False).serves_profiler()
