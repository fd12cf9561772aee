#!/usr/bin/env python
"""Rehearse a rollout under load and print the failed requests and rows (tf_mlp.rollout.drill).

    python scripts/rollout_drill.py --export-base models --stable 1 --candidate 2

Starts its own `tf-mlp serve` on free ports with a private copy of
serving/models.config (STABLE pinned as stable and canary; serving/ and any
running server are left alone), then, while `tf-mlp batch-predict` sends
the load images to the stable label, gates CANDIDATE against it, puts it on
canary, promotes it and rolls it back. Prints, for the whole run and for
each step, the requests and rows answered, the error rows, the requests the
server answered with an error (its Prometheus request counter), and which
version each row came from. CANDIDATE must pass the gate, and answer
differently from STABLE (other weights), so that rows can be attributed.
Exit status 1 if any request failed or any row came from a version that did
not hold stable then.
"""

from __future__ import annotations

import json
import pathlib
import sys
import tempfile

import click
import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]


def _server_flags(config: pathlib.Path) -> list[str]:
    return [f"--model_config_file={config}", "--allow_version_labels_for_unavailable_models=true",
            "--model_config_file_poll_wait_seconds=60", "--file_system_poll_wait_seconds=1",
            f"--monitoring_config_file={REPO / 'serving' / 'monitoring.config'}"]


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--export-base", default="models", show_default=True, type=click.Path(file_okay=False),
              help="Where `tf-mlp export` wrote the versions (EXPORT_BASE/tf_mlp/N).")
@click.option("--stable", type=int, required=True, help="The version that starts as stable.")
@click.option("--candidate", type=int, required=True, help="The version to gate, canary, promote and roll back.")
@click.option("--holdout", default="tfds:fashion_mnist/test", show_default=True, help="The gate's labelled images.")
@click.option("--load", "load_input", default="tfds:fashion_mnist/test", show_default=True,
              help="The load's images (any batch-predict INPUT), sent --repeat times over.")
@click.option("--repeat", type=click.IntRange(min=1), default=20, show_default=True,
              help="Copies of the load's images: enough that the load outlasts the rollout (it is stopped then).")
@click.option("--chunk-size", type=click.IntRange(min=1), default=16, show_default=True, help="Images per request.")
@click.option("--concurrency", type=click.IntRange(min=1), default=2, show_default=True, help="Requests in flight.")
@click.option("--settle", type=click.IntRange(min=1), default=200, show_default=True,
              help="Requests the load answers after each step before the next one (and before it stops).")
@click.option("--recall-margin", type=click.FloatRange(0, 1, max_open=True), default=0.02, show_default=True,
              help="The gate's margin for each class's recall (as `tf-mlp rollout gate`).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def main(export_base, stable, candidate, holdout, load_input, repeat, chunk_size, concurrency, settle, recall_margin,
         as_json):
    """Gate, canary, promote and roll back CANDIDATE under load; print the failed requests and rows."""
    from tf_mlp import startup

    startup.import_tensorflow()  # first: TensorFlow's start-up lines kept off the screen
    from tf_mlp import batch, contract
    from tf_mlp.client.target import parse_target
    from tf_mlp.errors import TfMlpError
    from tf_mlp.rollout import config_file, drill, gate
    from tf_mlp.rollout.session import Setup
    from tf_mlp.server.process import ServerProcess

    export_base = pathlib.Path(export_base).resolve()
    with tempfile.TemporaryDirectory(prefix="tf-mlp-drill-") as work:
        work = pathlib.Path(work)
        shipped = config_file.read(REPO / "serving" / "models.config")
        config = shipped.with_rollout(contract.MODEL_NAME, {contract.STABLE_LABEL: stable,
                                                            contract.CANARY_LABEL: stable}, [stable])
        entry = next(entry for entry in config.model_config_list.config if entry.name == contract.MODEL_NAME)
        entry.base_path = str(export_base / contract.MODEL_NAME)
        path = work / "models.config"
        config_file.write(config_file.ConfigFile(path, shipped.config, shipped.header), config)
        try:
            images = batch.open_inputs(load_input).images
            if images is None:
                raise TfMlpError(f"--load {load_input}: give pixel arrays (IDX, .npy, .npz or tfds:), not image files")
            with ServerProcess(work / "server.log", *_server_flags(path)) as server:
                setup = Setup(config=path, model=contract.MODEL_NAME, grpc=parse_target(server.client_target("grpc")),
                              rest=parse_target(server.client_target("rest")), export_base=export_base)
                result = drill.drill(setup, candidate, holdout, np.concatenate([images] * repeat), work,
                                     chunk_size=chunk_size, concurrency=concurrency, settle=settle,
                                     criteria=gate.Criteria(recall_margin=recall_margin),
                                     echo=lambda line: click.echo(line, err=True))
        except TfMlpError as error:
            raise click.ClickException(str(error)) from None
    result.pop("load_log")
    click.echo(json.dumps(result, indent=2) if as_json else format_result(result))
    if result["failed_requests"] or result["error_rows"] or result["requests_from_a_version_not_stable_then"]:
        sys.exit(1)


def format_result(result: dict) -> str:
    wrong = result["requests_from_a_version_not_stable_then"]
    lines = [f"stable {result['stable']}, candidate {result['candidate']}: {result['requests']} requests, "
             f"{result['rows']} rows; failed requests {result['failed_requests']}, error rows {result['error_rows']}, "
             f"requests answered by a version that did not hold stable then {wrong}",
             "rows by version: " + ", ".join(f"{version} {count}" for version, count in
                                             result["rows_by_version"].items() if count),
             "", "step (to the next)  requests  rows    failed requests  error rows  versions answering, in order"]
    for name, step in result["steps"].items():
        lines.append(f"{name:<19} {step['requests']:<9} {step['rows']:<7} {step['failed_requests']!s:<16} "
                     f"{step['error_rows']:<11} {' then '.join(step['versions'])}")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
