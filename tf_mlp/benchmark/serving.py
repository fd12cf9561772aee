"""Serving-side measurements: in-process inference (the ceiling), the embedded server over REST and
gRPC with the batch runner for each input signature, single-image latency, server-side batching
under 32 concurrent single-image clients, and the server's peak memory.

The servers (one without batching, one with serving/batching.config) run in subprocesses (`tf-mlp
serve`), as they are deployed: the clients measured here then do not share their interpreter lock, and
each one's peak RSS is its own. Clients and server share this machine's cores, as a client and a server
on one host do. The model is the default preset trained for one epoch on the benchmark's data:
inference speed does not depend on how well it was trained. (A quick run exports the training
benchmark's own `tf-mlp train` run of the same network instead of training it again.)

This module measures and returns JSON-ready results (with the machine they
came from); serving_page renders them.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import pathlib
import statistics
import tempfile
import time

import numpy as np

from tf_mlp import config, contract, layout
from tf_mlp.benchmark import machine, serving_load
from tf_mlp.data.splits import DataSplits
from tf_mlp.server.process import ServerProcess

BATCH_SIZES = (64, 256, 1024, 4096)
"""In-process request batch sizes: the best one is the ceiling; all of them are the scaling curve."""
LARGE_CHUNKS = (1024, 2048)
"""Chunk sizes tried beside the batch script's default for the two fastest forms."""
BATCHING_CONFIG = pathlib.Path(__file__).resolve().parents[2] / "serving" / "batching.config"
SIGNATURE_RUNS = {
    # name: (protocol, signature to name, input kind)
    "rest_uint8_lists": ("rest", contract.SERVING_SIGNATURE, "pixels"),
    "rest_png_b64": ("rest", contract.ENCODED_SIGNATURE, "png"),
    "rest_raw_b64": ("rest", None, "pixels"),  # the client's default for pixel arrays: predict_raw
    "grpc_uint8_tensor": ("grpc", None, "pixels"),
    "grpc_png": ("grpc", contract.ENCODED_SIGNATURE, "png"),
}


def export_model(splits: DataSplits, work: pathlib.Path, trained_run: pathlib.Path | None = None) -> pathlib.Path:
    """Export trained_run (a finished run of the default preset's network), or else the default preset
    trained here for one epoch; return the model base path."""
    from tf_mlp import export

    if trained_run is None:
        from tf_mlp.training import train_and_evaluate

        trained_run = work / "run"
        train_and_evaluate(config.preset("mlp").override("train", epochs=1), trained_run, splits=splits, verbose=False)
    result = export.export_run(trained_run, work / "models", verification_images=splits.test.images[:100])
    return result.path.parent


def in_process_rates(version_dir, images: np.ndarray, batch_sizes, repetitions: int) -> dict:
    """{batch size: images/s} of serving_default called directly, outputs fetched as numpy."""
    import tensorflow as tf

    function = tf.saved_model.load(str(version_dir)).signatures[contract.SERVING_SIGNATURE]

    def one_pass(batch_size: int) -> float:
        start = time.perf_counter()
        for offset in range(0, len(images), batch_size):
            outputs = function(images=tf.constant(images[offset:offset + batch_size]))
            [value.numpy() for value in outputs.values()]
        return len(images) / (time.perf_counter() - start)

    rates = {}
    for batch_size in batch_sizes:
        one_pass(batch_size)  # trace and warm up this shape
        rates[batch_size] = statistics.median(one_pass(batch_size) for _ in range(repetitions))
    return rates


def write_pngs(images: np.ndarray, directory: pathlib.Path) -> pathlib.Path:
    """One grayscale PNG per image (zero-padded names keep the input order)."""
    from PIL import Image

    directory.mkdir(parents=True)
    for index, image in enumerate(images):
        Image.fromarray(image, mode="L").save(directory / f"{index:05d}.png")
    return directory


def batch_rate(server, protocol: str, signature, inputs, output: pathlib.Path, chunk_size: int | None = None) -> float:
    """Images/s of the batch runner (default concurrency; default chunk size unless given) over one protocol."""
    from tf_mlp import batch, client

    target = server.client_target(protocol)
    chunk_size = chunk_size or batch.DEFAULT_CHUNK_SIZE
    with client.connect(target, signature=signature, max_connections=batch.DEFAULT_CONCURRENCY) as model:
        start = time.perf_counter()
        summary = batch.run_batch(model, inputs, output, progress=False, restart=True, chunk_size=chunk_size)
        seconds = time.perf_counter() - start
    if summary.to_dict().get("errors"):
        raise RuntimeError(f"batch run {protocol} {signature} had errors: {summary.to_dict()}")
    return len(inputs) / seconds


def batch_rates(server, splits: DataSplits, count: int, repetitions: int, work: pathlib.Path,
                quick: bool = False) -> dict:
    from tf_mlp import batch

    images = splits.test.images[:count]
    sources = {"pixels": batch.open_inputs(str(_save_npz(images, splits.test.labels[:count], work))),
               "png": batch.open_inputs(str(write_pngs(images, work / "png")))}
    results = {}
    for name, (protocol, signature, kind) in SIGNATURE_RUNS.items():
        output = work / f"{name}.csv"
        if not quick:
            batch_rate(server, protocol, signature, sources[kind], output)  # warm connections and shapes
        results[name] = statistics.median(
            batch_rate(server, protocol, signature, sources[kind], output) for _ in range(repetitions))
    # The in-process ceiling is taken at its best batch size; the fastest forms get theirs too
    # (--chunk-size of the batch script; the default 256 is what a batching server accepts).
    for name in ("rest_raw_b64", "grpc_uint8_tensor"):
        protocol, signature, kind = SIGNATURE_RUNS[name]
        results[f"{name}_by_chunk"] = {chunk: statistics.median(
            batch_rate(server, protocol, signature, sources[kind], work / f"{name}.csv", chunk)
            for _ in range(repetitions)) for chunk in LARGE_CHUNKS}
    return results


