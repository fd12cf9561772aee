"""The typed configuration: its sections, their validation, and the command-line options declared on their fields."""

from __future__ import annotations

import dataclasses
import json
import math
import pathlib
import typing

from tf_mlp.data.catalog import DATA_SETS
from tf_mlp.errors import ConfigError
from tf_mlp.training import optimizers

OPTIMIZERS = optimizers.NAMES
STRATEGIES = ("default", "mirrored", "multiworker")


# --- Command-line options ------------------------------------------------------
# A field declared with option() is an option of `tf-mlp train`, `info` and
# `config`: the CLI builds its options, and maps their values back onto the
# sections, from this metadata alone. Adding an option is a change here.


@dataclasses.dataclass(frozen=True)
class Option:
    """One command-line option and the config field it sets."""

    section: str
    field: str
    flag: str
    """Spelling on the command line: --name, or --name/--no-name for a switch."""
    help: str
    value_type: type
    """int, float, str or bool (what the command line hands over before parse)."""
    choices: tuple[str, ...] | None = None
    parse: typing.Callable[[str], typing.Any] | None = None
    """Turns the command-line text into the field's value (ConfigError if it cannot)."""
    also_sets: tuple[str, str] | None = None
    """(section, field) that the same value also sets."""

    @property
    def key(self) -> str:
        """The option's parameter name: unique across sections."""
        return f"{self.section}_{self.field}"


def option(default, help: str, flag: str | None = None, choices: tuple[str, ...] | None = None,
           parse: typing.Callable[[str], typing.Any] | None = None, also_sets: tuple[str, str] | None = None):
    """A config field that is also a command-line option (flag default: --field-name, --name/--no-name for booleans)."""
    metadata = {"option": {"help": help, "flag": flag, "choices": choices, "parse": parse, "also_sets": also_sets}}
    return dataclasses.field(default=default, metadata=metadata)


def command_line_options() -> list[Option]:
    """Every option-carrying field of every section, in declaration order."""
    result = []
    for section in dataclasses.fields(Config):
        for field in dataclasses.fields(section.default_factory):
            spec = field.metadata.get("option")
            if spec is None:
                continue
            value_type = str if spec["parse"] or field.default is None else type(field.default)
            flag = spec["flag"] or "--" + field.name.replace("_", "-")
            if value_type is bool and "/" not in flag:
                flag = f"{flag}/--no-{flag[2:]}"
            result.append(Option(section.name, field.name, flag, spec["help"], value_type, spec["choices"],
                                 spec["parse"], spec["also_sets"]))
    return result


def apply_options(config: "Config", values: dict[str, typing.Any]) -> "Config":
    """``config`` with every given option (keyed by Option.key; None: not given) on top of it."""
    changes: dict[str, dict[str, typing.Any]] = {}
    for spec in command_line_options():
        value = values.get(spec.key)
        if value is None:
            continue
        value = spec.parse(value) if spec.parse else value
        changes.setdefault(spec.section, {})[spec.field] = value
        if spec.also_sets:
            also_section, also_field = spec.also_sets
            changes.setdefault(also_section, {})[also_field] = value
    for section, fields in changes.items():
        config = config.override(section, **fields)
    return config


def parse_hidden_units(text: str) -> tuple[int, ...]:
    """'1024,512' -> (1024, 512); 'none' -> () (the logistic classifier). Anything else is refused."""
    if text.strip().lower() == "none":
        return ()
    try:
        widths = tuple(int(part) for part in text.split(","))
    except ValueError:
        widths = ()
    if not widths or any(width < 1 for width in widths):
        # '0', '' or ' ' once meant the logistic classifier by accident; only 'none' says so.
        raise ConfigError("--hidden must be positive comma-separated widths like 1024,512, or 'none' for no hidden "
                          f"layer; got {text!r}")
    return widths


