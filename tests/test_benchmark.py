"""The benchmark suite runs and produces every figure (no timing thresholds: speed is for the benchmark)."""

from __future__ import annotations

import json
import math
import pathlib
import re
import subprocess
import sys

import pytest

FASHION_MNIST = pathlib.Path("/usr/share/datasets/fashion-mnist")
REPOSITORY = pathlib.Path(__file__).resolve().parents[1]

SERVING_FIGURES = (
    "in_process_images_per_second", "unbatched_32_clients_rps", "batched_32_clients_rps", "batching_speedup",
    "server_peak_rss_mb", "rest_over_in_process", "grpc_over_in_process",
    "batched_server_rest_raw_images_per_second",
)
BATCH_RUNS = ("rest_uint8_lists", "rest_png_b64", "rest_raw_b64", "grpc_uint8_tensor", "grpc_png")


def _positive(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    output = tmp_path_factory.mktemp("bench") / "out"
    subprocess.run([sys.executable, "scripts/benchmark.py", "--quick", "--repetitions", "1", "-o", str(output)],
                   cwd=REPOSITORY, check=True, capture_output=True, timeout=1800)
    return output


@pytest.mark.real_data
@pytest.mark.skipif(not FASHION_MNIST.is_dir(), reason="needs Fashion-MNIST in /usr/share/datasets/fashion-mnist")
def test_quick_benchmark_writes_every_serving_figure(quick_run):
    results = json.loads((quick_run / "performance.json").read_text())
    serving = results["serving"]
    for key in SERVING_FIGURES:
        assert _positive(serving[key]), key
    for key in BATCH_RUNS:
        assert _positive(serving["batch_images_per_second"][key]), key
    for concurrency in (1, 8):
        latency = serving[f"latency_concurrency_{concurrency}"]
        assert _positive(latency["p50_ms"]) and _positive(latency["p99_ms"]) and latency["p99_ms"] >= latency["p50_ms"]
    assert serving["scaling_request_batch"] and all(_positive(rate) for rate in serving["scaling_request_batch"].values())
    assert (quick_run / "scaling.png").stat().st_size > 0

    page = (quick_run / "PERFORMANCE.md").read_text()
    for row in ("inference in-process, best batch", "REST, predict_raw", "gRPC, serving_default",
                "REST, serving_default, uint8 nested lists", "REST, predict_encoded", "gRPC, predict_encoded",
                "single-image REST latency, concurrency 1", "single-image REST latency, concurrency 8",
                "32 concurrent single-image REST clients, no batching",
                "32 concurrent single-image REST clients, batching", "server peak RSS",
                "in-process inference at request batch"):
        assert row in page, row
    for target in ("over REST >= 0.5x", "over gRPC >= 0.7x", "p50 <= 2 ms", "p99 <= 10 ms", ">= 2x no batching"):
        assert target in page, target
    assert not re.search(r"\b(nan|inf)\b", page, re.IGNORECASE)


@pytest.mark.real_data
@pytest.mark.skipif(not FASHION_MNIST.is_dir(), reason="needs Fashion-MNIST in /usr/share/datasets/fashion-mnist")
def test_quick_benchmark_writes_the_training_figures_beside_them(quick_run):
    training = json.loads((quick_run / "performance.json").read_text())["training"]
    for key in ("trainer_examples_per_second", "fit_examples_per_second", "matmul_gflops",
                "pipeline_examples_per_second", "training_peak_rss_mb"):
        assert _positive(training[key]), key
