"""Where the model is: `rest://host:8501`, `grpc://host:8500`, `local:PATH` or `run:RUN_DIR`.

    parse_target("rest://127.0.0.1:8501")    Target("rest", "127.0.0.1", 8501)
    parse_target("http://models:8501")       the same as rest://
    parse_target("grpc://127.0.0.1")         port defaults to 8500 (8501 for REST), as tensorflow_model_server's
    parse_target("127.0.0.1:8500", "grpc")   a bare host[:port] takes the protocol given (default rest)
    parse_target("local:models")             no server: a SavedModel directory, or an export base
    parse_target("run:runs/mlp")             no server, no export: a training run directory's newest weights
    parse_target("models")                   an existing directory without a scheme: run: when it holds a
                                             run's config.json and labels.txt, else local:
"""

from __future__ import annotations

import dataclasses
import pathlib
import urllib.parse

from tf_mlp import contract
from tf_mlp.errors import ConfigError

PROTOCOLS = ("rest", "grpc", "local", "run")
DEFAULT_PORTS = {"rest": contract.DEFAULT_REST_PORT, "grpc": contract.DEFAULT_GRPC_PORT}
_SCHEMES = {"rest": "rest", "http": "rest", "grpc": "grpc"}
_EXAMPLES = "rest://HOST:8501, grpc://HOST:8500, local:PATH or run:RUN_DIR"
_RUN_FILES = ("config.json", "labels.txt")
"""What makes a directory a training run (tf_mlp.training.runs) rather than an export."""


@dataclasses.dataclass(frozen=True)
class Target:
    protocol: str
    """rest, grpc or local."""
    host: str = ""
    port: int = 0
    path: str = ""
    """local: a SavedModel directory or an export base; run: a training run directory."""

    @property
    def address(self) -> str:
        """host:port, IPv6 hosts in brackets (what HTTP URLs and gRPC channels expect)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def __str__(self) -> str:
        if self.protocol in ("local", "run"):
            return f"{self.protocol}:{self.path}"
        return f"{self.protocol}://{self.address}"


def parse_target(text: str, protocol: str | None = None) -> Target:
    """The Target that `text` names; ConfigError with the accepted forms when it names none."""
    text = (text or "").strip()
    if protocol is not None and protocol not in PROTOCOLS:
        raise ConfigError(f"unknown protocol {protocol!r}; choose one of {', '.join(PROTOCOLS)}")
    for in_process in ("local", "run"):
        if text.startswith(f"{in_process}:"):
            path = text[len(in_process) + 1:]
            if not path:
                raise ConfigError(f"{in_process}: needs a path, e.g. {in_process}:"
                                  + ("models/tf_mlp" if in_process == "local" else "runs/mlp"))
            _check_protocol(protocol, in_process, text)
            return Target(in_process, path=path)
        if protocol == in_process:
            if not text:
                raise ConfigError(f"--protocol {in_process} needs a directory as the server, e.g. --server "
                                  + ("models/tf_mlp" if in_process == "local" else "runs/mlp"))
            return Target(in_process, path=text)
    if protocol is None and "://" not in text and text and pathlib.Path(text).is_dir():
        # A directory named without a scheme: a host name never is one, so the user meant the files.
        directory = pathlib.Path(text)
        is_run = all((directory / name).is_file() for name in _RUN_FILES)
        return Target("run" if is_run else "local", path=text)
    if protocol is None and "://" not in text and ("/" in text or text.startswith(".")):
        raise ConfigError(f"{text}: no such directory (a model on disk is a training run or an export "
                          f"directory; a server is {_EXAMPLES.split(', local:')[0]})")

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