@dataclasses.dataclass
class DataConfig:
    """Which data set, where it lives, and how it is split."""

    name: str = option("fashion_mnist", "Data set.", flag="--data", choices=DATA_SETS)
    """A name in tf_mlp/data/catalog.py: fashion_mnist, mnist, notmnist (archives of PNGs), idx (any IDX
    directory), ..."""
    source_dir: str | None = option(
        None, "Raw data: IDX directory or notMNIST archives (default: the data set's usual place).")
    """Raw files: an IDX directory or a directory of notMNIST archives/folders.
    None means the data set's default (Debian's fashion-mnist package for
    fashion_mnist, the TFDS catalogue download for mnist)."""
    data_dir: str | None = option(None, "TFDS data directory for prepared data sets (default: TFDS's).")
    """TFDS data directory where prepared data sets are cached (None: TFDS's default)."""
    validation_size: int = option(5000, "Training examples held out for validation.")
    """Examples held out from the training split for validation and early stopping."""
    test_fraction: float = 0.15
    """Seeded, stratified test hold-out for sources that have no test split."""
    train_size: int = 200_000
    """notMNIST only: training examples drawn from the large archive."""
    test_size: int = 10_000
    """notMNIST only: test examples drawn from the small archive."""
    drop_overlap: bool = option(False, "Drop validation/test images that duplicate a training image.",
                                flag="--drop-overlap/--keep-overlap")
    """Drop validation/test images that have an exact duplicate in training."""
    seed: int = 0
    """Seed of the data split (not of training order)."""


@dataclasses.dataclass
class ModelConfig:
    """The network: raw uint8 pixels -> scale -> hidden ReLU layers -> logits."""

    hidden_units: tuple[int, ...] = option(
        (1024,), "Hidden layer widths, comma-separated (e.g. 1024,512); 'none' for the logistic classifier.",
        flag="--hidden", parse=parse_hidden_units)
    """Widths of the hidden Dense+ReLU layers; () is the logistic classifier."""
    dropout_rate: float = option(0.0, "Dropout rate after each hidden layer.", flag="--dropout")
    """Dropout after every hidden layer, active only in training."""
    input_dropout_rate: float = option(0.0, "Dropout rate on the input pixels.", flag="--input-dropout")
    """Dropout on the input pixels, active only in training (Hinton et al. used 0.2)."""
    l2: float = option(0.0, "L2 penalty on the kernels: l2 * sum(w**2).")
    """L2 penalty l2 * sum(w**2) on every kernel (not biases)."""
    num_classes: int = 10


@dataclasses.dataclass
class TrainConfig:
    """Minibatch SGD and its schedule, checkpoints and hardware options."""

    epochs: int = option(20, "Epochs to train.")
    batch_size: int = option(128, "Global minibatch size.")
    """Global batch size (split across replicas under a distribution strategy)."""
    optimizer: str = option("adam", optimizers.HELP, choices=OPTIMIZERS)
    learning_rate: float = option(1e-3, "Initial learning rate.")
    momentum: float = option(0.9, "Momentum (momentum optimizer only).")
    """Used by the momentum optimizer only."""
    decay_rate: float = option(1.0, "Exponential learning-rate decay factor per --decay-steps (1.0: constant).")
    """Exponential learning-rate decay: lr * decay_rate ** (step / decay_steps); 1.0 is constant."""
    decay_steps: int = option(1000, "Steps over which the learning rate decays by --decay-rate.")
    early_stopping_patience: int = option(0, "Stop after this many epochs without better validation accuracy (0: off).")
    """Stop after this many epochs without a better validation accuracy (0: never);
    the best epoch's weights are kept."""
    label_smoothing: float = option(0.0, "Label smoothing of the training targets (0: none).")
    """Train against targets (1 - s) one-hot + s / K: discourages over-confident logits."""
    flip: bool = option(False, "Augment: mirror training images left-right at random.")
    """Augmentation: mirror each training image left-right with probability 1/2."""
    shift: int = option(0, "Augment: translate training images by up to this many pixels.")
    """Augmentation: translate each training image by up to this many pixels in x and y
    (an MLP has no translation invariance of its own)."""
    checkpoint_every_steps: int = option(500, "Checkpoint every this many steps (and at every epoch end).",
                                         flag="--checkpoint-every")
    """Also checkpoint at the end of every epoch and of training."""
    max_checkpoints: int = option(3, "Newest checkpoints to keep in RUN_DIR/checkpoints (older ones are deleted).")
    seed: int = option(0, "Seed of initialisation, data order and dropout.", also_sets=("data", "seed"))
    """Seed of weight initialisation, shuffling and dropout: same seed, same run."""
    xla: bool = option(False, "Compile the train step with XLA.")
    """Compile the train step with XLA (jit_compile)."""
    mixed_precision: bool = option(False, "float16 compute with loss scaling (GPUs).")
    """float16 compute with float32 weights and loss scaling (for GPUs)."""
    strategy: str = option("default", "Distribution strategy.", choices=STRATEGIES)
    """default (one device), mirrored (all local GPUs/devices) or multiworker (TF_CONFIG)."""