def _save_npz(images, labels, work: pathlib.Path) -> pathlib.Path:
    path = work / "test.npz"
    np.savez(path, images=images, labels=labels)
    return path


def latencies(server, image: np.ndarray, concurrency: int, requests: int) -> dict:
    """p50 / p99 in milliseconds of single-image predicts through the REST client, `concurrency` at once."""
    from tf_mlp import client

    with client.connect(server.client_target("rest"), max_connections=concurrency) as model:
        for _ in range(20):
            model.predict(image)  # connections open, shapes traced

        def one_client(count: int) -> list:
            times = []
            for _ in range(count):
                start = time.perf_counter()
                model.predict(image)
                times.append(time.perf_counter() - start)
            return times

        with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
            runs = pool.map(one_client, [requests // concurrency] * concurrency)
            seconds = np.concatenate([np.asarray(times) for times in runs]) * 1000
    return {"p50_ms": float(np.percentile(seconds, 50)), "p99_ms": float(np.percentile(seconds, 99))}


def _clients_rate(server, image: np.ndarray, quick: bool) -> float:
    """Requests/s answered to 32 concurrent single-image clients (serving_load)."""
    if not quick:
        return serving_load.concurrent_rate(server, image, 32, seconds=5.0, warmup=1.0)
    # A quick run only checks that the figure is produced: the shortest load that still gives a rate (a
    # server answers hundreds of these requests a second even on a busy 2-core machine). A full garbage
    # collection inside the window does not stall it: TensorFlow's objects were frozen at start-up
    # (tf_mlp/startup.py), so one walks ~76,000 objects in 0.03 s rather than ~397,000 in 0.19 s (Zen 4).
    return serving_load.concurrent_rate(server, image, 32, seconds=0.2, warmup=0.1)


def _server_flags(base) -> list:
    # No file-system polling: nothing changes the model base while it is measured.
    return [f"--model_base_path={base}", "--file_system_poll_wait_seconds=0"]


def run_serving_benchmarks(splits: DataSplits, repetitions: int = 3, quick: bool = False,
                           trained_run: pathlib.Path | None = None) -> dict:
    """Every serving figure, measured side by side on one exported model (trained_run's, if given)."""
    from tf_mlp import batch

    images = splits.test.images[:1000] if quick else splits.test.images
    results = {"images": len(images)}
    with tempfile.TemporaryDirectory(prefix="tf-mlp-bench-") as directory:
        work = pathlib.Path(directory)
        base = export_model(splits, work, trained_run)
        version_dir = next(iter(layout.version_dirs(base).values()))
        rates = in_process_rates(version_dir, images, BATCH_SIZES[:2] + BATCH_SIZES[-1:] if quick else BATCH_SIZES,
                                 repetitions)
        results["scaling_request_batch"] = rates
        results["in_process_images_per_second"] = max(rates.values())
        results["in_process_best_batch"] = max(rates, key=rates.get)

        plain = ServerProcess(work / "server.log", *_server_flags(base))
        batching = ServerProcess(work / "batching-server.log", *_server_flags(base), batching_config=BATCHING_CONFIG)
        with contextlib.ExitStack() as servers:
            for server in (plain, batching):
                servers.callback(server.stop)
            # Both start at once, so their start-ups overlap; nothing is measured until both answer, and the
            # server not being measured sits idle (no file-system polling), taking no CPU from the other.
            with concurrent.futures.ThreadPoolExecutor(2) as pool:
                list(pool.map(ServerProcess.start, (plain, batching)))

            results["batch_images_per_second"] = batch_rates(plain, splits, len(images), repetitions, work, quick)
            requests = 80 if quick else 2000
            results["latency_concurrency_1"] = latencies(plain, images[0], 1, requests)
            results["latency_concurrency_8"] = latencies(plain, images[0], 8, requests)
            results["unbatched_32_clients_rps"] = statistics.median(
                _clients_rate(plain, images[0], quick) for _ in range(repetitions))
            results["server_peak_rss_mb"] = plain.peak_rss_bytes() / 2**20
            plain.stop()

            pixel_inputs = batch.open_inputs(str(work / "test.npz"))  # written by batch_rates
            results["batched_32_clients_rps"] = statistics.median(
                _clients_rate(batching, images[0], quick) for _ in range(repetitions))
            results["batching_config_max_batch_size"] = serving_load.max_batch_size(BATCHING_CONFIG)
            results["batched_server_rest_raw_images_per_second"] = statistics.median(
                batch_rate(batching, "rest", None, pixel_inputs, work / "batched.csv")
                for _ in range(repetitions))
    results["machine"] = machine.current()
    results["batching_speedup"] = results["batched_32_clients_rps"] / results["unbatched_32_clients_rps"]
    ceiling = results["in_process_images_per_second"]
    rates = results["batch_images_per_second"]
    for protocol, name in (("rest", "rest_raw_b64"), ("grpc", "grpc_uint8_tensor")):
        by_chunk = {batch.DEFAULT_CHUNK_SIZE: rates[name], **rates[f"{name}_by_chunk"]}
        best = max(by_chunk, key=by_chunk.get)
        results[f"{protocol}_best_chunk"] = best
        results[f"{protocol}_over_in_process"] = by_chunk[best] / ceiling
        results[f"{protocol}_default_chunk_over_in_process"] = rates[name] / ceiling
    return results
