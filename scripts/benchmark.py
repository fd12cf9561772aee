#!/usr/bin/env python
"""The benchmark suite: training speed against Keras model.fit, inference and the server.

    python scripts/benchmark.py --training-only            # -> runs/benchmark/PERFORMANCE.md
    python scripts/benchmark.py --training-only --publish  # the same, into docs/PERFORMANCE.md
    python scripts/benchmark.py --quick -o /tmp/bench      # a fast smoke run: every figure, not for publishing
    python scripts/benchmark.py --render-only --publish    # docs/PERFORMANCE.md again from its performance.json

Every figure of a part is measured in one run on this machine (repetitions
interleaved; medians and ranges), so its ratios compare like with like, and
the part records the machine (CPU, instruction set, cores, TensorFlow build),
command and date. Publishing one part keeps the other part already on the
page, with what it recorded. The page is rendered from performance.json.
"""

from __future__ import annotations

import datetime
import json
import pathlib
import sys
import tempfile

import click

from tf_mlp import startup

DOCS_OUTPUT = pathlib.Path(__file__).resolve().parents[1] / "docs" / "performance"


def _is_under_docs(path: pathlib.Path) -> bool:
    docs = DOCS_OUTPUT.parent.resolve()
    return path.resolve() == docs or docs in path.resolve().parents


def _measure(splits, data, repetitions: int, quick: bool, training_only: bool) -> dict:
    """{"training": figures, "serving": figures}, without serving for training_only."""
    from tf_mlp.benchmark import training

    with tempfile.TemporaryDirectory(prefix="tf-mlp-bench-") as work:
        # A quick run serves the model of the training benchmark's `tf-mlp train` run rather than train the
        # same network once more for the serving benchmark.
        trained_run = pathlib.Path(work) / "run" if quick and not training_only else None
        parts = {"training": training.run_training_benchmarks(splits, data, repetitions, quick, trained_run)}
        if not training_only:
            from tf_mlp.benchmark import serving

            parts["serving"] = serving.run_serving_benchmarks(splits, repetitions, quick, trained_run)
    return parts


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--output", "--output-dir", "-o", "output_dir", type=click.Path(file_okay=False),
              default="runs/benchmark", show_default=True,
              help="Where performance.json, PERFORMANCE.md and the plot go (a directory named 'performance' puts "
                   "PERFORMANCE.md beside it).")
@click.option("--publish", is_flag=True,
              help="Write into docs/PERFORMANCE.md and docs/performance/ instead of --output.")
@click.option("--repetitions", default=5, show_default=True, type=click.IntRange(min=1),
              help="Interleaved repetitions per figure (median and range are reported).")
@click.option("--quick", is_flag=True,
              help="The smallest workload that produces every figure (one batch size, tiny matrix products, short "
                   "server loads): checks the pipeline and the page; never written to docs/.")
@click.option("--training-only", is_flag=True, help="Measure training only (no inference or server).")
@click.option("--render-only", is_flag=True,
              help="Measure nothing: render PERFORMANCE.md and the plot again from the output's performance.json.")
@click.option("--data", "data_name", type=click.Choice(["fashion_mnist", "idx"]), default="fashion_mnist",
              show_default=True, help="Data set to train on.")
@click.option("--source-dir", help="IDX directory (default for fashion_mnist: Debian's package).")
@click.option("--data-dir", help="TFDS data directory for the prepared data set (default: TFDS's).")
@click.option("--validation-size", type=int,
              help="Training examples held out for validation (default: the data config's).")
@startup.verbose_option
def main(output_dir, publish, repetitions, quick, training_only, render_only, data_name, source_dir, data_dir,
         validation_size, verbose):
    """Measure training (and serving) speed; write JSON, a markdown page and a plot."""
    output_dir = DOCS_OUTPUT if publish else pathlib.Path(output_dir)
    if quick and _is_under_docs(output_dir):
        raise click.ClickException("--quick results are smoke-test figures and are never written to docs/; "
                                   "use --output elsewhere")
    if render_only:
        from tf_mlp.benchmark import report

        if not (output_dir / report.JSON_NAME).is_file():
            raise click.ClickException(f"{output_dir / report.JSON_NAME}: no results to render; measure first")
        click.echo(report.render(output_dir).read_text())
        return
    # After the checks, so a refused command answers at once; quiet unless --verbose, as `tf-mlp` is.
    startup.import_tensorflow(verbose=verbose)
    from tf_mlp.benchmark import report
    from tf_mlp.config import DataConfig
    from tf_mlp.data import load_splits

    options = {"validation_size": validation_size} if validation_size is not None else {}
    data = DataConfig(name=data_name, source_dir=source_dir, data_dir=data_dir, **options)
    splits = load_splits(data)
    command = "python scripts/benchmark.py" + "".join(f" {argument}" for argument in sys.argv[1:])
    stamp = {"command": command, "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
             "repetitions": repetitions, "quick": quick}
    previous = output_dir / report.JSON_NAME
    results = json.loads(previous.read_text()) if previous.is_file() and not quick else {}
    for part, figures in _measure(splits, data, repetitions, quick, training_only).items():
        results[part] = {**figures, **stamp}
    page = report.write(results, output_dir)
    click.echo(page.read_text())


if __name__ == "__main__":
    main()
