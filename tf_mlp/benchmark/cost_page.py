"""The cost benchmark's table, plot and section of docs/RESULTS.md, rendered from its JSON alone.

The section sits between two markers so that `python -m tf_mlp.benchmark.cost
--results-page docs/RESULTS.md` can replace it in place, and `tf-mlp
reproduce`, which rewrites the rest of the page, carries it over unchanged
(keep_section). The section is rendered from results/cost.json beside the
page (render_section), so it states what that run recorded, machine
included. Nothing here measures; only old results, which did not record
their layer widths, import tf_mlp.model (and so TensorFlow) to find them.
"""

from __future__ import annotations

import json
import pathlib

import matplotlib

from tf_mlp.benchmark import machine

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

BEGIN = "<!-- begin cost section: written by python -m tf_mlp.benchmark.cost --results-page -->"
END = "<!-- end cost section -->"
PLOT = pathlib.Path("results") / "cost.png"
DATA = pathlib.Path("results") / "cost.json"


def table(results: dict) -> str:
    """A markdown table: ratios, times (ms per step, median) and memory (MiB) per preset and batch size."""
    mebibyte = 2**20

    def spread(summary: dict) -> str:
        return f"{summary['median']:.2f} ({summary['q1']:.2f}–{summary['q3']:.2f})"

    lines = [
        "| preset | batch | bwd/fwd analytic | bwd/fwd wall time (IQR) | bwd/fwd CPU time (IQR) "
        "| bwd / training fwd, CPU | wall ms: fwd / fwd+bwd / update | kept activations MiB: analytic / measured "
        "| peak MiB: fwd / fwd+bwd / update |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    phases = ("forward", "forward_backward", "update")
    for row in results["rows"]:
        seconds, memory = row["seconds"], row["memory_bytes"]
        milliseconds = " / ".join(f"{seconds[phase]['median'] * 1e3:.3f}" for phase in phases)
        peaks = " / ".join(f"{memory[phase + '_peak_bytes'] / mebibyte:.2f}" for phase in phases)
        lines.append(
            f"| {row['preset']} | {row['batch_size']} | {row['analytic']['backward_over_forward']:.2f} | "
            f"{spread(row['backward_over_forward'])} | {spread(row['backward_over_forward_cpu'])} | "
            f"{row['backward_over_training_forward_cpu']['median']:.2f} | {milliseconds} | "
            f"{row['analytic']['memory_bytes']['activations'] / mebibyte:.2f} / "
            f"{memory['kept_by_tape_bytes'] / mebibyte:.2f} | {peaks} |"
        )
    return "\n".join(lines)


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
        spread = [[summary["median"] - summary["q1"] for summary in summaries],
                  [summary["q3"] - summary["median"] for summary in summaries]]
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


def machine_name(results: dict) -> str:
    """The machine the cost figures came from, or what old results noted instead of a machine record."""
    recorded = results.get("machine")
    if isinstance(recorded, dict):
        return machine.name(recorded)
    # Results from before the machine was recorded kept its architecture in "machine".
    noted = (f"{results['cpus']} CPU cores" if results.get("cpus") else None, recorded,
             f"TensorFlow {results['tensorflow']}" if results.get("tensorflow") else None)
    return machine.name(None, tuple(fact for fact in noted if fact))


def load(results: dict) -> str:
    """How busy the machine was while the phases were timed."""
    before, after = results["load_average_before"][0], results["load_average_after"][0]
    averages = f"load average {before:.1f} before and {after:.1f} after"
    if "other_processes_share" not in results:  # results from before the share was measured
        return f"Shared with other jobs: {averages}"
    described = machine.describe([results["other_processes_share"]], results["machine"]["cpus"])
    return f"{described[0].upper()}{described[1:]} ({averages})"


def section_markdown(results: dict) -> str:
    """The section: command, machine, load, plot, table, and what the figures say."""
    threads = results["threads"]
    lines = [
        BEGIN,
        "## Training cost: is the backward pass twice the forward?",
        "",
        "`tf-mlp info --preset NAME --batch-size N` prints the analytic cost by layer: forward FLOPs, backward",
        "FLOPs (weight gradient plus input gradient, none for the first layer), their ratio, and the memory the",
        "backward pass keeps. `tf-mlp reproduce` does not recompute this section (it carries it over); it comes",
        "from one run of",
        "",
        f"```sh\n{results['command']}\n```",
        "",
        f"Machine: {machine_name(results)}; no GPU, {threads['intra_op'] or 'default'} intra-op threads. "
        f"{load(results)}. Each phase runs as a graph loop of steps; figures are medians over "
        f"{results['rounds']} interleaved rounds, ratios taken within each round, quartiles over rounds. "
        "Forward is inference (`training=False`); fwd+bwd is the training forward (dropout, loss, L2) and "
        "`tape.gradient`, without the optimizer update, which is timed alone. CPU time is the process's CPU "
        "seconds: it counts the work done and not the waiting for a core that other jobs cause, so on a busy "
        "machine it is the steadier measure. Memory: " + results["memory_method"] + ".",
        "",
        f"![backward over forward, analytic and measured]({PLOT.as_posix()}) "
        f"(every figure: [{DATA.as_posix()}]({DATA.as_posix()}))",
        "",
        table(results),
        "",
        *_findings(results),
        END,
        "",
    ]
    return "\n".join(lines)


def _find(results: dict, preset: str) -> dict | None:
    """The row of preset at its largest measured batch size, if it was measured."""
    rows = [row for row in results["rows"] if row["preset"] == preset]
    return max(rows, key=lambda row: row["batch_size"]) if rows else None


def _findings(results: dict) -> list[str]:
    """What the figures say. Every number and comparison is read from these results, so a new run cannot leave
    them untrue."""

    def cpu(row: dict, phase: str) -> float:
        return row["cpu_seconds"][phase]["median"]

    def measured(row: dict) -> str:
        return f"{row['backward_over_forward_cpu']['median']:.2f}"

    analytic = {row["preset"]: f"{row['analytic']['backward_over_forward']:.2f}" for row in results["rows"]}
    lines = ["What the figures say:", ""]
    lines.append(
        "- The 2× holds per layer, not per network. Every layer but the first pays two products in the backward pass "
        "(the weight gradient x^T·dy and the input gradient dy·W^T), each as dear as its forward product x·W; the "
        "first layer pays only the weight gradient, because nothing upstream needs the pixels' gradient. With 784 "
        "inputs the first layer holds most of the FLOPs, so the network's analytic ratio is "
        + ", ".join(f"{ratio} for {preset}" for preset, ratio in analytic.items())
        + "; it is exactly 1 for the logistic model, whose only layer is the first."
        + "".join(f" {row['preset']} measures {measured(row)} at batch {row['batch_size']} (CPU time)."
                  for row in filter(None, (_find(results, "logistic"), _find(results, "mlp"))))
    )
    deep = _find(results, "deep")
    if deep:
        widths = _layer_widths(deep)
        hidden_units = sum(widths[1:-1])
        kernel_weights = sum(fan_in * fan_out for fan_in, fan_out in zip(widths[:-1], widths[1:]))
        over_inference = deep["backward_over_forward_cpu"]["median"]
        over_training = deep["backward_over_training_forward_cpu"]["median"]
        ratio = deep["analytic"]["backward_over_forward"]
        between = min(over_inference, over_training) <= ratio <= max(over_inference, over_training)
        where = "lies between the two ways of counting" if between else "lies outside both ways of counting"
        lines.append(
            f"- deep (batch {deep['batch_size']}) measures away from its analytic ratio because its training forward "
            "does work inference never does and the FLOP count leaves out: dropout draws a random number and builds a "
            f"mask for each of its {hidden_units:,} hidden units per example, and the L2 penalty sums the squares of "
            f"its {kernel_weights / 1e6:.2f} M kernel weights. Its training forward alone costs "
            f"{cpu(deep, 'forward_training') / cpu(deep, 'forward'):.2f}× its inference forward (CPU time), so "
            f"backward over inference forward is {over_inference:.2f}, while backward over the training forward is "
            f"{over_training:.2f}: the gradients of those element-wise extras are cheap (a select by the kept mask, "
            f"2·l2·w), so they weigh on the forward side. The matrix-product ratio, {ratio:.2f}, {where}."
        )
    if deep and len([row for row in results["rows"] if row["preset"] == "deep"]) > 1:
        small = min((row for row in results["rows"] if row["preset"] == "deep"), key=lambda row: row["batch_size"])
        growth = deep["batch_size"] / small["batch_size"]
        forward_growth = cpu(deep, "forward") / cpu(small, "forward")
        both_growth = cpu(deep, "forward_backward") / cpu(small, "forward_backward")
        sentence = (
            f"- From batch {small['batch_size']} to {deep['batch_size']} ({growth:.0f}× the examples) deep's "
            f"inference forward takes {forward_growth:.1f}× the CPU time and its forward and backward "
            f"{both_growth:.1f}×; the ratio is {small['backward_over_forward_cpu']['median']:.2f} at batch "
            f"{small['batch_size']} against {deep['backward_over_forward_cpu']['median']:.2f} at {deep['batch_size']}."
        )
        if both_growth < forward_growth:
            sentence += (
                " The backward pass carries more work that does not shrink with the batch: it writes a gradient the "
                "size of every weight matrix (and the L2 penalty's gradient over them), where the forward pass only "
                "reads the weights, and it runs more, smaller operations, each with its own launch cost."
            )
        lines.append(sentence)
    logistics = sorted((row for row in results["rows"] if row["preset"] == "logistic"),
                       key=lambda row: row["batch_size"])
    mlp = _find(results, "mlp")
    if logistics:
        small = logistics[0]

        def rate(row: dict) -> str:
            return f"{row['analytic']['forward_flops'] / cpu(row, 'forward') / 1e9:.0f} GFLOP/s"

        lines.append(
            "- The logistic model's matrix is 784×10: each pixel is read once for ten multiply-adds, so its time goes "
            "to memory-bound element-wise work (scaling the uint8 pixels to floats, the softmax cross-entropy) and to "
            f"the per-step cost of launching operations more than to products: at batch {small['batch_size']} its "
            f"inference forward runs at {rate(small)} of CPU time"
            + (f" against {rate(mlp)} for the mlp at batch {mlp['batch_size']}" if mlp else "")
            + ", and its training forward (adding the loss) costs "
            f"{cpu(small, 'forward_training') / cpu(small, 'forward'):.2f}× its inference forward. Its measured ratio ("
            + ", ".join(f"{measured(row)} at batch {row['batch_size']}" for row in logistics)
            + ") is a ratio of those element-wise and launch costs, which the FLOP count does not describe."
        )
    mebibyte = 2**20
    kept = [row["memory_bytes"]["kept_by_tape_bytes"] / row["analytic"]["memory_bytes"]["activations"]
            for row in results["rows"]]
    big = max(results["rows"], key=lambda row: row["memory_bytes"]["forward_backward_peak_bytes"])
    memory = big["memory_bytes"]
    lines.append(
        "- Memory: the activations TensorFlow's tape keeps for the backward pass measure "
        f"{min(kept):.2f}–{max(kept):.2f}× the analytic count, the excess being the allocator's rounding. Inference "
        "can free each layer's input once the next layer has used it, so it holds about two layers' activations at a "
        "time; the backward pass holds every layer's at once until their gradients are taken, and one gradient per "
        f"parameter. {big['preset']} at batch {big['batch_size']}: inference peaks at "
        f"{memory['forward_peak_bytes'] / mebibyte:.1f} MiB above the model, forward and backward at "
        f"{memory['forward_backward_peak_bytes'] / mebibyte:.1f} MiB "
        f"({memory['forward_backward_peak_bytes'] / max(memory['forward_peak_bytes'], 1):.1f}×), of which "
        f"{big['analytic']['memory_bytes']['activations'] / mebibyte:.1f} MiB are kept activations and "
        f"{big['analytic']['memory_bytes']['gradients'] / mebibyte:.1f} MiB gradients."
    )
    # The smallest batch of the widest model shows the update's share best: its cost does not shrink with the batch.
    update_row = min(results["rows"], key=lambda row: (row["batch_size"], -row["analytic"]["forward_flops"]))
    share = cpu(update_row, "update") / (cpu(update_row, "update") + cpu(update_row, "forward_backward"))
    lines.append(
        "- The update does not grow with the batch: it is element-wise work over every parameter and its optimizer "
        f"slots. For {update_row['preset']} ({update_row['analytic']['optimizer']}) at batch "
        f"{update_row['batch_size']} it takes {cpu(update_row, 'update') * 1e3:.2f} ms of CPU against "
        f"{cpu(update_row, 'forward_backward') * 1e3:.2f} ms for forward and backward: {share:.0%} of the step."
    )
    return lines + [""]


def _layer_widths(row: dict) -> list[int]:
    if "layer_widths" in row["analytic"]:
        return row["analytic"]["layer_widths"]
    # Results from before the widths were recorded: the preset's, as the measuring code then read them.
    from tf_mlp import config, model

    return model.layer_widths(config.preset(row["preset"]).model)


def write_section(page: pathlib.Path, results: dict) -> None:
    """Write the plot and figures (JSON) beside page, then render its cost section from them."""
    plot_ratios(results, page.parent / PLOT)
    (page.parent / DATA).write_text(json.dumps(results, indent=2) + "\n")
    render_section(page)


def render_section(page: pathlib.Path) -> None:
    """Replace (or append) the cost section of page, rendered from the figures (JSON) beside it."""
    results = json.loads((page.parent / DATA).read_text())
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
