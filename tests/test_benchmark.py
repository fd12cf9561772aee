"""The benchmark suite runs and produces every figure (no timing thresholds: speed is for the benchmark)."""

from __future__ import annotations

import json
import math
import pathlib
import re
import subprocess
import sys

import pytest

from tests.conftest import TF_START_UP_MARKERS

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
    assert serving["scaling_request_batch"] and all(_positive(rate)
                                                    for rate in serving["scaling_request_batch"].values())
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
def test_quick_benchmark_writes_the_training_section_beside_them(quick_run):
    results = json.loads((quick_run / "performance.json").read_text())
    assert results["training"]["flops_per_example"] == MLP_FLOPS_BY_HAND
    assert "## Training" in (quick_run / "PERFORMANCE.md").read_text()


# 784-1024-10 by hand: forward 2*784*1024 + 2*1024*10; the weight gradients cost the same again; only the
# logits layer's input gradient (2*1024*10) is computed, the first layer's input being the pixels.
MLP_FLOPS_BY_HAND = 2 * (2 * 784 * 1024 + 2 * 1024 * 10) + 2 * 1024 * 10


def test_training_flops_match_a_hand_count_for_two_shapes():
    from tf_mlp.config import ModelConfig
    from tf_mlp.model import training_flops_per_example

    assert training_flops_per_example(ModelConfig(hidden_units=(1024,))) == MLP_FLOPS_BY_HAND == 3_272_704
    # 784-256-64-10: forward and weight gradient of three products, input gradients of the last two.
    forward = 2 * 784 * 256 + 2 * 256 * 64 + 2 * 64 * 10
    assert training_flops_per_example(ModelConfig(hidden_units=(256, 64))) == 2 * forward + 2 * 256 * 64 + 2 * 64 * 10


@pytest.fixture(scope="module")
def quick_training_run(tmp_path_factory, tiny_splits):
    """(output directory, the finished process) of a quick training-only benchmark on tiny data."""
    from tests.conftest import write_idx_data_set

    work = tmp_path_factory.mktemp("bench-training")
    idx_dir = write_idx_data_set(work / "idx", tiny_splits)
    output = work / "out"
    result = subprocess.run(
        [sys.executable, "scripts/benchmark.py", "--quick", "--training-only", "--repetitions", "2", "--data", "idx",
         "--source-dir", str(idx_dir), "--data-dir", str(work / "tfds"), "--validation-size", "128", "-o", str(output)],
        cwd=REPOSITORY, capture_output=True, text=True, timeout=1800,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return output, result


@pytest.mark.slow
def test_quick_training_benchmark_produces_every_figure(quick_training_run):
    output, result = quick_training_run
    training = json.loads((output / "performance.json").read_text())["training"]
    assert training["flops_per_example"] == MLP_FLOPS_BY_HAND
    assert _positive(training["matmul_gflops"]) and _positive(training["training_peak_rss_mb"])
    rates = training["examples_per_second"]
    for batch in training["batch_sizes"]:
        for measure in ("cli", "trainer", "fit_spe1", "fit_spe50", "fit_tuned", "products"):
            summary = rates[f"{measure}_{batch}"]
            assert len(summary["values"]) == 2 and all(_positive(value) for value in summary["values"]), \
                (measure, batch)
            assert summary["min"] <= summary["median"] <= summary["max"]
        assert rates[f"fit_tuned_{batch}"]["values"] == [  # the faster tuned setting of each repetition
            max(values) for values in zip(*(rates[f"fit_spe{setting}_{batch}"]["values"]
                                            for setting in training["fit_steps_per_execution"][1:]))]
    assert _positive(rates["trainer_xla_128"]["median"])
    shares = training["other_processes_share"]
    assert len(shares) == 2 and all(share is None or 0 <= share <= 1 for share in shares)
    assert "serving" not in json.loads((output / "performance.json").read_text())

    page = (output / "PERFORMANCE.md").read_text()
    assert f"**{MLP_FLOPS_BY_HAND:,}**" in page
    for batch in training["batch_sizes"]:
        assert re.search(rf"^\| {batch} \|( [^|]+ \|){{8}}$", page, re.MULTILINE), batch
    for goal in (">= 1.5x model.fit at defaults", ">= 1.0x model.fit with steps_per_execution tuned",
                 ">= 55% of the matrix-multiply peak"):
        assert goal in page, goal
    assert "--training-only" in page and "Machine: other processes used" in page
    assert re.search(r"Each repetition at batch 128, in order: `tf-mlp train` [0-9.]+k, [0-9.]+k;", page)
    assert not re.search(r"\b(nan|inf)\b", page, re.IGNORECASE)
    assert (output / "scaling.png").stat().st_size > 0
    for marker in TF_START_UP_MARKERS:  # TensorFlow's start-up lines are kept off the screen, as by tf-mlp
        assert marker not in result.stdout + result.stderr, marker


@pytest.mark.parametrize("destination", [["--publish"], ["--output", "docs/performance"], ["-o", "docs"]])
def test_quick_results_are_never_written_into_docs(destination):
    page = REPOSITORY / "docs" / "PERFORMANCE.md"
    before = page.read_text()
    result = subprocess.run([sys.executable, "scripts/benchmark.py", "--quick", *destination],
                            cwd=REPOSITORY, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "Error: --quick results are smoke-test figures and are never written to docs/; use --output elsewhere"]
    assert page.read_text() == before


def _fake_training_results(cli, fit_default, fit_tuned, shares):
    from tf_mlp.benchmark.training import _summary

    rates = {"cli_128": cli, "fit_spe1_128": fit_default, "fit_tuned_128": fit_tuned,
             "products_128": [200.0] * len(cli)}
    return {"examples_per_second": {key: _summary(values) for key, values in rates.items()},
            "flops_per_example": MLP_FLOPS_BY_HAND, "matmul_gflops": 1.0, "other_processes_share": shares}


def test_ratios_are_paired_within_repetitions_and_a_goal_says_how_often_it_fell_short():
    from tf_mlp.benchmark import training

    # A slow patch (the second repetition) slows both sides: paired ratios stay near 1.1,
    # while the ratio of the medians (110 / 90) would read 1.22.
    results = _fake_training_results(cli=[110.0, 55.0, 120.0], fit_default=[50.0, 30.0, 60.0],
                                     fit_tuned=[100.0, 50.0, 125.0], shares=[0.0, 0.01, 0.02])
    ratio = training.comparisons(results, 128)["over_fit_tuned"]
    assert ratio["values"] == [1.1, 1.1, 0.96] and ratio["median"] == 1.1
    lines = training.goals(results)
    assert ("model.fit with steps_per_execution tuned: 1.10x (0.96–1.10) (met; below it in 1 of 3 repetitions)"
            in lines[1])
    assert "not conclusive" not in lines[2] and not training.loaded(results)
    busy = _fake_training_results([110.0], [50.0], [100.0], shares=[0.2])
    assert training.loaded(busy) and "(not conclusive: measured under load)" in training.goals(busy)[2]
