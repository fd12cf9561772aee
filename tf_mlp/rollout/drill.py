"""A rehearsal of a rollout under load: does any request fail, does any answer come from the wrong version?

    result = drill(setup, candidate=4, holdout="tfds:fashion_mnist/test", load_images=images, work_dir=work)

While `tf-mlp batch-predict` sends the load images to the stable label
(chunk by chunk, --keep-going, so a failure would be an error row rather
than an abort), the candidate is gated, put on canary, promoted, and
rolled back. The load is then interrupted (its journal keeps every finished
chunk), and the drill counts:

- failed requests: the server's own `:tensorflow:serving:request_count` with
  a status other than OK (its Prometheus metrics: every attempt, retried or
  not, by anyone), and the error rows of the load;
- requests (the load's chunks, one request each unless refused and split)
  and rows, and each request's version: a row is attributed to the version
  whose answer (class and probability, computed in this process from each
  version's export) it carries. A request finished before a change started
  must come from the version stable held then, one started after it ended
  from the new one; those in flight during a change may come from either.

The figures are given for the whole run and per step, from the step's start
to the next step's (the rollback's: to the load's end).

The candidate must answer differently from the stable version for rows to
be attributed (rows both would give are counted as ambiguous).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request

import numpy as np
import orjson

from tf_mlp import client, contract
from tf_mlp.errors import RolloutError
from tf_mlp.rollout import gate as gating
from tf_mlp.rollout import report as reports
from tf_mlp.rollout import steps
from tf_mlp.rollout.session import Session, Setup

MATCH_TOLERANCE = contract.PROBABILITY_TOLERANCE
"""Probability distance within which a row is one version's answer (the versions' answers differ by far more)."""
SETTLE_REQUESTS = 5
"""Default for the requests the load must finish after each step before the next one (and before it stops)."""
REQUEST_COUNT = ":tensorflow:serving:request_count"
METRICS_PATH = "/monitoring/prometheus/metrics"


def drill(setup: Setup, candidate: int, holdout: str, load_images: np.ndarray, work_dir, *, chunk_size: int = 8,
          concurrency: int = 1, settle: int = SETTLE_REQUESTS, criteria: gating.Criteria | None = None,
          echo=print) -> dict:
    """Gate, canary, promote and roll back `candidate` while a batch load asks for stable; the counts.

    Each step starts once the load has finished `settle` more requests since the last one ended, and the load
    stops `settle` requests after the rollback; a step's figures cover its start to the next one's (or the end).
    """
    with Session(setup, changes=False) as session:
        stable = session.state.serving_stable()
    expected = {version: _answers(setup, version, load_images) for version in (stable, candidate)}
    load_input = os.path.join(work_dir, "load.npz")
    np.savez(load_input, images=load_images)
    output = os.path.join(work_dir, "load.csv")
    journal = output + ".journal"
    before = _failed_requests(setup)
    command = [sys.executable, "-m", "tf_mlp.cli", "batch-predict", load_input, "--output", output, "--target",
               str(setup.rest), "--model", setup.model, "--chunk-size", str(chunk_size), "--concurrency",
               str(concurrency), "--keep-going", "--no-progress", "--restart"]
    echo(f"load: {len(load_images)} images, {chunk_size} per request, {concurrency} at a time, to the stable label")
    log_path = os.path.join(work_dir, "load.log")
    with open(log_path, "wb") as log:
        load = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    marks, failed = {}, {}
    try:
        _wait_for_chunks(journal, settle, load)
        for name, step in (("gate", lambda: steps.gate(setup, candidate, holdout, criteria=criteria, echo=echo)),
                           ("canary", lambda: steps.canary(setup, candidate, echo=echo)),
                           ("promote", lambda: steps.promote(setup, candidate, echo=echo)),
                           ("rollback", lambda: steps.rollback(setup, echo=echo))):
            marks[name], failed[name] = [_chunks(journal)], _failed_requests(setup)
            result = step()
            marks[name].append(_chunks(journal))
            if name == "gate" and not result["passed"]:
                raise RolloutError(f"the gate refused version {candidate}: {'; '.join(result['reasons'])}")
            _wait_for_chunks(journal, marks[name][1] + settle, load)
    finally:
        if load.poll() is None:
            load.send_signal(signal.SIGINT)  # the journal keeps every finished chunk
        load.wait(timeout=120)
    chunks = _journal_chunks(journal)
    echo(f"load stopped after {len(chunks)} requests")
    os.unlink(journal)
    versions = [_version_of(chunk, expected) for chunk in chunks]
    allowed = _allowed_versions(len(chunks), marks, stable, candidate, concurrency)
    wrong = [index for index, (version, right) in enumerate(zip(versions, allowed))
             if version not in (None, "ambiguous") and version not in right]
    rows = [row for chunk in chunks for row in chunk]
    after = _failed_requests(setup)
    during = {}
    names = list(marks)
    for index, name in enumerate(names):
        start = marks[name][0]
        stop, failed_then = (marks[names[index + 1]][0], failed[names[index + 1]]) if index + 1 < len(names) \
            else (len(chunks), after)
        window = chunks[start:stop]
        during[name] = {"requests": len(window), "rows": sum(len(chunk) for chunk in window),
                        "error_rows": sum(1 for chunk in window for row in chunk if row.get("error")),
                        "failed_requests": None if None in (failed[name], failed_then) else failed_then - failed[name],
                        "versions": [str(version) for version in dict.fromkeys(versions[start:stop])]}
    return {
        "stable": stable, "candidate": candidate, "requests": len(chunks), "rows": len(rows),
        "error_rows": sum(1 for row in rows if row.get("error")),
        "failed_requests": None if before is None or after is None else after - before,
        "rows_by_version": {str(version): sum(len(chunk) for chunk, seen in zip(chunks, versions) if seen == version)
                            for version in (stable, candidate, "ambiguous", None)},
        "requests_from_a_version_not_stable_then": len(wrong),
        "steps": during,
        "load_log": log_path,
    }


def _answers(setup: Setup, version: int, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(class ids, probability of each) that `version` gives `images`, in this process from its export."""
    directory = reports.version_dir(setup.export_base, setup.model, version)
    with client.connect(f"local:{directory}") as model:
        prediction = model.predict(images)
    return prediction.class_ids, prediction.probability()


