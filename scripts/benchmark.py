#!/usr/bin/env python
"""The benchmark suite: training, input pipeline, inference, scaling, memory.

    python scripts/benchmark.py                 # full run -> docs/PERFORMANCE.md, docs/performance/
    python scripts/benchmark.py --quick -o /tmp/bench   # a fast smoke run (what the tests use)

Every figure is measured in this one run on this machine (medians of
--repetitions), so the ratios compare like with like.
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import click  # noqa: E402


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--output-dir", "-o", default="docs/performance", show_default=True, help="Where performance.json and plots go; PERFORMANCE.md is written beside it.")
@click.option("--repetitions", default=3, show_default=True, help="Repetitions per figure (the median is reported).")
@click.option("--quick", is_flag=True, help="Fewer steps and sizes: checks that every figure is produced, not for publishing.")
@click.option("--source-dir", help="Fashion-MNIST IDX directory (default: Debian's package).")
@click.option("--serving/--no-serving", default=True, show_default=True, help="Also measure inference and the server.")
def main(output_dir, repetitions, quick, source_dir, serving):
    """Measure training and serving speed; write JSON, a markdown table and plots."""
    from tf_mlp import config as config_module
    from tf_mlp.benchmark import report, training
    from tf_mlp.data import load_splits

    splits = load_splits(config_module.DataConfig(name="fashion_mnist", source_dir=source_dir))
    results = {"cpus": os.cpu_count(), "repetitions": repetitions, "quick": quick}
    results["training"] = training.run_training_benchmarks(splits, repetitions, quick)
    rows = training.as_table_rows(results["training"])
    targets = training.targets(results["training"])
    if serving:
        from tf_mlp.benchmark import serving as serving_benchmarks

        results["serving"] = serving_benchmarks.run_serving_benchmarks(splits, repetitions, quick)
        rows += serving_benchmarks.as_table_rows(results["serving"])
        targets += serving_benchmarks.targets(results["serving"])
    command = "python scripts/benchmark.py" + "".join(f" {argument}" for argument in sys.argv[1:])
    page = report.write(results, rows, output_dir, command, targets)
    click.echo(page.read_text())


if __name__ == "__main__":
    main()
