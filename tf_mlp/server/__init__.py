"""A TensorFlow-Serving-compatible model server: same flags, URLs, JSON, gRPC services and errors.

Built on TensorFlow's session runtime (the `serve` MetaGraph loaded as
TensorFlow Serving loads it, TFLite for `model.tflite`) and TensorFlow
Serving's own protobufs, for tests, CI and machines without Docker; deploy
with the real tensorflow_model_server (see serving/). Modules:

    options        ServerOptions and the tensorflow_model_server-style flag parser
    config_files   models.config, batching and monitoring text protos
    core           ServerCore: config, versions, labels, lookups, status, metadata
    versions       one model's versions: policy, polling, load (with warmup) and unload
    servable       one loaded version: SignatureDefs and the session that runs them
    tflite_runner  a version's model.tflite run by TensorFlow Lite (--prefer_tflite_model)
    inference      Predict / Classify / Regress / MultiInference plans and response protos
    batching       direct and batching runners (--enable_batching)
    json_codec, json_tensors, json_examples    the REST API's JSON
    rest, grpc_services                        the two APIs
    metrics        Prometheus metrics at the monitoring path
    server         Server (start/stop) and serve() for the command line
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
