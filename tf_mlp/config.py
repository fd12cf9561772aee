"""One typed configuration for data, model and training, with presets.

The resolved config is saved as ``config.json`` in every run directory and
restored from it, so a run can be resumed, evaluated and exported without
repeating its options. Presets are complete configs; command-line options
override individual fields of the chosen preset (the override wins, and the
resulting config is what ``config.json`` records).
"""

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
    """A name in tf_mlp/data/catalog.py: fashion_mnist, mnist, notmnist (archives of PNGs),
    idx (any IDX directory), ..."""
    source_dir: str | None = option(None, "Raw data: IDX directory or notMNIST archives "
                                          "(default: the data set's usual place).")
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
            line = error.object[:error.start].count(b"\n") + 1
            raise ConfigError(f"{path}: not UTF-8 text (byte {error.object[error.start]:#04x} on line {line}, "
                              f"offset {error.start})") from None
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


# --- Presets -----------------------------------------------------------------
# Each preset is a complete, documented Config. Numbers marked "course" are the
# lesson's values; numbers marked "sweep" come from runs on this project's
# 2-core machine, on Fashion-MNIST (and, for deep, also the notMNIST sample),
# chosen by validation accuracy (see docs/RESULTS.md for the commands).


def logistic() -> Config:
    """The lesson's first classifier: no hidden layer, W 784x10 + b 10 = 7850
    parameters, plain minibatch SGD (course: learning rate 0.5 on scaled
    pixels, batch 128)."""
    return Config(
        model=ModelConfig(hidden_units=()),
        train=TrainConfig(epochs=20, batch_size=128, optimizer="sgd", learning_rate=0.5),
    )


def mlp() -> Config:
    """The lesson's network: one hidden layer of 1024 ReLUs between two
    matrices (814,090 parameters), Adam at 1e-3, batch 128, 20 epochs."""
    return Config(
        model=ModelConfig(hidden_units=(1024,)),
        train=TrainConfig(epochs=20, batch_size=128, optimizer="adam", learning_rate=1e-3),
    )


def mlp_l2() -> Config:
    """The lesson's network with an L2 penalty on the kernels (course: beta
    around 1e-3 on the summed squares; here 1e-5 per weight, as Keras's L2
    regularizer counts it, from a sweep of 1e-6..1e-3)."""
    config = mlp()
    return config.override("model", l2=1e-5)


def mlp_dropout() -> Config:
    """The lesson's network with dropout 0.5 after the hidden layer (course:
    keep probability 0.5)."""
    config = mlp()
    return config.override("model", dropout_rate=0.5)


