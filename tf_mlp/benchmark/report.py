"""Write benchmark results: JSON, a markdown table (docs/PERFORMANCE.md) and scaling plots."""

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
    for axis, (title, points) in zip(axes[0], series.items()):
        keys = [int(key) for key in points]
        axis.plot(keys, list(points.values()), "-o")
        axis.set_xscale("log", base=2)
        axis.set(title=title, xlabel=title.split(" vs ")[-1], ylabel="examples per second")
        axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def write(results: dict, rows: list[tuple[str, str]], output_dir, command: str, targets: list[str]) -> pathlib.Path:
    output_dir = pathlib.Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "performance.json").write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    series = {}
    training = results.get("training", {})
    if training.get("scaling_batch_size"):
        series["training vs batch size"] = training["scaling_batch_size"]
    if training.get("scaling_hidden_width"):
        series["training vs hidden width"] = training["scaling_hidden_width"]
    serving = results.get("serving", {})
    if serving.get("scaling_request_batch"):
        series["in-process inference vs request batch"] = serving["scaling_request_batch"]
    if series:
        plot_scaling(series, output_dir / "scaling.png")
    lines = [
        "# Performance",
        "",
        "Measured in one run, side by side, on this project's machine "
        f"({platform.machine()}, {results.get('cpus')} CPU cores, no GPU); medians of "
        f"{results.get('repetitions')} repetitions. Regenerate with:",
        "",
        f"```sh\n{command}\n```",
        "",
        "| measure | value |",
        "| --- | --- |",
        *[f"| {name} | {value} |" for name, value in rows],
        "",
    ]
    if targets:
        lines += ["## Targets (issue 7)", "", *[f"- {target}" for target in targets], ""]
    if series:
        lines += ["![scaling](performance/scaling.png)" if output_dir.name == "performance" else "![scaling](scaling.png)", ""]
    page = output_dir.parent / "PERFORMANCE.md" if output_dir.name == "performance" else output_dir / "PERFORMANCE.md"
    page.write_text("\n".join(lines))
    return page
