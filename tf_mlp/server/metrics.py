"""Prometheus metrics with TensorFlow Serving's names, labels and buckets, kept and written by prometheus_client.

TensorFlow Serving exports its TensorFlow monitoring metrics with '/'
replaced by ':', so the request counter is
`:tensorflow:serving:request_count{model_name, status}` (status is the
canonical code name: OK, INVALID_ARGUMENT, ...) and the latency histogram
`:tensorflow:serving:request_latency{model_name, API, entrypoint}` in
microseconds, with exponential buckets 10 * 1.8^k for k < 33 (util.cc). One
gauge of this server's own, `:tf_mlp:serving:requests_in_flight`, lets an
operator (and the shutdown test) see requests still running.

No client can forge or multiply series: `model_name` is a model the
server's config names, or OTHER_MODELS for every other name a request gives;
status, API and entrypoint come from the server; prometheus_client escapes
label values (backslash, double quote, newline). A request that ends in an
exception nothing expected is counted INTERNAL, never OK.

prometheus_client writes a counter NAME as NAME_total (the OpenMetrics rule)
and adds NAME_created series. TensorFlow Serving's page, and the dashboards
and alerts built on it, use NAME itself and have no _created series, so the
page is written with the counter's name changed back and those series left
out, and whole numbers are written without their ".0", as there.
prometheus_client's metrics are thread-safe: requests update them on
the event loop, the page is rendered on the thread pool.
"""

from __future__ import annotations

import contextlib
import re
import time

import tensorflow as tf
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

# TensorFlow's Buckets::Exponential(10, 1.8, 33), to the six significant digits its page prints them with.
LATENCY_BUCKETS = tuple(float(f"{10 * 1.8**index:.6g}") for index in range(33))
REQUEST_COUNT = ":tensorflow:serving:request_count"
REQUEST_LATENCY = ":tensorflow:serving:request_latency"
IN_FLIGHT = ":tf_mlp:serving:requests_in_flight"
OTHER_MODELS = "(other)"
"""model_name of requests naming a model the server does not serve (REST paths cannot spell it: it holds no /)."""
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_COUNTER_NAME = re.compile(rf"^((?:# (?:HELP|TYPE) )?){re.escape(REQUEST_COUNT)}_total\b", re.M)
_WHOLE_NUMBER = re.compile(r"^([^#].* -?[0-9]+)\.0$", re.M)
_CREATED_LINES = re.compile(
    rf"^(?:# (?:HELP|TYPE) )?(?:{re.escape(REQUEST_COUNT)}|{re.escape(REQUEST_LATENCY)})_created\b.*\n", re.M)


class Metrics:
    def __init__(self, known_model=lambda name: True):
        """known_model(name): whether the server serves that model (its requests get their own label)."""
        self._known_model = known_model
        self.registry = CollectorRegistry(auto_describe=True)
        self._count = Counter(REQUEST_COUNT, "The total number of requests.", ["model_name", "status"],
                              registry=self.registry)
        self._latency = Histogram(
            REQUEST_LATENCY, "Distribution of wall time (in microseconds) for Tensorflow Serving request.",
            ["model_name", "API", "entrypoint"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self._in_flight = Gauge(IN_FLIGHT, "Requests being answered now.", registry=self.registry)

    @property
    def in_flight(self) -> int:
        return int(self.registry.get_sample_value(IN_FLIGHT))

    def record(self, model_name: str, api: str, entrypoint: str, status: str, microseconds: float) -> None:
        model = model_name if self._known_model(model_name) else OTHER_MODELS
        self._count.labels(model, status).inc()
        self._latency.labels(model, api, entrypoint).observe(microseconds)

    @contextlib.contextmanager
    def request(self, api: str, entrypoint: str):
        """Time one request; the caller sets `outcome['model']` and `outcome['status']` inside the block.

        A block that raises with no status set is counted INTERNAL. While a
        profile is being captured (tensorflow.ProfilerService on the gRPC
        port), each request is also a trace event named like `predict:REST`,
        so the trace shows requests beside the model's ops.
        """
        outcome = {"model": "", "status": None}
        self._in_flight.inc()
        start = time.perf_counter()
        try:
            with tf.profiler.experimental.Trace(f"{api}:{entrypoint}"):  # a no-op unless a trace is running
                yield outcome
        except BaseException:
            outcome["status"] = outcome["status"] or "INTERNAL"
            raise
        finally:
            self._in_flight.dec()
            self.record(outcome["model"], api, entrypoint, outcome["status"] or "OK",
                        (time.perf_counter() - start) * 1e6)

    def render(self) -> bytes:
        """The text exposition format (version 0.0.4), with TensorFlow Serving's metric names."""
        text = generate_latest(self.registry).decode()
        text = _CREATED_LINES.sub("", _COUNTER_NAME.sub(rf"\g<1>{REQUEST_COUNT}", text))
        return _WHOLE_NUMBER.sub(r"\1", text).encode()  # counts as TensorFlow Serving writes them: 10, not 10.0
