#!/usr/bin/env python
"""The main job end to end: train -> export -> serve -> roll out -> batch inference over REST.

    python scripts/demo.py                      # what `make demo` runs

1. trains the default model (`tf-mlp train --preset mlp`) and evaluates it on
   the Fashion-MNIST test split (a finished run directory is reused);
2. exports it as a new version under models/tf_mlp/ (`tf-mlp export`);
3. starts a server with serving/run.sh: the real tensorflow_model_server
   where installed, else its Docker image, else the embedded `tf-mlp serve`,
   on the demo's own copy of serving/models.config (RUN_DIR/models.config),
   which serves pinned versions by label;
4. makes the new version `stable`: the first time by writing it into that
   config, later with `tf-mlp rollout gate`, `canary` and `promote` on the
   running server (the gate compares it with the version stable before);
5. runs scripts/batch_predict.py over REST on the whole test split, asking
   for `stable` as every client does by default;
6. prints the accuracy through the server beside the run's own, stops the
   server, and exits 1 if they differ: same images, same model, so the same
   class ids and the same count of correct ones. (The probabilities are not
   compared: the server batches requests its own way, and float32 sums added
   in another order may differ in their last digits; README, "Batch output".)
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

import click

REPO = pathlib.Path(__file__).resolve().parents[1]
READY_SECONDS = 180


def _run(command: list[str]) -> None:
    print("$ " + " ".join(command), flush=True)
    subprocess.run(command, check=True, cwd=REPO)


def _wait_until_available(process: subprocess.Popen, rest_port: int, version: int) -> None:
    """Poll the model's status until the exported version is AVAILABLE, or fail with the reason."""
    url = f"http://127.0.0.1:{rest_port}/v1/models/tf_mlp/versions/{version}"
    deadline = time.monotonic() + READY_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise click.ClickException(
                f"the server exited with status {process.returncode} before serving version {version}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                states = [entry["state"] for entry in json.load(response)["model_version_status"]]
                if "AVAILABLE" in states:
                    return
        except (urllib.error.URLError, ConnectionError, OSError, ValueError):
            pass  # not listening yet, or the version not loaded yet
        time.sleep(0.5)
    raise click.ClickException(f"version {version} was not AVAILABLE at {url} within {READY_SECONDS} s")


def serving_config(run_dir: pathlib.Path, export_base: pathlib.Path, version: int) -> tuple[pathlib.Path, int]:
    """(the demo's serving config, the version it has as stable): RUN_DIR/models.config, written from
    serving/models.config with `version` pinned as stable and canary the first time, or when the version it
    had as stable is no longer exported (models/ deleted, or pruned)."""
    from tf_mlp import contract, layout
    from tf_mlp.rollout import config_file

    path = run_dir / "models.config"
    exported = layout.version_dirs(export_base / contract.MODEL_NAME)
    if path.exists():
        stable = config_file.read(path).labels(contract.MODEL_NAME).get(contract.STABLE_LABEL)
        if stable in exported:
            return path, stable
        print(f"note: {path} had version {stable} as {contract.STABLE_LABEL}, which is not in {export_base}; "
              f"starting again from version {version}", flush=True)
    shipped = config_file.read(REPO / "serving" / "models.config")
    first = {contract.STABLE_LABEL: version, contract.CANARY_LABEL: version}
    print(f"writing {path}: version {version} is {contract.STABLE_LABEL}", flush=True)
    config_file.write(dataclasses.replace(shipped, path=path),
                      shipped.with_rollout(contract.MODEL_NAME, first, [version]))
    return path, version


def run_demo(run_dir: pathlib.Path, export_base: pathlib.Path, rest_port: int, grpc_port: int) -> dict:
    """Train, export, serve, roll the export out, batch-predict; return both accuracies and both counts of
    correct test images."""
    bin_dir = pathlib.Path(sys.executable).parent
    tf_mlp = str(bin_dir / "tf-mlp")
    _run([tf_mlp, "train", "--preset", "mlp", "--run-dir", str(run_dir)])
    _run([tf_mlp, "export", str(run_dir), "--export-base", str(export_base), "--keep", "3"])
    from tf_mlp.export import list_versions

    version = max(list_versions(export_base))
    config, stable = serving_config(run_dir, export_base, version)
    environment = dict(os.environ, MODELS_DIR=str(export_base), MODEL_CONFIG=str(config), REST_PORT=str(rest_port),
                       GRPC_PORT=str(grpc_port), PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    print(f"$ serving/run.sh  (models in {export_base}, config {config}, REST port {rest_port})", flush=True)
    server = subprocess.Popen(["bash", str(REPO / "serving" / "run.sh")], cwd=REPO, env=environment,
                              start_new_session=True)
    try:
        _wait_until_available(server, rest_port, stable)
        if stable != version:
            where = ["--config", str(config), "--export-base", str(export_base),
                     "--grpc", f"grpc://127.0.0.1:{grpc_port}", "--rest", f"rest://127.0.0.1:{rest_port}"]
            _run([tf_mlp, "rollout", "gate", str(version), *where, "--no-progress"])
            _run([tf_mlp, "rollout", "canary", str(version), *where])
            _run([tf_mlp, "rollout", "promote", str(version), *where])
        predictions, summary_path = run_dir / "predictions.csv", run_dir / "batch_summary.json"
        for stale in (predictions, summary_path):
            stale.unlink(missing_ok=True)
        _run([sys.executable, str(REPO / "scripts" / "batch_predict.py"), "tfds:fashion_mnist/test",
              "--output", str(predictions), "--server", f"rest://127.0.0.1:{rest_port}",
              "--summary", str(summary_path), "--no-progress", "--restart"])
    finally:
        # SIGTERM to the whole session: run.sh execs the server, which drains and exits.
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=60)
    served = json.loads(summary_path.read_text())
    evaluated = json.loads((run_dir / "evaluation.json").read_text())
    return {"version": version, "served_accuracy": served["accuracy"], "served_correct": served["correct"],
            "evaluated_accuracy": evaluated["test_accuracy"],
            # Counted again from the accuracy, a fraction of whole images.
            "evaluated_correct": round(evaluated["test_accuracy"] * evaluated["split_sizes"]["test"])}


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--run-dir", default="runs/demo", show_default=True, help="Run directory (reused if finished).")
@click.option("--export-base", default="models", show_default=True, help="Export base the server polls.")
@click.option("--rest-port", default=8501, show_default=True, help="REST port of the server.")
@click.option("--grpc-port", default=8500, show_default=True, help="gRPC port of the server.")
def main(run_dir, export_base, rest_port, grpc_port):
    """Train, export, serve and batch-predict the default model; compare accuracies."""
    result = run_demo((REPO / run_dir).resolve(), (REPO / export_base).resolve(), rest_port, grpc_port)
    print(f"test accuracy through the server (REST, version {result['version']}): {result['served_accuracy']:.4f}")
    print(f"test accuracy of the run's own evaluation:              {result['evaluated_accuracy']:.4f}")
    difference = result["served_correct"] - result["evaluated_correct"]
    if difference:
        raise click.ClickException(
            f"through the server {abs(difference)} test image(s) {'more' if difference > 0 else 'fewer'} are "
            "classified correctly than in the run's evaluation: the served model is not the trained one, or an "
            "image's two most probable classes are so close that float32 rounding swapped them (rare)")
    print(f"equal: the server classifies {result['served_correct']} test images correctly, as the run's evaluation "
          "did")


if __name__ == "__main__":
    main()
