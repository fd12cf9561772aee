"""Click options that say which model to ask and how, shared by `tf-mlp predict` and `tf-mlp batch-predict`.

    @click.command()
    @options.connection_options(max_attempts=4, retry_seconds=10)
    def main(**connection):
        with options.connect_from_options(**connection) as model: ...
"""

from __future__ import annotations

import click

from tf_mlp import contract
from tf_mlp.client.retry import RetryPolicy
from tf_mlp.client.target import PROTOCOLS, parse_target


def connection_options(max_attempts: int, retry_seconds: float):
    """Decorator adding the options; the retry defaults differ between an online and a batch client."""

    def decorate(function):
        options = [
            click.option("--server", "--target", "server", default=contract.DEFAULT_HOST, show_default=True,
                         help="Where the model is: rest://HOST:PORT or grpc://HOST:PORT (a server); a directory, "
                              "read in this process: an export (models, models/tf_mlp, models/tf_mlp/3; also "
                              "local:PATH) or a training run (runs/mlp; also run:PATH); or HOST[:PORT] with "
                              "--protocol."),
            click.option("--protocol", type=click.Choice(PROTOCOLS),
                         help="Protocol for a bare HOST[:PORT] --server (default rest; port 8501 REST, 8500 gRPC)."),
            click.option("--model", default=contract.MODEL_NAME, show_default=True, help="Model name on the server."),
            click.option("--version", type=click.IntRange(min=0),
                         help=f"Model version (default: the one labelled {contract.STABLE_LABEL} when the server's "
                              "config has that label, else the latest)."),
            click.option("--label", help=f"Model version label from the server's model config, e.g. "
                                         f"{contract.CANARY_LABEL} (default: {contract.STABLE_LABEL} when the "
                                         "server has it)."),
            click.option("--signature", help="Signature to call (default: serving_default for pixel arrays, "
                                             "predict_encoded for image files)."),
            click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=30.0, show_default=True,
                         help="Seconds each request attempt may take."),
            click.option("--max-attempts", type=click.IntRange(min=1), default=max_attempts, show_default=True,
                         help="Attempts per request while the server is unreachable or busy (429/503/504)."),
            click.option("--retry-seconds", type=click.FloatRange(min=0), default=retry_seconds, show_default=True,
                         help="No new attempt after this many seconds of failed ones."),
        ]
        for option in reversed(options):
            function = option(function)
        return function

    return decorate


def connect_from_options(server, protocol, model, version, label, signature, timeout, max_attempts, retry_seconds,
                         max_connections: int = 8):
    """A client for the options of connection_options (imported late: gRPC and local import TensorFlow)."""
    from tf_mlp import client

    retry = RetryPolicy(max_attempts=max_attempts, max_elapsed=retry_seconds)
    return client.connect(parse_target(server, protocol), model=model, version=version, label=label,
                          signature=signature, timeout=timeout, retry=retry, max_connections=max_connections)
