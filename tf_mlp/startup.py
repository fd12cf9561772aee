"""TensorFlow's start-up lines, kept off the user's screen unless asked for.

Importing TensorFlow 2.21 writes 5-7 lines to stderr on a CPU-only machine:
"All log messages before absl::InitializeLog() is called are written to
STDERR", oneDNN and cuda-driver notices (twice), and, at the first device
query, "failed call to cuInit: ... (303)". They come from C++ before absl's
logging is initialised, so TF_CPP_MIN_LOG_LEVEL (even 3) does not stop the
first ones, nor do CUDA_VISIBLE_DEVICES=-1 or GRPC_VERBOSITY (measured: the
same lines each time). What works is to point file descriptor 2 elsewhere
while TensorFlow is imported and probes its devices, then restore it and
pass on whatever was not one of those known notices.

`tf-mlp --verbose` or TF_MLP_VERBOSE=1 shows everything, as TensorFlow prints it.

Once imported, TensorFlow's objects are frozen out of the garbage
collector (see _freeze_library_objects).
"""

from __future__ import annotations

import atexit
import gc
import logging
import os
import re
import sys
import tempfile

import click

VERBOSE_VARIABLE = "TF_MLP_VERBOSE"

# absl's pre-initialisation banner, INFO/WARNING lines in absl's format, and
# the cuInit error that only means "this machine has no GPU".
_START_UP_NOISE = re.compile(
    r"^(WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    r"|[IW]\d{4} [\d:.]+ +\d+ \S+:\d+\] .*"
    r"|E\d{4} [\d:.]+ +\d+ cuda_\w+\.cc:\d+\] failed call to cuInit: .*)$"
)


verbose_option = click.option(
    "--verbose", is_flag=True, envvar=VERBOSE_VARIABLE,
    help=f"Show TensorFlow's start-up and C++ log lines (also {VERBOSE_VARIABLE}=1).",
)
"""--verbose for a root command (TensorFlowCommand reads it) or a script that calls import_tensorflow itself."""


class TensorFlowCommand(click.Command):
    """A command that imports TensorFlow first, with its start-up lines dropped unless --verbose."""

    imports_tensorflow = True

    def invoke(self, ctx):
        if self.imports_tensorflow:
            import_tensorflow(verbose=bool(ctx.find_root().params.get("verbose")) or verbose_from_environment())
        return super().invoke(ctx)


def verbose_from_environment() -> bool:
    return os.environ.get(VERBOSE_VARIABLE, "").strip().lower() not in ("", "0", "false", "no")


def import_tensorflow(verbose: bool = False) -> None:
    """Import TensorFlow and let it probe its devices, with its start-up notices dropped unless verbose."""
    # No garbage collection while TensorFlow imports: the import makes ~300,000 long-lived objects and almost
    # no garbage, yet the collector would walk the growing heap again and again (0.65 s of a 3.5 s import).
    collecting = gc.isenabled()
    gc.disable()
    try:
        if verbose:
            import tensorflow  # noqa: F401  (its lines as TensorFlow prints them)
        else:
            _import_quietly()
        _freeze_library_objects()
    finally:
        if collecting:
            gc.enable()


def _import_quietly() -> None:
    # TensorFlow's later C++ INFO and WARNING lines; errors still show. An explicit setting wins.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if "tensorflow" in sys.modules:
        return  # too late to catch the import's lines
    sys.stderr.flush()
    saved_stderr = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            import tensorflow as tf

            tf.config.list_physical_devices("GPU")  # the CUDA probe (cuInit) happens here
        finally:
            os.dup2(saved_stderr, 2)
            os.close(saved_stderr)
            captured.seek(0)
            # Anything else (a real error, a Python warning) is passed on.
            for line in captured.read().decode("utf-8", errors="replace").splitlines():
                if line.strip() and not _START_UP_NOISE.match(line):
                    print(line, file=sys.stderr)
    _drop_retracing_warnings()


def _freeze_library_objects() -> None:
    """Keep the ~300,000 objects that importing TensorFlow leaves behind out of garbage collection.

    They live as long as the process, yet every full collection walks them all (0.15-0.19 s on a Zen 4: a
    pause in the middle of a server's requests), and the collections at interpreter exit tear them down one
    by one, running TensorFlow's finalizers for nothing: about 1 s of CPU, a quarter of a short command's
    whole cost. gc.freeze() moves them to the permanent generation, which no collection visits; objects made
    later are collected as before. At exit, freezing again does the same for the rest: the process is
    ending, and what it writes is flushed and closed by the code that writes it, never by a finalizer.
    """
    global _freeze_at_exit_registered
    gc.freeze()
    if not _freeze_at_exit_registered:
        atexit.register(gc.freeze)
        _freeze_at_exit_registered = True


_freeze_at_exit_registered = False


class _RetracingFilter(logging.Filter):
    """Drop "N out of the last M calls to <function> triggered tf.function retracing".

    A process that trains several models in turn (tf-mlp reproduce) builds
    new tf.functions for each on purpose; the warning suggests a bug that
    is not there.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return "triggered tf.function retracing" not in record.getMessage()


def _drop_retracing_warnings() -> None:
    import tensorflow as tf

    tf.get_logger().addFilter(_RetracingFilter())
