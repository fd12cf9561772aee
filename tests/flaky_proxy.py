"""A misbehaving HTTP front for a real server, for the client and batch tests.

`FlakyProxy(backend_url, plan)` is a small aiohttp app on a free port, in
its own thread. For request number n (1, 2, ...) it asks `plan(n, request)`
what to do: "pass" (forward to the backend and relay its answer), "503" or
"429" (answer that status with a TensorFlow-Serving-style error body),
"drop" (close the connection without answering), or "slow" (wait `delay`
seconds, then forward). `counts` records what was done, so tests can
check that failures really happened.
"""

from __future__ import annotations

import asyncio
import collections
import socket
import threading

import aiohttp
from aiohttp import web


def every(period: int, action: str, otherwise: str = "pass"):
    """A plan doing `action` on requests period, 2*period, ... and `otherwise` on the rest."""
    return lambda number, request: action if number % period == 0 else otherwise


class FlakyProxy:
    def __init__(self, backend_url: str, plan=lambda number, request: "pass", delay: float = 0.05):
        self.backend_url = backend_url.rstrip("/")
        self.plan = plan
        self.delay = delay
        self.counts = collections.Counter()
        self._number = 0
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="flaky-proxy", daemon=True)
        self._socket = socket.create_server(("127.0.0.1", 0))
        self.port = self._socket.getsockname()[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> "FlakyProxy":
        self._thread.start()
        self._ready.wait()
        return self

    def __exit__(self, *exc_info) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(timeout=30)
        self._thread.join(timeout=30)

    # ---- internals ---------------------------------------------------------

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._start())
        self._ready.set()
        self._loop.run_forever()
        self._loop.close()

    async def _start(self) -> None:
        self._session = aiohttp.ClientSession()
        application = web.Application()
        application.router.add_route("*", "/{path:.*}", self._handle)
        # A short shutdown: "slow" handlers still sleeping are cancelled instead of waited for.
        self._runner = web.AppRunner(application, access_log=None, handle_signals=False, shutdown_timeout=0.1)
        await self._runner.setup()
        await web.SockSite(self._runner, self._socket).start()

    async def _stop(self) -> None:
        await self._runner.cleanup()
        await self._session.close()
        self._loop.call_soon(self._loop.stop)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        with self._lock:
            self._number += 1
            number = self._number
        action = self.plan(number, request)
        self.counts[action] += 1
        body = await request.read()
        if action in ("503", "429"):
            return web.json_response({"error": f"flaky proxy says {action}"}, status=int(action))
        if action == "drop":
            # Close the socket without a response: the client sees the connection reset or closed.
            request.transport.abort()
            return web.Response()
        if action == "slow":
            await asyncio.sleep(self.delay)
        async with self._session.request(request.method, self.backend_url + request.path_qs, data=body or None,
                                         headers={"Content-Type": "application/json"}) as answer:
            return web.Response(body=await answer.read(), status=answer.status,
                                content_type="application/json")
