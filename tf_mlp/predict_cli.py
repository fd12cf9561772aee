"""The prediction commands of `tf-mlp`: predict, batch-predict, beam-predict, exports, write-images.

    tf-mlp predict shirt.png --target runs/mlp               # a run directory, an export, or a server
    tf-mlp predict shirt.png --target rest://127.0.0.1:8501
    tf-mlp batch-predict photos/ -o photos.csv --target grpc://127.0.0.1:8500
    tf-mlp beam-predict tfds:fashion_mnist/test -o out.csv --model-path models --direct_num_workers=2
    tf-mlp exports models/                                   # versions, signatures, model cards; no server

Thin click commands over tf_mlp.client, tf_mlp.batch and tf_mlp.beam. Each
also works on its own (scripts/classify.py, batch_predict.py and
beam_predict.py are these commands), so each turns the library's one-line
errors into `Error: ...` itself.
"""

from __future__ import annotations

import json
import os

import click

from tf_mlp import contract, startup
from tf_mlp.client import options
from tf_mlp.client.polarity import POLARITIES
from tf_mlp.errors import TfMlpError

# Quiet TensorFlow's C++ start-up lines (gRPC, local:, run: and tfds: import TensorFlow); an explicit setting wins.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

EXIT_FAILED_INPUTS = 3
"""Exit status when the run finished but some inputs have error rows (1 is a failed run, 2 a usage error)."""
QUIET_WORKERS = "--default_sdk_harness_log_level=WARNING"
"""Beam's workers log every channel they open at INFO; a user who wants that passes the option with INFO."""
_CONTEXT = {"help_option_names": ["-h", "--help"]}


def polarity_option(default_text: str):
    return click.option(
        "--polarity", type=click.Choice(POLARITIES), default=None,
        help="Light-on-dark images are what the model knows: 'invert' sends 255 - x, 'as-is' sends the image "
             "unchanged, 'auto' inverts an image whose outermost ring of pixels is light (mean above 127). "
             f"Default: {default_text}.")


def _one_line_errors(function):
    """Run `function`, turning the library's errors into click's one-line `Error: ...` (exit 1)."""
    try:
        return function()
    except TfMlpError as error:
        raise click.ClickException(str(error)) from None


# ---- predict -------------------------------------------------------------------------------------------------


@click.command(name="predict", cls=startup.TensorFlowCommand, context_settings=_CONTEXT)
@click.argument("images", nargs=-1, metavar="[IMAGE]...")
# An online user waits: give up within seconds (about 0.4 s of back-off when nothing listens).
@options.connection_options(max_attempts=4, retry_seconds=10)
@click.option("--top-k", "-k", type=click.IntRange(min=1), default=3, show_default=True,
              help="Classes to show per image, most probable first.")
@polarity_option("as-is (an image with a light border gets a note on stderr)")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option("--status", "show_status", is_flag=True, help="Show the model's versions and their states.")
@click.option("--metadata", "show_metadata", is_flag=True, help="Show the served version's signatures.")
def predict(images, top_k, polarity, as_json, show_status, show_metadata, **connection):
    """Classify IMAGE files (PNG or JPEG; '-' reads one from stdin) and print the top-k classes.

    --target names the model: a training run directory (runs/mlp), an export
    (models, models/tf_mlp or models/tf_mlp/3), or a server (rest://HOST:8501,
    grpc://HOST:8500). With --json, prints one object: "results" (per image:
    its top classes or its error), and "status" and "metadata" when asked
    for. Exits 1 if an image could not be classified (the others are still
    shown) or the model could not be asked.
    """
    from tf_mlp.client import online
    from tf_mlp.client.polarity import DEFAULT_FOR_ENCODED

    if not images and not show_status and not show_metadata:
        raise click.UsageError("give at least one IMAGE, --status or --metadata")

    def run():
        report, failed = {}, False
        with options.connect_from_options(**connection) as model:
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
                results = online.classify_files(model, images, top_k, polarity=polarity or DEFAULT_FOR_ENCODED)
                failed = any(result.error is not None for result in results)
                for result in results:
                    if result.light_border:
                        click.echo(online.light_border_note(result), err=True)
                report["results"] = online.results_json(results)
                if not as_json:
                    click.echo(online.format_results(results))
        return report, failed

    report, failed = _one_line_errors(run)
    if as_json:
        click.echo(json.dumps(report, indent=2))
    if failed:
        raise SystemExit(1)


# ---- batch-predict -------------------------------------------------------------------------------------------


