"""tensorflow.ProfilerService on the gRPC port, as tensorflow_model_server registers it (--enable_profiler).

TensorBoard's "capture profile" and `tf.profiler.experimental.client.trace`
call `Profile` on the model server's gRPC address. TensorFlow's own profiler
server (`tf.profiler.experimental.server.start`) cannot share a port with
another gRPC server and binds every interface, so the service is answered
here instead, by the same public profiler TensorFlow's implementation wraps:
`Profile` traces this process with `tf.profiler.experimental.start` for the
requested duration (cut short by `Terminate` with the same session id, or by
the client cancelling), then, as TensorFlow's ProfilerServiceImpl does,
writes the XSpace to `<repository_root>/<session_id>/<host_name>.xplane.pb`
and answers `empty_trace` when no event was recorded (the client then
retries). One trace at a time per process, as TensorFlow's profiler allows.

The request and response messages are built at runtime from the field
numbers of tsl/profiler/protobuf/profiler_service.proto (TensorFlow ships no
Python classes for them), in a private descriptor pool; fields not read here
are kept as unknown fields and ignored, so newer clients parse.
"""

from __future__ import annotations

import asyncio
import functools
import pathlib
import socket
import tempfile
import threading

import grpc

from tf_mlp.server import descriptors

SERVICE = "tensorflow.ProfilerService"

_FIELD, _OPTIONAL, _REPEATED = descriptors.FIELD, descriptors.OPTIONAL, descriptors.REPEATED

# (message, ((field, number, type, label, message type), ...)): the fields this service reads or writes.
_MESSAGES = (
    ("ProfileOptions", (("host_tracer_level", 2, _FIELD.TYPE_UINT32, _OPTIONAL, None),
                        ("device_tracer_level", 3, _FIELD.TYPE_UINT32, _OPTIONAL, None),
                        ("python_tracer_level", 4, _FIELD.TYPE_UINT32, _OPTIONAL, None),
                        ("duration_ms", 9, _FIELD.TYPE_UINT64, _OPTIONAL, None))),
    ("ProfileRequest", (("duration_ms", 1, _FIELD.TYPE_UINT64, _OPTIONAL, None),
                        ("opts", 4, _FIELD.TYPE_MESSAGE, _OPTIONAL, ".tensorflow.ProfileOptions"),
                        ("repository_root", 5, _FIELD.TYPE_STRING, _OPTIONAL, None),
                        ("session_id", 6, _FIELD.TYPE_STRING, _OPTIONAL, None),
                        ("host_name", 7, _FIELD.TYPE_STRING, _OPTIONAL, None),
                        ("emit_xspace", 9, _FIELD.TYPE_BOOL, _OPTIONAL, None))),
    # xspace is a tensorflow.profiler.XSpace message; bytes have the same wire format.
    ("ProfileResponse", (("empty_trace", 7, _FIELD.TYPE_BOOL, _OPTIONAL, None),
                         ("xspace", 8, _FIELD.TYPE_BYTES, _OPTIONAL, None))),
    ("TerminateRequest", (("session_id", 1, _FIELD.TYPE_STRING, _OPTIONAL, None),)),
    ("TerminateResponse", ()),
    # tsl/profiler/protobuf/xplane.proto, as far as "has this trace any event" needs.
    ("XLine", (("events", 4, _FIELD.TYPE_BYTES, _REPEATED, None),)),
    ("XPlane", (("lines", 3, _FIELD.TYPE_MESSAGE, _REPEATED, ".tensorflow.XLine"),)),
    ("XSpace", (("planes", 1, _FIELD.TYPE_MESSAGE, _REPEATED, ".tensorflow.XPlane"),)),
)


@functools.cache
def messages() -> dict:
    """name -> message class, for the messages above."""
    return descriptors.message_classes("tensorflow", _MESSAGES, file_name="tf_mlp/profiler_service.proto")


def trace_is_empty(xspace_bytes: bytes) -> bool:
    """IsEmpty(XSpace) of TensorFlow's profiler: no plane has a line with an event."""
    space = messages()["XSpace"].FromString(xspace_bytes)
    return not any(line.events for plane in space.planes for line in plane.lines)


def capture(duration_seconds: float, stop: threading.Event, host_tracer_level: int = 2,
            device_tracer_level: int = 1, python_tracer_level: int = 0) -> bytes:
    """Trace this process with TensorFlow's profiler until the duration passes or stop is set; the XSpace."""
    import tensorflow as tf

    options = tf.profiler.experimental.ProfilerOptions(host_tracer_level=host_tracer_level,
                                                       python_tracer_level=python_tracer_level,
                                                       device_tracer_level=device_tracer_level)
    with tempfile.TemporaryDirectory(prefix="tf-mlp-profile-") as logdir:
        tf.profiler.experimental.start(logdir, options=options)
        try:
            stop.wait(duration_seconds)
        finally:
            tf.profiler.experimental.stop()
        (written,) = pathlib.Path(logdir).rglob("*.xplane.pb")
        return written.read_bytes()


class ProfilerService:
    """Profile and Terminate of tensorflow.ProfilerService, run on the server's thread pool."""

    def __init__(self, executor):
        self._executor = executor
        self._stops = {}  # session_id -> threading.Event, for Terminate

    def handler(self) -> grpc.GenericRpcHandler:
        classes = messages()
        return grpc.method_handlers_generic_handler(SERVICE, {
            "Profile": grpc.unary_unary_rpc_method_handler(
                self.profile, request_deserializer=classes["ProfileRequest"].FromString,
                response_serializer=classes["ProfileResponse"].SerializeToString),
            "Terminate": grpc.unary_unary_rpc_method_handler(
                self.terminate, request_deserializer=classes["TerminateRequest"].FromString,
                response_serializer=classes["TerminateResponse"].SerializeToString),
        })

    async def profile(self, request, context):
        duration_ms = request.opts.duration_ms or request.duration_ms
        levels = {"host_tracer_level": request.opts.host_tracer_level or 2,
                  "device_tracer_level": request.opts.device_tracer_level or 1,
                  "python_tracer_level": request.opts.python_tracer_level}
        stop = self._stops.setdefault(request.session_id, threading.Event())
        loop = asyncio.get_running_loop()
        work = loop.run_in_executor(self._executor, functools.partial(capture, duration_ms / 1000, stop, **levels))
        try:
            xspace = await asyncio.shield(work)
        except asyncio.CancelledError:
            stop.set()  # the client went away: end the trace so the profiler is free again
            raise
        except Exception as error:  # noqa: BLE001 - e.g. another trace running; the client sees it, as upstream
            await context.abort(grpc.StatusCode.INTERNAL, f"{type(error).__name__}: {error}")
        finally:
            self._stops.pop(request.session_id, None)
        response = messages()["ProfileResponse"](empty_trace=trace_is_empty(xspace))
        if request.emit_xspace:
            response.xspace = xspace
        if request.repository_root:
            host = request.host_name or socket.gethostname()
            path = pathlib.Path(request.repository_root, request.session_id, f"{host}.xplane.pb")
            try:
                await loop.run_in_executor(self._executor, _write, path, xspace)
            except OSError as error:
                await context.abort(grpc.StatusCode.INTERNAL, f"cannot write {path}: {error.strerror}")
        return response

    async def terminate(self, request, context):
        stop = self._stops.get(request.session_id)
        if stop is not None:
            stop.set()
        return messages()["TerminateResponse"]()


def _write(path: pathlib.Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
