"""`tf-mlp rollout`: gate, canary, promote, rollback and status, thin over tf_mlp.rollout.steps.

Only click and constants at import time: the steps import gRPC and TensorFlow Serving's protos.
"""

from __future__ import annotations

import json
import pathlib

import click

from tf_mlp import contract, startup

EXIT_REFUSED = 3
"""Exit status of a gate that judged the candidate and refused it (1: it could not judge; 0: passed)."""


class _Group(click.Group):
    command_class = startup.TensorFlowCommand


def _setup_options(function):
    options = [
        click.option("--config", "config_path", default="serving/models.config", show_default=True,
                     type=click.Path(dir_okay=False),
                     help="The model server's --model_config_file; rewritten in step with every change."),
        click.option("--model", default=contract.MODEL_NAME, show_default=True, help="Model name in the config."),
        click.option("--grpc", "grpc_target", default=f"grpc://{contract.DEFAULT_HOST}:{contract.DEFAULT_GRPC_PORT}",
                     show_default=True, help="The server's gRPC API: ModelService (status, reloads) and labels."),
        click.option("--rest", "rest_target", default=f"rest://{contract.DEFAULT_HOST}:{contract.DEFAULT_REST_PORT}",
                     show_default=True, help="The server's REST API: the gate's evaluation requests."),
        click.option("--export-base", default="models", show_default=True, type=click.Path(file_okay=False),
                     help="Where `tf-mlp export` writes (EXPORT_BASE/MODEL/VERSION); gate reports go beside each "
                          "version."),
        click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=600.0, show_default=True,
                     help="Seconds a version may take to load (TensorFlow Serving retries a failing load 5 times, "
                          "a minute apart, by default)."),
    ]
    for option in reversed(options):
        function = option(function)
    return function


def _setup(config_path, model, grpc_target, rest_target, export_base, timeout):
    from tf_mlp.client.target import parse_target
    from tf_mlp.errors import ConfigError
    from tf_mlp.rollout.session import Setup

    grpc, rest = parse_target(grpc_target, "grpc"), parse_target(rest_target, "rest")
    if grpc.protocol != "grpc" or rest.protocol != "rest":
        raise ConfigError("--grpc takes grpc://HOST:PORT and --rest rest://HOST:PORT")
    return Setup(config=pathlib.Path(config_path), model=model, grpc=grpc, rest=rest,
                 export_base=pathlib.Path(export_base), timeout=timeout)


@click.group(name="rollout", cls=_Group)
def rollout_group():
    """Move a model's version labels on a running server: gate, canary, promote, rollback.

    The server (tensorflow_model_server or tf-mlp serve, started with --model_config_file) serves pinned
    versions with labels: `stable`, what clients get by default; `canary`, the version on trial (the stable one
    when none is); `previous`, where a rollback returns. Every change goes through TensorFlow Serving's gRPC
    ModelService (HandleReloadConfigRequest) and is then written to the config file, so the two stay in step.

    \b
      tf-mlp rollout gate 4        # version 4 against stable on a labelled holdout; report beside the export
      tf-mlp rollout canary 4      # load version 4, label it canary
      tf-mlp rollout promote       # stable -> the canary's version (its gate must have passed)
      tf-mlp rollout rollback      # stable -> previous
      tf-mlp rollout status
    """


@rollout_group.command()
@click.argument("version", type=click.IntRange(min=0))
@_setup_options
@click.option("--holdout", help="Labelled images to compare on, any batch-predict INPUT (default: the test split of "
                                "the data set the candidate's model card names).")
@click.option("--source-dir", help="tfds: holdouts: the data set's raw files (default: as the candidate was trained).")
@click.option("--data-dir", help="tfds: holdouts: TFDS data directory.")
@click.option("--accuracy-margin", type=click.FloatRange(0, 1, max_open=True), default=0.005, show_default=True,
              help="Refuse a candidate whose accuracy is lower by more than this (if significant).")
@click.option("--recall-margin", type=click.FloatRange(0, 1, max_open=True), default=0.02, show_default=True,
              help="Refuse a candidate whose recall of any class is lower by more than this (if significant).")
@click.option("--alpha", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.05, show_default=True,
              help="Significance level: McNemar's exact test on the same images, Holm-corrected over the metrics.")
@click.option("--progress/--no-progress", default=True, show_default=True, help="Progress bars on stderr.")
def gate(version, holdout, source_dir, data_dir, accuracy_margin, recall_margin, alpha, progress, **setup):
    """Evaluate VERSION and the stable version through the server on the same labelled holdout.

    VERSION is loaded beside stable (stable is untouched), both classify the
    holdout as `tf-mlp batch-predict` would, and the report (gate_report.json
    and .md) is written in VERSION's assets.extra/. Refused when accuracy or a
    class's recall is lower by more than its margin and the drop is
    significant. Exit status: 0 passed, 3 refused (the candidate is unloaded
    again), 1 could not judge.
    """
    from tf_mlp.rollout import gate as gating
    from tf_mlp.rollout import steps

    criteria = gating.Criteria(accuracy_margin, recall_margin, alpha)
    report = steps.gate(_setup(**setup), version, holdout, source_dir, data_dir, criteria, progress, click.echo)
    if not report["passed"]:
        raise SystemExit(EXIT_REFUSED)


@rollout_group.command()
@click.argument("version", type=click.IntRange(min=0))
@_setup_options
def canary(version, **setup):
    """Load VERSION beside stable and label it canary, once it is AVAILABLE.

    Clients that ask for the canary label (`--label canary`, or
    /v1/models/MODEL/labels/canary:predict) get it; stable is untouched. A
    version that fails to load is unpinned again and nothing else changes.
    Giving the stable version ends a trial: canary follows stable again.
    """
    from tf_mlp.rollout import steps

    steps.canary(_setup(**setup), version, click.echo)


@rollout_group.command()
@click.argument("version", type=click.IntRange(min=0), required=False)
@_setup_options
def promote(version, **setup):
    """Move stable to VERSION (default: the canary's), if its gate passed against the current stable.

    VERSION must be AVAILABLE before the label moves (TensorFlow Serving
    refuses otherwise); the old stable stays loaded as `previous`.
    """
    from tf_mlp.rollout import steps

    steps.promote(_setup(**setup), version, click.echo)


@rollout_group.command()
@_setup_options
def rollback(**setup):
    """Move stable back to the previous version in one change (it is still loaded, so no request fails)."""
    from tf_mlp.rollout import steps

    steps.rollback(_setup(**setup), click.echo)


@rollout_group.command()
@_setup_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def status(as_json, **setup):
    """Which version holds each label, every version's state, the pinned versions and the last gate report."""
    from tf_mlp.rollout import steps

    result = steps.status(_setup(**setup))
    click.echo(json.dumps(result, indent=2) if as_json else steps.format_status(result))
