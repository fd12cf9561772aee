"""TensorFlow Serving's text-proto configuration files, parsed with its own message types.

`ModelServerConfig` comes from the tensorflow-serving-api package. That
package does not ship `BatchingParameters` (session_bundle_config.proto) nor
`MonitoringConfig` (monitoring_config.proto), so those two messages are built
at runtime from tables that copy the upstream .proto definitions field for
field (tf_mlp.server.descriptors). The files are then parsed by protobuf's
own `text_format`, exactly the grammar `tensorflow_model_server` reads, so a
file that parses here parses there.
"""

from __future__ import annotations

import functools
import pathlib

from google.protobuf import text_format, wrappers_pb2
from tensorflow_serving.config import model_server_config_pb2

from tf_mlp.errors import ConfigError
from tf_mlp.server import descriptors

TENSORFLOW_PLATFORM = "tensorflow"
DEFAULT_PROMETHEUS_PATH = "/monitoring/prometheus/metrics"

_INT64_WRAPPER = ".google.protobuf.Int64Value"
_STRING_WRAPPER = ".google.protobuf.StringValue"
_FIELD, _OPTIONAL, _REPEATED = descriptors.FIELD, descriptors.OPTIONAL, descriptors.REPEATED

_MESSAGES = (
    # tensorflow_serving/servables/tensorflow/session_bundle_config.proto, message BatchingParameters.
    ("BatchingParameters", (
        ("max_batch_size", 1, _FIELD.TYPE_MESSAGE, _OPTIONAL, _INT64_WRAPPER),
        ("batch_timeout_micros", 2, _FIELD.TYPE_MESSAGE, _OPTIONAL, _INT64_WRAPPER),
        ("max_enqueued_batches", 3, _FIELD.TYPE_MESSAGE, _OPTIONAL, _INT64_WRAPPER),
        ("num_batch_threads", 4, _FIELD.TYPE_MESSAGE, _OPTIONAL, _INT64_WRAPPER),
        ("thread_pool_name", 5, _FIELD.TYPE_MESSAGE, _OPTIONAL, _STRING_WRAPPER),
        ("allowed_batch_sizes", 6, _FIELD.TYPE_INT64, _REPEATED, None),
        ("pad_variable_length_inputs", 7, _FIELD.TYPE_BOOL, _OPTIONAL, None),
    )),
    # tensorflow_serving/config/monitoring_config.proto.
    ("PrometheusConfig", (
        ("enable", 1, _FIELD.TYPE_BOOL, _OPTIONAL, None),
        ("path", 2, _FIELD.TYPE_STRING, _OPTIONAL, None),
    )),
    ("MonitoringConfig", (
        ("prometheus_config", 1, _FIELD.TYPE_MESSAGE, _OPTIONAL, ".tensorflow.serving.PrometheusConfig"),
    )),
)


@functools.cache
def _message_classes() -> dict:
    return descriptors.message_classes("tensorflow.serving", _MESSAGES, file_name="tf_mlp/serving_config.proto",
                                       dependencies=(wrappers_pb2.DESCRIPTOR,))


def batching_parameters_class():
    """The BatchingParameters message class (built at runtime, see the module docstring)."""
    return _message_classes()["BatchingParameters"]


def monitoring_config_class():
    """The MonitoringConfig message class (built at runtime, see the module docstring)."""
    return _message_classes()["MonitoringConfig"]


def parse_text_proto(path, message):
    """Fill message from the text proto at path; ConfigError naming the file and the parser's complaint."""
    path = pathlib.Path(path)
    try:
        text = path.read_text()
    except OSError as error:
        raise ConfigError(f"cannot read {path}: {error.strerror}") from None
    try:
        text_format.Parse(text, message)
    except text_format.ParseError as error:
        # tensorflow_model_server's two lines in one: protobuf's parser error, then ParseProtoTextFile's status.
        raise ConfigError(f"Invalid protobuf file: '{path}': Error parsing text-format "
                          f"{message.DESCRIPTOR.full_name}: {error}") from None
    return message


def read_model_server_config(path) -> model_server_config_pb2.ModelServerConfig:
    config = parse_text_proto(path, model_server_config_pb2.ModelServerConfig())
    validate_model_server_config(config)
    return config


def single_model_config(model_name: str, base_path: str) -> model_server_config_pb2.ModelServerConfig:
    """What --model_name and --model_base_path stand for: a one-model config, latest version."""
    config = model_server_config_pb2.ModelServerConfig()
    model = config.model_config_list.config.add()
    model.name = model_name
    model.base_path = base_path
    model.model_platform = TENSORFLOW_PLATFORM
    return config


def validate_model_server_config(config) -> None:
    """The checks ServerCore::ReloadConfig makes before touching any model, with its messages."""
    if config.WhichOneof("config") == "custom_model_config":
        raise ConfigError("ModelServer does not yet support custom model config.")
    names = set()
    for model in config.model_config_list.config:
        if model.name in names:
            raise ConfigError(f"Illegal to list model {model.name} multiple times in config list")
        names.add(model.name)
        if not model.model_platform:
            raise ConfigError(
                "Illegal setting neither ModelServerConfig::model_type (deprecated) "
                "nor ModelServerConfig::model_platform."
            )
        if model.model_platform != TENSORFLOW_PLATFORM:
            raise ConfigError(f"Model {model.name} requests unsupported platform {model.model_platform}")
        if not model.base_path:
            raise ConfigError(f"Model {model.name} has no base_path")


def read_batching_parameters(path):
    parameters = parse_text_proto(path, batching_parameters_class()())
    validate_batching_parameters(parameters)
    return parameters


def validate_batching_parameters(parameters) -> None:
    sizes = list(parameters.allowed_batch_sizes)
    if any(later <= earlier for earlier, later in zip(sizes, sizes[1:])):
        raise ConfigError("allowed_batch_sizes entries must be monotonically increasing")
    if sizes and parameters.HasField("max_batch_size") and sizes[-1] != parameters.max_batch_size.value:
        raise ConfigError("final entry in allowed_batch_sizes must equal max_batch_size")
    for name in ("max_batch_size", "num_batch_threads", "max_enqueued_batches"):
        if parameters.HasField(name) and getattr(parameters, name).value < 1:
            raise ConfigError(f"{name} must be at least 1")
    if parameters.HasField("batch_timeout_micros") and parameters.batch_timeout_micros.value < 0:
        raise ConfigError("batch_timeout_micros must not be negative")


def read_monitoring_config(path):
    return parse_text_proto(path, monitoring_config_class()())


def prometheus_path(monitoring_config) -> str | None:
    """The metrics URL path, or None when Prometheus export is off (as without a monitoring file)."""
    if monitoring_config is None or not monitoring_config.prometheus_config.enable:
        return None
    return monitoring_config.prometheus_config.path or DEFAULT_PROMETHEUS_PATH
