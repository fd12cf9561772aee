"""The page's own server: static files, and a thin same-origin proxy to one model's REST API.

The page runs in a browser and talks to TensorFlow Serving's REST API
(`tf-mlp serve`, tensorflow_model_server, or either behind a proxy). Serving
it from the same origin as a proxy avoids CORS, which TensorFlow Serving does
not implement. The proxy is deliberately narrow: it forwards exactly three
requests, for the one model (and version or label) it was started with,

    GET  /v1/models/NAME[/versions/N]                        status
    GET  /v1/models/NAME[/versions/N | /labels/L]/metadata   metadata
    POST /v1/models/NAME[/versions/N | /labels/L]:predict    predict

to URLs it builds itself, with no query string and no client headers but
Content-Type. Without --version or --label, metadata and predict go to the
version the server's config labels `stable` (`/labels/stable/...`), or, when
the server answers that it has no such label, to its latest version.
Anything else gets a JSON 404, so it cannot be used as an open proxy.
Request bodies above `max_request_bytes` get 413, answers above
`max_response_bytes` 502. When the model server cannot be reached the answer
is 502 (504 on timeout) with `"unreachable": true`, so the page can tell "the
server is down" from "the server said no".
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import pathlib
import socket
import threading
import urllib.parse

import aiohttp
from aiohttp import web

from tf_mlp import contract, network
from tf_mlp.client.base import UNKNOWN_LABEL
from tf_mlp.client.target import Target, parse_target
from tf_mlp.errors import ConfigError, TfMlpError
from tf_mlp.ui import DEFAULT_MAX_REQUEST_BYTES, DEFAULT_PORT

STATIC_DIR = pathlib.Path(__file__).resolve().parent / "static"

# No inline script or style, nothing from another origin: everything the page needs ships in the package.
# blob:/data: images are the page's own previews of a dropped file.
_SECURITY_HEADERS = {
    "Content-Security-Policy": ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:;"
                                " connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
_CONTENT_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                  ".css": "text/css; charset=utf-8"}
_STATIC_TYPES = {path.name: _CONTENT_TYPES[path.suffix] for path in STATIC_DIR.iterdir()
                 if path.suffix in _CONTENT_TYPES}
"""The page's files, the only ones served: name -> Content-Type."""


@dataclasses.dataclass(frozen=True)
class UiOptions:
    server: str = f"rest://{contract.DEFAULT_HOST}:{contract.DEFAULT_REST_PORT}"
    """The model server's REST API: rest://HOST:PORT (http://HOST:PORT and HOST:PORT mean the same)."""
    model: str = contract.MODEL_NAME
    version: int | None = None
    label: str | None = None
    preferred_label: str | None = contract.STABLE_LABEL
    """Without version or label: this label where the server's config has it, else the latest version."""
    host: str = contract.DEFAULT_HOST
    """Where the page is served; loopback by default, since the proxy reaches whatever the server reaches."""
    port: int = DEFAULT_PORT
    """0: any free port (see UiServer.url)."""
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES
    max_response_bytes: int = 4 * 1024 * 1024
    timeout_seconds: float = 30.0

    def __post_init__(self):
        if not self.model:
            raise ConfigError("the model name is empty")
        if self.version is not None and self.label is not None:
            raise ConfigError("give --version or --label, not both")
        if self.version is not None and self.version < 0:
            raise ConfigError(f"model versions are non-negative integers, got {self.version}")
        if self.label is not None and not self.label:
            raise ConfigError("the version label is empty")
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"--port must be in 0..65535, got {self.port}")
        for name in ("max_request_bytes", "max_response_bytes", "timeout_seconds"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)}")
        self.target  # noqa: B018 - parse the server now, so a bad one fails before anything starts

    @property
    def target(self) -> Target:
        target = parse_target(self.server)  # a bare HOST:PORT means REST
        if target.protocol != "rest":
            raise ConfigError(f"the page talks to the REST API; give --server rest://HOST:PORT, not {self.server!r}")
        return target