def _input_options(function):
    """INPUT and the options that say how to read it, shared by batch-predict and beam-predict."""
    from tf_mlp import batch

    decorators = [
        click.argument("input_spec", metavar="INPUT"),
        click.option("--output", "-o", required=True,
                     help="Output file, one row per input: .csv or .jsonl (or give --format)."),
        click.option("--format", "output_format", type=click.Choice(batch.FORMATS), help="Output format."),
        click.option("--labels", type=click.Path(exists=True, dir_okay=False),
                     help="True labels for IDX or .npy images (IDX: found beside the images when named "
                          "*labels-idx1*)."),
        click.option("--source-dir", help="tfds: inputs: the data set's raw files (default: its usual place)."),
        click.option("--data-dir", help="tfds: inputs: TFDS data directory for prepared data sets."),
        polarity_option("as-is"),
    ]
    for decorator in reversed(decorators):
        function = decorator(function)
    return function


_INPUT_HELP = (
    "INPUT is an IDX file (labels from the sibling *labels-idx1* file or --labels), a .npy or .npz array of "
    "uint8 [N, 28, 28] pixels, a directory of PNG/JPEG files, or tfds:NAME/SPLIT for the project's data sets "
    "(e.g. tfds:fashion_mnist/test). In a directory, the first subfolder of each file names its true class: "
    "folder and class names match ignoring case, with every run of other characters ('/', ' ', '-', '_') as "
    "one '_', so T-shirt_top/ holds T-shirt/top. Files in folders that match no class are counted and "
    "reported, and left out of accuracy."
)


@click.command(name="batch-predict", cls=startup.TensorFlowCommand, context_settings=_CONTEXT)
@_input_options
# A batch job rides out a server restart (a minute of retries); at start it checks the server with at most
# batch.STARTUP_ATTEMPTS attempts, so a server that is not there at all is reported within a second.
@options.connection_options(max_attempts=20, retry_seconds=60)
@click.option("--chunk-size", type=click.IntRange(min=1), default=256, show_default=True, help="Inputs per request.")
@click.option("--concurrency", type=click.IntRange(min=1), default=2, show_default=True,
              help="Requests in flight at once.")
@click.option("--resume", is_flag=True, help="Continue an interrupted run from OUTPUT.journal, redoing nothing.")
@click.option("--restart", is_flag=True, help="Discard an interrupted run's OUTPUT.journal and start over.")
@click.option("--keep-going", is_flag=True,
              help="When the server stays unreachable after retries, write error rows and go on (default: stop, "
                   "keeping finished chunks for --resume).")
@click.option("--summary", "summary_path", type=click.Path(dir_okay=False), help="Also write the summary as JSON.")
@click.option("--progress/--no-progress", default=True, show_default=True, help="Progress bar on stderr.")
def batch_predict(input_spec, output, output_format, labels, source_dir, data_dir, polarity, chunk_size,
                  concurrency, resume, restart, keep_going, summary_path, progress, **connection):
    """Classify every image of INPUT and write one row per input to --output.

    {input_help}

    --target names the model as for `tf-mlp predict` (a server, an export or
    a run directory). Exit status: 0 when every input was classified, 3 when
    the run finished but some inputs have error rows, 1 when the run could not
    finish (its finished chunks are kept for --resume).
    """
    from tf_mlp import batch, files
    from tf_mlp.batch import writers

    if resume and restart:
        raise click.UsageError("--resume and --restart are alternatives; give one")

    def run():
        # Everything that can be checked without the model is checked first: no model load, no connection, no
        # file made for an output that cannot be written.
        writers.format_for(output, output_format)
        batch.check_output_location(output)
        if summary_path:
            batch.check_output_location(summary_path)
        inputs = batch.open_inputs(input_spec, labels=labels, source_dir=source_dir, data_dir=data_dir)
        inputs.set_polarity(polarity)
        with options.connect_from_options(**connection, max_connections=concurrency) as model:
            summary = batch.run_batch(model, inputs, output, output_format=output_format, chunk_size=chunk_size,
                                      concurrency=concurrency, resume=resume, restart=restart,
                                      keep_going=keep_going, progress=progress)
        if summary_path:
            files.write_atomically(summary_path, json.dumps(summary.to_dict(), indent=2).encode() + b"\n")
        return summary

    summary = _one_line_errors(run)
    warning = batch.unmatched_warning(summary)
    if warning:
        click.echo(warning, err=True)
    click.echo(batch.format_summary(summary))
    if summary.failures:
        raise SystemExit(EXIT_FAILED_INPUTS)


batch_predict.help = batch_predict.help.replace("{input_help}", _INPUT_HELP)


# ---- beam-predict --------------------------------------------------------------------------------------------


@click.command(name="beam-predict", cls=startup.TensorFlowCommand,
               context_settings={**_CONTEXT, "ignore_unknown_options": True, "allow_extra_args": True})
@_input_options
@click.option("--model-path", required=True,
              help="The exported model as local: takes it (a version directory, a model base such as "
                   "models/tf_mlp, or an export base such as models), at a path every worker can read; or the "
                   "URL of a version directory (gs://BUCKET/models/tf_mlp/3), copied to each worker.")
