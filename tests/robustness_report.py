"""The figures of the fault and abuse tests, written as docs/ROBUSTNESS.md when asked.

    TF_MLP_ROBUSTNESS_REPORT=docs/ROBUSTNESS.md pytest tests/test_faults.py tests/test_abuse.py

Both test modules add to FAULTS and ANSWERS as their assertions pass; at exit
the page is written from what this run recorded (nothing is written when the
variable is unset, as in CI).
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
COMMAND = ("TF_MLP_ROBUSTNESS_REPORT=docs/ROBUSTNESS.md .venv/bin/python -m pytest "
           "tests/test_faults.py tests/test_abuse.py")


def render() -> str:
    lines = ["# Robustness: faults injected and hostile requests", "",
             f"Written by `{COMMAND}` on {datetime.date.today().isoformat()} from that run's own counts",
             "(tests/robustness_report.py); every figure below is from assertions that passed.", "",
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
    return "\n".join(lines) + "\n"


def _write_at_exit() -> None:
    target = os.environ.get("TF_MLP_ROBUSTNESS_REPORT")
    if target and (FAULTS or ANSWERS):
        pathlib.Path(target).write_text(render())


atexit.register(_write_at_exit)
