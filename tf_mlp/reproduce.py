"""The lesson, reproduced: every preset on a data set, the overfitting
experiment, the overlap question, one results table.

Runs live under RUNS_ROOT/<data set>/<name>; a finished run is reused, so an
interrupted reproduction continues where it stopped. Only the tables and
the best run's plots go to the output directory: runs/reproduce by default,
docs/ when publishing the shipped results (`tf-mlp reproduce --output-dir docs`).
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import time

import numpy as np

from tf_mlp import config
from tf_mlp.benchmark import cost_page, machine
from tf_mlp.data.overlap import overlap_mask, overlap_report
from tf_mlp.data.splits import DataSplits
from tf_mlp.errors import ConfigError
from tf_mlp.training import evaluate
from tf_mlp.training.runs import read_evaluation, restore_model

# The overfitting experiment: the mlp on only this many minibatches of
# training data, long enough to memorise them (the course uses a handful).
OVERFIT_BATCHES = 5
OVERFIT_EPOCHS = 100
# What `tf-mlp reproduce` (and so docs/RESULTS.md) covers without --data.
DEFAULT_DATA_SETS = ("fashion_mnist", "notmnist")


def parse_source_dirs(arguments, data_sets) -> dict[str, str]:
    """{data set: directory} from --source-dir DATA=DIR arguments; ConfigError names a malformed or unused one."""
    sources: dict[str, str] = {}
    for argument in arguments:
        name, separator, directory = argument.partition("=")
        if not separator or not name or not directory:
            raise ConfigError(f"--source-dir {argument!r} is not DATA=DIR (e.g. notmnist=~/notMNIST)")
        if name not in data_sets:
            raise ConfigError(f"--source-dir {argument!r} names {name!r}, which this run does not reproduce (it runs "
                              f"{', '.join(data_sets)})")
        if name in sources:
            raise ConfigError(f"--source-dir gives {name!r} twice")
        sources[name] = str(pathlib.Path(directory).expanduser())
    return sources


def is_docs_dir(path) -> bool:
    """True for docs/ (of the working directory or of this repository) or anything inside it."""
    path = pathlib.Path(path).resolve()
    for docs in (pathlib.Path.cwd() / "docs", pathlib.Path(__file__).resolve().parents[1] / "docs"):
        docs = docs.resolve()
        if path == docs or docs in path.parents:
            return True
    return False


def _row(name: str, run_config, summary: dict, wall_seconds: float) -> dict:
    return {
        "run": name,
        "hidden_units": list(run_config.model.hidden_units),
        "parameters": summary["parameters"],
        "train_accuracy": summary["train_accuracy"],
        "validation_accuracy": summary["validation_accuracy"],
        "test_accuracy": summary["test_accuracy"],
        "epochs": summary["steps"] // max(1, summary["planned_steps"] // run_config.train.epochs),
        "train_seconds": summary["train_seconds"],
        "wall_seconds": wall_seconds,
        "examples_per_second": summary["examples_per_second"],
    }


def _train(name: str, run_config, splits: DataSplits, runs_root: pathlib.Path, verbose: bool) -> dict:
    from tf_mlp.training import train_and_evaluate

    if verbose:
        print(f"--- {splits.name}: {name}", flush=True)
    # A run finished before this reproduction is reused as it is: its training times were measured then,
    # on a machine this reproduction cannot name.
    reused = read_evaluation(runs_root / name) is not None
    start = time.perf_counter()
    summary = train_and_evaluate(run_config, runs_root / name, splits=splits, verbose=verbose)
    if verbose:
        print(f"test accuracy {summary['test_accuracy']:.4f} on {summary['split_sizes']['test']} images", flush=True)
    return {**_row(name, run_config, summary, time.perf_counter() - start), "reused": reused}


def overfitting_experiment(data_config, splits: DataSplits, runs_root: pathlib.Path, verbose: bool) -> list[dict]:
    """mlp on a few batches, without regularization and with dropout."""
    base = config.preset("mlp")
    size = min(OVERFIT_BATCHES * base.train.batch_size, len(splits.train))  # a small data set gives what it has
    small = dataclasses.replace(splits, train=splits.train.take(np.arange(size)))
    rows = []
    for name, preset in (("overfit_mlp", "mlp"), ("overfit_mlp_dropout", "mlp_dropout")):
        run_config = dataclasses.replace(config.preset(preset), data=data_config)
        run_config = run_config.override("train", epochs=OVERFIT_EPOCHS)
        row = _train(name, run_config, small, runs_root, verbose)
        row["train_examples"] = size
        rows.append(row)
    return rows


def overlap_question(splits: DataSplits, best_run: pathlib.Path) -> dict:
    """How many test images have an exact copy in training, and the best model's accuracy with and without them."""
    report = overlap_report(splits)
    duplicated = overlap_mask(splits.train.images, splits.test.images)
    _, model = restore_model(best_run)
    logits, _ = evaluate.predict_logits(model, splits.test)
    correct = np.argmax(logits, axis=-1) == splits.test.labels
    return {
        "test_images": len(splits.test),
        "test_with_copy_in_train": int(duplicated.sum()),
        "validation_with_copy_in_train": report["validation_in_train"],
        "duplicates_within_train": report["within"]["train"],
        "test_accuracy_all": float(correct.mean()),
        "test_accuracy_without_copies": float(correct[~duplicated].mean()) if (~duplicated).any() else None,
        "test_accuracy_on_copies": float(correct[duplicated].mean()) if duplicated.any() else None,
    }


