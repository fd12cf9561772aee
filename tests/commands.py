"""`tf-mlp` as a user runs it: in a fresh process, or in this one with the terminal's view of its output.

A fresh process pays TensorFlow's import (seconds; tens on a busy machine). Tests that check what only a fresh
process shows (TensorFlow's start-up lines kept off the screen, Ctrl-C, a second process holding a lock, a
process killed mid-write) use `run_subprocess`. The others (one-line errors, exit codes, files left untouched)
use `run_in_process`: the same click command, with what it writes to sys.stdout and sys.stderr and, below
Python, whatever TensorFlow's C++ code writes to file descriptor 2, as a terminal would show it.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
import traceback

from click.testing import CliRunner

COMMAND = [sys.executable, "-m", "tf_mlp.cli"]


def run_subprocess(*arguments, cwd=None, timeout: float = 300, env=None) -> subprocess.CompletedProcess:
    """`tf-mlp ARGUMENTS` in a new process; stdout and stderr as text."""
    return subprocess.run([*COMMAND, *map(str, arguments)], capture_output=True, text=True, cwd=cwd,
                          timeout=timeout, env=env)


def run_in_process(*arguments, cwd=None) -> subprocess.CompletedProcess:
    """`tf-mlp ARGUMENTS` run by this process, answered as run_subprocess answers.

    stderr is the command's own (click's, logging's) followed by the lines written below Python to file
    descriptor 2 while it ran, and by the traceback of an exception that escaped the command (a process would
    print it and exit 1).
    """
    from tf_mlp.cli import main

    arguments = [str(argument) for argument in arguments]
    sys.stderr.flush()
    with tempfile.TemporaryFile() as native, contextlib.chdir(cwd or os.getcwd()):
        saved = os.dup(2)
        os.dup2(native.fileno(), 2)
        try:
            result = CliRunner().invoke(main, arguments, prog_name="tf-mlp")
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        native.seek(0)
        native_lines = native.read().decode("utf-8", errors="replace")
    stderr = result.stderr
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        stderr += "".join(traceback.format_exception(result.exception))
    return subprocess.CompletedProcess([*COMMAND, *arguments], result.exit_code, result.stdout, stderr + native_lines)
