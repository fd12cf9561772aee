import json

import pytest

from tf_mlp import config as config_module
from tf_mlp.errors import ConfigError


@pytest.mark.parametrize("name", list(config_module.PRESETS))
def test_presets_round_trip_through_json(name, tmp_path):
    config = config_module.preset(name)
    config.save(tmp_path / "config.json")
    assert config_module.Config.load(tmp_path / "config.json") == config


def test_presets_are_the_lesson():
    assert config_module.preset("logistic").model.hidden_units == ()
    assert config_module.preset("logistic").train.optimizer == "sgd"
    assert config_module.preset("mlp").model.hidden_units == (1024,)
    assert config_module.preset("mlp_l2").model.l2 > 0
    assert config_module.preset("mlp_dropout").model.dropout_rate > 0
    deep = config_module.preset("deep")
    assert len(deep.model.hidden_units) > 1 and deep.model.dropout_rate > 0 and deep.model.l2 > 0
    assert deep.train.decay_rate < 1


def test_unknown_preset_names_the_choices():
    with pytest.raises(ConfigError, match="unknown preset 'huge'; choose one of logistic, mlp"):
        config_module.preset("huge")


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
        config_module.Config.from_dict(values)
    assert "\n" not in str(error.value)


def test_config_file_errors_name_the_file(tmp_path):
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(ConfigError, match="broken.json: not valid JSON"):
        config_module.Config.load(broken)
    with pytest.raises(ConfigError, match="missing.json: config file not found"):
        config_module.Config.load(tmp_path / "missing.json")


def test_config_file_errors_name_the_file_and_the_field(tmp_path):
    wrong_type = tmp_path / "wrong.json"
    wrong_type.write_text('{"model": {"hidden_units": [1024, "a"]}}')
    with pytest.raises(ConfigError, match=r"wrong.json: config field model.hidden_units must be a list of integers") as error:
        config_module.Config.load(wrong_type)
    assert "\n" not in str(error.value)
    not_utf8 = tmp_path / "latin1.json"
    not_utf8.write_bytes(b'{"data": {"source_dir": "/donn\xe9es"}}')
    with pytest.raises(ConfigError, match=r"latin1.json: not UTF-8 text \(byte 0xe9 on line 1, offset 30\)"):
        config_module.Config.load(not_utf8)


def test_save_leaves_an_identical_file_untouched(tmp_path):
    config = config_module.preset("mlp")
    config.save(tmp_path / "config.json")
    before = (tmp_path / "config.json").stat().st_mtime_ns
    config.save(tmp_path / "config.json")
    assert (tmp_path / "config.json").stat().st_mtime_ns == before
    config.override("train", epochs=3).save(tmp_path / "config.json")
    assert config_module.Config.load(tmp_path / "config.json").train.epochs == 3


def test_override_replaces_only_given_fields():
    config = config_module.preset("logistic").override("model", hidden_units=(512,), dropout_rate=None)
    assert config.model.hidden_units == (512,)
    assert config.train.optimizer == "sgd"  # the rest of the preset stays
    assert json.loads(config.to_json())["model"]["hidden_units"] == [512]
