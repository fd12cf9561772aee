"""The rollout's steps, each a function of a Setup: gate, canary, promote, rollback, and status.

    gate(setup, 4, ...)     load version 4 beside stable, evaluate both on a labelled holdout, write the report
    canary(setup, 4)        load version 4 and label it canary (a share of the traffic can ask for it)
    promote(setup)          stable -> the canary's version, if its gate passed; the old stable becomes previous
    rollback(setup)         stable -> previous, in one change
    status(setup)           labels, versions and their states, the last gate report

What the labels mean: `stable` is what every client gets by default;
`canary` is the version on trial, or the stable one when no trial runs
(so clients that ask for canary are always answered); `previous` is the
version stable held before the last promotion, kept loaded so a rollback
is one label move. Every step leaves the model pinning exactly the
versions its labels name, plus a candidate that passed its gate, kept
loaded for its canary and promotion; a step interrupted half-way is
finished or undone by running it again. Each returns what it did as a
dict, and says it line by line through `echo`.
"""

from __future__ import annotations

import datetime
import time

from tf_mlp import batch, contract
from tf_mlp.errors import RolloutError
from tf_mlp.rollout import gate as gating
from tf_mlp.rollout import report as reports
from tf_mlp.rollout.session import Session, Setup
from tf_mlp.rollout.state import describe_labels

STABLE, CANARY, PREVIOUS = contract.STABLE_LABEL, contract.CANARY_LABEL, contract.PREVIOUS_LABEL


def _quiet(line: str) -> None:
    pass


def _done(session: Session, echo, line: str) -> dict:
    for note in session.notes:
        echo(f"note: {note}")
    echo(line)
    return {"labels": dict(session.state.labels), "file": str(session.state.config_file.path)}


def canary(setup: Setup, version: int, echo=_quiet) -> dict:
    """Load `version` beside stable and label it canary (the stable one stays where it is)."""
    with Session(setup, changes=True) as session:
        state = session.state
        if setup.export_base.is_dir():
            reports.version_dir(setup.export_base, setup.model, version)  # missing: said now, not after a wait
        if state.canary == version and state.available(version):
            session.apply(state.labels)  # the file in step, and nothing else pinned
            return _done(session, echo, f"{CANARY} is already version {version} ({describe_labels(state.labels)})")
        echo(f"loading version {version} ({STABLE} is {state.stable})")
        session.load(version)
        old = state.canary
        session.label({**state.labels, CANARY: version}, version)
        return _done(session, echo, f"{CANARY}: {old} -> {version}; {describe_labels(state.labels)}")


def gate(setup: Setup, version: int, holdout: str | None = None, source_dir: str | None = None,
         data_dir: str | None = None, criteria: gating.Criteria | None = None, progress: bool = False,
         echo=_quiet) -> dict:
    """Compare `version` with stable on a labelled holdout through the server; write the report beside it.

    The candidate is loaded for the comparison; it stays loaded if it passed
    (for its canary and promotion) and is unloaded if it was refused, unless
    a label names it. RolloutError if it cannot be judged (it fails to load,
    the holdout is unlabelled, requests fail); a refusal is a verdict, in the
    returned report (`passed` False).
    """
    with Session(setup, changes=True) as session:
        state = session.state
        directory = reports.version_dir(setup.export_base, setup.model, version)
        stable = state.serving_stable()
        if version == stable:
            raise RolloutError(f"version {version} is {STABLE} already: there is nothing to compare it with")
        spec, source_dir, data_dir = _holdout(directory, holdout, source_dir, data_dir)
        inputs = batch.open_inputs(spec, source_dir=source_dir, data_dir=data_dir)
        inputs.set_polarity(None)
        echo(f"loading version {version} beside {STABLE} version {stable}")
        session.load(version)
        started = time.perf_counter()
        answers = {}
        for number in (stable, version):
            echo(f"evaluating version {number} on {len(inputs)} images of {spec} through {setup.rest}")
            answers[number] = gating.evaluate(setup.rest, setup.model, number, inputs,
                                              timeout=min(setup.timeout, 60.0), progress=progress)
        criteria = criteria or gating.Criteria()
        verdict = gating.judge(answers[stable], answers[version], criteria)
        report = {
            "model": setup.model, "candidate": version, "baseline": stable, "baseline_label": STABLE,
            "server": str(setup.rest),
            "holdout": {"inputs": spec, "images": len(inputs), "fingerprint": inputs.fingerprint},
            "criteria": {**vars(criteria), "test": reports.TEST_NAME},
            **verdict,
            "evaluated_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "seconds": round(time.perf_counter() - started, 3),
        }
        page = reports.write(directory, report)
        if not report["passed"] and version not in state.labels.values():
            session.apply(state.labels)  # the refused candidate is unloaded
        for reason in report["reasons"]:
            echo(f"refused: {reason}")
        if not report["passed"] and state.canary == version:
            session.notes.append(f"version {version} still holds {CANARY}: `tf-mlp rollout canary {stable}` ends "
                                 "its trial")
        _done(session, echo, f"gate {'passed' if report['passed'] else 'refused'}: {reports.summary(report)}; "
                             f"report {page}")
        return report


