#!/usr/bin/env python
"""Online client: classify a few PNG/JPEG images with the served model, or show its status and metadata.

    python scripts/classify.py shoe.png shirt.jpg                      # REST on 127.0.0.1:8501, top 3
    python scripts/classify.py --server grpc://127.0.0.1:8500 -k 5 shoe.png
    cat shoe.png | python scripts/classify.py --json -
    python scripts/classify.py --status --metadata --label stable

The work is done by tf_mlp.client.online; this file parses options and prints.
"""

from __future__ import annotations

import json
import os

# Quiet TensorFlow's C++ start-up lines (gRPC and local: import TensorFlow); must precede that import.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import click  # noqa: E402

from tf_mlp.client import online, options  # noqa: E402
from tf_mlp.errors import TfMlpError  # noqa: E402


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("images", nargs=-1, metavar="[IMAGE]...")
# An online user waits: give up within seconds (about 0.4 s of back-off when nothing listens).
@options.connection_options(max_attempts=4, retry_seconds=10)
@click.option("--top-k", "-k", type=click.IntRange(min=1), default=3, show_default=True,
              help="Classes to show per image, most probable first.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option("--status", "show_status", is_flag=True, help="Show the model's versions and their states.")
@click.option("--metadata", "show_metadata", is_flag=True, help="Show the served version's signatures.")
def main(images, top_k, as_json, show_status, show_metadata, **connection):
    """Classify IMAGE files (PNG or JPEG; '-' reads one from stdin) and print the top-k classes.

    With --json, prints one object: "results" (per image: its top classes or
    its error), and "status" and "metadata" when asked for. Exits 1 if an
    image could not be classified (the others are still shown) or the server
    could not be asked.
    """
    if not images and not show_status and not show_metadata:
        raise click.UsageError("give at least one IMAGE, --status or --metadata")
    failed = False
    try:
        with options.connect_from_options(**connection) as model:
            report = {}
            if show_status:
                status = model.status()
                report["status"] = status.raw
                if not as_json:
                    click.echo(online.format_status(status))
            if show_metadata:
                metadata = model.metadata()
                report["metadata"] = metadata.raw
                if not as_json:
                    click.echo(online.format_metadata(metadata))
            if images:
                results = online.classify_files(model, images, top_k)
                failed = any(result.error is not None for result in results)
                report["results"] = online.results_json(results)
                if not as_json:
                    click.echo(online.format_results(results))
    except TfMlpError as error:
        raise click.ClickException(str(error)) from None
    if as_json:
        click.echo(json.dumps(report, indent=2))
    if failed:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
