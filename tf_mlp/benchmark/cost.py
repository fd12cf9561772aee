"""Measured training cost beside the analytic one: is the backward pass about twice the forward?

For each preset and batch size, on this machine, in one process:

- forward: inference, model(images, training=False);
- training forward: model(images, training=True) and the loss (dropout, L2), no tape;
- forward + backward: the same under a GradientTape, then tape.gradient (no update);
- update: optimizer.apply of fixed gradients alone.

Each phase is timed in blocks of steps run inside one tf.function. Blocks
are interleaved (every workload and phase once per round, the order
rotated each round) so a load change on a shared machine hits all of them
alike; each figure is the median over rounds with its quartiles, in wall
time and in CPU time (the process's CPU seconds, which leave out the
waiting for a core that other jobs cause). The backward/forward ratio,
((forward+backward) - forward) / forward, is taken within each round.

Memory comes from TensorFlow's allocator statistics
(tf.config.experimental.get_memory_info('CPU:0'), which TensorFlow 2.21
answers on the CPU too), read in a child process that runs TensorFlow's BFC
allocator (TF_CPU_ALLOCATOR_USE_BFC=true): the default CPU allocator's
statistics leave out small tensors and round large ones to megabytes.
Timing stays in this process with the default allocator. Figures are bytes
the allocator handed out, so they include its rounding (256-byte granules,
and a reused free chunk less than twice the request is not split).

The results record the machine (CPU, instruction set, cores, TensorFlow
build) and how much of it other processes used; cost_page renders them
(plot, table, the section of RESULTS.md) from the JSON alone.

    python -m tf_mlp.benchmark.cost --output runs/cost
    python -m tf_mlp.benchmark.cost --output runs/cost --results-page docs/RESULTS.md
    python -m tf_mlp.benchmark.cost --render-only --results-page docs/RESULTS.md   # from docs/results/cost.json
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import click  # noqa: E402

from tf_mlp.benchmark import machine  # noqa: E402
from tf_mlp.benchmark.summary import summarize  # noqa: E402

PRESETS = ("logistic", "mlp", "deep")
BATCH_SIZES = (128, 1024)
PHASES = ("forward", "forward_training", "forward_backward", "update")
MEMORY_METHOD = ("TensorFlow BFC allocator statistics (tf.config.experimental.get_memory_info('CPU:0') "
                 "in a child process with TF_CPU_ALLOCATOR_USE_BFC=true): peak bytes in use during the phase "
                 "above the bytes in use before it")


class Workload:
    """One preset at one batch size: its model, optimizer, fixed random batches and the four phases.

    Each phase is timed as a tf.function running it `steps` times in a graph
    loop, as the trainer runs several steps per call: a tf.function call
    costs a fraction of a millisecond of Python and dispatch, as much as the
    whole logistic forward pass, and would otherwise swamp the small models.
    Consecutive steps read alternate batches, so no step is loop-invariant,
    and each step's result feeds a running sum, so none is pruned. Memory is
    measured on single calls of the same computations. A timed workload
    makes only the looped calls, an untimed one (the memory child's) only
    the single calls.
    """

    def __init__(self, preset: str, batch_size: int, seed: int = 0, timed: bool = True):
        import keras
        import numpy as np
        import tensorflow as tf

        from tf_mlp import config
        from tf_mlp.model import build_model
        from tf_mlp.training import steps

        self.preset, self.batch_size = preset, batch_size
        self.config = config.preset(preset)
        keras.utils.set_random_seed(seed)
        model = build_model(self.config.model, seed=seed)
        optimizer = steps.make_optimizer(self.config.train)
        optimizer.build(model.trainable_variables)
        generator = np.random.default_rng(seed)
        batches = tf.constant(generator.integers(0, 256, (2, batch_size, 28, 28)), tf.uint8)
        labels = tf.constant(generator.integers(0, self.config.model.num_classes, (2, batch_size)), tf.int64)
        self.images, self.labels = batches[0], labels[0]
        variables = model.trainable_variables

        def loss(images, labels):
            # The train step's loss (tf_mlp/training/steps.py) on one replica: mean data loss plus the L2 penalty.
            logits = model(images, training=True)
            per_example_loss = keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True)
            total = tf.nn.compute_average_loss(per_example_loss, global_batch_size=batch_size)
            return total + tf.add_n(model.losses) if model.losses else total

        def gradients(images, labels):
            with tf.GradientTape() as tape:
                total = loss(images, labels)
            return tape.gradient(total, variables)

        def first_elements(tensors):
            # Reading one element of each gradient keeps the whole product that made it, at no cost.
            return tf.add_n([tf.reshape(tensor, [-1])[0] for tensor in tensors])

        step_bodies = {
            "forward": lambda index: tf.reduce_sum(model(batches[index], training=False)),
            "forward_training": lambda index: loss(batches[index], labels[index]),
            "forward_backward": lambda index: first_elements(gradients(batches[index], labels[index])),
            "update": lambda index: self._apply(optimizer, variables),
        }

        def looped(body):
            @tf.function
            def run(steps):
                total = tf.constant(0.0)
                for step in tf.range(steps):
                    # One step at a time, so a step's time is its latency, not two overlapped steps.
                    tf.autograph.experimental.set_loop_options(parallel_iterations=1)
                    total += body(step % 2)
                return total

            return run

        self.loss = tf.function(loss)
        self.fixed_gradients = tf.function(gradients)(self.images, self.labels)
        # The memory child only calls each phase once: it needs no timing loops.
        self.looped = {phase: looped(body) for phase, body in step_bodies.items()} if timed else {}
        self.single = {  # one plain call of each phase, for the memory figures
            "forward": tf.function(lambda images: model(images, training=False)),
            "forward_training": self.loss,
            "forward_backward": tf.function(gradients),
            "update": tf.function(lambda: optimizer.apply(self.fixed_gradients, variables)),
        }
        self.single_arguments = {"forward": (self.images,), "forward_training": (self.images, self.labels),
                                 "forward_backward": (self.images, self.labels), "update": ()}
        # Trace before anything is timed or measured, but only what this process calls: the timing
        # process never makes the single calls, nor the memory child the loops.
        for phase in PHASES:
            if timed:
                self.looped[phase](tf.constant(1))
            else:
                self.run_once(phase)

    def _apply(self, optimizer, variables):
        import tensorflow as tf

        optimizer.apply(self.fixed_gradients, variables)
        return tf.constant(0.0)

    def run_once(self, phase: str):
        return self.single[phase](*self.single_arguments[phase])

    @property
    def key(self) -> str:
        return f"{self.preset}@{self.batch_size}"


def _seconds_per_step(workload: Workload, phase: str, steps: int) -> tuple[float, float]:
    """Wall-clock and CPU seconds (all of this process's threads) per step of one block."""
    import tensorflow as tf

    steps_tensor = tf.constant(steps)
    start, start_cpu = time.perf_counter(), time.process_time()
    workload.looped[phase](steps_tensor).numpy()
    return (time.perf_counter() - start) / steps, (time.process_time() - start_cpu) / steps


def _steps_per_block(workload: Workload, phase: str, block_seconds: float) -> int:
    """Steps that take about block_seconds: long enough to swamp the call's overhead (at least one)."""
    if block_seconds == 0:  # one step per block whatever a step takes: no calibration needed
        return 1
    once = min(_seconds_per_step(workload, phase, 3)[0] for _ in range(3))
    return max(1, round(block_seconds / max(once, 1e-6)))


def time_phases(workloads: list[Workload], rounds: int, block_seconds: float) -> tuple[dict, dict]:
    """Seconds per step of every phase of every workload, one block each per round, interleaved.

    Returns {"wall" and "cpu": {workload: {phase: [seconds per step, one per round]}}} and the
    steps in each block. CPU time counts the work done, not the waiting for the CPU that other
    jobs on a shared machine cause, so it is far steadier than wall time there.
    """
    steps = {}
    for workload in workloads:
        for phase in PHASES:
            steps[workload.key, phase] = _steps_per_block(workload, phase, block_seconds)
    samples = {clock: {workload.key: {phase: [] for phase in PHASES} for workload in workloads}
               for clock in ("wall", "cpu")}
    for round_index in range(rounds):
        shift = round_index % len(workloads)
        for workload in workloads[shift:] + workloads[:shift]:
            phases = PHASES[round_index % len(PHASES):] + PHASES[:round_index % len(PHASES)]
            for phase in phases:
                wall, cpu = _seconds_per_step(workload, phase, steps[workload.key, phase])
                samples["wall"][workload.key][phase].append(wall)
                samples["cpu"][workload.key][phase].append(cpu)
    return samples, {f"{key}/{phase}": count for (key, phase), count in steps.items()}


def measure_memory(workloads: list[Workload]) -> dict[str, dict[str, int]]:
    """Peak allocator bytes of each phase above the bytes in use before it, and what the tape keeps."""
    import tensorflow as tf

    device = "CPU:0"

    def in_use() -> int:
        return tf.config.experimental.get_memory_info(device)["current"]

    results = {}
    for workload in workloads:
        figures = {}
        for phase in PHASES:
            tf.config.experimental.reset_memory_stats(device)
            before = in_use()
            output = workload.run_once(phase)
            figures[f"{phase}_peak_bytes"] = tf.config.experimental.get_memory_info(device)["peak"] - before
            del output
        # A tf.function called under a tape keeps, as extra outputs, exactly what its backward pass reads.
        before = in_use()
        with tf.GradientTape() as tape:
            total = workload.loss(workload.images, workload.labels)
        figures["kept_by_tape_bytes"] = in_use() - before
        del tape, total
        results[workload.key] = figures
    return results


def _memory_in_child(presets, batch_sizes) -> dict:
    """measure_memory in a fresh process on TensorFlow's BFC allocator (set before TensorFlow loads)."""
    command = [sys.executable, "-m", "tf_mlp.benchmark.cost", "--memory-only"]
    command += [argument for preset in presets for argument in ("--preset", preset)]
    command += [argument for batch in batch_sizes for argument in ("--batch-size", str(batch))]
    environment = dict(os.environ, TF_CPU_ALLOCATOR_USE_BFC="true")
    completed = subprocess.run(command, env=environment, capture_output=True, text=True)
    if completed.returncode != 0:
        from tf_mlp.errors import TfMlpError

        last_line = (completed.stderr.strip().splitlines() or ["no output"])[-1]
        raise TfMlpError(f"memory measurement failed in its child process: {last_line}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


def _backward_ratios(times: dict[str, list[float]], forward: str) -> list[float]:
    """((forward+backward) - forward) / forward, round by round.

    Within a round the two blocks ran moments apart, so a change in the machine's load mostly cancels.
    """
    return [(both - alone) / alone for both, alone in zip(times["forward_backward"], times[forward])]


def analytic_cost(preset: str, batch_size: int) -> dict:
    """The figures `tf-mlp info` prints, from the same functions in tf_mlp/model.py."""
    from tf_mlp import config, model

    preset_config = config.preset(preset)
    layers = model.flops_by_layer(preset_config.model)
    return {
        "layer_widths": model.layer_widths(preset_config.model),
        "forward_flops": sum(layer.forward for layer in layers) * batch_size,
        "backward_flops": sum(layer.backward for layer in layers) * batch_size,
        "backward_over_forward": model.forward_backward_ratio(preset_config.model),
        "memory_bytes": model.training_memory_bytes(preset_config.model, batch_size, preset_config.train),
        "optimizer": preset_config.train.optimizer,
    }


def run_cost_benchmark(presets=PRESETS, batch_sizes=BATCH_SIZES, rounds: int = 31, block_seconds: float = 0.1) -> dict:
    """Analytic and measured cost of every preset at every batch size, with the machine and its load."""
    import tensorflow as tf

    load_before = os.getloadavg()
    started = time.time()
    workloads = [Workload(preset, batch) for preset in presets for batch in batch_sizes]
    watch = machine.OtherProcesses().start()
    samples, steps_per_block = time_phases(workloads, rounds, block_seconds)
    other_processes = watch.share()
    memory = _memory_in_child(presets, batch_sizes)
    rows = []
    for workload in workloads:
        wall, cpu = samples["wall"][workload.key], samples["cpu"][workload.key]
        rows.append({
            "preset": workload.preset,
            "batch_size": workload.batch_size,
            "analytic": analytic_cost(workload.preset, workload.batch_size),
            "seconds": {phase: summarize(wall[phase]) for phase in PHASES},
            "cpu_seconds": {phase: summarize(cpu[phase]) for phase in PHASES},
            "backward_over_forward": summarize(_backward_ratios(wall, "forward")),
            "backward_over_forward_cpu": summarize(_backward_ratios(cpu, "forward")),
            "backward_over_training_forward": summarize(_backward_ratios(wall, "forward_training")),
            "backward_over_training_forward_cpu": summarize(_backward_ratios(cpu, "forward_training")),
            "memory_bytes": memory[workload.key],
        })
    return {
        "rows": rows,
        "rounds": rounds,
        "block_seconds": block_seconds,
        "steps_per_block": steps_per_block,
        "memory_method": MEMORY_METHOD,
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "other_processes_share": other_processes,
        "wall_seconds": time.time() - started,
        "machine": machine.current(),
        "threads": {"intra_op": tf.config.threading.get_intra_op_parallelism_threads(),
                    "inter_op": tf.config.threading.get_inter_op_parallelism_threads()},
    }


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--output", "output_dir", default="runs/cost", show_default=True, type=click.Path(file_okay=False),
              help="Where cost.json and cost.png go.")
@click.option("--preset", "presets", multiple=True, type=click.Choice(PRESETS + ("mlp_dropout", "mlp_l2")),
              help=f"Preset to measure (repeatable; default {', '.join(PRESETS)}).")
@click.option("--batch-size", "batch_sizes", multiple=True, type=click.IntRange(min=1),
              help=f"Batch size (repeatable; default {', '.join(map(str, BATCH_SIZES))}).")
@click.option("--rounds", default=31, show_default=True, type=click.IntRange(min=1),
              help="Interleaved rounds; figures are medians over rounds.")
@click.option("--block-seconds", default=0.1, show_default=True, type=click.FloatRange(min=0.0),
              help="Target length of one timed block of calls.")
@click.option("--threads", default=0, show_default=True, type=click.IntRange(min=0),
              help="TensorFlow intra- and inter-op threads (0: TensorFlow's default, all cores).")
@click.option("--quick", is_flag=True,
              help="Batch size 8, 3 rounds, one call per block: checks every figure is produced, not for publishing.")
@click.option("--results-page", type=click.Path(dir_okay=False),
              help="Also write the cost section of this RESULTS.md and its plot and figures (results/cost.png and "
                   "results/cost.json beside it).")
@click.option("--render-only", is_flag=True,
              help="Measure nothing: render the cost section of --results-page again from results/cost.json beside it.")
@click.option("--memory-only", is_flag=True, hidden=True,
              help="Internal: print measure_memory's JSON (run with TF_CPU_ALLOCATOR_USE_BFC=true).")
def main(output_dir, presets, batch_sizes, rounds, block_seconds, threads, quick, results_page, render_only,
         memory_only):
    """Measure forward, backward and update time and memory; compare with the analytic cost."""
    if render_only:
        from tf_mlp.benchmark import cost_page

        if not results_page:
            raise click.UsageError("--render-only renders the section of a --results-page")
        page = pathlib.Path(results_page)
        if not (page.parent / cost_page.DATA).is_file():
            raise click.ClickException(f"{page.parent / cost_page.DATA}: no cost figures to render; measure first")
        cost_page.render_section(page)
        click.echo(f"rendered the cost section of {page} from {page.parent / cost_page.DATA}")
        return
    if threads:
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    presets = presets or PRESETS
    if quick:
        batch_sizes, rounds, block_seconds = batch_sizes or (8,), 3, 0.0
    batch_sizes = batch_sizes or BATCH_SIZES
    if memory_only:
        workloads = [Workload(preset, batch, timed=False) for preset in presets for batch in batch_sizes]
        click.echo(json.dumps(measure_memory(workloads)))
        return
    from tf_mlp.benchmark import cost_page

    results = run_cost_benchmark(presets, batch_sizes, rounds, block_seconds)
    results["command"] = "python -m tf_mlp.benchmark.cost" + "".join(f" {argument}" for argument in sys.argv[1:])
    results["quick"] = quick
    output_dir = pathlib.Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "cost.json").write_text(json.dumps(results, indent=2) + "\n")
    cost_page.plot_ratios(results, output_dir / "cost.png")
    click.echo(cost_page.table(results))
    click.echo(f"{cost_page.load(results)}; wrote {output_dir / 'cost.json'} and {output_dir / 'cost.png'}")
    click.echo(f"Machine: {machine.name(results['machine'])}")
    if results_page:
        cost_page.write_section(pathlib.Path(results_page), results)
        click.echo(f"wrote the cost section of {results_page}")


if __name__ == "__main__":
    main()
