"""The server under test in a subprocess, and a light load generator of many single-image clients.

The 32 concurrent clients are asyncio tasks on one aiohttp session, each sending its next request as
soon as the last is answered: far less client CPU per request than 32 threads of a blocking client,
so on a 2-core machine the server, not the load generator, is what is measured.
"""

from __future__ import annotations

import asyncio
import base64
import os
import pathlib
import signal
import socket
import subprocess
import sys
import time

import orjson
import urllib3

from tf_mlp import contract

START_TIMEOUT_SECONDS = 180


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind((contract.DEFAULT_HOST, 0))
        return probe.getsockname()[1]


def max_batch_size(path) -> int:
    from tf_mlp.server import config_files

    return config_files.read_batching_parameters(str(path)).max_batch_size.value


class ServerProcess:
    """`tf-mlp serve` on free ports for the model base path, batching on when given a config file."""

    def __init__(self, model_base_path, batching_config=None):
        self.rest_port, self.grpc_port = _free_port(), _free_port()
        flags = [f"--model_base_path={model_base_path}", f"--port={self.grpc_port}",
                 f"--rest_api_port={self.rest_port}", "--file_system_poll_wait_seconds=0"]
        if batching_config:
            flags += ["--enable_batching=true", f"--batching_parameters_file={batching_config}"]
        self.command = [sys.executable, "-m", "tf_mlp.cli", "serve", *flags]
        self.process = None
        self.log = None

    @property
    def rest_target(self) -> str:
        return f"rest://{contract.DEFAULT_HOST}:{self.rest_port}"

    @property
    def grpc_target(self) -> str:
        return f"grpc://{contract.DEFAULT_HOST}:{self.grpc_port}"

    def __enter__(self) -> "ServerProcess":
        self.log = open(os.devnull, "wb")
        environment = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
        self.process = subprocess.Popen(self.command, stdout=self.log, stderr=subprocess.STDOUT, env=environment)
        pool = urllib3.PoolManager(retries=False, timeout=2.0)
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited with {self.process.returncode}: {' '.join(self.command)}")
            try:
                answer = pool.request("GET", f"http://{contract.DEFAULT_HOST}:{self.rest_port}/v1/models/tf_mlp")
                if answer.status == 200 and b"AVAILABLE" in answer.data:
                    return self
            except urllib3.exceptions.HTTPError:
                pass
            time.sleep(0.2)
        self.__exit__()
        raise RuntimeError(f"the server did not answer within {START_TIMEOUT_SECONDS} s")

    def peak_rss_megabytes(self) -> float:
        """VmHWM of the server process: its largest resident set so far."""
        for line in pathlib.Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        raise RuntimeError("no VmHWM in /proc status")

    def __exit__(self, *exc_info) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.log is not None:
            self.log.close()


def single_image_body(image) -> bytes:
    """The REST client's default request for one image (predict_raw, 784 bytes as b64)."""
    instances = [{"b64": base64.b64encode(image.tobytes()).decode("ascii")}]
    return orjson.dumps({"signature_name": contract.RAW_SIGNATURE, "instances": instances})


async def _load(url: str, body: bytes, clients: int, seconds: float, warmup: float) -> int:
    import aiohttp

    connector = aiohttp.TCPConnector(limit=clients)
    completed = 0
    async with aiohttp.ClientSession(connector=connector) as session:
        loop = asyncio.get_running_loop()
        start = loop.time()
        counting_from, stop = start + warmup, start + warmup + seconds

        async def client() -> None:
            nonlocal completed
            while loop.time() < stop:
                async with session.post(url, data=body, headers={"Content-Type": "application/json"}) as response:
                    await response.read()
                    if response.status != 200:
                        raise RuntimeError(f"HTTP {response.status}: {(await response.text())[:200]}")
                if counting_from <= loop.time() < stop:
                    completed += 1

        await asyncio.gather(*(client() for _ in range(clients)))
    return completed


def concurrent_rate(server: ServerProcess, image, clients: int, seconds: float, warmup: float = 1.0) -> float:
    """Requests per second answered to `clients` single-image clients, each one request at a time."""
    url = f"http://{contract.DEFAULT_HOST}:{server.rest_port}/v1/models/tf_mlp:predict"
    completed = asyncio.run(_load(url, single_image_body(image), clients, seconds, warmup))
    return completed / seconds
