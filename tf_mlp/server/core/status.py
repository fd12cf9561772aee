"""Errors as TensorFlow Serving reports them: a canonical code plus a message.

Every failure a request can meet is raised as `ServingError(code, message)`.
The REST layer turns the code into an HTTP status with the same table as
TensorFlow Serving's `http_server.cc` (`ToHTTPStatusCode`), the gRPC layer
into the gRPC status of the same name, and the metrics count requests by the
code's name (`OK`, `INVALID_ARGUMENT`, ...), as `/tensorflow/serving/request_count` does.
"""

from __future__ import annotations

import enum
import re


class Code(enum.IntEnum):
    """tensorflow.error.Code (the same numbers as gRPC status codes)."""

    OK = 0
    CANCELLED = 1
    UNKNOWN = 2
    INVALID_ARGUMENT = 3
    DEADLINE_EXCEEDED = 4
    NOT_FOUND = 5
    ALREADY_EXISTS = 6
    PERMISSION_DENIED = 7
    RESOURCE_EXHAUSTED = 8
    FAILED_PRECONDITION = 9
    ABORTED = 10
    OUT_OF_RANGE = 11
    UNIMPLEMENTED = 12
    INTERNAL = 13
    UNAVAILABLE = 14
    DATA_LOSS = 15
    UNAUTHENTICATED = 16


# TensorFlow Serving's ToHTTPStatusCode, entry for entry (499 is nginx's
# "client closed request", which net_http calls CLIENT_CLOSED_REQUEST).
HTTP_STATUS = {
    Code.OK: 200,
    Code.CANCELLED: 499,
    Code.UNKNOWN: 500,
    Code.INVALID_ARGUMENT: 400,
    Code.DEADLINE_EXCEEDED: 504,
    Code.NOT_FOUND: 404,
    Code.ALREADY_EXISTS: 409,
    Code.PERMISSION_DENIED: 403,
    Code.RESOURCE_EXHAUSTED: 429,
    Code.FAILED_PRECONDITION: 400,
    Code.ABORTED: 409,
    Code.OUT_OF_RANGE: 400,
    Code.UNIMPLEMENTED: 501,
    Code.INTERNAL: 500,
    Code.UNAVAILABLE: 503,
    Code.DATA_LOSS: 500,
    Code.UNAUTHENTICATED: 401,
}


ECHO_LIMIT = 1024
"""Most characters of one client-supplied value an error message quotes (then an ellipsis and its length)."""
MESSAGE_LIMIT = 4096
"""Most characters of any error message: a gRPC client refuses a status whose trailer passes 8 KiB."""


def shown(value) -> str:
    """A client's value as an error message quotes it: whole up to ECHO_LIMIT characters, cut with a note beyond.

    A message that echoed a 5 MiB document or a megabyte model name whole
    would cost the server that much again to format and send.
    """
    text = value if isinstance(value, str) else str(value)
    if len(text) <= ECHO_LIMIT:
        return text
    return f"{text[:ECHO_LIMIT]}... ({len(text)} characters)"


class ServingError(Exception):
    """A request failed with a canonical code; the message is what the client sees (at most MESSAGE_LIMIT)."""

    def __init__(self, code: Code, message: str):
        if len(message) > MESSAGE_LIMIT:
            message = f"{message[:MESSAGE_LIMIT]}... ({len(message)} characters)"
        super().__init__(message)
        self.code = Code(code)
        self.message = message

    @property
    def http_status(self) -> int:
        return HTTP_STATUS[self.code]

    def to_string(self) -> str:
        """absl::Status::ToString(): how TensorFlow Serving nests one error inside another."""
        return f"{self.code.name}: {self.message}"

    def __repr__(self) -> str:
        return f"ServingError({self.code.name}, {self.message!r})"


def invalid_argument(message: str) -> ServingError:
    return ServingError(Code.INVALID_ARGUMENT, message)


def not_found(message: str) -> ServingError:
    return ServingError(Code.NOT_FOUND, message)


def resource_exhausted(message: str) -> ServingError:
    return ServingError(Code.RESOURCE_EXHAUSTED, message)


def internal_error(error: BaseException) -> ServingError:
    """What the client sees of an exception nothing expected (the server logs its traceback)."""
    return ServingError(Code.INTERNAL, f"internal error: {type(error).__name__} (logged by the server)")


DEADLINE_MESSAGE = "Timed out waiting for notification"
"""What TensorFlow Serving answers when a request's deadline (REST timeout, gRPC deadline) passes during its run."""


def deadline_exceeded() -> ServingError:
    return ServingError(Code.DEADLINE_EXCEEDED, DEADLINE_MESSAGE)


# Python's Session.run prefixes a graph error with where the node was defined; the C++ Session does not.
_PYTHON_PREFIX = re.compile(r"^Graph execution error:\s*(?:Detected at node .*?\nNode: '[^']*'\n)?", re.S)
_NODE_NOTE = re.compile(r"\[\[(?:\{\{function_node [^}]*\}\})?\{\{node ([^}]*)\}\}\]\]")
_SPACES = re.compile(r"\s+")


def one_line(message: str) -> str:
    """A TensorFlow status message on one line: "... [[{{node add}}]]" becomes "... (node add)"."""
    return _SPACES.sub(" ", _NODE_NOTE.sub(r"(node \1)", message)).strip()


def from_tensorflow_error(error: Exception) -> ServingError:
    """A TensorFlow error keeps its own code and the session's message, made one line."""
    code = getattr(error, "error_code", None)
    message = getattr(error, "message", None) or str(error)
    message = one_line(_PYTHON_PREFIX.sub("", message))
    try:
        return ServingError(Code(code), message)
    except ValueError:
        return ServingError(Code.UNKNOWN, message)
