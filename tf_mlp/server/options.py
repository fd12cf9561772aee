"""The server's options, spelled as tensorflow_model_server's flags.

`ServerOptions` is the Python form (one field per flag, same names);
`parse_flags(["--rest_api_port=8501", ...])` is the command-line form, which
accepts `--flag=value`, `--flag value`, and for booleans a bare `--flag`, as
TensorFlow's flag parser does. Defaults are tensorflow_model_server's except
where DESIGN.md says otherwise: the REST API is on (8501) rather than off,
everything binds 127.0.0.1 rather than all interfaces, and the model is named
`tf_mlp` rather than `default`. `--host`, `--rest_api_max_request_bytes` and
`--shutdown_grace_seconds` are this server's own additions.
"""

from __future__ import annotations

import argparse
import dataclasses
import os

from tf_mlp import contract
from tf_mlp.errors import ConfigError

ANY_FREE_PORT = -1
"""Port value asking the operating system for a free port (read it back from Server)."""

DISABLED_PORT = 0
"""Port value turning an API off, as in tensorflow_model_server."""

_CPUS = os.cpu_count() or 1


@dataclasses.dataclass
class ServerOptions:
    port: int = contract.DEFAULT_GRPC_PORT
    rest_api_port: int = contract.DEFAULT_REST_PORT
    host: str = contract.DEFAULT_HOST
    rest_api_num_threads: int = 4 * _CPUS
    rest_api_timeout_in_ms: int = 30000
    rest_api_max_request_bytes: int = 64 * 1024 * 1024
    model_name: str = contract.MODEL_NAME
    model_base_path: str = ""
    model_config_file: str = ""
    # Whole seconds on the command line, as tensorflow_model_server; the
    # Python API also takes fractions (tests poll every few milliseconds).
    model_config_file_poll_wait_seconds: float = 0
    file_system_poll_wait_seconds: float = 1
    enable_batching: bool = False
    batching_parameters_file: str = ""
    monitoring_config_file: str = ""
    allow_version_labels_for_unavailable_models: bool = False
    max_num_load_retries: int = 5
    load_retry_interval_micros: int = 60 * 1000 * 1000
    enable_model_warmup: bool = True
    num_request_iterations_for_warmup: int = 0
    shutdown_grace_seconds: float = 30.0
    # Read when a version loads (servable.LoadSettings); tensorflow_model_server's flags of the same names.
    tensorflow_intra_op_parallelism: int = 0
    tensorflow_inter_op_parallelism: int = 0
    enable_signature_method_name_check: bool = False
    prefer_tflite_model: bool = False

    def validate(self) -> None:
        """Raise ConfigError for combinations tensorflow_model_server refuses to start with."""
        if not self.model_base_path and not self.model_config_file:
            raise ConfigError("both --model_base_path and --model_config_file are empty; give one of them")
        if self.batching_parameters_file and not self.enable_batching:
            raise ConfigError("--batching_parameters_file is set without setting --enable_batching to true")
        for name in ("port", "rest_api_port"):
            value = getattr(self, name)
            if not ANY_FREE_PORT <= value <= 65535:
                raise ConfigError(f"--{name}={value} is not a port (0 disables, -1 picks a free one)")
        if self.port == self.rest_api_port and self.port > 0:
            raise ConfigError(f"--rest_api_port={self.rest_api_port} must differ from --port={self.port}")
        if self.port == DISABLED_PORT and self.rest_api_port == DISABLED_PORT:
            raise ConfigError("both --port and --rest_api_port are 0; enable at least one API")
        if self.rest_api_max_request_bytes <= 0:
            raise ConfigError("--rest_api_max_request_bytes must be positive")
        if self.rest_api_num_threads <= 0:
            raise ConfigError("--rest_api_num_threads must be positive")