@dataclasses.dataclass(frozen=True)
class ModelPaths:
    """The three REST paths the proxy forwards, decoded (as aiohttp's request.path) and as sent upstream."""

    status: str
    metadata: str
    predict: str

    @classmethod
    def of(cls, options: UiOptions) -> "ModelPaths":
        # Quoted with safe="" so a name or label cannot add path segments.
        model = f"/v1/models/{urllib.parse.quote(options.model, safe='')}"
        if options.version is not None:
            status = spec = f"{model}/versions/{options.version}"
        elif options.label is not None:
            # TensorFlow Serving has no status by label; the model's status lists every version.
            status, spec = model, f"{model}/labels/{urllib.parse.quote(options.label, safe='')}"
        else:
            status = spec = model
        return cls(status=status, metadata=f"{spec}/metadata", predict=f"{spec}:predict")

    def routes(self) -> dict:
        """(method, decoded path) -> upstream path."""
        unquote = urllib.parse.unquote
        return {("GET", unquote(self.status)): self.status, ("GET", unquote(self.metadata)): self.metadata,
                ("POST", unquote(self.predict)): self.predict}


def _json(status: int, document: dict) -> web.Response:
    return web.json_response(document, status=status)


class _Proxy:
    def __init__(self, options: UiOptions):
        self.options = options
        self.paths = ModelPaths.of(options)
        self.routes = self.paths.routes()
        self.base_url = f"http://{options.target.address}"
        self.session = None
        # The page asks for "the model"; the proxy asks the server for the preferred label's version first.
        self.preferred = {}
        if options.version is None and options.label is None and options.preferred_label:
            labelled = ModelPaths.of(dataclasses.replace(options, label=options.preferred_label))
            self.preferred = {self.paths.metadata: labelled.metadata, self.paths.predict: labelled.predict}

    async def open(self, app: web.Application):
        # One pooled session; raise_for_status off: the model server's 4xx/5xx answers are passed on as they are.
        self.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.options.timeout_seconds),
                                             auto_decompress=True)
        yield
        await self.session.close()

    def config(self) -> dict:
        options = self.options
        return {"server": str(options.target), "model": options.model, "version": options.version,
                "label": options.label, "preferred_label": options.preferred_label if self.preferred else None,
                "max_request_bytes": options.max_request_bytes, "paths": dataclasses.asdict(self.paths)}

    async def forward(self, request: web.Request, upstream_path: str) -> web.Response:
        body = None
        if request.method == "POST":
            try:
                body = await request.read()
            except web.HTTPRequestEntityTooLarge:
                return _json(413, {"error": f"the request body exceeds {self.options.max_request_bytes} bytes"})
        labelled = self.preferred.get(upstream_path)
        if labelled is None:
            return await self._exchange(request.method, upstream_path, body)
        response = await self._exchange(request.method, labelled, body)
        # Asked every time (not remembered), so a label added to the server's config is followed at once.
        if response.status == 400 and _is_unknown_label(response.body, self.options.preferred_label):
            response = await self._exchange(request.method, upstream_path, body)
        return response

    async def _exchange(self, method: str, upstream_path: str, body: bytes | None) -> web.Response:
        server = str(self.options.target)
        try:
            async with self.session.request(
                    method, self.base_url + upstream_path, data=body,
                    headers={"Content-Type": "application/json"} if body is not None else None) as answer:
                content = await self._read_limited(answer)
                status, content_type = answer.status, answer.content_type
        except _TooLarge:
            return _json(502, {"error": f"the model server at {server} answered with more than "
                                        f"{self.options.max_response_bytes} bytes"})
        except asyncio.TimeoutError:
            return _json(504, {"error": f"the model server at {server} did not answer within "
                                        f"{self.options.timeout_seconds:g} s", "unreachable": True})
        except aiohttp.ClientConnectorError as error:
            # asyncio's strerror reads "Connect call failed (...)"; the errno's own text says why.
            errno = error.os_error.errno
            reason = os.strerror(errno) if errno else str(error.os_error)
            return _json(502, {"error": f"cannot reach the model server at {server}: {reason}", "unreachable": True})
        except aiohttp.ClientError as error:
            return _json(502, {"error": f"the model server at {server} failed to answer: "
                                        f"{type(error).__name__} {error}".strip(), "unreachable": True})
        if content_type != "application/json":
            # A proxy's HTML error page, say: pass its gist on as the JSON the page expects.
            text = " ".join(content.decode("utf-8", "replace").split())[:300]
            return _json(status if status >= 400 else 502,
                         {"error": f"the model server at {server} answered HTTP {status} ({content_type}): {text}"})
        return web.Response(status=status, body=content, content_type="application/json")

    async def _read_limited(self, answer: aiohttp.ClientResponse) -> bytes:
        limit, chunks, size = self.options.max_response_bytes, [], 0
        async for chunk in answer.content.iter_chunked(64 * 1024):
            size += len(chunk)
            if size > limit:
                raise _TooLarge()
            chunks.append(chunk)
        return b"".join(chunks)


