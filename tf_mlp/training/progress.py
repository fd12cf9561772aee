"""Progress within an epoch: Keras's progress bar on a terminal, an occasional plain line elsewhere."""

from __future__ import annotations

import sys
import time

import keras

# Without a terminal (a log file, CI) the progress bar is off; a plain line
# this often shows the run is alive between epoch lines.
PROGRESS_LINE_SECONDS = 30.0


def epoch_progress(steps_per_epoch: int, epoch: int, verbose: bool):
    """A Keras progress bar on a terminal; elsewhere a plain line every PROGRESS_LINE_SECONDS."""
    if verbose and sys.stdout.isatty():
        return keras.utils.Progbar(steps_per_epoch, verbose=1, stateful_metrics=["loss", "accuracy"])
    return _ProgressLines(steps_per_epoch, epoch, verbose)


class _ProgressLines:
    """Progbar's update(current, values) as an occasional line, for output that is not a terminal."""

    def __init__(self, steps_per_epoch: int, epoch: int, verbose: bool):
        self.steps_per_epoch, self.epoch, self.verbose = steps_per_epoch, epoch, verbose
        self.last_line = time.monotonic()

    def update(self, current: int, values) -> None:
        now = time.monotonic()
        if not self.verbose or current >= self.steps_per_epoch or now - self.last_line < PROGRESS_LINE_SECONDS:
            return  # the epoch's own line follows at its end
        self.last_line = now
        measures = " ".join(f"{name} {value:.4f}" for name, value in values)
        print(f"epoch {self.epoch + 1}: step {current}/{self.steps_per_epoch} of the epoch, {measures}", flush=True)
