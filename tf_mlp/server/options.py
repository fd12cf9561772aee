"""The server's options, spelled as tensorflow_model_server's flags.

`ServerOptions` is the Python form (one field per flag, same names);
`parse_flags(["--rest_api_port=8501", ...])` is the command-line form, which
accepts `--flag=value`, `--flag value`, and for booleans a bare `--flag`, as
TensorFlow's flag parser does. Every flag `tensorflow_model_server --help`
lists is accepted. Most are honoured; the few that mean nothing here (CORS,
TPU, TensorFlow Lite interpreter pools, ...) are listed in `NO_EFFECT`, and
`ignored_flag_warnings()` names, in one line each, those given a value other
than their default. SSL and ALTS credentials are refused rather than
silently served in plain text.

Defaults are tensorflow_model_server's except where DESIGN.md says
otherwise: the REST API is on (8501) rather than off, everything binds
127.0.0.1 rather than all interfaces, and the model is named `tf_mlp` rather
than `default`. `--host`, `--rest_api_max_request_bytes`,
`--shutdown_grace_seconds` and the flags of OWN_FLAGS (a request's decoding
budget, where profiles go, the admin services off the loopback interface)
are this server's own additions.
"""

from __future__ import annotations

import argparse
import dataclasses
import os

from tf_mlp import contract, network
from tf_mlp.errors import ConfigError
from tf_mlp.server.core.limits import STRING_ELEMENT_BYTES

ANY_FREE_PORT = -1
"""Port value asking the operating system for a free port (read it back from Server)."""

DISABLED_PORT = 0
"""Port value turning an API off, as in tensorflow_model_server."""

_CPUS = os.cpu_count() or 1


