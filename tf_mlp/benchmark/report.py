"""Write benchmark results: performance.json, then PERFORMANCE.md (one section per part) and scaling plots
rendered from it.

Each part (training, serving) records the machine, command and date it was
measured with, so a page whose parts were measured by separate runs, or on
different machines, says so rather than claiming one run for all. Rendering
reads only the JSON: re-rendering old results states what they recorded.
"""

from __future__ import annotations

import json
import pathlib

import matplotlib

from tf_mlp.benchmark import machine, serving_page, training_page

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

JSON_NAME = "performance.json"


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
    """Write performance.json, then render the page and plot from it; return the page's path."""
    output_dir, _ = page_paths(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / JSON_NAME).write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    return render(output_dir)


def render(output_dir) -> pathlib.Path:
    """PERFORMANCE.md and the scaling plot from the performance.json in output_dir (every part present in it)."""
    output_dir, page = page_paths(output_dir)
    results = json.loads((output_dir / JSON_NAME).read_text())
    series = {}
    lines = ["# Performance", "",
             "Each part names the machine, date and command it was measured with. The page and plot are rendered "
             f"from [{JSON_NAME}]({_relative(output_dir / JSON_NAME, page)}), which holds every figure.", ""]
    training = results.get("training")
    if training:
        series["training vs batch size"] = _training_series(training)
        lines += ["## Training", "", *_measured_with(training, results), *training_page.markdown(training), "",
                  "### Goals", "", *[f"- {goal}" for goal in training_page.goals(training)], ""]
    serving = results.get("serving")
    if serving:
        if serving.get("scaling_request_batch"):
            series["in-process inference vs request batch"] = {"inference": serving["scaling_request_batch"]}
        lines += ["## Serving", "", *_measured_with(serving, results), "| measure | value |", "| --- | --- |",
                  *[f"| {name} | {value} |" for name, value in serving_page.as_table_rows(serving)], "",
                  "### Goals", "", *[f"- {goal}" for goal in serving_page.targets(serving)], ""]
    if series:
        plot_scaling(series, output_dir / "scaling.png")
        lines += [f"![scaling]({_relative(output_dir / 'scaling.png', page)})", ""]
    page.write_text("\n".join(lines))
    return page


def _relative(path: pathlib.Path, page: pathlib.Path) -> str:
    return f"{path.parent.name}/{path.name}" if path.parent != page.parent else path.name


def _measured_with(part: dict, results: dict) -> list[str]:
    """Where, when and how a part was measured; results from before parts recorded these say what they lack."""
    cores = part.get("cpus", results.get("cpus"))
    noted = (f"{cores} CPU cores",) if cores else ()
    lines = [f"Machine: {machine.name(part.get('machine'), noted)}.", ""]
    if "command" not in part:
        # Results from before each part recorded its own command.
        return lines + ["Measured by an earlier run of the whole benchmark; `python scripts/benchmark.py --publish` "
                        "repeats it.", ""]
    when = f" on {part['date']}" if part.get("date") else ""
    repetitions = part.get("repetitions")
    count = f", {repetitions} interleaved repetition{'s' if repetitions > 1 else ''}" if repetitions else ""
    return lines + [f"Measured{when}{count} with:", "", f"```sh\n{part['command']}\n```", ""]
