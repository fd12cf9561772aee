"""Exceptions whose message is the whole story for the user.

Every error a user can cause (bad data, bad options, a missing checkpoint) is
raised as one of these with a one-line message naming what is wrong; the CLI
prints it as ``Error: <message>`` and exits non-zero instead of a traceback.
"""

import re


class TfMlpError(Exception):
    """Base class: a problem the user can fix, described in one line."""


class DataError(TfMlpError):
    """A data set is missing, malformed or inconsistent."""


class ConfigError(TfMlpError):
    """A configuration value or combination of options is invalid."""


class CheckpointError(TfMlpError):
    """A run directory has no usable checkpoint."""


class TrainingDivergedError(TfMlpError):
    """The loss became NaN or infinite; training stopped at the last good checkpoint."""


class ExportError(TfMlpError):
    """A model cannot be exported: bad export base, existing version, failed verification."""


_PREAMBLES = ("Graph execution error:", "Detected at node")
"""Lines TensorFlow's graph errors start with that say nothing about the failure."""
_EAGER_OP_NOISE = re.compile(r"\{\{function_node [^}]*\}\}|\s*\[Op:[^\]]*\]( name: ?\S*)?$")
"""What an eager op's error wraps its message in: the op's function node before it, `[Op:Name] name:` after."""


def first_line(error: BaseException) -> str:
    """The first informative line of an exception's message (its class name if it has none), for one-line errors.

    TensorFlow's OpError keeps the bare message in .message; str() of it may
    add the node's traceback.
    """
    message = error.message if isinstance(getattr(error, "message", None), str) else str(error)
    lines = [line.strip() for line in message.splitlines() if line.strip() and not line.strip().startswith(_PREAMBLES)]
    line = _EAGER_OP_NOISE.sub("", lines[0]).strip() if lines else ""
    return line or type(error).__name__


class RolloutError(TfMlpError):
    """A rollout step was refused or failed; the message says where the labels stand."""
