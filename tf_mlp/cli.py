"""The `tf-mlp` command: thin click commands over the library's functions.

Commands parse options, build a Config and call one function; TensorFlow is
imported inside the commands so that `tf-mlp --help` answers at once, and
quietly (tf_mlp/startup.py) unless `tf-mlp --verbose` or TF_MLP_VERBOSE=1.
A user's mistake (TfMlpError) or an operating-system refusal (a directory
that cannot be written) is printed as one line, `Error: ...`, with exit code
1; click's own usage errors exit with 2; Ctrl-C exits with 130.
"""

from __future__ import annotations

import json
import pathlib
import shlex
import signal
import sys
import threading

import click

from tf_mlp import config, startup
from tf_mlp.data.catalog import DATA_SETS
from tf_mlp.errors import ConfigError, TfMlpError
from tf_mlp.rollout.cli import rollout_group
from tf_mlp.ui.command import ui_command

# The exit status of a process stopped by SIGINT, as shells report it.
EXIT_INTERRUPTED = 130


class _PlainCommand(startup.TensorFlowCommand):
    imports_tensorflow = False


class _Interrupted(KeyboardInterrupt):
    """Ctrl-C, as the commands raise it: a KeyboardInterrupt, but not that exact class.

    CPython (Modules/main.c, Python/pythonrun.c run_eval_code_obj) ends the process by SIGINT, whatever
    exit status it was given, once a KeyboardInterrupt of exactly that class has left any code run from a
    string (the built-ins exec and eval given source text, as dataclasses and namedtuple use them while a
    module imports), even when the exception is caught further up. Ctrl-C during such an import
    (TensorBoard's, at a run's first summary) would then end the process by signal instead of with 130.
    """


def _raise_interrupted(signum, frame):
    raise _Interrupted


class _Group(click.Group):
    command_class = startup.TensorFlowCommand

    def invoke(self, ctx):
        # Only where Python's own handler is in place: not in a background job that ignores SIGINT, nor off
        # the main thread (where signal.signal cannot be called).
        own_handler = (threading.current_thread() is threading.main_thread()
                       and signal.getsignal(signal.SIGINT) is signal.default_int_handler)
        if own_handler:
            signal.signal(signal.SIGINT, _raise_interrupted)
        try:
            return super().invoke(ctx)
        except TfMlpError as error:
            raise click.ClickException(str(error)) from None
        except OSError as error:
            if error.filename is None:
                raise
            # Unwritable run, data or report directories, a full disk: the
            # path and the system's reason are the whole story.
            raise click.ClickException(f"{error.filename}: {error.strerror or error}") from None
        except (KeyboardInterrupt, RuntimeError) as error:
            # Python 3.11 wraps an exception raised while a class is created (in __set_name__, as a module
            # imports) in RuntimeError("Error calling __set_name__ ..."); Ctrl-C there is still Ctrl-C.
            if not isinstance(error, KeyboardInterrupt) and not isinstance(error.__cause__, KeyboardInterrupt):
                raise
            click.echo("", err=True)
            if ctx.invoked_subcommand == "train":
                # The same command resumes from the newest checkpoint.
                click.echo(f"Interrupted. Resume with: tf-mlp {shlex.join(sys.argv[1:])}", err=True)
            else:
                click.echo("Interrupted.", err=True)
            ctx.exit(EXIT_INTERRUPTED)
        finally:
            if own_handler:
                signal.signal(signal.SIGINT, signal.default_int_handler)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="tf-mlp")
@startup.verbose_option
def main(verbose):
    """Train the lesson's MLP on 28x28 images, export it, serve it like TensorFlow Serving."""


def config_options(function):
    """Options shared by the commands that resolve a Config (train, info, config): --preset, --config,
    then one option per field that tf_mlp/config/schema.py declares with option()."""
    options = [
        click.option("--preset", type=click.Choice(list(config.PRESETS)),
                     help=f"Start from this preset (default {config.DEFAULT_PRESET}); "
                          "options below override its fields."),
        click.option("--config", "config_file", type=click.Path(dir_okay=False),
                     help="Start from this config.json instead of a preset."),
    ]
    for spec in config.command_line_options():
        if spec.value_type is bool:
            options.append(click.option(spec.flag, spec.key, default=None, help=spec.help))
        else:
            value_type = click.Choice(spec.choices) if spec.choices else spec.value_type
            options.append(click.option(spec.flag, spec.key, type=value_type, help=spec.help))
    for option in reversed(options):
        function = option(function)
    return function


