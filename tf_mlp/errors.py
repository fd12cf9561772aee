"""Exceptions whose message is the whole story for the user.

Every error a user can cause (bad data, bad options, a missing checkpoint) is
raised as one of these with a one-line message naming what is wrong; the CLI
prints it as ``Error: <message>`` and exits non-zero instead of a traceback.
"""


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


class RolloutError(TfMlpError):
    """A rollout step was refused or failed; the message says where the labels stand."""
