"""A light load generator of many single-image clients, for the server under test in a subprocess.

The 32 concurrent clients are asyncio tasks on one aiohttp session, each sending its next request as
soon as the last is answered: far less client CPU per request than 32 threads of a blocking client,
so on a 2-core machine the server, not the load generator, is what is measured.
"""

from __future__ import annotations

import asyncio
import base64

import orjson

from tf_mlp import contract


def max_batch_size(path) -> int:
    from tf_mlp.server import config_files

    return config_files.read_batching_parameters(str(path)).max_batch_size.value


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


def concurrent_rate(server, image, clients: int, seconds: float, warmup: float = 1.0) -> float:
    """Requests per second answered to `clients` single-image clients, each one request at a time."""
    url = f"{server.rest_url}/v1/models/{contract.MODEL_NAME}:predict"
    completed = asyncio.run(_load(url, single_image_body(image), clients, seconds, warmup))
    return completed / seconds