@click.option("--model", "model_name", default=contract.MODEL_NAME, show_default=True,
              help="Model name under an export base.")
@click.option("--version", type=click.IntRange(min=0), help="Model version (default: the latest, pinned at launch).")
@click.option("--chunk-size", type=click.IntRange(min=1), default=256, show_default=True,
              help="Inputs per model call, as batch-predict's --chunk-size (the same value gives the same file).")
@click.pass_context
def beam_predict(context, input_spec, output, output_format, labels, source_dir, data_dir, polarity, model_path,
                 model_name, version, chunk_size):
    """Classify every image of INPUT with an Apache Beam pipeline and write one row per input to --output.

    {input_help}

    The file written is the one `tf-mlp batch-predict INPUT --target
    local:MODEL_PATH` writes. Other options (--name=value) go to Beam: the
    runner (default FnApiRunner, local) and its settings. The output may be a local path or a URL the
    workers can write (gs://...). Needs the beam extra (pip install
    'tf-mlp[beam]').

    Exit status: 0 when every input was classified, 3 when the job finished
    but some inputs have error rows, 1 when it could not run.
    """
    pipeline_args = list(context.args)
    if not any(argument.startswith("--default_sdk_harness_log_level") for argument in pipeline_args):
        pipeline_args.append(QUIET_WORKERS)

    def run():
        from tf_mlp.batch import writers

        # Checked before Beam is even imported: a job must never run only to fail at its last step.
        writers.format_for(output, output_format)
        if "://" not in output:
            writers.check_output_location(output)
        try:
            from tf_mlp import beam as tf_mlp_beam
        except ImportError as error:
            raise TfMlpError(f"beam-predict needs Apache Beam ({error}); pip install 'tf-mlp[beam]'") from None
        return tf_mlp_beam.run(input_spec, output, model_path, pipeline_args, output_format=output_format,
                               labels=labels, source_dir=source_dir, data_dir=data_dir, model_name=model_name,
                               version=version, chunk_size=chunk_size, polarity=polarity)

    summary = _one_line_errors(run)
    click.echo(summary.format())
    if summary.failures:
        raise SystemExit(EXIT_FAILED_INPUTS)


beam_predict.help = beam_predict.help.replace("{input_help}", _INPUT_HELP)


# ---- exports, write-images -----------------------------------------------------------------------------------


@click.command(name="exports", cls=startup.TensorFlowCommand, context_settings=_CONTEXT)
@click.argument("path", type=click.Path())
@click.option("--model", "model_name", default=contract.MODEL_NAME, show_default=True,
              help="Model name under an export base.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
def exports(path, model_name, as_json):
    """List the exported versions under PATH with their signatures, classes and model cards; no server needed.

    PATH is an export base (models), a model base (models/tf_mlp) or one
    version (models/tf_mlp/3). Signatures are read from saved_model.pb, as
    `saved_model_cli show --all` reads them; the model is not loaded.
    """
    from tf_mlp.client import exports

    descriptions = _one_line_errors(lambda: exports.describe_exports(path, model_name))
    click.echo(json.dumps(descriptions, indent=2) if as_json else exports.format_exports(descriptions))


@click.command(name="write-images", cls=startup.TensorFlowCommand, context_settings=_CONTEXT)
@click.argument("input_spec", metavar="INPUT")
@click.argument("directory", type=click.Path(file_okay=False))
@click.option("--labels", type=click.Path(exists=True, dir_okay=False), help="True labels for IDX or .npy images.")
@click.option("--source-dir", help="tfds: inputs: the data set's raw files (default: its usual place).")
@click.option("--data-dir", help="tfds: inputs: TFDS data directory for prepared data sets.")
@click.option("--invert", is_flag=True, help="Write 255 - x: dark on light, like ink on paper.")
def write_images(input_spec, directory, labels, source_dir, data_dir, invert):
    """Write the images of INPUT (IDX, .npy, .npz or tfds:NAME/SPLIT) as PNG files in class folders of DIRECTORY.

    Folders are the class names with '/' written as '_', which batch-predict
    matches back to the classes: `tf-mlp write-images tfds:fashion_mnist/test
    png/` then `tf-mlp batch-predict png/ -o out.csv` scores the same images
    as files.
    """
    from tf_mlp import batch
    from tf_mlp.batch.image_files import write_image_folder

    def run():
        inputs = batch.open_inputs(input_spec, labels=labels, source_dir=source_dir, data_dir=data_dir)
        return write_image_folder(inputs, directory, invert=invert)

    count = _one_line_errors(run)
    click.echo(f"wrote {count} PNG files to {directory}")


def add_commands(group: click.Group) -> None:
    """Register these commands on the `tf-mlp` group."""
    for command in (predict, batch_predict, beam_predict, exports, write_images):
        group.add_command(command)
