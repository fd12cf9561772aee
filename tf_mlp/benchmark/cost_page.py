"""The cost benchmark's plot and its section of docs/RESULTS.md.

The section sits between two markers so that `python -m tf_mlp.benchmark.cost
--results-page docs/RESULTS.md` can replace it in place, and `tf-mlp
reproduce`, which rewrites the rest of the page, carries it over unchanged
(keep_section). Kept free of TensorFlow so reproduce pays nothing for it.
"""

from __future__ import annotations

import pathlib

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

BEGIN = "<!-- begin cost section: written by python -m tf_mlp.benchmark.cost --results-page -->"
END = "<!-- end cost section -->"
PLOT = pathlib.Path("results") / "cost.png"


def plot_ratios(results: dict, path) -> None:
    """Analytic against measured backward/forward ratio (wall and CPU time), per preset and batch size."""
    rows = results["rows"]
    labels = [f"{row['preset']}\nbatch {row['batch_size']}" for row in rows]
    figure, axis = plt.subplots(figsize=(max(6, 1.6 * len(rows)), 4.2))
    width = 0.27
    axis.bar([index - width for index in range(len(rows))], [row["analytic"]["backward_over_forward"] for row in rows],
             width, label="analytic (matrix-product FLOPs)", color="#8fb3d9")
    for offset, key, label, color in ((0.0, "backward_over_forward", "measured, wall time", "#d98f5c"),
                                      (width, "backward_over_forward_cpu", "measured, CPU time", "#7fb07f")):
        summaries = [row[key] for row in rows]
        # Error bars from the median to the quartiles of the per-round ratios.
        spread = [[summary["median"] - summary["q1"] for summary in summaries], [summary["q3"] - summary["median"] for summary in summaries]]
        axis.bar([index + offset for index in range(len(rows))], [summary["median"] for summary in summaries], width,
                 yerr=spread, capsize=3, label=f"{label} (median, quartiles)", color=color)
    axis.axhline(2.0, color="grey", linestyle="--", linewidth=1, label="the lesson's 2×")
    axis.axhline(0.0, color="black", linewidth=0.6)
    axis.set_xticks(list(range(len(rows))), labels)
    axis.set_ylabel("backward / forward")
    axis.set_title("Backward over forward: analytic FLOPs against measured time")
    axis.legend(fontsize=8, loc="upper left")
    axis.grid(axis="y", alpha=0.3)
    figure.tight_layout()
    pathlib.Path(path).parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)


def section_markdown(results: dict) -> str:
    """The section: command, load, plot, table, and what the figures say."""
    from tf_mlp.benchmark.cost import table

    before, after = results["load_average_before"][0], results["load_average_after"][0]
    lines = [
        BEGIN,
        "## Training cost: is the backward pass twice the forward?",
        "",
        "`tf-mlp info --preset NAME --batch-size N` prints the analytic cost by layer: forward FLOPs, backward",
        "FLOPs (weight gradient plus input gradient, none for the first layer), their ratio, and the memory the",
        "backward pass keeps. The measured figures below come from one run of",
        "",
        f"```sh\n{results['command']}\n```",
        "",
        f"on {results['cpus']} CPU cores ({results['machine']}, TensorFlow {results['tensorflow']}, no GPU), "
        f"shared with other jobs: load average {before:.1f} before and {after:.1f} after. Times are medians over "
        f"{results['rounds']} interleaved rounds; the ratio's quartiles are over rounds. Forward is inference "
        "(`training=False`); fwd+bwd is the training forward (dropout, loss) and `tape.gradient`, without the "
        "optimizer update, which is timed alone. Memory: " + results["memory_method"] + ".",
        "",
        f"![backward over forward, analytic and measured]({PLOT.as_posix()})",
        "",
        table(results),
        "",
        *_findings(results),
        END,
        "",
    ]
    return "\n".join(lines)


def _findings(results: dict) -> list[str]:
    """Sentences whose numbers and comparisons come from these results, so a new run cannot leave them untrue."""
    lines = []
    for row in results["rows"]:
        analytic = row["analytic"]["backward_over_forward"]
        measured = row["backward_over_forward"]
        training = row["backward_over_training_forward"]["median"]
        relation = "above" if measured["q1"] > analytic else "below" if measured["q3"] < analytic else "within the spread of"
        lines.append(
            f"- {row['preset']} at batch {row['batch_size']}: measured {measured['median']:.2f} is {relation} the analytic "
            f"{analytic:.2f}; counted from the training forward instead of inference it is {training:.2f}."
        )
    return lines + [""]


def write_section(page: pathlib.Path, results: dict) -> None:
    """Replace (or append) the cost section of page and write its plot beside it."""
    plot_ratios(results, page.parent / PLOT)
    text = page.read_text() if page.exists() else "# Results\n"
    page.write_text(_without_section(text).rstrip("\n") + "\n\n" + section_markdown(results))


def keep_section(page, new_text: str) -> str:
    """new_text with the cost section of the page it replaces appended, if that page had one."""
    page = pathlib.Path(page)
    old = page.read_text() if page.exists() else ""
    if BEGIN not in old or END not in old:
        return new_text
    section = old[old.index(BEGIN): old.index(END) + len(END)]
    return _without_section(new_text).rstrip("\n") + "\n\n" + section + "\n"


def _without_section(text: str) -> str:
    if BEGIN in text and END in text:
        return text[: text.index(BEGIN)] + text[text.index(END) + len(END):].lstrip("\n")
    return text
