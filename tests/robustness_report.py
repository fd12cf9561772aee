"""The figures of the fault, abuse and attack tests, written as docs/ROBUSTNESS.md when asked.

    TF_MLP_ROBUSTNESS_REPORT=docs/ROBUSTNESS.md pytest tests/test_faults.py tests/test_abuse.py \
        tests/test_server_attacks.py

The test modules add to FAULTS, ANSWERS, ATTACKS, BYSTANDER and FIGURES as
their assertions pass; at exit the page is written from what this run
recorded, with the machine it ran on (nothing is written when the variable is
unset, as in CI).
"""

from __future__ import annotations

import atexit
import collections
import datetime
import os
import pathlib

FAULTS = collections.Counter()
"""Fault kind -> injected and survived."""
ANSWERS = collections.defaultdict(collections.Counter)
"""Hostile request class -> status seen (HTTP code, gRPC code name, 'closed') -> count."""
MEMORY = {}
"""'after warm-up' and 'after the abuse' -> server RSS in bytes."""
ATTACKS = collections.defaultdict(collections.Counter)
"""Attack (tests/test_server_attacks.py) -> status seen -> count."""
BYSTANDER = {}
"""Attack -> the well-behaved client's figures beside it: idle, p99 and max seconds, answers, errors."""
FIGURES = {}
"""Other measured figures: what -> text."""
OUTCOME = []
"""pytest's summary line of the run (conftest's pytest_terminal_summary), quoted at the end of the page."""
COMMAND = ("TF_MLP_ROBUSTNESS_REPORT=docs/ROBUSTNESS.md .venv/bin/python -m pytest "
           "tests/test_faults.py tests/test_abuse.py tests/test_server_attacks.py")


def machine() -> str:
    """The machine as every figure names it (tf_mlp.benchmark.machine: CPU, instruction sets, cores, TensorFlow)."""
    from tf_mlp.benchmark import machine as machines

    return machines.name(machines.current())


def render() -> str:
    lines = ["# Robustness: faults injected and hostile requests", "",
             f"Written by `{COMMAND}` on {datetime.date.today().isoformat()} from that run's own counts",
             "(tests/robustness_report.py). The page is written whether or not the run passed; the run's",
             "outcome, as pytest summed it up, is quoted at the end.", "",
             f"Machine: {machine()}.", "",
             "## Faults injected and survived", "", "| fault | count |", "|---|---|"]
    lines += [f"| {kind} | {count} |" for kind, count in FAULTS.items()]
    tried = sum(sum(counts.values()) for counts in ANSWERS.values())
    lines += ["", f"## Hostile requests: {tried} against a `tf-mlp serve` subprocess", "",
              "| class | requests | answers seen (status: count) |", "|---|---|---|"]
    for kind, counts in ANSWERS.items():
        ordered = sorted(counts.items(), key=lambda item: str(item[0]))
        seen = ", ".join(f"{status}: {number}" for status, number in ordered)
        lines.append(f"| {kind} | {sum(counts.values())} | {seen} |")
    if MEMORY:
        lines += ["", "## Server memory (VmRSS)", "",
                  f"- after warm-up: {MEMORY['after warm-up'] / 2**20:.0f} MiB",
                  f"- after the abuse: {MEMORY['after the abuse'] / 2**20:.0f} MiB "
                  f"({(MEMORY['after the abuse'] - MEMORY['after warm-up']) / 2**20:+.0f} MiB; the test allows +150)"]
    if ATTACKS:
        lines += ["", "## Attacks, each beside a well-behaved client (tests/test_server_attacks.py)", "",
                  "| attack | requests | answers seen (status: count) |", "|---|---|---|"]
        for kind, counts in ATTACKS.items():
            seen = ", ".join(f"{status}: {number}" for status, number in sorted(counts.items(), key=str))
            lines.append(f"| {kind} | {sum(counts.values())} | {seen} |")
        lines += ["", "The well-behaved client (one valid single-image REST predict after another) during each:", "",
                  "| attack | its answers | errors | idle median | p99 during | max during |",
                  "|---|---|---|---|---|---|"]
        lines += [f"| {attack} | {row['answers']} | {row['errors']} | {row['idle'] * 1000:.0f} ms | "
                  f"{row['p99'] * 1000:.0f} ms | {row['max'] * 1000:.0f} ms |" for attack, row in BYSTANDER.items()]
    if FIGURES:
        lines += ["", *[f"- {what}: {value}" for what, value in FIGURES.items()]]
    lines += ["", "## What the rules were, and what the runs found", "", *NOTES]
    lines += ["", f"Run outcome: `{OUTCOME[-1] if OUTCOME else 'not recorded (the run did not finish)'}`."]
    return "\n".join(lines) + "\n"


