"""The training section of PERFORMANCE.md, rendered from the training benchmark's JSON alone.

Nothing here measures or imports TensorFlow: every figure, ratio and goal
is read from or derived from the results that tf_mlp.benchmark.training
wrote, so re-rendering an old performance.json states what that run saw.
"""

from __future__ import annotations

from tf_mlp.benchmark import machine
from tf_mlp.benchmark.summary import summarize

GOALS = {"fit_default": 1.5, "fit_tuned": 1.0, "matmul_peak_fraction": 0.55}
_HEADLINE_BEFORE_RECORDED = 128
"""The headline batch size of results written before they recorded it."""
_LIBRARY_NAMES = {"tensorflow": "TensorFlow", "numpy": "numpy"}


def headline_batch_size(results: dict) -> int:
    return results.get("headline_batch_size", _HEADLINE_BEFORE_RECORDED)


def loaded(results: dict) -> bool:
    """True when other processes took a measurable share of the cores in some repetition (or it could not be told)."""
    return not machine.quiet(results["other_processes_share"])


def _rate(results: dict, key: str) -> dict:
    return results["examples_per_second"][key]


def best_tuned_fit(results: dict, batch_size: int) -> dict:
    """The tuned model.fit at this batch: in each repetition the faster of its tuned settings."""
    return _rate(results, f"fit_tuned_{batch_size}")


def _paired(results: dict, numerator: str, denominator: str) -> dict:
    """Median and range of numerator / denominator taken within each repetition."""
    pairs = zip(_rate(results, numerator)["values"], _rate(results, denominator)["values"])
    return summarize([top / bottom for top, bottom in pairs])


def comparisons(results: dict, batch_size: int) -> dict:
    """The ratios the goals are stated in: within each repetition, then median and range."""
    cli = _rate(results, f"cli_{batch_size}")["median"]
    return {
        "over_fit_default": _paired(results, f"cli_{batch_size}", f"fit_spe1_{batch_size}"),
        "over_fit_tuned": _paired(results, f"cli_{batch_size}", f"fit_tuned_{batch_size}"),
        "matmul_peak_fraction": cli * results["flops_per_example"] / (results["matmul_gflops"] * 1e9),
        "products_fraction": cli / _rate(results, f"products_{batch_size}")["median"],
    }


def _ratio_cell(summary: dict) -> str:
    return f"{summary['median']:.2f}x ({summary['min']:.2f}–{summary['max']:.2f})"


def _cell(summary: dict) -> str:
    return f"{summary['median'] / 1000:,.1f}k ({summary['min'] / 1000:,.1f}–{summary['max'] / 1000:,.1f}k)"


def cores(results: dict) -> int | None:
    """The core count the run recorded (in its machine record, or, before that, on its own)."""
    recorded = results.get("machine")
    return recorded["cpus"] if isinstance(recorded, dict) else results.get("cpus")


def peak_sentence(results: dict) -> str:
    """The matrix-multiply peak: what it is, which library and size reached it, and what each library reached."""
    if "matmul_gflops_by_library" not in results:
        # Results from before the peak took numpy's products and several sizes into account.
        return (f"Matrix-multiply peak: {results['matmul_gflops']:.0f} GFLOP/s (best of {results['matmul_samples']} "
                f"timings of two float32 {results['matmul_size']}² products in TensorFlow alone, taken across the "
                "repetitions).")
    by_library = results["matmul_gflops_by_library"]
    sizes = sorted({int(size) for rates in by_library.values() for size in rates})
    peak = results["matmul_peak"]
    each = "; ".join(
        f"{_LIBRARY_NAMES.get(library, library)} " + ", ".join(
            f"{rates[str(size)]:.0f} at {size}²" for size in sizes if str(size) in rates)
        for library, rates in by_library.items())
    recorded = results.get("machine")
    blas = f" (numpy's BLAS: {recorded['blas']})" if isinstance(recorded, dict) and recorded.get("blas") else ""
    return (f"Matrix-multiply peak: {results['matmul_gflops']:.0f} GFLOP/s, reached by "
            f"{_LIBRARY_NAMES.get(peak['library'], peak['library'])}'s float32 {peak['size']}² product: the best of "
            f"TensorFlow's and numpy's products at {_and([f'{size}²' for size in sizes])}, "
            f"{results['matmul_timings']} timings of each taken across the repetitions (GFLOP/s: {each}){blas}.")


