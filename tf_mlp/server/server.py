"""Server: the REST and gRPC APIs over one ServerCore, started and stopped from Python or `tf-mlp serve`.

    from tf_mlp.server import Server, ServerOptions

    with Server(ServerOptions(model_base_path="models/tf_mlp", port=-1, rest_api_port=-1)) as server:
        requests.get(f"{server.rest_url}/v1/models/tf_mlp")

`start()` loads the models the options name (so they answer as soon as it
returns), then opens the ports; it raises TfMlpError with a one-line message
if the config is refused, a model named at start-up fails to load (as
tensorflow_model_server, which exits), or a port cannot be bound (gRPC
ports are bound without SO_REUSEPORT, so a second server on a port in use
fails instead of sharing it). The gRPC server also answers on
`--grpc_socket_path` (a UNIX socket) and serves tensorflow.ProfilerService
unless `--enable_profiler=false`, or unless --host is not a loopback address
(`--allow_profiler_on_non_loopback_host` serves it there too). `stop()` is graceful:
the ports close, requests in flight (queued batches included) finish within
`shutdown_grace_seconds`, then the models are unloaded. `serve(options)` does
the same from a command line, stopping on SIGTERM or SIGINT.

Threads: one asyncio event loop runs both APIs (aiohttp and grpc.aio);
model runs and the decoding of large bodies go to a thread pool, where
TensorFlow releases the GIL; the ServerCore's manager thread polls files
and loads versions.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import signal
import socket
import threading

import grpc
from aiohttp import web
from tensorflow_serving.apis import model_service_pb2_grpc

from tf_mlp import network
from tf_mlp.errors import ConfigError, TfMlpError
from tf_mlp.server import config_files
from tf_mlp.server.core.batching import BatchingRunner, BatchingSettings, DirectRunner
from tf_mlp.server.core.manager import ServerCore
from tf_mlp.server.grpc.profiler import ProfilerService
from tf_mlp.server.grpc.services import ModelService, PredictionService
from tf_mlp.server.metrics import Metrics
from tf_mlp.server.options import ANY_FREE_PORT, DISABLED_PORT, ServerOptions, grpc_channel_arguments
from tf_mlp.server.rest.api import RestApi

log = logging.getLogger(__name__)

_UNLIMITED = -1
"""gRPC message size: TensorFlow Serving sets the server's limits to the maximum (requests: _grpc_server_options)."""

_FAILED_TO_START = "Failed to start server. Error: "

_REST_CUT_OFF_SECONDS = 0.5
"""aiohttp's own shutdown wait, after the drain: only requests that outlived the grace or began in its last
loop iteration are left, and they are cut off (a client retries a dropped connection) rather than waited for."""


class ServerError(TfMlpError):
    """The server could not start (a port in use, an unreadable config file, ...)."""


