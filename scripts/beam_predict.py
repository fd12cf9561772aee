#!/usr/bin/env python
"""Batch inference on Apache Beam: the batch script's inputs and output file, on any Beam runner.

    pip install -e '.[beam]'
    python scripts/beam_predict.py tfds:fashion_mnist/test -o predictions.csv --model-path models \\
        --direct_num_workers=2 --direct_running_mode=multi_processing
    python scripts/beam_predict.py t10k-images-idx3-ubyte.gz -o gs://BUCKET/out.csv \\
        --model-path gs://BUCKET/models/tf_mlp/3 --runner=DataflowRunner --project=P --region=R \\
        --temp_location=gs://BUCKET/tmp --extra_package=dist/tf_mlp-0.1.0-py3-none-any.whl

Every option this script does not know is a Beam pipeline option
(--runner, --direct_num_workers, --flink_master, --spark_master_url, ...);
write them as --name=value. The work is done by tf_mlp.beam.
"""

from __future__ import annotations

import os

# Quiet TensorFlow's C++ start-up lines here and in the worker processes, which inherit the environment.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import click  # noqa: E402

from tf_mlp import batch, contract  # noqa: E402
from tf_mlp.errors import TfMlpError  # noqa: E402

EXIT_FAILED_INPUTS = 3
"""As the batch script: the job finished but some inputs have error rows (1 is a failed run, 2 a usage error)."""
QUIET_WORKERS = "--default_sdk_harness_log_level=WARNING"
"""Beam's workers log every channel they open at INFO; a user who wants that passes the option with INFO."""


@click.command(context_settings={"help_option_names": ["-h", "--help"], "ignore_unknown_options": True,
                                 "allow_extra_args": True})
@click.argument("input_spec", metavar="INPUT")
@click.option("--output", "-o", required=True,
              help="Output file, one row per input: .csv or .jsonl (or give --format); a local path or a URL "
                   "(gs://...) the workers can write.")
@click.option("--format", "output_format", type=click.Choice(batch.FORMATS), help="Output format.")
@click.option("--labels", type=click.Path(exists=True, dir_okay=False),
              help="True labels for IDX or .npy images (IDX: found beside the images when named *labels-idx1*).")
@click.option("--source-dir", help="tfds: inputs: the data set's raw files (default: its usual place).")
@click.option("--data-dir", help="tfds: inputs: TFDS data directory for prepared data sets.")
@click.option("--model-path", required=True,
              help="The exported model as local: takes it (a version directory, a model base such as "
                   "models/tf_mlp, or an export base such as models), at a path every worker can read; or the "
                   "URL of a version directory (gs://BUCKET/models/tf_mlp/3), copied to each worker.")
@click.option("--model", "model_name", default=contract.MODEL_NAME, show_default=True,
              help="Model name under an export base.")
@click.option("--version", type=click.IntRange(min=0), help="Model version (default: the latest, pinned at launch).")
@click.option("--chunk-size", type=click.IntRange(min=1), default=batch.DEFAULT_CHUNK_SIZE, show_default=True,
              help="Inputs per model call, as the batch script's --chunk-size (the same value gives the same file).")
@click.pass_context
def main(context, input_spec, output, output_format, labels, source_dir, data_dir, model_path, model_name, version,
         chunk_size):
    """Classify every image of INPUT with a Beam pipeline and write one row per input to --output.

    INPUT is what batch_predict.py takes: an IDX file, a .npy or .npz array,
    a directory of PNG/JPEG files, or tfds:NAME/SPLIT. The file written is
    the one `batch_predict.py INPUT --target local:MODEL_PATH` writes.
    Other options (--name=value) go to Beam: the runner and its settings.

    Exit status: 0 when every input was classified, 3 when the job finished
    but some inputs have error rows, 1 when it could not run.
    """
    from tf_mlp import beam as tf_mlp_beam

    pipeline_args = list(context.args)
    if not any(argument.startswith("--default_sdk_harness_log_level") for argument in pipeline_args):
        pipeline_args.append(QUIET_WORKERS)
    try:
        summary = tf_mlp_beam.run(input_spec, output, model_path, pipeline_args, output_format=output_format,
                                  labels=labels, source_dir=source_dir, data_dir=data_dir, model_name=model_name,
                                  version=version, chunk_size=chunk_size)
    except TfMlpError as error:
        raise click.ClickException(str(error)) from None
    click.echo(summary.format())
    if summary.failures:
        raise SystemExit(EXIT_FAILED_INPUTS)


if __name__ == "__main__":
    main()
