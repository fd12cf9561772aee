#!/usr/bin/env python
"""Batch inference: classify every input, write one row per input (CSV or JSONL), print a summary.

    python scripts/batch_predict.py tfds:fashion_mnist/test -o predictions.csv
    python scripts/batch_predict.py /usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz \\
        -o predictions.jsonl --server grpc://127.0.0.1:8500 --chunk-size 256 --concurrency 2
    python scripts/batch_predict.py photos/ -o photos.csv --resume          # continue an interrupted run
    python scripts/batch_predict.py x.npy --labels y.npy -o out.csv --target local:models

The work is done by tf_mlp.batch; this file parses options and prints.
"""

from __future__ import annotations

import json
import os

# Quiet TensorFlow's C++ start-up lines (gRPC, local: and tfds: import TensorFlow); must precede that import.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import click  # noqa: E402

from tf_mlp import batch  # noqa: E402
from tf_mlp.batch import writers  # noqa: E402
from tf_mlp.client import options  # noqa: E402
from tf_mlp.errors import TfMlpError  # noqa: E402

EXIT_FAILED_INPUTS = 3
"""Exit status when the run finished but some inputs have error rows (1 is a failed run, 2 a usage error)."""


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("input_spec", metavar="INPUT")
@click.option("--output", "-o", required=True, type=click.Path(dir_okay=False),
              help="Output file, one row per input: .csv or .jsonl (or give --format).")
@click.option("--format", "output_format", type=click.Choice(batch.FORMATS), help="Output format.")
@click.option("--labels", type=click.Path(exists=True, dir_okay=False),
              help="True labels for IDX or .npy images (IDX: found beside the images when named *labels-idx1*).")
@click.option("--source-dir", help="tfds: inputs: the data set's raw files (default: its usual place).")
@click.option("--data-dir", help="tfds: inputs: TFDS data directory for prepared data sets.")
# A batch job rides out a server restart (a minute of retries); at start it checks the server with at most
# batch.STARTUP_ATTEMPTS attempts, so a server that is not there at all is reported within a second.
@options.connection_options(max_attempts=20, retry_seconds=60)
@click.option("--chunk-size", type=click.IntRange(min=1), default=batch.DEFAULT_CHUNK_SIZE, show_default=True,
              help="Inputs per request.")
@click.option("--concurrency", type=click.IntRange(min=1), default=batch.DEFAULT_CONCURRENCY, show_default=True,
              help="Requests in flight at once.")
@click.option("--resume", is_flag=True, help="Continue an interrupted run from OUTPUT.journal, redoing nothing.")
@click.option("--restart", is_flag=True, help="Discard an interrupted run's OUTPUT.journal and start over.")
@click.option("--keep-going", is_flag=True,
              help="When the server stays unreachable after retries, write error rows and go on (default: stop, "
                   "keeping finished chunks for --resume).")
@click.option("--summary", "summary_path", type=click.Path(dir_okay=False), help="Also write the summary as JSON.")
@click.option("--progress/--no-progress", default=True, show_default=True, help="Progress bar on stderr.")
def main(input_spec, output, output_format, labels, source_dir, data_dir, chunk_size, concurrency, resume, restart,
         keep_going, summary_path, progress, **connection):
    """Classify every image of INPUT and write one row per input to --output.

    INPUT is an IDX file (labels from the sibling *labels-idx1* file or
    --labels), a .npy or .npz array of uint8 [N, 28, 28] pixels, a directory
    of PNG/JPEG files (subfolder names are the true classes), or
    tfds:NAME/SPLIT for the project's data sets (e.g. tfds:fashion_mnist/test).

    Exit status: 0 when every input was classified, 3 when the run finished
    but some inputs have error rows, 1 when the run could not finish (its
    finished chunks are kept for --resume).
    """
    if resume and restart:
        raise click.UsageError("--resume and --restart are alternatives; give one")
    try:
        inputs = batch.open_inputs(input_spec, labels=labels, source_dir=source_dir, data_dir=data_dir)
        with options.connect_from_options(**connection, max_connections=concurrency) as model:
            summary = batch.run_batch(model, inputs, output, output_format=output_format, chunk_size=chunk_size,
                                      concurrency=concurrency, resume=resume, restart=restart,
                                      keep_going=keep_going, progress=progress)
        if summary_path:
            writers.write_atomically(summary_path, json.dumps(summary.to_dict(), indent=2).encode() + b"\n")
    except TfMlpError as error:
        raise click.ClickException(str(error)) from None
    click.echo(batch.format_summary(summary))
    if summary.failures:
        raise SystemExit(EXIT_FAILED_INPUTS)


if __name__ == "__main__":
    main()
