"""Write benchmark results: performance.json, PERFORMANCE.md (one section per part) and scaling plots.

Each part (training, serving) records the command, date and load average it
was measured with, so a page whose parts were measured by separate runs says
so rather than claiming one run for all.
"""

from __future__ import annotations

import json
import pathlib
import platform

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def plot_scaling(series: dict[str, dict], path: pathlib.Path) -> None:
    """One panel per series: throughput against the scaled quantity, log-2 x axis."""
    figure, axes = plt.subplots(1, len(series), figsize=(5 * len(series), 4), squeeze=False)
    for axis, (title, lines) in zip(axes[0], series.items()):
        for label, points in lines.items():
            keys = [int(key) for key in points]
            axis.plot(keys, list(points.values()), "-o", label=label)
        axis.set_xscale("log", base=2)
        axis.set(title=title, xlabel=title.split(" vs ")[-1], ylabel="examples per second")
        axis.grid(alpha=0.3)
        if len(lines) > 1:
            axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def _training_series(training: dict) -> dict:
    names = {"cli": "tf-mlp train", "trainer": "train function alone", "fit_spe1": "model.fit, defaults",
             "fit_tuned": "model.fit, steps_per_execution tuned", "products": "step's products alone"}
    rates = training["examples_per_second"]
    return {label: {batch: rates[f"{key}_{batch}"]["median"] for batch in training["batch_sizes"]}
            for key, label in names.items()}


def page_paths(output_dir) -> tuple[pathlib.Path, pathlib.Path]:
    """(directory of performance.json and plots, the markdown page): docs/performance -> docs/PERFORMANCE.md."""
    output_dir = pathlib.Path(output_dir)
    page = output_dir.parent / "PERFORMANCE.md" if output_dir.name == "performance" else output_dir / "PERFORMANCE.md"
    return output_dir, page


def write(results: dict, output_dir) -> pathlib.Path:
    """Write every part present in results; return the page's path."""
    from tf_mlp.benchmark import training as training_benchmarks

    output_dir, page = page_paths(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "performance.json").write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    series = {}
    lines = ["# Performance", "",
             f"Measured on this project's machine ({platform.machine()}, {results.get('cpus')} CPU cores, no GPU).", ""]
    training = results.get("training")
    if training:
        series["training vs batch size"] = _training_series(training)
        lines += ["## Training", "", *_measured_with(training), *training_benchmarks.markdown(training), "",
                  "### Goals", "", *[f"- {goal}" for goal in training_benchmarks.goals(training)], ""]
    serving = results.get("serving")
    if serving:
        from tf_mlp.benchmark import serving as serving_benchmarks

        if serving.get("scaling_request_batch"):
            series["in-process inference vs request batch"] = {"inference": serving["scaling_request_batch"]}
        lines += ["## Serving", "", *_measured_with(serving), "| measure | value |", "| --- | --- |",
                  *[f"| {name} | {value} |" for name, value in serving_benchmarks.as_table_rows(serving)], "",
                  "### Goals", "", *[f"- {goal}" for goal in serving_benchmarks.targets(serving)], ""]
    if series:
        plot_scaling(series, output_dir / "scaling.png")
        image = f"{output_dir.name}/scaling.png" if page.parent != output_dir else "scaling.png"
        lines += [f"![scaling]({image})", ""]
    page.write_text("\n".join(lines))
    return page


def _measured_with(part: dict) -> list[str]:
    if "command" not in part:
        # Results from before each part recorded its own command.
        return ["Measured by an earlier run of the whole benchmark; "
                "`python scripts/benchmark.py --publish` repeats it.", ""]
    when = f" on {part['date']}" if part.get("date") else ""
    repetitions = (f", {part['repetitions']} interleaved repetition{'s' if part['repetitions'] > 1 else ''}"
                   if part.get("repetitions") else "")
    return [f"Measured{when}{repetitions} with:", "", f"```sh\n{part['command']}\n```", ""]
