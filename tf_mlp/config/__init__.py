"""One typed configuration for data, model and training, with presets.

The resolved config is saved as ``config.json`` in every run directory and
restored from it, so a run can be resumed, evaluated and exported without
repeating its options. Presets are complete configs; command-line options
override individual fields of the chosen preset (the override wins, and the
resulting config is what ``config.json`` records).

- schema.py: the sections (DataConfig, ModelConfig, TrainConfig, Config),
  their validation, and the command-line options declared on their fields;
- presets.py: the named configs (`--preset`).

Everything is importable from here (``from tf_mlp import config;
config.preset("mlp")``), without TensorFlow.
"""

from tf_mlp.config.presets import DEFAULT_PRESET, PRESETS, preset
from tf_mlp.config.schema import (
    OPTIMIZERS,
    STRATEGIES,
    Config,
    DataConfig,
    ModelConfig,
    Option,
    TrainConfig,
    apply_options,
    command_line_options,
    option,
    parse_hidden_units,
)

__all__ = [
    "DEFAULT_PRESET", "OPTIMIZERS", "PRESETS", "STRATEGIES", "Config", "DataConfig", "ModelConfig", "Option",
    "TrainConfig", "apply_options", "command_line_options", "option", "parse_hidden_units", "preset",
]
