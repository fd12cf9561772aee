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

REPOSITORY = pathlib.Path(__file__).resolve().parents[1]

SERVING_FIGURES = (
    "in_process_images_per_second", "unbatched_32_clients_rps", "batched_32_clients_rps", "batching_speedup",
    "server_peak_rss_mb", "rest_over_in_process", "grpc_over_in_process",
    "batched_server_rest_raw_images_per_second",
)
BATCH_RUNS = ("rest_uint8_lists", "rest_png_b64", "rest_raw_b64", "grpc_uint8_tensor", "grpc_png")
MACHINE_LINE = re.compile(r"^Machine: .+, (AVX-512|AVX2|AVX|no AVX)[^;]*; \d+ cores.*; TensorFlow [0-9.]+, "
                          r"oneDNN opts (on|off|unknown) \(TF_ENABLE_ONEDNN_OPTS[^)]*\)\.$", re.MULTILINE)


def _positive(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory, tiny_splits):
    """(output directory, the finished process) of one quick benchmark, training and serving, on tiny data.

    It checks the pipeline and the page, not the speed: one repetition of the smallest workload that
    produces every figure.
    """
    from tests.conftest import write_idx_data_set

    work = tmp_path_factory.mktemp("bench")
    idx_dir = write_idx_data_set(work / "idx", tiny_splits)
    output = work / "out"
    result = subprocess.run(
        [sys.executable, "scripts/benchmark.py", "--quick", "--repetitions", "1", "--data", "idx",
         "--source-dir", str(idx_dir), "--data-dir", str(work / "tfds"), "--validation-size", "128", "-o", str(output)],
        cwd=REPOSITORY, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return output, result


@pytest.mark.slow
def test_quick_benchmark_writes_every_serving_figure(quick_run):
    output, _ = quick_run
    results = json.loads((output / "performance.json").read_text())
    serving = results["serving"]
    for key in SERVING_FIGURES:
        assert _positive(serving[key]), key
    for key in BATCH_RUNS:
        assert _positive(serving["batch_images_per_second"][key]), key
    for concurrency in (1, 8):
        latency = serving[f"latency_concurrency_{concurrency}"]
        assert _positive(latency["p50_ms"]) and _positive(latency["p99_ms"]) and latency["p99_ms"] >= latency["p50_ms"]
    scaling = serving["scaling_request_batch"]
    assert scaling and all(_positive(rate) for rate in scaling.values())
    assert serving["images"] == 128  # the tiny test split, all of it
    assert (output / "scaling.png").stat().st_size > 0

    page = (output / "PERFORMANCE.md").read_text()
    for row in ("inference in-process, best batch", "REST, predict_raw", "gRPC, serving_default",
                "REST, serving_default, uint8 nested lists", "REST, predict_encoded", "gRPC, predict_encoded",
                "single-image REST latency, concurrency 1", "single-image REST latency, concurrency 8",
                "32 concurrent single-image REST clients, no batching",
                "32 concurrent single-image REST clients, batching", "server peak RSS",
                "in-process inference at request batch", "batch script on 128 test images"):
        assert row in page, row
    for target in ("over REST >= 0.5x", "over gRPC >= 0.7x", "p50 <= 2 ms", "p99 <= 10 ms", ">= 2x no batching"):
        assert target in page, target
    assert not re.search(r"\b(nan|inf)\b", page, re.IGNORECASE)


@pytest.mark.slow
def test_every_part_of_the_page_names_the_machine_it_was_measured_on(quick_run):
    from tf_mlp.benchmark import machine

    output, _ = quick_run
    results = json.loads((output / "performance.json").read_text())
    here = machine.current()
    for part in ("training", "serving"):
        recorded = results[part]["machine"]
        for key in ("cpu_model", "instruction_sets", "cpus", "tensorflow", "onednn_opts"):
            assert recorded[key] == here[key], (part, key)
    page = (output / "PERFORMANCE.md").read_text()
    assert len(MACHINE_LINE.findall(page)) == 2, page[:2000]
    assert f"Machine: {machine.name(here)}." in page


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


@pytest.mark.slow
def test_quick_benchmark_produces_every_training_figure(quick_run):
    output, result = quick_run
    training = json.loads((output / "performance.json").read_text())["training"]
    assert training["flops_per_example"] == MLP_FLOPS_BY_HAND
    assert _positive(training["matmul_gflops"]) and _positive(training["training_peak_rss_mb"])
    # The peak is the best of both libraries at every size, and says which one reached it.
    by_library = training["matmul_gflops_by_library"]
    assert set(by_library) == {"tensorflow", "numpy"} and len({len(rates) for rates in by_library.values()}) == 1
    peak = training["matmul_peak"]
    assert training["matmul_gflops"] == max(rate for rates in by_library.values() for rate in rates.values())
    assert training["matmul_gflops"] == by_library[peak["library"]][str(peak["size"])]
    rates = training["examples_per_second"]
    for batch in training["batch_sizes"]:
        for measure in ("cli", "trainer", "fit_spe1", "fit_spe50", "fit_tuned", "products"):
            summary = rates[f"{measure}_{batch}"]
            assert len(summary["values"]) == 1 and _positive(summary["values"][0]), (measure, batch)
            assert summary["min"] <= summary["median"] <= summary["max"]
        assert rates[f"fit_tuned_{batch}"]["values"] == [  # the faster tuned setting of each repetition
            max(values) for values in zip(*(rates[f"fit_spe{setting}_{batch}"]["values"]
                                            for setting in training["fit_steps_per_execution"][1:]))]
    assert _positive(rates["trainer_xla_128"]["median"])
    shares = training["other_processes_share"]
    assert len(shares) == 1 and all(share is None or 0 <= share <= 1 for share in shares)

    page = (output / "PERFORMANCE.md").read_text()
    assert f"**{MLP_FLOPS_BY_HAND:,}**" in page
    for batch in training["batch_sizes"]:
        assert re.search(rf"^\| {batch} \|( [^|]+ \|){{8}}$", page, re.MULTILINE), batch
    for goal in (">= 1.5x model.fit at defaults", ">= 1.0x model.fit with steps_per_execution tuned",
                 ">= 55% of the matrix-multiply peak"):
        assert goal in page, goal
    assert "--quick --repetitions 1" in page and "Load: other processes used" in page
    assert re.search(r"Matrix-multiply peak: [0-9]+ GFLOP/s, reached by (TensorFlow|numpy)'s float32 [0-9]+² product",
                     page)
    assert re.search(r"Each repetition at batch 128, in order: `tf-mlp train` [0-9.]+k;", page)
    assert not re.search(r"\b(nan|inf)\b", page, re.IGNORECASE)
    assert (output / "scaling.png").stat().st_size > 0
    assert result.stdout.endswith("\n" + page + "\n")  # the page, after the data preparation's one line
    for marker in TF_START_UP_MARKERS:  # TensorFlow's start-up lines are kept off the screen, as by tf-mlp
        assert marker not in result.stderr, marker


@pytest.mark.slow
def test_the_page_renders_again_from_its_json_alone(quick_run, tmp_path):
    output, _ = quick_run
    copy = tmp_path / "out"
    results = json.loads((output / "performance.json").read_text())
    del results["serving"]  # a page with one part, as --training-only writes
    copy.mkdir()
    (copy / "performance.json").write_text(json.dumps(results))
    result = subprocess.run([sys.executable, "scripts/benchmark.py", "--render-only", "-o", str(copy)],
                            cwd=REPOSITORY, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    page = (copy / "PERFORMANCE.md").read_text()
    original = (output / "PERFORMANCE.md").read_text()
    assert page == original[:original.index("## Serving")] + original[original.index("![scaling]"):]


def test_the_published_page_is_what_its_json_renders(tmp_path):
    """docs/PERFORMANCE.md is rendered from docs/performance/performance.json, never edited by hand."""
    copy = tmp_path / "performance"
    copy.mkdir()
    (copy / "performance.json").write_bytes((REPOSITORY / "docs" / "performance" / "performance.json").read_bytes())
    result = subprocess.run([sys.executable, "scripts/benchmark.py", "--render-only", "-o", str(copy)],
                            cwd=REPOSITORY, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "PERFORMANCE.md").read_text() == (REPOSITORY / "docs" / "PERFORMANCE.md").read_text()


def test_render_only_needs_results_to_render(tmp_path):
    result = subprocess.run([sys.executable, "scripts/benchmark.py", "--render-only", "-o", str(tmp_path)],
                            cwd=REPOSITORY, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"Error: {tmp_path}/performance.json: no results to render; measure first"]


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
    from tf_mlp.benchmark.summary import summarize

    rates = {"cli_128": cli, "fit_spe1_128": fit_default, "fit_tuned_128": fit_tuned,
             "products_128": [200.0] * len(cli)}
    return {"examples_per_second": {key: summarize(values) for key, values in rates.items()},
            "flops_per_example": MLP_FLOPS_BY_HAND, "matmul_gflops": 1.0, "other_processes_share": shares}


def test_ratios_are_paired_within_repetitions_and_a_goal_says_how_often_it_fell_short():
    from tf_mlp.benchmark import training_page as training

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