def resolve_config(preset, config_file, **options) -> config.Config:
    """Preset (or config file), then every given option on top of it."""
    if preset and config_file:
        raise TfMlpError("--preset and --config are alternatives; give one of them")
    base = config.Config.load(config_file) if config_file else config.preset(preset or config.DEFAULT_PRESET)
    return config.apply_options(base, options)


@main.command()
@config_options
@click.option("--run-dir", type=click.Path(file_okay=False),
              help="Run directory (default runs/<preset>). Reusing it resumes from its newest checkpoint.")
@click.option("--logical-cpus", type=int, default=0,
              help="Split the CPU into this many logical devices (to run --strategy mirrored without GPUs).")
def train(run_dir, logical_cpus, **options):
    """Train a model (custom GradientTape loop) and evaluate it on the test split.

    Options override the preset field by field; the resolved config is saved
    as RUN_DIR/config.json. Started again on the same run directory, training
    resumes from the newest checkpoint and finishes the planned steps.
    """
    run_config = resolve_config(**options)
    if logical_cpus:
        from tf_mlp.training.distribute import split_cpu

        split_cpu(logical_cpus)
    from tf_mlp.training import train_and_evaluate

    run_dir = run_dir or f"runs/{options['preset'] or ('custom' if options['config_file'] else config.DEFAULT_PRESET)}"
    summary = train_and_evaluate(run_config, run_dir)
    if summary is None:
        return  # a multi-worker task other than the chief, which reports the run
    click.echo(
        f"test accuracy: {summary['test_accuracy']:.4f} ({summary['split_sizes']['test']} test images, "
        f"{summary['parameters']} parameters, {summary['train_seconds']:.1f} s training, run directory {run_dir})"
    )