class _TooLarge(Exception):
    pass


def _is_unknown_label(body: bytes, label: str) -> bool:
    """Whether a model server's 400 says its config has no such label (TensorFlow Serving's own words)."""
    try:
        error = json.loads(body).get("error", "")
    except (ValueError, AttributeError):
        return False
    return isinstance(error, str) and error.strip() == UNKNOWN_LABEL + label


def make_app(options: UiOptions) -> web.Application:
    """The aiohttp application: the page, its static files, /ui/config and the three proxied requests."""
    proxy = _Proxy(options)

    @web.middleware
    async def guard(request: web.Request, handler):
        # DNS rebinding: a page from another site that resolves its own name to 127.0.0.1 would be
        # same-origin with us. On a loopback bind, only loopback host names are accepted.
        if network.is_loopback(options.host) and not network.is_loopback(request.url.host or ""):
            response = _json(403, {"error": f"host {request.host!r} is not served here; use 127.0.0.1 or localhost"})
        elif request.method == "POST" and request.headers.get("Origin") not in (None, f"{request.scheme}://"
                                                                                   f"{request.host}"):
            response = _json(403, {"error": "cross-origin requests are refused"})
        else:
            try:
                response = await handler(request)
            except web.HTTPException as error:
                response = _json(error.status, {"error": error.reason})
        response.headers.update(_SECURITY_HEADERS)
        return response

    async def static(request: web.Request) -> web.FileResponse:
        name = request.match_info.get("name", "index.html")
        if name not in _STATIC_TYPES:
            raise web.HTTPNotFound(reason=f"{request.path} is not a file of this page")
        # The type is set here, not guessed from the system's MIME table: module scripts need a JavaScript type.
        return web.FileResponse(STATIC_DIR / name, headers={"Content-Type": _STATIC_TYPES[name]})

    async def config(request: web.Request) -> web.Response:
        return _json(200, proxy.config())

    async def proxied(request: web.Request) -> web.Response:
        upstream = proxy.routes.get((request.method, request.path))
        if upstream is None:
            allowed = ", ".join(f"{method} {path}" for method, path in proxy.routes)
            return _json(404 if request.method in ("GET", "POST") else 405,
                         {"error": f"{request.method} {request.path} is not served here; this page forwards "
                                   f"only {allowed}"})
        return await proxy.forward(request, upstream)

    app = web.Application(middlewares=[guard], client_max_size=options.max_request_bytes)
    app.cleanup_ctx.append(proxy.open)
    app.router.add_get("/", static)
    app.router.add_get("/ui/config", config)
    app.router.add_get("/static/{name}", static)
    app.router.add_route("*", "/v1/{tail:.*}", proxied)
    return app


class UiServer:
    """The page's server on its own event loop thread; start() returns once it listens, stop() closes it.

        with UiServer(UiOptions(server="rest://127.0.0.1:8501", port=0)) as ui:
            print(ui.url)
    """

    def __init__(self, options: UiOptions):
        self.options = options
        self.port = None
        self._loop = None
        self._thread = None
        self._runner = None

    @property
    def url(self) -> str:
        return f"http://{network.address(self.options.host, self.port)}/"

    def start(self) -> "UiServer":
        try:
            listening = network.listening_socket(self.options.host, self.options.port)
        except OSError as error:
            raise TfMlpError(f"cannot serve the page on {self.options.host}:{self.options.port}: "
                             f"{error.strerror or error}") from None
        self.port = listening.getsockname()[1]
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="tf-mlp-ui", daemon=True)
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._open(listening), self._loop).result()
        return self

    async def _open(self, listening: socket.socket) -> None:
        self._runner = web.AppRunner(make_app(self.options), access_log=None, handle_signals=False)
        await self._runner.setup()
        await web.SockSite(self._runner, listening).start()

    def stop(self) -> None:
        if self._thread is None:
            return
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()
        self._thread = None

    def __enter__(self) -> "UiServer":
        return self if self._thread is not None else self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()
