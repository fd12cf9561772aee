"""A TensorFlow-Serving-compatible model server: same flags, URLs, JSON, gRPC services and errors.

Built on TensorFlow's session runtime (the `serve` MetaGraph loaded as
TensorFlow Serving loads it, TFLite for `model.tflite`) and TensorFlow
Serving's own protobufs, for tests, CI and machines without Docker; deploy
with the real tensorflow_model_server (see serving/). Modules:

    options        ServerOptions and the tensorflow_model_server-style flag parser
    config_files   models.config, batching and monitoring text protos
    descriptors    protobuf message classes built from field tables (config files, the profiler service)
    metrics        Prometheus metrics at the monitoring path (prometheus_client, TensorFlow Serving's names)
    server         Server (start/stop) and serve() for the command line: the core and both front ends
    process        ServerProcess: `tf-mlp serve` as a subprocess on free ports (tests, benchmarks)
    core/          models, versions, loading, warmup, running requests (see core/__init__.py)
    rest/          the REST API and its JSON
    grpc/          the gRPC services (PredictionService, ModelService, ProfilerService)

The front ends import the core, never each other; the core imports neither.
"""

from tf_mlp.server.options import ANY_FREE_PORT, ServerOptions, flags_help, parse_flags

__all__ = ["ANY_FREE_PORT", "Server", "ServerError", "ServerOptions", "flags_help", "parse_flags", "serve"]


def __getattr__(name):
    # Server and serve import TensorFlow; the options do not, so that
    # `tf-mlp serve --help` and flag errors answer at once.
    if name in ("Server", "ServerError", "serve"):
        from tf_mlp.server import server

        return getattr(server, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