def deep() -> Config:
    """Two wide hidden layers with dropout, random one-pixel shifts of the
    training images and learning-rate decay, early stopping on validation:
    the best MLP recipe this project found, one recipe for Fashion-MNIST and
    the notMNIST sample.

    Chosen by validation accuracy (never by test accuracy) among recipes
    without left-right mirroring (a mirror changes a letter, so the preset
    must not assume mirror-symmetric classes). One run per line with
    `tf-mlp train --preset deep` plus the options named, niced on the shared
    2-core machine; validation / test accuracy, training seconds, load
    average during the run. --seed also reseeds the validation split (and
    on the notMNIST sample the test hold-out).

    This preset: --hidden 2048,1024 --dropout 0.2 --l2 0 --shift 1
    --batch-size 256, 50 epochs, lr 1e-3 x 0.3 per 4,000 steps, patience 10.
    Options below that do not name dropout, l2 or shift keep the former
    preset's (dropout 0.4, l2 1e-6, no shift), and every run had 40 epochs
    except this preset's (50). The schedule counts steps and a seed fixes
    the run (the 50-epoch notMNIST runs repeated the 40-epoch figures
    exactly), so a 50-epoch run is the 40-epoch run plus ten epochs.

    notMNIST sample (validation 680, test 1,200):
    - this preset, seeds 0 / 1 / 2: 0.9368 / 0.9200, 0.9338 / 0.9283,
      0.9206 / 0.9342, mean 0.9304 / 0.9275 (20, 17, 24 s at load 1-2;
      early stopping ends them at epochs 37, 31, 41, so 40 epochs gave the
      same figures in 33, 28, 37 s at load 3-4);
    - the former preset, seeds 0 / 1 / 2: 0.9221 / 0.9075, 0.9235 / 0.9125,
      0.9074 / 0.9242, mean 0.9177 / 0.9147 (seed 0 from the earlier
      sweep; 18, 18 s at load 4);
    - --shift 2 --dropout 0.2 --l2 0, seeds 0 / 1 / 2: 0.9382 / 0.9167,
      0.9324 / 0.9375, 0.9353 / 0.9333, mean 0.9353 / 0.9292 (34, 37, 32 s
      at load 4); better on validation here, but see Fashion-MNIST;
    - --shift 1: 0.9368 / 0.9117 (37 s, load 1-3); with --l2 0: 0.9397 /
      0.9192 (46 s, load 3-4); --shift 2: 0.9412 / 0.9117 (36 s, load 4-5);
      --shift 1 --label-smoothing 0.1: 0.9353 / 0.9142 (48 s, load 5);
      --shift 1 --input-dropout 0.1: 0.9338 / 0.9142 (53 s, load 6-8);
      --hidden 1024,1024 --dropout 0.3 --shift 1 --l2 0: 0.9338 / 0.9158
      (23 s, load 7).
    Fashion-MNIST (validation 5,000, test 10,000):
    - this preset with 40 epochs: 0.9120 / 0.9056, 291 s at load 3-3.5
      (best epoch 38); --seed 1: 0.9108 / 0.9040, 257 s at load 2-5 (best
      epoch 40: still improving, hence 50 epochs);
    - the former preset --seed 1: 0.9128 / 0.9064, 205 s at load 2-3;
    - --shift 1 --l2 0 (dropout 0.4): 0.9094 / 0.8972, 390 s at load 5-6,
      still underfitting at epoch 40 (train accuracy 0.906): shifts and
      dropout 0.4 together regularize too hard for 40 epochs;
    - --shift 2 --l2 0 --dropout 0.2: 0.9028 / 0.8943, 276 s at load 3-4
      (two-pixel moves cost the garments what they gain the letters);
    - this preset (50 epochs): 0.9138 / 0.9069, 250 s at load 2-2.6 (best
      epoch 46); --seed 1: 0.9148 / 0.9054, 244 s at load 2-2.5 (best
      epoch 43); --seed 2: 0.9150 / 0.9048, 246 s at load 2-2.4 (best
      epoch 42); mean 0.9145 / 0.9057.

    Earlier sweep (the former preset was chosen from it, on Fashion-MNIST):
    - the former preset (best epoch 37): 0.9128 / 0.9060, 509 s at load 4-8;
    - --hidden 1024,1024 --dropout 0.3 (stopped at epoch 37, best 27):
      0.9118 / 0.9036, 468 s at load 6-16;
    - 1024,512,256, dropout 0.3, batch 128, 30 epochs, decay 0.5 per 4,300
      steps: 0.9072 / 0.9015;
    - --hidden 1024,1024 --dropout 0.5 --input-dropout 0.2, 50 epochs: 0.9084 /
      0.8984, 666 s (regularized so hard it still underfits at epoch 50);
    - --hidden 1024,1024 --dropout 0.3 --flip, 60 epochs (stopped at 47):
      0.9132 / 0.9008, 1,226 s at load 11-21 (mirrored, so not eligible);
    - --hidden 1024,1024 --dropout 0.3 --shift 1: behind the unshifted run at
      every epoch it ran (0.861 at epoch 5 against 0.873), stopped;
    - 2048,2048 (dropout 0.5) and 2048,1024 (dropout 0.4, --flip) ran at
      300-900 examples/s under a load of 12-21 and were stopped unfinished.
    notMNIST sample, same era: the former preset 0.9221 / 0.9075, 41 s
    (stopped at epoch 19); --hidden 1024,1024 --dropout 0.3: 0.9206 /
    0.9083; that with --shift 1: 0.9353 / 0.9125 (0.9426 / 0.9200 with
    --l2 0); with --dropout 0.5 --input-dropout 0.2: 0.9324 / 0.9125; with
    --flip: 0.9118 / 0.8850.

    So in 40 epochs one-pixel shifts with lighter dropout cost Fashion-MNIST
    at most noise on validation (0.9120 and 0.9108 against 0.9128 and
    0.9128 over two seeds; its figures move by about 0.003 from noise) and
    raise the notMNIST sample's mean validation over three seeds from 0.9177
    to 0.9304 (its figures move by about 0.008 from noise, with 680
    validation and 1,200 test images); ten more epochs win back
    Fashion-MNIST's validation and stay within 10 minutes of training on 2
    cores (250 s at load 2; 40 epochs took 291-390 s at load 3-6, so 50
    take about 490 s there). Two-pixel shifts
    gain the letters a little more on validation but lose Fashion-MNIST
    0.009, so one recipe serves both and no per-data-set augmentation is
    needed. Fashion-MNIST passes 0.905 with this preset's seed and on the
    mean of three seeds (0.9069, 0.9054, 0.9048: within its noise of 0.905
    either way, and not 0.91); every notMNIST seed reaches 0.92.
    """
    return Config(
        model=ModelConfig(hidden_units=(2048, 1024), dropout_rate=0.2, l2=0.0),
        train=TrainConfig(
            epochs=50, batch_size=256, optimizer="adam", learning_rate=1e-3,
            decay_rate=0.3, decay_steps=4000, early_stopping_patience=10, shift=1,
        ),
    )


PRESETS: dict[str, typing.Callable[[], Config]] = {
    "logistic": logistic,
    "mlp": mlp,
    "mlp_l2": mlp_l2,
    "mlp_dropout": mlp_dropout,
    "deep": deep,
}
DEFAULT_PRESET = "mlp"


def preset(name: str) -> Config:
    """The named preset, or ConfigError listing the known ones."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return PRESETS[name]().validate()
