"""The `tf-mlp ui` command (registered on the main group in tf_mlp/cli.py)."""

from __future__ import annotations

import signal
import threading

import click

from tf_mlp import contract
from tf_mlp.ui import DEFAULT_MAX_REQUEST_BYTES, DEFAULT_PORT

# Only click and constants at import time: `tf-mlp --help` must not pay for aiohttp.


@click.command(name="ui")
@click.option("--server", default=f"rest://{contract.DEFAULT_HOST}:{contract.DEFAULT_REST_PORT}", show_default=True,
              help="The model server's REST API (tf-mlp serve, tensorflow_model_server, or a proxy in front).")
@click.option("--model", default=contract.MODEL_NAME, show_default=True, help="Model name on the server.")
@click.option("--version", type=click.IntRange(min=0),
              help=f"Model version (default: the one labelled {contract.STABLE_LABEL} when the server's config has "
                   "that label, else the latest).")
@click.option("--label", help=f"Model version label from the server's model config, e.g. {contract.CANARY_LABEL} "
                              f"(default: {contract.STABLE_LABEL} when the server has it).")
@click.option("--host", default=contract.DEFAULT_HOST, show_default=True,
              help="Address to serve the page on. Anyone who reaches it can query the model through it.")
@click.option("--port", type=click.IntRange(0, 65535), default=DEFAULT_PORT, show_default=True,
              help="Port for the page (0: any free port).")
@click.option("--max-request-bytes", type=click.IntRange(min=1), default=DEFAULT_MAX_REQUEST_BYTES, show_default=True,
              help="Largest request body the page's proxy forwards (413 above).")
def ui_command(server, model, version, label, host, port, max_request_bytes):
    """Serve a page to try the model: draw or drop an image, see what the served model says.

    The page is served with a thin same-origin proxy to the model's REST API
    (status, metadata and :predict only), so the model server needs no CORS.
    Stops on Ctrl-C or SIGTERM.
    """
    from tf_mlp.ui.server import UiOptions, UiServer

    options = UiOptions(server=server, model=model, version=version, label=label, host=host, port=port,
                        max_request_bytes=max_request_bytes)
    stop_requested = threading.Event()
    previous = {number: signal.signal(number, lambda *_: stop_requested.set())
                for number in (signal.SIGTERM, signal.SIGINT)}
    try:
        with UiServer(options) as ui:
            click.echo(f"Serving the page on {ui.url} for model {model!r} at {options.target}")
            while not stop_requested.wait(0.5):
                pass
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