def _new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop's loop when it is installed, else asyncio's.

    Measured here (32 clients, batching on, medians of 3): about 10% more
    requests per second with uvloop; both loops give the same answers.
    """
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


class Server:
    def __init__(self, options: ServerOptions):
        self.options = options
        self.metrics = Metrics(known_model=self._serves_model)
        self.core = None
        self.rest_port = None
        """The bound REST port (None when the REST API is off)."""
        self.grpc_port = None
        """The bound gRPC port (None when the gRPC API is off)."""
        self._loop = None
        self._thread = None
        self._executor = None
        self._stopping = None
        self._ready = threading.Event()
        self._startup_error = None
        self._rest = None
        self._stopped = threading.Event()

    # ---- public API --------------------------------------------------------

    @property
    def rest_url(self) -> str:
        return f"http://{network.address(self.options.host, self.rest_port)}"

    @property
    def grpc_target(self) -> str:
        return network.address(self.options.host, self.grpc_port)

    def start(self) -> "Server":
        if self._thread is not None:
            raise ServerError("this Server was already started; create a new one to start again")
        self.options.validate()
        for warning in self.options.ignored_flag_warnings():
            log.warning("%s", warning)
        try:
            batching = None
            if self.options.enable_batching:
                parameters = None
                if self.options.batching_parameters_file:
                    parameters = config_files.read_batching_parameters(self.options.batching_parameters_file)
                batching = BatchingSettings.from_parameters(parameters)
            monitoring = None
            if self.options.monitoring_config_file:
                monitoring = config_files.read_monitoring_config(self.options.monitoring_config_file)
            self.core = ServerCore(self.options)
            self.core.start()
        except ConfigError as error:
            message = str(error)
            raise ConfigError(message if message.startswith(_FAILED_TO_START) else _FAILED_TO_START + message) from None
        # One pool runs the models for both APIs: as large as the larger of their thread flags.
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max(self.options.rest_api_num_threads, self.options.grpc_max_threads,
                batching.num_batch_threads if batching else 1),
            thread_name_prefix="tf-mlp-serve")
        runner = BatchingRunner(self._executor, batching) if batching else DirectRunner(self._executor)
        self._thread = threading.Thread(
            target=self._run_loop, args=(runner, config_files.prometheus_path(monitoring)), name="serving-loop",
            daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._startup_error is not None:
            self._thread.join()
            self._shutdown_core()
            raise self._startup_error
        return self

    def stop(self) -> None:
        """Stop gracefully (idempotent): close the ports, let requests in flight finish, unload."""
        if self._loop is not None and self._thread is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stopping.set)
            self._thread.join()
        self._shutdown_core()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the server has stopped; False if timeout passed first."""
        return self._stopped.wait(timeout)

    def __enter__(self) -> "Server":
        # `with Server(options) as server` starts it; `with server.start()` is fine too.
        return self if self._thread is not None else self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    # ---- internals ---------------------------------------------------------

    def _serves_model(self, name: str) -> bool:
        core = self.core
        return core is not None and core.knows(name)

    def _shutdown_core(self) -> None:
        if self.core is not None:
            self.core.stop()
            self.core = None
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None
        self._stopped.set()

    def _run_loop(self, runner, prometheus_path) -> None:
        self._loop = _new_event_loop()
        try:
            self._loop.run_until_complete(self._serve(runner, prometheus_path))
        finally:
            self._loop.close()

    def _listening_socket(self, port: int) -> socket.socket:
        try:
            return network.listening_socket(self.options.host, 0 if port == ANY_FREE_PORT else port)
        except OSError as error:
            raise ServerError(f"cannot listen for REST on {network.address(self.options.host, port)}: "
                              f"{os.strerror(error.errno)}") from None

    def _grpc_server_options(self) -> list:
        # grpcio sets SO_REUSEPORT by default: a second server on the same port would start and take half the
        # connections. Off, a port in use fails to bind, as with tensorflow_model_server. A request message may
        # be as large as the request budget (a larger one could only be refused after being read whole);
        # responses are not limited, as upstream. The flags' channel arguments come last and win.
        arguments = {"grpc.max_receive_message_length": self.options.request_budget_bytes(),
                     "grpc.max_send_message_length": _UNLIMITED, "grpc.so_reuseport": 0}
        arguments.update(grpc_channel_arguments(self.options.grpc_channel_arguments))
        return list(arguments.items())

    async def _start_grpc(self, runner):
        server = grpc.aio.server(options=self._grpc_server_options())
        server.add_generic_rpc_handlers(
            (PredictionService(self.core, runner, self.metrics, self._executor).handler(),))
        model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelService(self.core, self._executor), server)
        if self.options.serves_profiler():
            server.add_generic_rpc_handlers(
                (ProfilerService(self._executor, self.options.profiler_output_dir).handler(),))
        elif self.options.enable_profiler:
            log.warning("ProfilerService is off: --host=%s is not a loopback address "
                        "(--allow_profiler_on_non_loopback_host=true turns it on)", self.options.host)
        if not self.options.accepts_config_reload():
            log.warning("HandleReloadConfigRequest is refused: --host=%s is not a loopback address "
                        "(--allow_config_reload_on_non_loopback_host=true accepts it)", self.options.host)
        if self.options.port != DISABLED_PORT:
            port = 0 if self.options.port == ANY_FREE_PORT else self.options.port
            self.grpc_port = self._bind_grpc(server, network.address(self.options.host, port),
                                             lambda: _bind_error(self.options.host, port))
        if self.options.grpc_socket_path:
            self._bind_grpc(server, f"unix:{self.options.grpc_socket_path}", lambda: "")
        await server.start()
        if self.grpc_port is not None:
            log.info("Running gRPC ModelServer at %s ...", self.grpc_target)
        if self.options.grpc_socket_path:
            log.info("Running gRPC ModelServer at UNIX socket %s ...", self.options.grpc_socket_path)
        return server

    @staticmethod
    def _bind_grpc(server, address: str, reason) -> int:
        try:
            bound = server.add_insecure_port(address)
        except RuntimeError:
            bound = 0
        if not bound:
            raise ServerError(f"cannot listen for gRPC on {address}{reason() or ': not available'}")
        return bound

    async def _serve(self, runner, prometheus_path) -> None:
        self._stopping = asyncio.Event()
        grpc_server = rest_runner = None
        try:
            if self.options.port != DISABLED_PORT or self.options.grpc_socket_path:
                grpc_server = await self._start_grpc(runner)
            if self.options.rest_api_port != DISABLED_PORT:
                self._rest = RestApi(self.core, runner, self.metrics, self._executor, self.options, prometheus_path)
                # A connection must bring a whole request within the request timeout of opening (or of its
                # last answer), else it is closed: aiohttp's own default (an hour) let clients that stall
                # in the middle of their headers hold a connection for that long.
                idle = self.options.rest_api_timeout_in_ms / 1000 if self.options.rest_api_timeout_in_ms > 0 else 75
                # auto_decompress off: the REST API undoes gzip itself, off the event loop and bounded (rest/bodies.py).
                rest_runner = web.AppRunner(self._rest.application(), access_log=None, handle_signals=False,
                                            shutdown_timeout=_REST_CUT_OFF_SECONDS,
                                            keepalive_timeout=idle, auto_decompress=False)
                await rest_runner.setup()
                sock = self._listening_socket(self.options.rest_api_port)
                self.rest_port = sock.getsockname()[1]
                await web.SockSite(rest_runner, sock).start()
                log.info("Exporting HTTP/REST API at:%s ...", network.address(self.options.host, self.rest_port))
        except Exception as error:  # noqa: BLE001 - reported to start() in the caller's thread
            self._startup_error = error if isinstance(error, TfMlpError) else ServerError(f"cannot start: {error}")
            await self._close(runner, grpc_server, rest_runner)
            self._ready.set()
            return
        self._ready.set()
        await self._stopping.wait()
        log.info("Shutting down: finishing requests in flight")
        await self._close(runner, grpc_server, rest_runner)

    async def _close(self, runner, grpc_server, rest_runner) -> None:
        grace = self.options.shutdown_grace_seconds
        await runner.flush()
        closing = []
        if grpc_server is not None:
            closing.append(grpc_server.stop(grace))
        if rest_runner is not None:
            closing.append(self._close_rest(rest_runner, grace))
        await asyncio.gather(*closing)

    async def _close_rest(self, rest_runner, grace: float) -> None:
        # The port first, then the requests already begun (aiohttp's cleanup alone would stop reading a body
        # that is still arriving), then the idle connections.
        sites = list(rest_runner.sites)  # none if start-up failed before the port opened: nothing to drain
        for site in sites:
            await site.stop()
        if sites:
            log.info("REST port closed: answering the requests already begun")
            if not await self._rest.drain(grace):
                log.warning("REST requests still unanswered after %g s of grace; closing their connections", grace)
        await rest_runner.cleanup()


def _bind_error(host: str, port: int) -> str:
    """': <why>' for a port gRPC could not bind, found by binding it the same way (no SO_REUSEPORT)."""
    try:
        with network.listening_socket(host, port):
            return ""
    except OSError as error:
        return f": {os.strerror(error.errno)}"


def serve(options: ServerOptions) -> None:
    """Run until SIGTERM or SIGINT, then stop gracefully (for `tf-mlp serve`)."""
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s] %(message)s")
    server = Server(options).start()
    stop_requested = threading.Event()
    previous = {number: signal.signal(number, lambda *_: stop_requested.set())
                for number in (signal.SIGTERM, signal.SIGINT)}
    try:
        while not stop_requested.wait(0.5):
            pass
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
        server.stop()
    log.info("Server stopped")