@main.command(name="evaluate")
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option("--split", type=click.Choice(["train", "validation", "test"]), default="test", show_default=True,
              help="Split to evaluate on.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def evaluate_command(run_dir, split, as_json):
    """Accuracy, per-class accuracy and confusion matrix of RUN_DIR's model on a split."""
    from tf_mlp.data import load_splits
    from tf_mlp.training import evaluate
    from tf_mlp.training.runs import restore_model

    run_config, model = restore_model(run_dir)
    splits = load_splits(run_config.data)
    result = evaluate.evaluate_model(model, splits.split(split), splits.class_names)
    click.echo(json.dumps(result, indent=2) if as_json else evaluate.format_report(result, split))


@main.command()
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option("--output-dir", type=click.Path(file_okay=False),
              help="Where to write the plots and report.md (default RUN_DIR/report).")
@click.option("--mistakes", type=int, default=24, show_default=True, help="Misclassified test images to show.")
def report(run_dir, output_dir, mistakes):
    """Plots (learning curves, confusion matrix, worst mistakes) and a markdown summary of RUN_DIR."""
    from tf_mlp.report import write_report

    click.echo(f"wrote {write_report(run_dir, output_dir, mistakes=mistakes)}")


@main.command(name="reproduce")
@click.option("--data", "data_sets", multiple=True, type=click.Choice(DATA_SETS),
              help="Data set to reproduce on (repeatable; default fashion_mnist and notmnist).")
@click.option("--source-dir", "source_dirs", multiple=True, metavar="DATA=DIR",
              help="Where a data set's source files are, e.g. notmnist=~/notMNIST or mnist=~/mnist-idx (repeatable; "
                   "default: each data set's own, as for train).")
@click.option("--output-dir", default="runs/reproduce", show_default=True, type=click.Path(file_okay=False),
              help="Where RESULTS.md and results/<data set>/ are written; `--output-dir docs` publishes (full runs "
                   "only).")
@click.option("--runs-root", default="runs/reproduce", show_default=True, type=click.Path(file_okay=False),
              help="Where the runs' checkpoints go; finished runs are reused.")
@click.option("--preset", "presets", multiple=True, type=click.Choice(list(config.PRESETS)),
              help="Preset to train (repeatable; default all).")
@click.option("--epochs", type=int, help="Override every preset's epochs (a quick look; never written to docs/).")
def reproduce_command(data_sets, source_dirs, output_dir, runs_root, presets, epochs):
    """Train the presets, run the overfitting and overlap experiments, write RESULTS.md.

    Writes under runs/reproduce by default; `--output-dir docs` replaces the
    shipped docs/RESULTS.md and docs/results/, which only a full run (every
    preset as shipped, both default data sets) may do.
    """
    from tf_mlp import reproduce

    given_flags = (("--epochs", epochs is not None), ("--preset", presets), ("--data", data_sets),
                   ("--source-dir", source_dirs))
    departures = [flag for flag, given in given_flags if given]
    if departures and reproduce.is_docs_dir(output_dir):
        raise ConfigError(
            f"{output_dir} holds the shipped results; a run with {', '.join(departures)} writes elsewhere "
            "(omit --output-dir for runs/reproduce)"
        )
    data_sets = data_sets or reproduce.DEFAULT_DATA_SETS
    sources = reproduce.parse_source_dirs(source_dirs, data_sets)
    all_results = []
    for name in data_sets:
        data_config = config.DataConfig(name=name, source_dir=sources.get(name))
        output = pathlib.Path(output_dir) / "results" / name
        all_results.append(reproduce.reproduce(data_config, output, runs_root=runs_root,
                                               presets=list(presets) or None, epochs=epochs))
        click.echo((output / "results.md").read_text())
    arguments = sys.argv[sys.argv.index("reproduce") + 1:] if "reproduce" in sys.argv else []
    command = "tf-mlp reproduce" + "".join(f" {shlex.quote(argument)}" for argument in arguments)
    reproduce.write_results_page(pathlib.Path(output_dir) / "RESULTS.md", all_results, command)
    click.echo(f"wrote {pathlib.Path(output_dir) / 'RESULTS.md'}")


@main.command(name="config", cls=_PlainCommand)
@config_options
def show_config(**options):
    """Print the resolved config (a preset or --config file, with the options applied) as JSON.

    The output is a valid config file: `tf-mlp config --preset deep --epochs 5 > deep5.json`
    then `tf-mlp train --config deep5.json`.
    """
    click.echo(resolve_config(**options).to_json())


@main.command()
@config_options
def info(**options):
    """Parameters, forward and backward FLOPs, and training memory, by layer and in total.

    FLOPs count the matrix products at 2 per multiply-add for one batch of
    --batch-size; memory is float32 at that batch size with --optimizer's
    slot variables.
    """
    from tf_mlp import model

    run_config = resolve_config(**options)
    batch_size, optimizer = run_config.train.batch_size, run_config.train.optimizer
    widths = "-".join(str(width) for width in model.layer_widths(run_config.model))
    click.echo(f"network {widths}, batch size {batch_size}, optimizer {optimizer}")
    click.echo("")
    click.echo(f"{'layer':<10} {'inputs':>7} {'outputs':>7} {'parameters':>11}  {'forward FLOPs':>14}  "
               f"{'weight grad.':>14}  {'input grad.':>14}  {'bwd/fwd':>7}  {'kept activ. (B)':>15}")
    layers = zip(model.parameters_by_layer(run_config.model), model.flops_by_layer(run_config.model),
                 model.activations_by_layer(run_config.model))
    for (name, fan_in, fan_out, count), flops, kept in layers:
        click.echo(f"{name:<10} {fan_in:>7} {fan_out:>7} {count:>11,}  {flops.forward * batch_size:>14,}  "
                   f"{flops.weight_gradient * batch_size:>14,}  {flops.input_gradient * batch_size:>14,}  "
                   f"{flops.backward / flops.forward:>7.2f}  {kept.total * batch_size:>15,}")
    flops = model.flops_by_layer(run_config.model)
    forward = sum(layer.forward for layer in flops) * batch_size
    weight_gradient = sum(layer.weight_gradient for layer in flops) * batch_size
    input_gradient = sum(layer.input_gradient for layer in flops) * batch_size
    memory = model.training_memory_bytes(run_config.model, batch_size, run_config.train)
    total = model.parameter_count(run_config.model)
    click.echo(f"{'total':<10} {'':>7} {'':>7} {total:>11,}  {forward:>14,}  {weight_gradient:>14,}  "
               f"{input_gradient:>14,}  "
               f"{model.forward_backward_ratio(run_config.model):>7.2f}  {memory['activations']:>15,}")
    click.echo("")
    keras_count = model.build_model(run_config.model).count_params()
    click.echo(f"total by the lesson's formula: {total}   (Keras counts {keras_count})")
    click.echo(f"backward = weight gradient + input gradient = {weight_gradient + input_gradient:,} FLOPs per batch "
               "(no input gradient for the first layer: nothing upstream needs the pixels' gradient)")
    click.echo("kept activations: the first layer's input (scaled pixels), each ReLU's output, each dropout's bool "
               "mask and output, the loss's softmax minus one-hot; float32 except the masks")
    slots = model.optimizer_slots_per_parameter(run_config.train)
    click.echo("")
    plural = "s" if slots != 1 else ""
    click.echo(f"training memory at batch size {batch_size} "
               f"({optimizer}: {slots} slot variable{plural} per parameter):")
    for key, value in memory.items():
        click.echo(f"  {key:<16} {value / 2**20:10.2f} MiB  {value:>14,} B")
    if run_config.train.mixed_precision:
        click.echo("  (counted in float32; with --mixed-precision the hidden activations are float16, about half)")


@main.command(name="export")
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option("--export-base", default="models", show_default=True, type=click.Path(file_okay=False),
              help="Base directory of exports; versions go to EXPORT_BASE/tf_mlp/<version> (point TensorFlow "
                   "Serving's base_path at EXPORT_BASE/tf_mlp).")
@click.option("--version", type=int, help="Version number to publish (default: one more than the highest existing).")
@click.option("--overwrite", is_flag=True,
              help="Replace the version if it exists (swapped in atomically; a server already serving it keeps the "
                   "old one until restarted).")
@click.option("--keep", type=int, help="Afterwards delete all but the newest N versions (never the one just exported).")
@click.option("--verify-on", type=click.Path(dir_okay=False),
              help="Verify on the images of this file (.npy, .npz or IDX, uint8 [N, 28, 28]) instead of the run's "
                   "test split (needed when the training data is gone).")
@click.option("--allow-unfinished", is_flag=True,
              help="Export a run whose training has not finished; the model card then says so and reports no test "
                   "accuracy.")
def export(run_dir, export_base, version, overwrite, keep, verify_on, allow_unfinished):
    """Export RUN_DIR's model as a verified SavedModel version for TensorFlow Serving.

    The version is written to a staging directory, loaded as TensorFlow
    Serving loads it (and with tf.saved_model.load), checked signature by
    signature against the in-memory model on test images, then renamed into
    place in one step. It ships assets/labels.txt, warmup requests and a
    model card (assets.extra/). Prints the signatures like
    `saved_model_cli show --all`. A run that has not finished training is
    refused unless --allow-unfinished.
    """
    from tf_mlp.export import export_run

    result = export_run(
        run_dir, export_base, version=version, overwrite=overwrite, keep=keep, verify_on=verify_on,
        allow_unfinished=allow_unfinished,
    )
    verification = result.model_card["verification"]
    click.echo(
        f"exported version {result.version} to {result.path} in {result.seconds:.1f} s"
        f" (verified on {verification['images']} images from {verification['source']})"
    )
    if not result.model_card["run_finished"]:
        click.echo(f"warning: exported an unfinished run ({result.model_card['unfinished_reason']})")
    if result.pruned:
        click.echo(f"pruned versions {', '.join(str(number) for number in result.pruned)}")
    click.echo(result.signatures)


def _serve_help() -> str:
    from tf_mlp.server.options import flags_help

    return (
        "Serve exported models as TensorFlow Serving does (REST and gRPC), with its flags.\n\n"
        "Takes every flag of tensorflow_model_server, spelled the same (--flag=value); the few that have no\n"
        "effect here are named in a one-line warning at start. From the repository's root, e.g.\n\n"
        "\b\n  tf-mlp serve --model_base_path=models/tf_mlp\n"
        "  tf-mlp serve --model_config_file=serving/models.config "
        "--allow_version_labels_for_unavailable_models=true\n\n"
        "Stops gracefully on SIGTERM or Ctrl-C. Flags and defaults:\n\n\b\n" + flags_help()
    )


@main.command(
    help=_serve_help(),
    short_help="Serve exported models like tensorflow_model_server (REST :8501, gRPC :8500).",
    context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
)
@click.argument("flags", nargs=-1, type=click.UNPROCESSED)
def serve(flags):
    # The flags go to the server's own parser, which spells and checks them
    # as tensorflow_model_server does (ConfigError on a bad one).
    from tf_mlp import server

    options = server.parse_flags(flags)
    if options.version:
        import tensorflow as tf

        from tf_mlp import __version__

        click.echo(f"tf-mlp serve (TensorFlow-Serving-compatible): {__version__}\nTensorFlow Library: {tf.__version__}")
        return
    server.serve(options)


from tf_mlp.predict_cli import add_commands  # noqa: E402 - predict, batch-predict, beam-predict, exports, ...

add_commands(main)
main.add_command(ui_command)
main.add_command(rollout_group)


if __name__ == "__main__":
    main()