@dataclasses.dataclass
class ServerOptions:
    port: int = contract.DEFAULT_GRPC_PORT
    grpc_socket_path: str = ""
    rest_api_port: int = contract.DEFAULT_REST_PORT
    host: str = contract.DEFAULT_HOST
    rest_api_num_threads: int = 4 * _CPUS
    rest_api_timeout_in_ms: int = 30000
    rest_api_max_request_bytes: int = 64 * 1024 * 1024
    rest_api_enable_cors_support: bool = False
    model_name: str = contract.MODEL_NAME
    model_base_path: str = ""
    model_config_file: str = ""
    # Whole seconds on the command line, as tensorflow_model_server; the
    # Python API also takes fractions (tests poll every few milliseconds).
    model_config_file_poll_wait_seconds: float = 0
    file_system_poll_wait_seconds: float = 1
    enable_batching: bool = False
    batching_parameters_file: str = ""
    enable_per_model_batching_parameters: bool = False
    monitoring_config_file: str = ""
    allow_version_labels_for_unavailable_models: bool = False
    num_load_threads: int = 0
    num_unload_threads: int = 0
    max_num_load_retries: int = 5
    load_retry_interval_micros: int = 60 * 1000 * 1000
    flush_filesystem_caches: bool = True
    enable_model_warmup: bool = True
    num_request_iterations_for_warmup: int = 0
    saved_model_tags: str = contract.SERVE_TAG
    tensorflow_session_parallelism: int = 0
    tensorflow_intra_op_parallelism: int = 0
    tensorflow_inter_op_parallelism: int = 0
    tensorflow_session_config_file: str = ""
    per_process_gpu_memory_fraction: float = 0.0
    platform_config_file: str = ""
    grpc_channel_arguments: str = ""
    grpc_max_threads: int = 4 * _CPUS
    use_alts_credentials: bool = False
    ssl_config_file: str = ""
    enable_profiler: bool = True
    enable_grpc_healthcheck_service: bool = False
    enable_signature_method_name_check: bool = False
    prefer_tflite_model: bool = False
    num_tflite_pools: int = _CPUS
    num_tflite_interpreters_per_pool: int = 1
    remove_unused_fields_from_bundle_metagraph: bool = True
    enable_serialization_as_tensor_content: bool = False
    thread_pool_factory_config_file: str = ""
    mixed_precision: str = ""
    xla_cpu_compilation_enabled: bool = False
    xla_gpu_compilation_enabled: bool = False
    skip_initialize_tpu: bool = False
    version: bool = False
    shutdown_grace_seconds: float = 30.0
    max_request_tensor_bytes: int = 0
    profiler_output_dir: str = ""
    allow_profiler_on_non_loopback_host: bool = False
    allow_config_reload_on_non_loopback_host: bool = False

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
        if self.port == DISABLED_PORT and self.rest_api_port == DISABLED_PORT and not self.grpc_socket_path:
            raise ConfigError("both --port and --rest_api_port are 0 and --grpc_socket_path is empty; "
                              "enable at least one API")
        if self.rest_api_max_request_bytes <= 0:
            raise ConfigError("--rest_api_max_request_bytes must be positive")
        if self.max_request_tensor_bytes < 0:
            raise ConfigError("--max_request_tensor_bytes must not be negative (0: the default budget)")
        for name in ("rest_api_num_threads", "grpc_max_threads"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"--{name} must be positive")
        if self.use_alts_credentials and self.ssl_config_file:
            raise ConfigError("Either use_alts_credentials must be false or ssl_config_file must be empty.")
        if self.use_alts_credentials or self.ssl_config_file:
            flag = "--use_alts_credentials" if self.use_alts_credentials else "--ssl_config_file"
            raise ConfigError(f"{flag}: secure gRPC channels are not supported by tf-mlp serve; terminate TLS "
                              "in a proxy in front of it, or serve with tensorflow_model_server")
        if (self.tensorflow_intra_op_parallelism > 0 and self.tensorflow_inter_op_parallelism > 0
                and self.tensorflow_session_parallelism > 0):
            raise ConfigError("Either configure server_options.tensorflow_session_parallelism or "
                              "(server_options.tensorflow_intra_op_parallelism, "
                              "server_options.tensorflow_inter_op_parallelism) separately. "
                              "You cannot configure all.")
        grpc_channel_arguments(self.grpc_channel_arguments)
        if not 0.0 <= self.per_process_gpu_memory_fraction <= 1.0:
            raise ConfigError("--per_process_gpu_memory_fraction must be between 0.0 and 1.0")

    def thread_counts(self) -> tuple[int, int]:
        """(intra_op, inter_op) threads as server.cc puts them in each session's config; 0: TensorFlow's choice.

        The two specific flags win over --tensorflow_session_parallelism,
        which sets both.
        """
        if self.tensorflow_intra_op_parallelism > 0 or self.tensorflow_inter_op_parallelism > 0:
            return self.tensorflow_intra_op_parallelism, self.tensorflow_inter_op_parallelism
        return self.tensorflow_session_parallelism, self.tensorflow_session_parallelism

    def request_budget_bytes(self) -> int:
        """--max_request_tensor_bytes, or its default: BODY_TO_BUDGET times --rest_api_max_request_bytes."""
        return self.max_request_tensor_bytes or BODY_TO_BUDGET * self.rest_api_max_request_bytes

    def serves_profiler(self) -> bool:
        """ProfilerService on the gRPC port: --enable_profiler, and only on a loopback --host unless allowed."""
        return self.enable_profiler and (network.is_loopback(self.host) or self.allow_profiler_on_non_loopback_host)

    def accepts_config_reload(self) -> bool:
        """HandleReloadConfigRequest: on a loopback --host, or where allowed."""
        return network.is_loopback(self.host) or self.allow_config_reload_on_non_loopback_host

    def ignored_flag_warnings(self) -> list[str]:
        """One line per flag given a non-default value that has no effect here."""
        defaults = ServerOptions()
        return [f"--{name}={_shown(getattr(self, name))} has no effect in tf-mlp serve: {reason}"
                for name, reason in NO_EFFECT.items() if getattr(self, name) != getattr(defaults, name)]


def grpc_channel_arguments(text: str) -> list[tuple[str, int | str]]:
    """Parse --grpc_channel_arguments as server.cc does: `key=value,...`, int32 values as ints, others as strings."""
    arguments = []
    for item in text.split(",") if text else []:
        key, separator, value = item.partition("=")
        if not separator or not key:
            raise ConfigError(f"--grpc_channel_arguments: {item!r} is not key=value")
        try:
            number = int(value)
        except ValueError:
            number = None
        arguments.append((key, number if number is not None and -2**31 <= number < 2**31 else value))
    return arguments


BODY_TO_BUDGET = 8
"""The default request budget is this many times the REST body limit: a body of decimal numbers ("0.5," each)
parses to Python objects of eight times its size, and a body of small integers ("0,") decodes to int64 or double
tensors of four times its size."""
OWN_FLAGS = ("host", "rest_api_max_request_bytes", "shutdown_grace_seconds", "max_request_tensor_bytes",
             "profiler_output_dir", "allow_profiler_on_non_loopback_host", "allow_config_reload_on_non_loopback_host")
"""Flags tensorflow_model_server does not have."""

