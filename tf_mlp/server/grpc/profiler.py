"""tensorflow.ProfilerService on the gRPC port, as tensorflow_model_server registers it (--enable_profiler).

TensorBoard's "capture profile" and `tf.profiler.experimental.client.trace`
call `Profile` on the model server's gRPC address. TensorFlow's own profiler
server (`tf.profiler.experimental.server.start`) cannot share a port with
another gRPC server and binds every interface, so the service is answered
here instead, by the same public profiler TensorFlow's implementation wraps:
`Profile` traces this process with `tf.profiler.experimental.start` for the
requested duration (at most MAX_TRACE_SECONDS; cut short by `Terminate`
with the same session id, or by the client cancelling), then writes the
XSpace to `<repository_root>/<session_id>/<host_name>.xplane.pb`, as
TensorFlow's ProfilerServiceImpl does, and answers `empty_trace` when no
event was recorded (the client then retries). One trace at a time per
process, as TensorFlow's profiler allows.

Unlike there, no client names where the server writes: traces go only under
`--profiler_output_dir` (nowhere when it is empty). A repository_root inside
it is used as sent (TensorBoard's capture sends LOGDIR/plugins/profile, so a
server started with `--profiler_output_dir=LOGDIR` writes where TensorBoard
reads); any other is replaced by the directory itself. The session id and
host name become one path component each, of letters, digits, '.', '_' and
'-' (`../../x` cannot climb out). The server registers the service only on a
loopback --host unless --allow_profiler_on_non_loopback_host.

The request and response messages are built at runtime from the field
numbers of tsl/profiler/protobuf/profiler_service.proto (TensorFlow ships no
Python classes for them), in a private descriptor pool; fields not read here
are kept as unknown fields and ignored, so newer clients parse.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import pathlib
import re
import socket
import tempfile
import threading
import time

import grpc

from tf_mlp.server import descriptors
from tf_mlp.server.core.status import shown

log = logging.getLogger(__name__)

SERVICE = "tensorflow.ProfilerService"
MAX_TRACE_SECONDS = 60
"""Longest trace one Profile request captures: a trace holds every op the process runs meanwhile in memory."""
_NAME_LIMIT = 100
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")

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

    def __init__(self, executor, output_dir: str = ""):
        self._executor = executor
        self._output_dir = pathlib.Path(output_dir).resolve() if output_dir else None
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
        duration_ms = min(request.opts.duration_ms or request.duration_ms, MAX_TRACE_SECONDS * 1000)
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
            await context.abort(grpc.StatusCode.INTERNAL, shown(f"{type(error).__name__}: {error}"))
        finally:
            self._stops.pop(request.session_id, None)
        response = messages()["ProfileResponse"](empty_trace=trace_is_empty(xspace))
        if request.emit_xspace:
            response.xspace = xspace
        path = self.trace_path(request.repository_root, request.session_id, request.host_name)
        if path is None:
            log.info("Profile: the trace was not written (no --profiler_output_dir)")
        else:
            try:
                await loop.run_in_executor(self._executor, _write, path, xspace)
            except OSError as error:
                await context.abort(grpc.StatusCode.INTERNAL, f"cannot write {path}: {error.strerror}")
            log.info("Profile: trace written to %s", path)
        return response

    def trace_path(self, repository_root: str, session_id: str, host_name: str) -> pathlib.Path | None:
        """Where a trace goes: under --profiler_output_dir only (None when it is empty); see the module docstring."""
        if self._output_dir is None:
            return None
        root = self._output_dir
        if repository_root:
            asked = pathlib.Path(repository_root).resolve()  # symbolic links followed: they cannot lead out either
            if asked.is_relative_to(self._output_dir):
                root = asked
        session = _path_component(session_id) or time.strftime("%Y_%m_%d_%H_%M_%S")
        host = _path_component(host_name) or _path_component(socket.gethostname()) or "host"
        return root / session / f"{host}.xplane.pb"

    async def terminate(self, request, context):
        stop = self._stops.get(request.session_id)
        if stop is not None:
            stop.set()
        return messages()["TerminateResponse"]()


def _path_component(name: str) -> str:
    """name as one harmless path component: letters, digits, '.', '_' and '-', no leading dot, at most 100."""
    return _UNSAFE.sub("_", name[:_NAME_LIMIT]).lstrip(".")


def _write(path: pathlib.Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
