"""What can go wrong when asking a model for predictions, as exceptions a caller can act on.

Every client error says where it came from (the target), what the server
answered (HTTP status or gRPC code) and the server's own message, on one
line. The classes sort failures by what the caller should do next:

    UnavailableError   the server could not be reached, or stayed busy, through every retry: try later
    NotFoundError      the model, version or label does not exist there: fix --model/--version/--label
    RequestError       the server refused this request (bad input, too large): fix or drop the input
    ServerError        the server failed while answering (HTTP 500, gRPC INTERNAL): report it
"""

from __future__ import annotations

from tf_mlp.errors import TfMlpError


class ClientError(TfMlpError):
    """A request to a model failed; `status` is the HTTP status or gRPC code name, `message` the server's text."""

    def __init__(self, target: str, status: str, message: str, attempts: int = 1):
        self.target = target
        self.status = status
        self.message = message
        self.attempts = attempts
        super().__init__(target, status, message)

    def __str__(self) -> str:
        # Built when shown, because the retry loop sets `attempts` after the error is made.
        tries = f" (after {self.attempts} attempts)" if self.attempts > 1 else ""
        # One line, whatever the server sent: multi-line messages are folded.
        text = " ".join(str(self.message).split())
        return f"{self.target}: {self.status}{tries}: {text}"


class UnavailableError(ClientError):
    """No answer, or only 'busy' answers (429/503/504, UNAVAILABLE...), through every retry."""


class NotFoundError(ClientError):
    """HTTP 404 / gRPC NOT_FOUND: no such model, version or label on that server."""


class RequestError(ClientError):
    """HTTP 4xx / gRPC INVALID_ARGUMENT and friends: this request cannot succeed as it is."""


class ServerError(ClientError):
    """HTTP 5xx / gRPC INTERNAL and friends: the server failed while handling a valid-looking request."""
