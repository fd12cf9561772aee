#!/usr/bin/env python
"""Hostile requests against `tf-mlp serve` with its default limits, one vector at a time, beside a bystander.

    python scripts/server_attacks.py --model-base-path models/tf_mlp

Starts the server as serving/run.sh does (server-side batching with serving/batching.config, Prometheus
metrics with serving/monitoring.config, every other flag at its default), then sends each vector and prints,
per vector: the request, the answer (status, size, the start of its message), the seconds to the answer, the
server's peak resident memory (VmHWM) before and after, and the slowest answer a well-behaved client (one
single-image REST predict after another) got meanwhile. Exit status 1 if the bystander saw an error.
tests/test_server_attacks.py asserts the same defences; this prints the figures.
"""

from __future__ import annotations

import json
import pathlib
import sys
import tempfile
import threading
import time

import click
import grpc
import numpy as np
import requests
from tensorflow.core.framework import types_pb2
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from tf_mlp import contract
from tf_mlp.server.process import ServerProcess

REPO = pathlib.Path(__file__).resolve().parents[1]
PREDICT = f"/v1/models/{contract.MODEL_NAME}:predict"
METRICS = "/monitoring/prometheus/metrics"
GOOD_BODY = json.dumps({"instances": np.zeros((1, 28, 28), np.uint8).tolist()}).encode()


class Bystander(threading.Thread):
    """One valid single-image REST predict after another; keeps each latency and every non-200 answer."""

    def __init__(self, url: str):
        super().__init__(daemon=True)
        self.url, self.latencies, self.errors, self.stopping = url, [], [], threading.Event()

    def run(self):
        session = requests.Session()
        while not self.stopping.is_set():
            started = time.monotonic()
            try:
                status = session.post(self.url + PREDICT, data=GOOD_BODY, timeout=60).status_code
            except requests.RequestException as error:
                status = type(error).__name__
            self.latencies.append(time.monotonic() - started)
            if status != 200:
                self.errors.append(status)

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc_info):
        self.stopping.set()
        self.join()


def _amplification(aliases) -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = contract.MODEL_NAME
    for alias in aliases:
        tensor = request.inputs[alias]
        tensor.dtype = types_pb2.DT_DOUBLE
        tensor.tensor_shape.dim.add(size=1 << 27)
    return request


def _grpc(server, request):
    with grpc.insecure_channel(server.grpc_target) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        try:
            answer = stub.Predict(request, timeout=120)
            return "OK", answer.ByteSize(), ""
        except grpc.RpcError as error:
            return error.code().name, len(error.details() or ""), error.details() or ""


def _rest(method: str, url: str, body=None):
    answer = requests.request(method, url, data=body, timeout=120)
    return answer.status_code, len(answer.content), answer.text


def _mixed_batches(server) -> tuple:
    """8 clients send valid [1,28,28] predicts and 8 send [1,27,27] ones for 4 s: the valid ones' outcomes."""
    bad = json.dumps({"instances": np.zeros((1, 27, 27), np.uint8).tolist()}).encode()
    outcomes = {"valid": [], "wrong shape": []}
    deadline = time.monotonic() + 4

    def client(kind, body):
        session = requests.Session()
        while time.monotonic() < deadline:
            outcomes[kind].append(session.post(server.rest_url + PREDICT, data=body, timeout=60).status_code)

    threads = [threading.Thread(target=client, args=(kind, body)) for kind, body in
               (("valid", GOOD_BODY), ("wrong shape", bad)) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    failed = sum(status != 200 for status in outcomes["valid"])
    refused = sum(status == 400 for status in outcomes["wrong shape"])
    text = (f"{failed} of {len(outcomes['valid'])} valid failed; {refused} of {len(outcomes['wrong shape'])} "
            "wrong-shape got 400")
    return ("200/400" if not failed else "valid failed"), 0, text


def _unknown_models(server) -> tuple:
    """2,000 predicts naming distinct unknown models: their statuses, and the lines they add to the metrics."""
    before = requests.get(server.rest_url + METRICS, timeout=30).text.count("\n")
    session, statuses = requests.Session(), set()
    for index in range(2000):
        statuses.add(session.post(f"{server.rest_url}/v1/models/nosuch{index}:predict", data=GOOD_BODY,
                                  timeout=30).status_code)
    after = requests.get(server.rest_url + METRICS, timeout=30).text.count("\n")
    return "/".join(map(str, sorted(statuses))), 0, f"metrics page lines added: {after - before}"


def vectors(server):
    """(name, request as sent, a function returning (status, answer bytes, message))."""
    malformed = json.dumps({"signature_name": 1, "pad": list(range(700_000))}).encode()  # 5 MiB
    four = _amplification(["images", "a1", "a2", "a3"])
    one = _amplification(["images"])
    return [
        ("gRPC: four aliases, DT_DOUBLE [2^27] each, no values", f"{four.ByteSize()} bytes",
         lambda: _grpc(server, four)),
        ("gRPC: one alias, DT_DOUBLE [2^27], no values", f"{one.ByteSize()} bytes", lambda: _grpc(server, one)),
        ("REST: malformed body {signature_name: 1, pad: [...]}", f"{len(malformed) / 2**20:.1f} MiB",
         lambda: _rest("POST", server.rest_url + PREDICT, malformed)),
        ("REST: version of 5000 digits", "GET /v1/models/tf_mlp/versions/1...1",
         lambda: _rest("GET", f"{server.rest_url}/v1/models/{contract.MODEL_NAME}/versions/{'1' * 5000}")),
        ("REST: [1,27,27] beside valid [1,28,28], batched", "8 + 8 clients for 4 s", lambda: _mixed_batches(server)),
        ("REST: 2,000 distinct unknown model names", "2,000 predicts", lambda: _unknown_models(server)),
    ]


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--model-base-path", type=click.Path(exists=True, file_okay=False), required=True,
              help="An export base of the model (models/tf_mlp after `make demo`).")
def main(model_base_path):
    """Send each hostile request to a fresh `tf-mlp serve` and print what it cost."""
    with tempfile.TemporaryDirectory(prefix="tf-mlp-attacks-") as work:
        server = ServerProcess(pathlib.Path(work, "server.log"), f"--model_base_path={pathlib.Path(model_base_path)}",
                               f"--monitoring_config_file={REPO / 'serving' / 'monitoring.config'}",
                               batching_config=REPO / "serving" / "batching.config")
        with server.start():
            with Bystander(server.rest_url) as idle:
                time.sleep(2)
            idle_median = float(np.median(idle.latencies))
            print(f"server pid {server.pid}: VmRSS {server.rss_bytes() / 2**20:.0f} MiB, bystander idle median "
                  f"{idle_median * 1000:.1f} ms")
            bystander_errors = 0
            for name, request, send in vectors(server):
                peak_before = server.peak_rss_bytes()
                with Bystander(server.rest_url) as bystander:
                    started = time.monotonic()
                    status, size, message = send()
                    seconds = time.monotonic() - started
                    time.sleep(0.2)
                bystander_errors += len(bystander.errors)
                message = " ".join(message.split())
                print(f"- {name} ({request}): {status}, {size:,} B answer, {seconds:.3f} s; VmHWM "
                      f"{peak_before / 2**20:.0f} -> {server.peak_rss_bytes() / 2**20:.0f} MiB; bystander "
                      f"{len(bystander.latencies)} answers, {len(bystander.errors)} errors, max "
                      f"{max(bystander.latencies, default=0) * 1000:.0f} ms\n    {message[:160]}", flush=True)
    sys.exit(1 if bystander_errors else 0)


if __name__ == "__main__":
    main()