def _and(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def markdown(results: dict) -> list[str]:
    """The training section of PERFORMANCE.md: how it was measured, the table and the goals."""
    flops = results["flops_per_example"]
    headline = headline_batch_size(results)
    layers = ", ".join(f"{layer['name']} {layer['fan_in']}x{layer['fan_out']}: {layer['forward']:,} forward + "
                       f"{layer['weight_gradient']:,} weight gradient + {layer['input_gradient']:,} input gradient"
                       for layer in results["flops_by_layer"])
    timed = f"epochs 2–{results['epochs']}" if results["epochs"] > 2 else "epoch 2"
    tuned = [str(setting) for setting in results["fit_steps_per_execution"] if setting != 1]
    tuned_text = ("the faster of steps_per_execution " + " and ".join(tuned) if len(tuned) > 1
                  else "steps_per_execution " + tuned[0])
    lines = [
        f"Model {results['model']}; the same resident uint8 data, batch and optimizer for every trainer. Rates are "
        f"examples per second over {timed} (the first epoch is warm-up), median and (min–max) of "
        "the repetitions, which were interleaved; ratios are taken within each repetition, then median and "
        f"(min–max). The tuned model.fit is, in each repetition, {tuned_text}. "
        f"Load: {machine.describe(results['other_processes_share'], cores(results))} "
        "(CPU time from /proc/stat less this benchmark's own, per repetition).",
        "",
        f"FLOPs per training example, counted exactly (`tf_mlp.model.training_flops_per_example`): **{flops:,}** "
        f"({layers}; the first layer's input gradient is never computed). {peak_sentence(results)}",
        "",
        *([f"**Other processes used {machine.QUIET_SHARE:.0%} or more of the cores in some repetition**: the "
           "absolute rates and the peak are understated by unequal amounts and the shares of the peak are not "
           "conclusive; the ratios within repetitions are the meaningful figures.", ""]
          if loaded(results) else []),
        "| batch | `tf-mlp train` | train function alone | model.fit, defaults | model.fit, steps_per_execution tuned "
        "| step's products alone (limit) | train / fit defaults | train / fit tuned | train, share of matmul peak |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for batch_size in results["batch_sizes"]:
        ratio = comparisons(results, batch_size)
        lines.append(
            f"| {batch_size} | {_cell(_rate(results, f'cli_{batch_size}'))} "
            f"| {_cell(_rate(results, f'trainer_{batch_size}'))} "
            f"| {_cell(_rate(results, f'fit_spe1_{batch_size}'))} | {_cell(best_tuned_fit(results, batch_size))} "
            f"| {_cell(_rate(results, f'products_{batch_size}'))} | {_ratio_cell(ratio['over_fit_default'])} "
            f"| {_ratio_cell(ratio['over_fit_tuned'])} "
            f"| {ratio['matmul_peak_fraction']:.0%} ({ratio['products_fraction']:.0%} of the limit) |"
        )
    xla = _rate(results, f"trainer_xla_{headline}")
    accuracy = results["test_accuracy"]

    def values(key: str) -> str:
        return ", ".join(f"{value / 1000:.1f}k" for value in _rate(results, key)["values"])

    lines += [
        "",
        f"- Each repetition at batch {headline}, in order: `tf-mlp train` {values(f'cli_{headline}')}; "
        + "; ".join(f"model.fit steps_per_execution={setting} {values(f'fit_spe{setting}_{headline}')}"
                    for setting in results["fit_steps_per_execution"]) + ".",
        f"- Train function with XLA (`--xla`) at batch {headline}: {_cell(xla)} examples/s.",
        f"- Test accuracy after {results['epochs']} epochs at batch {headline}: `tf-mlp train` "
        f"{accuracy[f'cli_{headline}']:.4f}, model.fit {accuracy[f'fit_spe1_{headline}']:.4f} "
        "(same model and optimizer, so the speeds compare like with like).",
        f"- Peak resident memory of `tf-mlp train`: {results['training_peak_rss_mb']:,.0f} MB.",
    ]
    return lines


def goals(results: dict) -> list[str]:
    """Each training goal with this run's figure, marked met or not."""
    headline = headline_batch_size(results)
    ratio = comparisons(results, headline)

    def mark(value: float, goal: float) -> str:
        return "met" if value >= goal else "NOT met"

    def below(summary: dict, goal: float) -> str:
        short = sum(value < goal for value in summary["values"])
        return f"; below it in {short} of {len(summary['values'])} repetitions" if short else ""

    def judged(name: str) -> str:
        summary = ratio[f"over_{name}"]
        return f"{_ratio_cell(summary)} ({mark(summary['median'], GOALS[name])}{below(summary, GOALS[name])})"

    products_share = (_rate(results, f"products_{headline}")["median"] * results["flops_per_example"]
                      / (results["matmul_gflops"] * 1e9))
    return [
        f"`tf-mlp train` at batch {headline} >= {GOALS['fit_default']}x model.fit at defaults: {judged('fit_default')}",
        f"`tf-mlp train` at batch {headline} >= {GOALS['fit_tuned']}x model.fit with steps_per_execution tuned: "
        f"{judged('fit_tuned')}",
        f"`tf-mlp train` at batch {headline} >= {GOALS['matmul_peak_fraction']:.0%} of the matrix-multiply peak: "
        f"{ratio['matmul_peak_fraction']:.0%} ({mark(ratio['matmul_peak_fraction'], GOALS['matmul_peak_fraction'])})"
        f"{' (not conclusive: measured under load)' if loaded(results) else ''}; "
        f"the step's own products alone reach {products_share:.0%} at this batch",
    ]
