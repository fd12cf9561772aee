"""The training cost: `tf-mlp info`'s analytic table and the measured cost benchmark."""

import json

import pytest
from click.testing import CliRunner

from tf_mlp.cli import main


def _row(output: str, name: str) -> list[str]:
    (line,) = [line for line in output.splitlines() if line.startswith(f"{name:<10} ")]  # the table pads names to 10
    return line.split()


def _number(text: str) -> int:
    return int(text.replace(",", ""))


def test_info_prints_flops_and_kept_activations_matching_a_hand_computation():
    result = CliRunner().invoke(main, ["info", "--preset", "mlp", "--batch-size", "128", "--optimizer", "momentum"])
    assert result.exit_code == 0, result.output
    # 784-1024-10 at batch 128, 2 FLOPs per multiply-add. hidden_1: forward 2*784*1024*128, the weight gradient
    # the same, no input gradient (the pixels need none); it keeps the scaled pixels and the ReLU output.
    hidden = _row(result.output, "hidden_1")
    assert hidden[:4] == ["hidden_1", "784", "1024", "803,840"]
    assert [_number(value) for value in hidden[4:7]] == [205_520_896, 205_520_896, 0]
    assert hidden[7] == "1.00" and _number(hidden[8]) == 128 * 4 * (784 + 1024)
    # logits: 2*1024*10*128 each for forward, weight gradient and input gradient; keeps softmax - onehot.
    logits = _row(result.output, "logits")
    assert [_number(value) for value in logits[4:7]] == [2_621_440] * 3
    assert logits[7] == "2.00" and _number(logits[8]) == 128 * 4 * 10
    # Whole network: (205,520,896 + 2 * 2,621,440) / (205,520,896 + 2,621,440) = 1.0126.
    total = _row(result.output, "total")
    assert _number(total[1]) == 814_090 and total[5] == "1.01"
    assert "(momentum: 1 slot variable per parameter)" in result.output
    assert "optimizer_slots        3.11 MiB       3,256,360 B" in result.output


def test_info_for_the_logistic_model_has_backward_equal_to_forward():
    result = CliRunner().invoke(main, ["info", "--preset", "logistic", "--batch-size", "1024"])
    assert result.exit_code == 0, result.output
    logits = _row(result.output, "logits")
    assert [_number(value) for value in logits[4:7]] == [2 * 784 * 10 * 1024, 2 * 784 * 10 * 1024, 0]
    assert logits[7] == "1.00" and _number(logits[8]) == 1024 * 4 * (784 + 10)
    assert "(sgd: 0 slot variables per parameter)" in result.output
