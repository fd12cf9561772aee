import json

import pytest

from tf_mlp import config
from tf_mlp.errors import ConfigError


@pytest.mark.parametrize("name", list(config.PRESETS))
def test_presets_round_trip_through_json(name, tmp_path):
    run_config = config.preset(name)
    run_config.save(tmp_path / "config.json")
    assert config.Config.load(tmp_path / "config.json") == run_config


def test_presets_are_the_lesson():
    assert config.preset("logistic").model.hidden_units == ()
    assert config.preset("logistic").train.optimizer == "sgd"
    assert config.preset("mlp").model.hidden_units == (1024,)
    assert config.preset("mlp_l2").model.l2 > 0
    assert config.preset("mlp_dropout").model.dropout_rate > 0
    deep = config.preset("deep")
    assert len(deep.model.hidden_units) > 1 and deep.model.dropout_rate > 0
    assert deep.train.shift > 0 and not deep.train.flip  # letters keep their class when moved, not when mirrored
    assert deep.train.decay_rate < 1


def test_config_and_its_presets_import_without_tensorflow():
    import subprocess
    import sys

    code = ("import sys; from tf_mlp import config; config.preset('deep'); config.command_line_options(); "
            "assert 'tensorflow' not in sys.modules, 'tensorflow imported'")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_unknown_preset_names_the_choices():
    with pytest.raises(ConfigError, match="unknown preset 'huge'; choose one of logistic, mlp"):
        config.preset("huge")


@pytest.mark.parametrize(
    "values, message",
    [
        ({"train": {"epochs": 0}}, "train.epochs must be >= 1"),
        ({"train": {"epochs": "ten"}}, "train.epochs must be int"),
        ({"train": {"optimizer": "rmsprop"}}, "train.optimizer must be one of sgd, momentum, adam"),
        ({"model": {"dropout_rate": 1.0}}, r"model.dropout_rate must be in \[0, 1\)"),
        ({"model": {"width": 3}}, "unknown field"),
        ({"extra": {}}, "unknown config section"),
        ({"data": {"name": "cifar"}}, "data.name must be one of"),
        ({"model": {"hidden_units": [1024, "a"]}}, r"model.hidden_units must be a list of integers, got \[1024, 'a'\]"),
        ({"model": {"hidden_units": [0]}}, "model.hidden_units must be positive integer widths"),
        ({"model": {"hidden_units": [True]}}, "model.hidden_units must be a list of integers"),
        ({"train": {"early_stopping_patience": -1}}, "train.early_stopping_patience must be >= 0"),
        ({"train": {"learning_rate": float("inf")}}, "train.learning_rate must be a finite number > 0, got inf"),
        ({"train": {"learning_rate": float("nan")}}, "train.learning_rate must be a finite number > 0, got nan"),
        ({"train": {"momentum": -5.0}}, r"train.momentum must be in \[0, 1\), got -5.0"),
        ({"train": {"seed": -1}}, "train.seed must be in"),
        ({"train": {"epochs": None}}, "train.epochs must be int, got None"),
        ({"data": {"data_dir": 3}}, "data.data_dir must be a string or null"),
        ({"model": {"l2": float("inf")}}, "model.l2 must be a finite number"),
    ],
)
def test_invalid_values_give_one_line_errors(values, message):
    with pytest.raises(ConfigError, match=message) as error:
        config.Config.from_dict(values)
    assert "\n" not in str(error.value)


def test_config_file_errors_name_the_file(tmp_path):
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(ConfigError, match="broken.json: not valid JSON"):
        config.Config.load(broken)
    with pytest.raises(ConfigError, match="missing.json: config file not found"):
        config.Config.load(tmp_path / "missing.json")