# (flag, help) in the order `--help` lists them; the help texts follow
# tensorflow_model_server's own where the flag is one of its flags.
FLAG_HELP = {
    "port": "Port to listen on for the gRPC API (0 disables it, -1 picks a free port).",
    "rest_api_port": "Port to listen on for the HTTP/REST API (0 disables it, -1 picks a free port). "
    "Must differ from --port.",
    "host": "Address both APIs bind to. The default serves this machine only; 0.0.0.0 serves every interface.",
    "rest_api_num_threads": "Number of threads for HTTP/REST request decoding and model runs.",
    "rest_api_timeout_in_ms": "Timeout for HTTP/REST API calls (504 when exceeded).",
    "rest_api_max_request_bytes": "Largest HTTP/REST request body accepted (413 above it).",
    "model_name": "Name of the model (ignored if --model_config_file is set).",
    "model_base_path": "Path to export: the directory holding numbered version directories "
    "(ignored if --model_config_file is set, otherwise required).",
    "model_config_file": "If non-empty, read an ascii ModelServerConfig protobuf from the supplied file name, "
    "and serve the models in that file (then --model_name and --model_base_path are ignored).",
    "model_config_file_poll_wait_seconds": "Interval in seconds between each poll of --model_config_file. "
    "If unset or set to zero, the file is read exactly once.",
    "file_system_poll_wait_seconds": "Interval in seconds between each poll of the filesystem for new model "
    "versions. If zero or negative, versions are looked for once, at startup.",
    "enable_batching": "Enable server-side batching of concurrent requests.",
    "batching_parameters_file": "If non-empty, read an ascii BatchingParameters protobuf from the supplied file "
    "name and use the contained values instead of the defaults.",
    "monitoring_config_file": "If non-empty, read an ascii MonitoringConfig protobuf from the supplied file name "
    "(Prometheus metrics on the REST port).",
    "allow_version_labels_for_unavailable_models": "If true, allows assigning unused version labels to models "
    "that are not available yet.",
    "max_num_load_retries": "Maximum number of times a failed version load is retried before giving up "
    "(0: one attempt).",
    "load_retry_interval_micros": "The interval, in microseconds, between each servable load retry.",
    "enable_model_warmup": "Replay assets.extra/tf_serving_warmup_requests when a version loads, "
    "before it serves.",
    "num_request_iterations_for_warmup": "Number of times each warmup request is replayed (used only if > 0).",
    "shutdown_grace_seconds": "On SIGTERM or SIGINT, seconds to let requests in flight finish.",
    "tensorflow_intra_op_parallelism": "Number of threads to use to parallelize the execution of an individual op. "
    "Auto-configured by default (0).",
    "tensorflow_inter_op_parallelism": "Controls the number of operators that can be executed simultaneously. "
    "Auto-configured by default (0).",
    "enable_signature_method_name_check": "Enable method_name check for SignatureDef. Disable this if serving "
    "native TF2 regression/classification models.",
    "prefer_tflite_model": "Prefer TensorFlow Lite model from `model.tflite` file in SavedModel directory, instead "
    "of the TensorFlow model from `saved_model.pb` file. If no TensorFlow Lite model found, fallback to "
    "TensorFlow model.",
}


def _parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise ConfigError(message)


def _build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="tf-mlp serve", add_help=False, allow_abbrev=False)
    defaults = ServerOptions()
    for field in dataclasses.fields(ServerOptions):
        default = getattr(defaults, field.name)
        flag = f"--{field.name}"
        if isinstance(default, bool):
            parser.add_argument(flag, type=_parse_bool, nargs="?", const=True, default=default)
        else:
            parser.add_argument(flag, type=type(default), default=default)
    return parser


def parse_flags(argv) -> ServerOptions:
    """ServerOptions from tensorflow_model_server-style flags; ConfigError on a bad or unknown flag."""
    namespace, unknown = _build_parser().parse_known_args(list(argv))
    if unknown:
        raise ConfigError(f"unknown flag {unknown[0]} (see tf-mlp serve --help)")
    options = ServerOptions(**vars(namespace))
    options.validate()
    return options


def flags_help() -> str:
    """The flag list for `tf-mlp serve --help`."""
    defaults = ServerOptions()
    lines = []
    for name, help_text in FLAG_HELP.items():
        default = getattr(defaults, name)
        shown = str(default).lower() if isinstance(default, bool) else repr(default) if default == "" else default
        lines.append(f"  --{name}={shown}\n      {help_text}")
    return "\n".join(lines)
