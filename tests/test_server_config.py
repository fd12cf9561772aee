"""serving/ files parse with TensorFlow Serving's protobuf classes; flags parse as tensorflow_model_server's."""

import pathlib
import re
import subprocess

import pytest
from click.testing import CliRunner
from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

from tf_mlp import cli, contract
from tf_mlp.errors import ConfigError
from tf_mlp.server import config_files, options as options_module
from tf_mlp.server.batching import BatchingSettings
from tf_mlp.server.status import HTTP_STATUS, Code, ServingError

SERVING = pathlib.Path(__file__).resolve().parents[1] / "serving"


def _flags(text: str) -> set:
    return set(re.findall(r"--([a-z_]+)=", text))


def test_models_config_is_a_model_server_config():
    config = model_server_config_pb2.ModelServerConfig()
    text_format.Parse((SERVING / "models.config").read_text(), config)
    (model,) = config.model_config_list.config
    assert model.name == contract.MODEL_NAME
    assert model.base_path == "/models/tf_mlp"
    assert model.model_platform == "tensorflow"
    assert model.model_version_policy.WhichOneof("policy_choice") == "latest"
    assert dict(model.version_labels) == {"stable": 1, "canary": 2}
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
    parsed = options_module.parse_flags([
        "--port=9000", "--rest_api_port", "9001", "--model_name=m", "--model_base_path=/models/m",
        "--enable_batching", "--file_system_poll_wait_seconds=5", "--rest_api_timeout_in_ms=100",
    ])
    assert (parsed.port, parsed.rest_api_port, parsed.model_name, parsed.model_base_path) == (
        9000, 9001, "m", "/models/m")
    assert parsed.enable_batching is True
    assert parsed.file_system_poll_wait_seconds == 5 and parsed.rest_api_timeout_in_ms == 100
    assert options_module.parse_flags(["--model_base_path=x", "--enable_batching=false"]).enable_batching is False
    defaults = options_module.parse_flags(["--model_base_path=x"])
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
        options_module.parse_flags(flags)


def test_every_flag_has_help_and_serve_help_lists_them():
    names = [field.name for field in options_module.dataclasses.fields(options_module.ServerOptions)]
    assert sorted(names) == sorted(options_module.FLAG_HELP)
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
