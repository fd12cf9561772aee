"""The serving section of PERFORMANCE.md, rendered from the serving benchmark's JSON alone (no measuring)."""

from __future__ import annotations


def as_table_rows(results: dict) -> list[tuple[str, str]]:
    """(measure, value) rows of the serving table."""
    ceiling = results["in_process_images_per_second"]
    rows = [(f"inference in-process, best batch ({results['in_process_best_batch']})", f"{ceiling:,.0f} images/s")]
    names = {
        "rest_uint8_lists": "REST, serving_default, uint8 nested lists",
        "rest_png_b64": "REST, predict_encoded, PNG as b64",
        "rest_raw_b64": "REST, predict_raw, 784 raw bytes as b64 (client default)",
        "grpc_uint8_tensor": "gRPC, serving_default, uint8 tensor_content",
        "grpc_png": "gRPC, predict_encoded, PNG bytes",
    }
    for key, name in names.items():
        rate = results["batch_images_per_second"][key]
        rows.append((f"batch script on {results['images']:,} test images: {name}",
                     f"{rate:,.0f} images/s ({rate / ceiling:.2f}x in-process)"))
    for key, name in (("rest_raw_b64", "REST, predict_raw"), ("grpc_uint8_tensor", "gRPC, serving_default")):
        for chunk, rate in results["batch_images_per_second"][f"{key}_by_chunk"].items():
            rows.append((f"batch script, {name}, --chunk-size {chunk}",
                         f"{rate:,.0f} images/s ({rate / ceiling:.2f}x in-process)"))
    rows.append((f"batch script, REST predict_raw, batching server (max_batch_size "
                 f"{results['batching_config_max_batch_size']})",
                 f"{results['batched_server_rest_raw_images_per_second']:,.0f} images/s"))
    for concurrency in (1, 8):
        latency = results[f"latency_concurrency_{concurrency}"]
        rows.append((f"single-image REST latency, concurrency {concurrency}",
                     f"p50 {latency['p50_ms']:.2f} ms, p99 {latency['p99_ms']:.2f} ms"))
    rows += [
        ("32 concurrent single-image REST clients, no batching",
         f"{results['unbatched_32_clients_rps']:,.0f} requests/s"),
        ("32 concurrent single-image REST clients, batching", f"{results['batched_32_clients_rps']:,.0f} requests/s "
                                                              f"({results['batching_speedup']:.2f}x)"),
        ("server peak RSS (`tf-mlp serve`, after every run above)", f"{results['server_peak_rss_mb']:,.0f} MB"),
    ]
    rows += [(f"in-process inference at request batch {size}", f"{rate:,.0f} images/s")
             for size, rate in results["scaling_request_batch"].items()]
    return rows


def targets(results: dict) -> list[str]:
    """The serving goals, each marked met or not by this run's numbers."""
    def mark(met: bool) -> str:
        return "met" if met else "NOT met"

    rest, grpc = results["rest_over_in_process"], results["grpc_over_in_process"]
    latency = results["latency_concurrency_1"]
    speedup = results["batching_speedup"]
    return [
        f"batch inference over REST >= 0.5x in-process: {rest:.2f}x at --chunk-size {results['rest_best_chunk']}, "
        f"{results['rest_default_chunk_over_in_process']:.2f}x at the default 256 ({mark(rest >= 0.5)})",
        f"batch inference over gRPC >= 0.7x in-process: {grpc:.2f}x at --chunk-size {results['grpc_best_chunk']}, "
        f"{results['grpc_default_chunk_over_in_process']:.2f}x at the default 256 ({mark(grpc >= 0.7)})",
        f"single-image REST latency at concurrency 1, p50 <= 2 ms: {latency['p50_ms']:.2f} ms "
        f"({mark(latency['p50_ms'] <= 2)}); p99 <= 10 ms: {latency['p99_ms']:.2f} ms ({mark(latency['p99_ms'] <= 10)})",
        f"batching with 32 single-image clients >= 2x no batching: {speedup:.2f}x ({mark(speedup >= 2)})",
    ]