# Flags of tensorflow_model_server that mean nothing for this server, and why.
NO_EFFECT = {
    "rest_api_enable_cors_support": "CORS headers are not implemented",
    "enable_per_model_batching_parameters": "batching parameters come from --batching_parameters_file only",
    "num_load_threads": "versions are loaded one at a time, by the manager thread",
    "num_unload_threads": "versions are unloaded one at a time, by the manager thread",
    "flush_filesystem_caches": "there are no file system caches to flush",
    "platform_config_file": "only the TensorFlow platform is served",
    "enable_grpc_healthcheck_service": "the gRPC health service is not served (use ModelService.GetModelStatus)",
    "num_tflite_pools": "there are no TensorFlow Lite interpreter pools",
    "num_tflite_interpreters_per_pool": "there are no TensorFlow Lite interpreter pools",
    "remove_unused_fields_from_bundle_metagraph": "the MetaGraphDef is not kept after loading",
    "enable_serialization_as_tensor_content": "responses fill the typed value fields",
    "thread_pool_factory_config_file": "there are no custom thread pool factories",
    "mixed_precision": "models run in the precision they were exported with",
    "xla_cpu_compilation_enabled": "functions are compiled as the SavedModel asks (jit_compile)",
    "xla_gpu_compilation_enabled": "functions are compiled as the SavedModel asks (jit_compile)",
    "skip_initialize_tpu": "there is no TPU support",
    "saved_model_tags": "SavedModels are loaded with the 'serve' tag",
    "tensorflow_session_config_file": "sessions get the thread counts of the flags and TensorFlow's other defaults",
    "per_process_gpu_memory_fraction": "sessions get TensorFlow's default GPU memory options",
}


def _shown(value) -> str:
    return str(value).lower() if isinstance(value, bool) else repr(value) if value == "" else str(value)


_NO_EFFECT_NOTE = "Accepted for compatibility; no effect here ({})."