@dataclasses.dataclass
class Config:
    """Everything a run needs; saved beside its checkpoints."""

    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)

    def validate(self) -> "Config":
        """Raise ConfigError naming the first invalid field; return self."""
        data, model, train = self.data, self.model, self.train
        _check(data.name in DATA_SETS, f"data.name must be one of {', '.join(DATA_SETS)}, got {data.name!r}")
        _check(data.validation_size >= 0, f"data.validation_size must be >= 0, got {data.validation_size}")
        _check(_finite(data.test_fraction) and 0.0 < data.test_fraction < 1.0,
               f"data.test_fraction must be between 0 and 1, got {data.test_fraction}")
        _check(data.train_size >= 1 and data.test_size >= 1, "data.train_size and data.test_size must be >= 1")
        _check(0 <= data.seed < 2**32, f"data.seed must be in [0, 2**32), got {data.seed}")
        _check(all(_is_int(width) and width > 0 for width in model.hidden_units),
               "model.hidden_units must be positive integer widths (empty for the logistic classifier), "
               f"got {list(model.hidden_units)}")
        _check(model.num_classes >= 2, f"model.num_classes must be >= 2, got {model.num_classes}")
        _check(_finite(model.dropout_rate) and 0.0 <= model.dropout_rate < 1.0,
               f"model.dropout_rate must be in [0, 1), got {model.dropout_rate}")
        _check(_finite(model.input_dropout_rate) and 0.0 <= model.input_dropout_rate < 1.0,
               f"model.input_dropout_rate must be in [0, 1), got {model.input_dropout_rate}")
        _check(_finite(model.l2) and model.l2 >= 0.0, f"model.l2 must be a finite number >= 0, got {model.l2}")
        _check(_finite(train.label_smoothing) and 0.0 <= train.label_smoothing < 1.0,
               f"train.label_smoothing must be in [0, 1), got {train.label_smoothing}")
        _check(train.epochs >= 1, f"train.epochs must be >= 1, got {train.epochs}")
        _check(train.batch_size >= 1, f"train.batch_size must be >= 1, got {train.batch_size}")
        _check(train.optimizer in OPTIMIZERS,
               f"train.optimizer must be one of {', '.join(OPTIMIZERS)}, got {train.optimizer!r}")
        _check(_finite(train.learning_rate) and train.learning_rate > 0.0,
               f"train.learning_rate must be a finite number > 0, got {train.learning_rate}")
        _check(_finite(train.momentum) and 0.0 <= train.momentum < 1.0,
               f"train.momentum must be in [0, 1), got {train.momentum}")
        _check(_finite(train.decay_rate) and 0.0 < train.decay_rate <= 1.0,
               f"train.decay_rate must be in (0, 1], got {train.decay_rate}")
        _check(train.decay_steps >= 1, f"train.decay_steps must be >= 1, got {train.decay_steps}")
        _check(train.early_stopping_patience >= 0,
               f"train.early_stopping_patience must be >= 0 (0: off), got {train.early_stopping_patience}")
        _check(0 <= train.shift <= 8, f"train.shift must be between 0 and 8 pixels, got {train.shift}")
        _check(train.checkpoint_every_steps >= 1,
               f"train.checkpoint_every_steps must be >= 1, got {train.checkpoint_every_steps}")
        _check(train.max_checkpoints >= 1, f"train.max_checkpoints must be >= 1, got {train.max_checkpoints}")
        _check(0 <= train.seed < 2**32, f"train.seed must be in [0, 2**32), got {train.seed}")
        _check(train.strategy in STRATEGIES,
               f"train.strategy must be one of {', '.join(STRATEGIES)}, got {train.strategy!r}")
        return self

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, values: dict) -> "Config":
        unknown = set(values) - {"data", "model", "train"}
        _check(not unknown, f"unknown config section(s): {', '.join(sorted(unknown))}")
        return cls(
            data=_section(DataConfig, values.get("data", {}), "data"),
            model=_section(ModelConfig, values.get("model", {}), "model"),
            train=_section(TrainConfig, values.get("train", {}), "train"),
        ).validate()

    @classmethod
    def load(cls, path: str | pathlib.Path) -> "Config":
        path = pathlib.Path(path)
        try:
            values = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"{path}: config file not found") from None
        except IsADirectoryError:
            raise ConfigError(f"{path}: is a directory, not a config file") from None
        except UnicodeDecodeError as error:
            line, byte = error.object[:error.start].count(b"\n") + 1, error.object[error.start]
            raise ConfigError(
                f"{path}: not UTF-8 text (byte {byte:#04x} on line {line}, offset {error.start})") from None
        except json.JSONDecodeError as error:
            raise ConfigError(f"{path}: not valid JSON ({error})") from None
        _check(isinstance(values, dict), f"{path}: a config must be a JSON object")
        try:
            return cls.from_dict(values)
        except ConfigError as error:
            raise ConfigError(f"{path}: {error}") from None

    def save(self, path: str | pathlib.Path) -> None:
        """Write the config as JSON; a file that already says exactly this is left untouched."""
        path, text = pathlib.Path(path), self.to_json() + "\n"
        if not path.is_file() or path.read_bytes() != text.encode("utf-8"):
            path.write_text(text, encoding="utf-8")

    def override(self, section: str, **changes) -> "Config":
        """A copy with fields of one section replaced (None values are ignored)."""
        changes = {key: value for key, value in changes.items() if value is not None}
        current = getattr(self, section)
        for key in changes:
            _check(hasattr(current, key), f"unknown option {section}.{key}")
        return dataclasses.replace(self, **{section: dataclasses.replace(current, **changes)}).validate()


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _section(section_class, values: dict, name: str):
    _check(isinstance(values, dict), f"config section {name!r} must be an object")
    fields = {field.name for field in dataclasses.fields(section_class)}
    unknown = set(values) - set(fields)
    _check(not unknown, f"unknown field(s) in config section {name!r}: {', '.join(sorted(unknown))}")
    defaults = section_class()
    converted = {}
    for key, value in values.items():
        # JSON has no tuples; hidden_units comes back as a list.
        default = getattr(defaults, key)
        if isinstance(default, tuple) and isinstance(value, list):
            value = tuple(value)
        if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if default is None:  # the optional paths
            _check(value is None or isinstance(value, str),
                   f"config field {name}.{key} must be a string or null, got {value!r}")
        else:
            _check(type(value) is type(default),
                   f"config field {name}.{key} must be {type(default).__name__}, got {value!r}")
        if isinstance(value, tuple):
            _check(all(_is_int(item) for item in value),
                   f"config field {name}.{key} must be a list of integers, got {list(value)!r}")
        converted[key] = value
    return section_class(**converted)