NOTES = [
    "- Attacks: each must get its one right status (INVALID_ARGUMENT for a tensor that declares far more than",
    "  it carries or an alias the signature lacks, refused before anything is decoded; RESOURCE_EXHAUSTED / 429",
    "  for a request over its budget, `--max_request_tensor_bytes`, 8 MiB there; 400 for a wrong shape or a",
    "  corrupt image even inside a batch of good requests, which all get 200). Meanwhile the well-behaved client",
    "  must get no error and a p99 latency within 3 s of its idle median: a bound against stalls (12-16 s for",
    "  one amplification request before), loose enough for the noise of a shared 2-core machine.",
    "- Every HTTP answer must be below 500, or 503/504; classes with one right answer must get exactly it",
    "  (400 broken JSON, base64 or image; 413 bodies over `--rest_api_max_request_bytes`; 400/404 path tricks).",
    "  The `200`s are requests that were valid after all (float pixels take NaN and infinities, as upstream).",
    "- Oversized bodies: `400` is the case whose Content-Length is under the limit and whose body is cut there",
    "  (the server reads only what was declared, so the JSON is incomplete).",
    "- Slow clients: half a body gets `504` after `--rest_api_timeout_in_ms`; half the headers is closed after",
    "  the same time. Before the fix below, the latter held its connection for aiohttp's default hour.",
    "- gRPC bytes that are no protobuf: PredictionService parses its requests itself and answers",
    "  INVALID_ARGUMENT; ModelService's are parsed by grpc.aio, which answers UNKNOWN where grpc++",
    "  (TensorFlow Serving) answers INTERNAL. A known difference.",
    "- Bugs found and fixed in tf_mlp/server/: a JSON tensor of rank 65-254 and an integer of over 4300",
    "  digits were 500s (now 400); a gRPC tensor of more than 64 dimensions, or a huge dimension beside a",
    "  zero, was UNKNOWN (now INVALID_ARGUMENT); stalled headers were never timed out (now closed).",
    "- Training kills: every checkpoint the `checkpoint` state file lists, which is what a restart restores,",
    "  read back whole after every kill. Two leftovers are counted, not failed: `CheckpointManager.save`",
    "  deletes the oldest checkpoint before it rewrites the state file, so a kill between the two leaves an",
    "  entry naming deleted files ('stale'; the next save drops it); a kill while TensorFlow merges a new",
    "  checkpoint's shards leaves a half-written, unlisted `.index` ('torn'; the resumed run rewrites it).",
]


KEPT_SECTION = "## Against TensorFlow Serving's own tests"
"""Written by hand from scripts/tf_serving_conformance.py's run; kept when the rest is regenerated."""


def _write_at_exit() -> None:
    target = os.environ.get("TF_MLP_ROBUSTNESS_REPORT")
    # Under pytest-xdist each worker sees only its share of the tests: the page is written by serial runs only.
    if target and os.environ.get("PYTEST_XDIST_WORKER"):
        return
    if target and (FAULTS or ANSWERS or ATTACKS):
        path = pathlib.Path(target)
        previous = path.read_text() if path.exists() else ""
        kept = previous[previous.index(KEPT_SECTION):] if KEPT_SECTION in previous else ""
        path.write_text(render() + ("\n" + kept if kept else ""))


atexit.register(_write_at_exit)