def reproduce(data_config, output_dir, *, runs_root, presets=None, epochs: int | None = None,
              verbose: bool = True) -> dict:
    """Train the presets on one data set; write results.json, results.md and the best run's report."""
    from tf_mlp.data import load_splits
    from tf_mlp.report import write_report

    output_dir, runs_root = pathlib.Path(output_dir), pathlib.Path(runs_root) / data_config.name
    if epochs:
        # A quick look trains other configs than the presets; its runs must not
        # be taken (or refused) as the full runs when those come later.
        runs_root = runs_root / f"epochs-{epochs}"
    output_dir.mkdir(parents=True, exist_ok=True)
    splits = load_splits(data_config)
    rows = []
    for name in presets or list(config.PRESETS):
        run_config = dataclasses.replace(config.preset(name), data=data_config)
        if epochs:
            run_config = run_config.override("train", epochs=epochs)
        rows.append(_train(name, run_config, splits, runs_root, verbose))
    best = max(rows, key=lambda row: row["validation_accuracy"])
    write_report(runs_root / best["run"], output_dir / "best", splits=splits)
    results = {
        "data_set": data_config.name,
        "source_dir": data_config.source_dir,
        "split_sizes": splits.sizes(),
        "skipped_files": splits.skipped_files,
        "presets": rows,
        "best_run": best["run"],
        "overfitting": overfitting_experiment(data_config, splits, runs_root, verbose),
        "overlap": overlap_question(splits, runs_root / best["run"]),
        "machine": machine.current(),
    }
    (output_dir / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (output_dir / "results.md").write_text(results_markdown(results))
    return results


def results_markdown(results: dict) -> str:
    sizes = results["split_sizes"]
    lines = [
        f"### {results['data_set']} (train {sizes['train']}, validation {sizes['validation']}, test {sizes['test']})",
        "",
        # Results from before the machine was recorded say so rather than borrow another machine's description.
        f"Machine: {machine.name(results.get('machine'))}.{_reused_note(results)}",
        "",
        "| preset | hidden | parameters | train acc. | validation acc. | test acc. | epochs | wall time (s) "
        "| examples/s |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in results["presets"]:
        lines.append(
            f"| {row['run']} | {row['hidden_units'] or 'none'} | {row['parameters']:,} | {row['train_accuracy']:.4f} "
            f"| {row['validation_accuracy']:.4f} | **{row['test_accuracy']:.4f}** | {row['epochs']} | "
            f"{row['wall_seconds']:.0f} | {row['examples_per_second']:.0f} |"
        )
    lines += [
        "",
        f"Overfitting: the mlp trained on only {results['overfitting'][0]['train_examples']} examples "
        f"({OVERFIT_BATCHES} batches) for {OVERFIT_EPOCHS} epochs.",
        "",
        "| run | train acc. | test acc. |",
        "| --- | ---: | ---: |",
    ]
    lines += [f"| {row['run']} | {row['train_accuracy']:.4f} | {row['test_accuracy']:.4f} |"
              for row in results["overfitting"]]
    overlap = results["overlap"]
    without = overlap["test_accuracy_without_copies"]
    lines += [
        "",
        f"Overlap: {overlap['test_with_copy_in_train']} of {overlap['test_images']} test images have an exact copy in "
        f"training ({overlap['validation_with_copy_in_train']} validation images; "
        f"{overlap['duplicates_within_train']} repeats within training). Best run ({results['best_run']}) test "
        f"accuracy: {overlap['test_accuracy_all']:.4f} on all, {'n/a' if without is None else f'{without:.4f}'} "
        "without the copies.",
        "",
    ]
    return "\n".join(lines)


def _reused_note(results: dict) -> str:
    reused = [row["run"] for row in results["presets"] if row.get("reused")]
    if not reused:
        return ""
    return (f" Reused from an earlier reproduction, so trained on a machine not recorded: {', '.join(reused)} "
            "(their wall time here is loading and evaluation only; examples/s is from that training).")


def write_results_page(path, results_by_data_set: list[dict], command: str) -> None:
    """docs/RESULTS.md: every data set's table, with the command that produced it."""
    path = pathlib.Path(path)
    lines = [
        "# Results",
        "",
        "Every number and figure on this page but the training-cost section (which gives its own command) was",
        "produced by one command, run from the repository root:",
        "",
        f"```sh\n{command}\n```",
        "",
        "Each data set's section names the machine it ran on (CPU, instruction set, cores, TensorFlow build; no",
        "GPU): wall time and examples/s depend on it, and accuracies can differ slightly on another CPU, whose",
        "matrix kernels round differently. Test accuracy is measured once, on the test split, for each preset as",
        "shipped (`tf_mlp/config/presets.py`). Wall time includes evaluation; examples/s is training throughput.",
        "",
    ]
    for results in results_by_data_set:
        lines.append(results_markdown(results))
        best = pathlib.Path("results") / results["data_set"] / "best"
        lines += [
            f"Best run on {results['data_set']}: `{results['best_run']}` "
            f"([report]({best / 'report.md'})).",
            "",
            f"![learning curves]({best / 'learning_curves.png'})",
            f"![confusion matrix]({best / 'confusion_matrix.png'})",
            f"![misclassified]({best / 'misclassified.png'})",
            "",
        ]
    # The training-cost section (python -m tf_mlp.benchmark.cost --results-page) is carried over, not recomputed.
    path.write_text(cost_page.keep_section(path, "\n".join(lines)))
