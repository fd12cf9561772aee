"""Training: the loop and what it drives, and the run directory it writes.

    loop.py         TrainLoop and train_and_evaluate(config, run_dir): epochs, checkpoints, resumption, summaries
    steps.py        the train step (named StepSums) and the eval step
    pipeline.py     resident uint8 splits: seeded epoch permutations, batch gathers, evaluation pipelines
    distribute.py   default, mirrored and multi-worker strategies
    evaluate.py     loss, accuracy, per-class accuracy and confusion matrix of a model on a split
    optimizers.py   every optimizer a run can use: name, help, builder
    runs.py         reading a run directory, restoring its checkpoints, the one-writer lock

`from tf_mlp.training import train_and_evaluate` is the entry point. Importing
this package imports nothing heavy (tf_mlp.config reads the optimizer table from
here without TensorFlow); the loop is imported on first use.
"""

from __future__ import annotations

__all__ = ["train_and_evaluate"]


def __getattr__(name: str):
    # Lazy (PEP 562): importing the loop imports TensorFlow, which `tf-mlp --help` must not wait for.
    if name == "train_and_evaluate":
        from tf_mlp.training.loop import train_and_evaluate

        return train_and_evaluate
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