# Help in the order `--help` lists the flags; the texts follow
# tensorflow_model_server's own where the flag is one of its flags.
FLAG_HELP = {
    "port": "Port to listen on for the gRPC API (0 disables it, -1 picks a free port).",
    "grpc_socket_path": "If non-empty, also listen to a UNIX socket for the gRPC API on the given path "
    "(relative or absolute).",
    "rest_api_port": "Port to listen on for the HTTP/REST API (0 disables it, -1 picks a free port). "
    "Must differ from --port.",
    "host": "Address both APIs bind to. The default serves this machine only; 0.0.0.0 serves every interface.",
    "rest_api_num_threads": "Number of threads for HTTP/REST request decoding and model runs.",
    "rest_api_timeout_in_ms": "Timeout for HTTP/REST API calls (504 when exceeded).",
    "rest_api_max_request_bytes": "Largest HTTP/REST request body accepted (413 above it).",
    "rest_api_enable_cors_support": "Enable CORS headers in response.",
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
    "enable_per_model_batching_parameters": "Read batching parameters from each SavedModel's directory.",
    "monitoring_config_file": "If non-empty, read an ascii MonitoringConfig protobuf from the supplied file name "
    "(Prometheus metrics on the REST port).",
    "allow_version_labels_for_unavailable_models": "If true, allows assigning unused version labels to models "
    "that are not available yet.",
    "num_load_threads": "Number of threads loading servables.",
    "num_unload_threads": "Number of threads unloading servables.",
    "max_num_load_retries": "Maximum number of times a failed version load is retried before giving up "
    "(0: one attempt).",
    "load_retry_interval_micros": "The interval, in microseconds, between each servable load retry.",
    "flush_filesystem_caches": "Flush filesystem caches after loading servables.",
    "enable_model_warmup": "Replay assets.extra/tf_serving_warmup_requests when a version loads, "
    "before it serves.",
    "num_request_iterations_for_warmup": "Number of times each warmup request is replayed (used only if > 0).",
    "saved_model_tags": "Comma-separated set of tags of the meta graph to load from each SavedModel.",
    "tensorflow_session_parallelism": "Number of threads to use for running a TensorFlow session "
    "(both intra-op and inter-op). 0: auto-configured.",
    "tensorflow_intra_op_parallelism": "Number of threads to use to parallelize the execution of an individual "
    "op. 0: auto-configured.",
    "tensorflow_inter_op_parallelism": "Number of ops that can be executed simultaneously. 0: auto-configured.",
    "tensorflow_session_config_file": "If non-empty, read an ascii TensorFlow ConfigProto from the supplied file "
    "name.",
    "per_process_gpu_memory_fraction": "Fraction of each GPU's memory the process may take (0.0: TensorFlow "
    "chooses).",
    "platform_config_file": "Read an ascii PlatformConfigMap protobuf instead of the TensorFlow platform's.",
    "grpc_channel_arguments": "A comma separated list of arguments passed to the gRPC server "
    "(e.g. grpc.max_connection_age_ms=2000).",
    "grpc_max_threads": "Threads available to run the model for gRPC requests (the pool they share with "
    "REST is the larger of this and --rest_api_num_threads).",
    "use_alts_credentials": "Use Google ALTS credentials (refused: no secure channels here).",
    "ssl_config_file": "Read an ascii SSLConfig protobuf and serve gRPC over SSL (refused: no secure channels "
    "here).",
    "enable_profiler": "Serve tensorflow.ProfilerService on the gRPC port (traces with TensorFlow's profiler). "
    "Only on a loopback --host unless --allow_profiler_on_non_loopback_host.",
    "enable_grpc_healthcheck_service": "Enable the standard gRPC healthcheck service.",
    "enable_signature_method_name_check": "Check each SignatureDef's method_name against the API called "
    "(Classify, Regress, Predict). Leave off for native TF2 models.",
    "prefer_tflite_model": "Serve model.tflite from a version directory instead of saved_model.pb when present.",
    "num_tflite_pools": "Number of TensorFlow Lite interpreter pools.",
    "num_tflite_interpreters_per_pool": "Number of TensorFlow Lite interpreters per pool.",
    "remove_unused_fields_from_bundle_metagraph": "Remove unused fields from the MetaGraphDef to save memory.",
    "enable_serialization_as_tensor_content": "Serialize predict responses as tensor content.",
    "thread_pool_factory_config_file": "Read an ascii ThreadPoolConfig protobuf.",
    "mixed_precision": "Mixed precision mode.",
    "xla_cpu_compilation_enabled": "Enable XLA:CPU JIT.",
    "xla_gpu_compilation_enabled": "Enable XLA:CPU and XLA:GPU JIT.",
    "skip_initialize_tpu": "Skip initializing the TPU system.",
    "version": "Display the version and exit.",
    "shutdown_grace_seconds": "On SIGTERM or SIGINT, seconds to let requests in flight finish.",
    "max_request_tensor_bytes": "Most bytes the tensors of one request may decode to, all its inputs together, "
    "counted from their declared dtypes and shapes (strings: their bytes plus "
    f"{STRING_ELEMENT_BYTES} each; classify and regress: "
    "the serialized examples, context included) before anything is decoded; above it the request is refused "
    "with RESOURCE_EXHAUSTED (REST 429). The same limit applies, separately, to what a REST body parses to "
    "(estimated before parsing), and is the largest gRPC request message (unless --grpc_channel_arguments "
    f"sets grpc.max_receive_message_length). 0: {BODY_TO_BUDGET} times --rest_api_max_request_bytes "
    f"({BODY_TO_BUDGET * ServerOptions.rest_api_max_request_bytes >> 20} MiB by default), what a body at that "
    "limit holding only decimal numbers parses to.",
    "profiler_output_dir": "Directory under which ProfilerService writes the traces it captures, as "
    "DIR/SESSION_ID/HOST_NAME.xplane.pb, both names reduced to letters, digits, '.', '_' and '-' (a client's "
    "repository_root is not used). Empty: nothing is written; a trace reaches only clients that ask for it in "
    "the response, as TensorBoard and tf.profiler.experimental.client.trace do.",
    "allow_profiler_on_non_loopback_host": "Serve ProfilerService (--enable_profiler) also when --host is not a "
    "loopback address. Off: a profile traces the whole process, and any client that reaches the port could ask.",
    "allow_config_reload_on_non_loopback_host": "Accept ModelService.HandleReloadConfigRequest also when --host "
    "is not a loopback address (PERMISSION_DENIED otherwise). Off: a reload serves any model directory the "
    "server can read, named by any client that reaches the port.",
}
for _name, _reason in NO_EFFECT.items():
    FLAG_HELP[_name] += " " + _NO_EFFECT_NOTE.format(_reason)


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
    if not options.version:  # --version answers without a model, as tensorflow_model_server
        options.validate()
    return options


def flags_help() -> str:
    """The flag list for `tf-mlp serve --help`."""
    defaults = ServerOptions()
    return "\n".join(f"  --{name}={_shown(getattr(defaults, name))}\n      {help_text}"
                     for name, help_text in FLAG_HELP.items())