def _version_of(chunk: list, expected: dict):
    """The version every row of the chunk matches; "ambiguous" if several; None if none or errors."""
    matches = set(expected)
    for row in chunk:
        if row.get("error"):
            return None
        index = int(row["index"])
        matches = {version for version in matches
                   if expected[version][0][index] == row["class_id"]
                   and abs(expected[version][1][index] - row["probability"]) <= MATCH_TOLERANCE}
    if not matches:
        return None
    return next(iter(matches)) if len(matches) == 1 else "ambiguous"


def _allowed_versions(count: int, marks: dict, stable: int, candidate: int, concurrency: int) -> list[set]:
    """Per chunk (in the order they finished), the versions that held stable while it may have been asked."""
    allowed = [{stable}] * count
    holder = stable
    for name in ("gate", "canary", "promote", "rollback"):
        start, end = marks[name]
        new = candidate if name == "promote" else stable if name == "rollback" else holder
        # Finished before the change started: the old holder; finished up to `concurrency` chunks after it
        # ended: either (they may have been asked before); later ones: the new holder.
        for index in range(start, count):
            allowed[index] = {holder, new} if index < end + concurrency else {new}
        holder = new
    return allowed


def _chunks(journal) -> int:
    try:
        with open(journal, "rb") as file:
            return max(file.read().count(b"\n") - 1, 0)  # the first line is the journal's header
    except FileNotFoundError:
        return 0


def _wait_for_chunks(journal, count: int, load: subprocess.Popen) -> None:
    while _chunks(journal) < count:
        if load.poll() is not None:
            raise RolloutError(f"the load ended (status {load.returncode}) before the drill did: give it more "
                               f"images (its output is in {os.path.join(os.path.dirname(journal), 'load.log')})")
        time.sleep(0.02)


def _journal_chunks(journal) -> list:
    with open(journal, "rb") as file:
        lines = file.read().split(b"\n")[1:]
    return [orjson.loads(line)["rows"] for line in lines if line.strip()]


def _failed_requests(setup: Setup) -> int | None:
    """Requests for the model the server answered with another status than OK, so far (None: no metrics)."""
    url = f"http://{setup.rest.address}{METRICS_PATH}"
    try:
        with urllib.request.urlopen(url, timeout=30) as answer:
            text = answer.read().decode()
    except OSError:
        return None
    total = 0
    for line in text.splitlines():
        if line.startswith(REQUEST_COUNT + "{") and f'model_name="{setup.model}"' in line \
                and 'status="OK"' not in line:
            total += int(float(line.rsplit(" ", 1)[1]))
    return total
