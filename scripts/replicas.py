#!/usr/bin/env python
"""The replica drill: `tf-mlp serve` replicas behind HAProxy, disturbed under steady batch load; prints the figures.

    python scripts/replicas.py                                   # the latest export in models/, Fashion-MNIST test
    python scripts/replicas.py --model models/tf_mlp/3 --images x.npy --json runs/replicas/report.json

As many replicas as deploy/haproxy/haproxy.cfg lists serve a copy of the
model (in --work-dir; your export is never touched) behind HAProxy with that
file. Phase by phase, under batch runs through the load balancer: no
disturbance, a new version published, a replica SIGKILLed and restarted, a
replica SIGTERMed (tf_mlp/benchmark/replicas.py says what is counted).
Exit status 0 when no row was lost or wrong and no request failed, 1
otherwise. Needs Debian's HAProxy (make haproxy).
"""

from __future__ import annotations

import dataclasses
import json
import pathlib

import click

from tf_mlp import contract, startup


@click.command(cls=startup.TensorFlowCommand, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--model", "model_path", default="models", show_default=True,
              help="The model as local: takes it: an export base, a model base or one version directory.")
@click.option("--images", default="tfds:fashion_mnist/test", show_default=True,
              help="Pixel images to classify, as batch-predict takes them (IDX, .npy, .npz, tfds:NAME/SPLIT).")
@click.option("--work-dir", type=click.Path(file_okay=False), default="runs/replicas", show_default=True,
              help="Where the model copy, the logs of the replicas and HAProxy, and the runs' files go.")
@click.option("--chunk-size", type=click.IntRange(min=1), help="Inputs per request (default: batch-predict's).")
@click.option("--concurrency", type=click.IntRange(min=1), help="Requests in flight (default: batch-predict's).")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Also write every figure as JSON.")
def main(model_path, images, work_dir, chunk_size, concurrency, json_path):
    """Run the drill and print, per phase: rows, lost and wrong rows, requests, failed requests, HAProxy's retries."""
    from tf_mlp import batch
    from tf_mlp.benchmark import replicas
    from tf_mlp.client import local
    from tf_mlp.client.base import PIXELS
    from tf_mlp.errors import TfMlpError

    try:
        version_dir, _ = local.resolve_version_dir(model_path, contract.MODEL_NAME, None)
        inputs = batch.open_inputs(images)
        if inputs.kind != PIXELS:
            raise TfMlpError(f"{images}: the drill needs pixel images (IDX, .npy, .npz, tfds:), not image files")
        report = replicas.run_drill(pathlib.Path(version_dir), inputs.images, pathlib.Path(work_dir),
                                    chunk_size=chunk_size, concurrency=concurrency, log=click.echo)
    except TfMlpError as error:
        raise click.ClickException(str(error)) from None
    click.echo(report.format())
    if json_path:
        pathlib.Path(json_path).write_text(json.dumps(dataclasses.asdict(report), indent=2) + "\n")
    if any(phase.lost_rows or phase.wrong_rows or phase.failed_requests for phase in report.phases):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