def test_config_file_errors_name_the_file_and_the_field(tmp_path):
    wrong_type = tmp_path / "wrong.json"
    wrong_type.write_text('{"model": {"hidden_units": [1024, "a"]}}')
    message = r"wrong.json: config field model.hidden_units must be a list of integers"
    with pytest.raises(ConfigError, match=message) as error:
        config.Config.load(wrong_type)
    assert "\n" not in str(error.value)
    not_utf8 = tmp_path / "latin1.json"
    not_utf8.write_bytes(b'{"data": {"source_dir": "/donn\xe9es"}}')
    with pytest.raises(ConfigError, match=r"latin1.json: not UTF-8 text \(byte 0xe9 on line 1, offset 30\)"):
        config.Config.load(not_utf8)


def test_save_leaves_an_identical_file_untouched(tmp_path):
    run_config = config.preset("mlp")
    run_config.save(tmp_path / "config.json")
    before = (tmp_path / "config.json").stat().st_mtime_ns
    run_config.save(tmp_path / "config.json")
    assert (tmp_path / "config.json").stat().st_mtime_ns == before
    run_config.override("train", epochs=3).save(tmp_path / "config.json")
    assert config.Config.load(tmp_path / "config.json").train.epochs == 3


def test_override_replaces_only_given_fields():
    run_config = config.preset("logistic").override("model", hidden_units=(512,), dropout_rate=None)
    assert run_config.model.hidden_units == (512,)
    assert run_config.train.optimizer == "sgd"  # the rest of the preset stays
    assert json.loads(run_config.to_json())["model"]["hidden_units"] == [512]


def _a_value_other_than_the_default(spec):
    """A valid command-line value for the option's field, and the value the field then takes."""
    default = getattr(getattr(config.Config(), spec.section), spec.field)
    if spec.parse:
        return "7,5", spec.parse("7,5")
    if spec.choices:
        choice = next(choice for choice in spec.choices if choice != default)
        return choice, choice
    if spec.value_type is str:
        return "some/where", "some/where"
    if spec.value_type is int:
        return str(default + 1), default + 1
    value = default / 2 if default else 0.25  # stays inside every rate's and factor's range
    return str(value), value


def test_every_command_line_option_sets_its_field():
    """The options are generated from the config's field metadata: each one reaches its field (and only an
    option declared there exists), so a new option needs no change to the CLI."""
    from click.testing import CliRunner

    from tf_mlp.cli import main

    arguments, expected = [], {}
    for spec in config.command_line_options():
        if spec.value_type is bool:
            arguments.append(spec.flag.split("/")[0])
            expected[spec.section, spec.field] = True
        else:
            text, value = _a_value_other_than_the_default(spec)
            arguments += [spec.flag, text]
            expected[spec.section, spec.field] = value
        if spec.also_sets:
            expected[spec.also_sets] = expected[spec.section, spec.field]
    result = CliRunner().invoke(main, ["config", *arguments])
    assert result.exit_code == 0, result.output
    resolved = config.Config.from_dict(json.loads(result.output))
    for (section, field), value in expected.items():
        assert getattr(getattr(resolved, section), field) == value, f"{section}.{field}"


def test_options_keep_their_spelling():
    flags = {spec.flag for spec in config.command_line_options()}
    assert {"--data", "--hidden", "--dropout", "--input-dropout", "--checkpoint-every", "--drop-overlap/--keep-overlap",
            "--flip/--no-flip", "--xla/--no-xla", "--mixed-precision/--no-mixed-precision", "--seed"} <= flags
    assert len({spec.key for spec in config.command_line_options()}) == len(flags)


def test_max_checkpoints_is_an_option():
    from click.testing import CliRunner

    from tf_mlp.cli import main

    result = CliRunner().invoke(main, ["config", "--max-checkpoints", "7"])
    assert json.loads(result.output)["train"]["max_checkpoints"] == 7
    result = CliRunner().invoke(main, ["config", "--max-checkpoints", "0"])
    assert result.exit_code == 1 and result.output == "Error: train.max_checkpoints must be >= 1, got 0\n"
