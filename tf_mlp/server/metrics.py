"""Prometheus metrics with TensorFlow Serving's names, labels and buckets.

TensorFlow Serving exports its TensorFlow monitoring metrics with '/'
replaced by ':', so the request counter is
`:tensorflow:serving:request_count{model_name, status}` (status is the
canonical code name: OK, INVALID_ARGUMENT, ...) and the latency histogram
`:tensorflow:serving:request_latency{model_name, API, entrypoint}` in
microseconds, with exponential buckets 10 * 1.8^k for k < 33 (util.cc). One
gauge of this server's own, `:tf_mlp:serving:requests_in_flight`, lets an
operator (and the shutdown test) see requests still running.

Everything here is updated from the server's event loop thread only, so no
locks are needed; the exposition is rendered on that thread too.
"""

from __future__ import annotations

import collections
import contextlib
import time

import tensorflow as tf

LATENCY_BUCKETS = tuple(10 * 1.8**index for index in range(33))
REQUEST_COUNT = ":tensorflow:serving:request_count"
REQUEST_LATENCY = ":tensorflow:serving:request_latency"
IN_FLIGHT = ":tf_mlp:serving:requests_in_flight"


def _labels(pairs) -> str:
    escaped = (f'{name}="{str(value).replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34))}"'
               for name, value in pairs)
    return "{" + ",".join(escaped) + "}"


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


class Metrics:
    def __init__(self):
        self.request_count = collections.Counter()  # (model_name, status) -> count
        self._latency = {}  # (model_name, API, entrypoint) -> [bucket counts..., sum, count]
        self.in_flight = 0

    def record(self, model_name: str, api: str, entrypoint: str, status: str, microseconds: float) -> None:
        self.request_count[(model_name, status)] += 1
        cell = self._latency.setdefault((model_name, api, entrypoint), [0] * (len(LATENCY_BUCKETS) + 1) + [0.0, 0])
        for index, bound in enumerate(LATENCY_BUCKETS):
            if microseconds <= bound:
                cell[index] += 1
                break
        else:
            cell[len(LATENCY_BUCKETS)] += 1
        cell[-2] += microseconds
        cell[-1] += 1

    @contextlib.contextmanager
    def request(self, api: str, entrypoint: str):
        """Time one request; the caller sets `outcome['model']` and `outcome['status']` inside the block.

        While a profile is being captured (tensorflow.ProfilerService on the
        gRPC port), each request is also a trace event named like
        `predict:REST`, so the trace shows requests beside the model's ops.
        """
        outcome = {"model": "", "status": "OK"}
        self.in_flight += 1
        start = time.perf_counter()
        try:
            with tf.profiler.experimental.Trace(f"{api}:{entrypoint}"):  # a no-op unless a trace is running
                yield outcome
        finally:
            self.in_flight -= 1
            self.record(outcome["model"], api, entrypoint, outcome["status"], (time.perf_counter() - start) * 1e6)

    def render(self) -> str:
        """The text exposition format (version 0.0.4)."""
        lines = [f"# TYPE {REQUEST_COUNT} counter"]
        for (model, status), count in sorted(self.request_count.items()):
            lines.append(f"{REQUEST_COUNT}{_labels([('model_name', model), ('status', status)])} {count}")
        lines.append(f"# TYPE {REQUEST_LATENCY} histogram")
        for (model, api, entrypoint), cell in sorted(self._latency.items()):
            base = [("model_name", model), ("API", api), ("entrypoint", entrypoint)]
            cumulative = 0
            for bound, count in zip(LATENCY_BUCKETS + (float("inf"),), cell[: len(LATENCY_BUCKETS) + 1]):
                cumulative += count
                bound_text = "+Inf" if bound == float("inf") else _number(bound)
                lines.append(f"{REQUEST_LATENCY}_bucket{_labels(base + [('le', bound_text)])} {cumulative}")
            lines.append(f"{REQUEST_LATENCY}_sum{_labels(base)} {_number(cell[-2])}")
            lines.append(f"{REQUEST_LATENCY}_count{_labels(base)} {cell[-1]}")
        lines.append(f"# TYPE {IN_FLIGHT} gauge")
        lines.append(f"{IN_FLIGHT} {self.in_flight}")
        return "\n".join(lines) + "\n"
