#!/usr/bin/env python
"""The main job end to end: train -> export -> serve -> batch inference over REST.

    python scripts/demo.py                      # what `make demo` runs

1. trains the default model (`tf-mlp train --preset mlp`) and evaluates it on
   the Fashion-MNIST test split (a finished run directory is reused);
2. exports it as a new version under models/tf_mlp/ (`tf-mlp export`);
3. starts a server with serving/run.sh: the real tensorflow_model_server
   where installed, else its Docker image, else the embedded `tf-mlp serve`;
4. runs scripts/batch_predict.py over REST on the whole test split;
5. prints the accuracy through the server beside the run's own, stops the
   server, and exits 1 if they differ: same images, same model, so the same
   class ids and the same count of correct ones. (The probabilities are not
   compared: the server batches requests its own way, and float32 sums added
   in another order may differ in their last digits; README, "Batch output".)
"""

from __future__ import annotations

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


def run_demo(run_dir: pathlib.Path, export_base: pathlib.Path, rest_port: int, grpc_port: int) -> dict:
    """Train, export, serve, batch-predict; return both accuracies and both counts of correct test images."""
    bin_dir = pathlib.Path(sys.executable).parent
    tf_mlp = str(bin_dir / "tf-mlp")
    _run([tf_mlp, "train", "--preset", "mlp", "--run-dir", str(run_dir)])
    _run([tf_mlp, "export", str(run_dir), "--export-base", str(export_base), "--keep", "3"])
    from tf_mlp.export import list_versions

    version = max(list_versions(export_base))
    environment = dict(os.environ, MODELS_DIR=str(export_base), REST_PORT=str(rest_port), GRPC_PORT=str(grpc_port),
                       PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    print(f"$ serving/run.sh  (models in {export_base}, REST port {rest_port})", flush=True)
    server = subprocess.Popen(["bash", str(REPO / "serving" / "run.sh")], cwd=REPO, env=environment,
                              start_new_session=True)
    try:
        _wait_until_available(server, rest_port, version)
        predictions, summary_path = run_dir / "predictions.csv", run_dir / "batch_summary.json"
        for stale in (predictions, summary_path):
            stale.unlink(missing_ok=True)
        _run([sys.executable, str(REPO / "scripts" / "batch_predict.py"), "tfds:fashion_mnist/test",
              "--output", str(predictions), "--server", f"rest://127.0.0.1:{rest_port}", "--version", str(version),
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
