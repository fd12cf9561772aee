"""The gate's report, beside the candidate export: assets.extra/gate_report.json and gate_report.md.

It travels with the version (a copy of the version directory carries it)
and goes with it when the version is deleted. `tf-mlp rollout promote` reads
it: a version is promoted only if its report passed against the version
that is stable at that moment. The JSON has the fields of
`tf_mlp.rollout.gate.judge` plus what was compared and how:

    model, candidate, baseline (its version), baseline_label, server
    holdout {inputs, images, fingerprint}, criteria {accuracy_margin, recall_margin, alpha, test}
    passed, reasons, images, changed_answers, accuracy {...}, classes [{...}]
    evaluated_at (UTC, ISO 8601), seconds
"""

from __future__ import annotations

import json
import pathlib

from tf_mlp import contract, layout
from tf_mlp.errors import RolloutError
from tf_mlp.files import write_atomically

TEST_NAME = "McNemar's exact test (two-sided), Holm-corrected over accuracy and every class's recall"


def version_dir(export_base, model: str, version: int) -> pathlib.Path:
    """EXPORT_BASE/MODEL/VERSION; RolloutError naming the versions there when it does not exist."""
    base = pathlib.Path(export_base) / model
    versions = layout.version_dirs(base)
    if version not in versions:
        listed = ", ".join(map(str, versions)) or "none"
        raise RolloutError(f"no version {version} of model {model} under {base} (versions: {listed}); give "
                           "--export-base the directory `tf-mlp export` wrote")
    return versions[version]


def paths(directory) -> tuple[pathlib.Path, pathlib.Path]:
    return (layout.assets_extra_path(directory, contract.GATE_REPORT_FILE),
            layout.assets_extra_path(directory, contract.GATE_REPORT_PAGE))


def write(directory, report: dict) -> pathlib.Path:
    """Write the JSON and the page; the page's path."""
    json_path, page_path = paths(directory)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(json_path, (json.dumps(report, indent=2) + "\n").encode())
    write_atomically(page_path, markdown(report).encode())
    return page_path


def read(directory) -> dict | None:
    """The version's gate report, or None if it has never been gated."""
    json_path, _ = paths(directory)
    if not json_path.is_file():
        return None
    try:
        return json.loads(json_path.read_text())
    except (ValueError, OSError) as error:
        raise RolloutError(f"{json_path}: not a readable gate report ({error}); run the gate again") from None


def summary(report: dict) -> str:
    """One line: the verdict, the two accuracies and the test's p-value."""
    accuracy = report["accuracy"]
    verdict = "passed" if report["passed"] else "refused"
    return (f"version {report['candidate']} against {report['baseline_label']} version {report['baseline']} on "
            f"{report['images']} images of {report['holdout']['inputs']}: {verdict} (accuracy "
            f"{accuracy['candidate']:.4f} against {accuracy['baseline']:.4f}, p = {accuracy['p_value']:.2g}; "
            f"{report['evaluated_at']})")


def markdown(report: dict) -> str:
    criteria, accuracy = report["criteria"], report["accuracy"]
    verdict = "**passed**" if report["passed"] else "**refused**"
    lines = [
        f"# Gate: {report['model']} version {report['candidate']} against {report['baseline_label']} "
        f"(version {report['baseline']})",
        "",
        f"Verdict: {verdict}.",
        "",
    ]
    lines += [f"- {reason}" for reason in report["reasons"]] or [
        "No metric is lower than the baseline's by more than its margin with significance."]
    lines += [
        "",
        f"Holdout: {report['holdout']['inputs']}, {report['images']} labelled images, through "
        f"{report['server']} (REST, each version by number) on {report['evaluated_at']}; the versions answer "
        f"{report['changed_answers']} of them differently.",
        "",
        f"Rule: refused when a metric is lower than the baseline's by more than its margin (accuracy "
        f"{100 * criteria['accuracy_margin']:.2f} points, each class's recall {100 * criteria['recall_margin']:.2f} "
        f"points) and the drop is significant at {criteria['alpha']:g} by {criteria['test']}.",
        "",
        "| metric | images | baseline | candidate | change (points) | only baseline right | only candidate right "
        "| p | adjusted p | refused |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
        _row("accuracy", accuracy),
    ]
    lines += [_row(f"recall {test['class_id']} {test['class_name']}", test) for test in report["classes"]]
    return "\n".join(lines) + "\n"


def _row(name: str, test: dict) -> str:
    return (f"| {name} | {test['images']} | {test['baseline']:.4f} | {test['candidate']:.4f} | "
            f"{-100 * test['drop'] + 0.0:+.2f} | {test['baseline_only_right']} | {test['candidate_only_right']} | "
            f"{test['p_value']:.2g} | {test['adjusted_p_value']:.2g} | {'yes' if test['refused'] else 'no'} |")