def promote(setup: Setup, version: int | None = None, echo=_quiet) -> dict:
    """stable -> `version` (default: the canary's), if its gate passed against the current stable.

    The version must be AVAILABLE before the label moves (it is loaded first
    if need be); the old stable stays loaded as `previous`, and the version
    `previous` named before is unloaded in the same change.
    """
    with Session(setup, changes=True) as session:
        state = session.state
        stable = state.serving_stable()
        version = state.canary if version is None else version
        if version is None:
            raise RolloutError(f"there is no {CANARY} label to promote: give the version")
        if version == stable:
            session.apply(state.labels)
            return _done(session, echo, f"version {version} is {STABLE} already ({describe_labels(state.labels)})")
        directory = reports.version_dir(setup.export_base, setup.model, version)
        report = reports.read(directory)
        if report is None:
            raise RolloutError(f"version {version} has no gate report: run `tf-mlp rollout gate {version}` first")
        if report.get("baseline") != stable or report.get("model") != setup.model:
            raise RolloutError(f"version {version}'s gate report compares it with version {report.get('baseline')}, "
                               f"but {STABLE} is version {stable}: run `tf-mlp rollout gate {version}` again")
        if not report.get("passed"):
            raise RolloutError(f"version {version} was refused by its gate ({'; '.join(report.get('reasons', []))}); "
                               f"it is not promoted")
        session.load(version)
        labels = {**state.labels, STABLE: version, PREVIOUS: stable}
        if state.canary in (None, stable, version):
            labels[CANARY] = version  # no other trial running: canary follows stable
        session.label(labels, version)
        return _done(session, echo, f"{STABLE}: {stable} -> {version}; {describe_labels(labels)}")


def rollback(setup: Setup, echo=_quiet) -> dict:
    """stable -> previous in one change; the version rolled back from is unloaded (canary follows if it was on it)."""
    with Session(setup, changes=True) as session:
        state = session.state
        previous, stable = state.previous, state.stable
        if previous is None:
            raise RolloutError(f"there is no {PREVIOUS} version to roll back to ({describe_labels(state.labels)})")
        if not state.available(previous):
            raise RolloutError(f"{PREVIOUS} is version {previous}, which is not serving ({state.state_of(previous)}); "
                               f"{STABLE} stays at version {stable}")
        labels = {label: number for label, number in state.labels.items() if label != PREVIOUS}
        labels[STABLE] = previous
        if state.canary in (None, stable):
            labels[CANARY] = previous
        session.apply(labels)
        return _done(session, echo, f"{STABLE}: {stable} -> {previous} (rolled back); {describe_labels(labels)}")


def status(setup: Setup) -> dict:
    """The model's labels, its versions' states (as the server says), the file's pins, the last gate report."""
    with Session(setup, changes=False) as session:
        state = session.state
        last = None
        if setup.export_base.is_dir():
            candidates = [state.canary, *sorted(state.versions, reverse=True)]
            for version in dict.fromkeys(number for number in candidates if number is not None):
                try:
                    found = reports.read(reports.version_dir(setup.export_base, setup.model, version))
                except RolloutError:
                    continue
                if found is not None and (last is None or found["evaluated_at"] > last["evaluated_at"]):
                    last = found
        return {
            "model": setup.model, "server": str(setup.grpc), "config": str(setup.config),
            "labels": state.labels,
            "versions": {number: {"state": version.state, "error": version.error,
                                  "labels": sorted(label for label, value in state.labels.items() if value == number)}
                         for number, version in state.versions.items()},
            "pinned": state.config_file.pinned(setup.model),
            "notes": session.notes,
            "last_gate": last,
        }


def format_status(result: dict) -> str:
    lines = [f"model {result['model']} at {result['server']} (config {result['config']}, pinned versions "
             f"{', '.join(map(str, result['pinned']))})",
             f"labels: {describe_labels(result['labels'])}", "", "version  state      labels"]
    for number, version in result["versions"].items():
        state = f"{version['state']} ({version['error']})" if version["error"] else version["state"]
        lines.append(f"{number:<8} {state:<10} {', '.join(version['labels'])}".rstrip())
    lines += [f"note: {note}" for note in result["notes"]]
    last = result["last_gate"]
    lines += ["", f"last gate: {reports.summary(last)}" if last else "last gate: none"]
    return "\n".join(lines)


def _holdout(directory, holdout, source_dir, data_dir) -> tuple:
    """(inputs, source_dir, data_dir): the given holdout, else the test split of the data set the candidate's
    model card names (its source and data directories as it was trained)."""
    if holdout:
        return holdout, source_dir, data_dir
    from tf_mlp.export import card

    try:
        model_card = card.read(directory)
    except (OSError, ValueError):
        raise RolloutError(f"{directory} has no readable model card to take the holdout from: give --holdout") from None
    data = model_card.get("config", {}).get("data", {})
    return (f"{batch.inputs.TFDS_PREFIX}{model_card['data_set']}/test", source_dir or data.get("source_dir"),
            data_dir or data.get("data_dir"))
