"""Where the model is: `rest://host:8501`, `grpc://host:8500` or `local:PATH`.

    parse_target("rest://127.0.0.1:8501")    Target("rest", "127.0.0.1", 8501)
    parse_target("http://models:8501")       the same as rest://
    parse_target("grpc://127.0.0.1")         port defaults to 8500 (8501 for REST), as tensorflow_model_server's
    parse_target("127.0.0.1:8500", "grpc")   a bare host[:port] takes the protocol given (default rest)
    parse_target("local:models")             no server: a SavedModel directory, or an export base
"""

from __future__ import annotations

import dataclasses
import urllib.parse

from tf_mlp import contract
from tf_mlp.errors import ConfigError

PROTOCOLS = ("rest", "grpc", "local")
DEFAULT_PORTS = {"rest": contract.DEFAULT_REST_PORT, "grpc": contract.DEFAULT_GRPC_PORT}
_SCHEMES = {"rest": "rest", "http": "rest", "grpc": "grpc"}
_EXAMPLES = "rest://HOST:8501, grpc://HOST:8500 or local:PATH"


@dataclasses.dataclass(frozen=True)
class Target:
    protocol: str
    """rest, grpc or local."""
    host: str = ""
    port: int = 0
    path: str = ""
    """local only: a SavedModel directory or an export base."""

    @property
    def address(self) -> str:
        """host:port, IPv6 hosts in brackets (what HTTP URLs and gRPC channels expect)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def __str__(self) -> str:
        return f"local:{self.path}" if self.protocol == "local" else f"{self.protocol}://{self.address}"


def parse_target(text: str, protocol: str | None = None) -> Target:
    """The Target that `text` names; ConfigError with the accepted forms when it names none."""
    text = (text or "").strip()
    if protocol is not None and protocol not in PROTOCOLS:
        raise ConfigError(f"unknown protocol {protocol!r}; choose one of {', '.join(PROTOCOLS)}")
    if text.startswith("local:"):
        path = text[len("local:"):]
        if not path:
            raise ConfigError("local: needs a path, e.g. local:models/tf_mlp")
        _check_protocol(protocol, "local", text)
        return Target("local", path=path)
    if protocol == "local":
        if not text:
            raise ConfigError("--protocol local needs the model's path as the server, e.g. --server models/tf_mlp")
        return Target("local", path=text)

    scheme, separator, rest = text.partition("://")
    if separator:
        if scheme.lower() not in _SCHEMES:
            raise ConfigError(f"unsupported target scheme {scheme!r} in {text!r}; use {_EXAMPLES}")
        chosen = _SCHEMES[scheme.lower()]
        _check_protocol(protocol, chosen, text)
    else:
        chosen, rest = protocol or "rest", text
    return _host_and_port(chosen, rest.rstrip("/") or contract.DEFAULT_HOST, text)


def _check_protocol(given: str | None, implied: str, text: str) -> None:
    if given is not None and given != implied:
        raise ConfigError(f"--protocol {given} contradicts the target {text!r}; give one or make them agree")


def _host_and_port(protocol: str, address: str, text: str) -> Target:
    if "/" in address:
        raise ConfigError(f"target {text!r} has a path; give only host[:port], e.g. {protocol}://127.0.0.1")
    parts = urllib.parse.urlsplit(f"//{address}")
    try:
        port = parts.port
    except ValueError:
        raise ConfigError(f"target {text!r} has an invalid port; use {_EXAMPLES}") from None
    if not parts.hostname:
        raise ConfigError(f"target {text!r} has no host; use {_EXAMPLES}")
    return Target(protocol, host=parts.hostname, port=port or DEFAULT_PORTS[protocol])
