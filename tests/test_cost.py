"""The training cost: `tf-mlp info`'s analytic table and the measured cost benchmark."""

import json
import pathlib

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
    # The same count the training benchmark divides by (tf_mlp/benchmark/training.py): forward plus backward.
    from tf_mlp.config import preset
    from tf_mlp.model import training_flops_per_example

    assert sum(_number(value) for value in total[2:5]) == training_flops_per_example(preset("mlp").model) * 128
    assert "(momentum: 1 slot variable per parameter)" in result.output
    assert "optimizer_slots        3.11 MiB       3,256,360 B" in result.output


def test_info_for_the_logistic_model_has_backward_equal_to_forward():
    result = CliRunner().invoke(main, ["info", "--preset", "logistic", "--batch-size", "1024"])
    assert result.exit_code == 0, result.output
    logits = _row(result.output, "logits")
    assert [_number(value) for value in logits[4:7]] == [2 * 784 * 10 * 1024, 2 * 784 * 10 * 1024, 0]
    assert logits[7] == "1.00" and _number(logits[8]) == 1024 * 4 * (784 + 10)
    assert "(sgd: 0 slot variables per parameter)" in result.output


@pytest.mark.slow
def test_quick_cost_benchmark_produces_every_figure_and_its_results_section(tmp_path):
    from tf_mlp import model
    from tf_mlp.benchmark import cost, cost_page, machine
    from tf_mlp.config import preset

    page = tmp_path / "docs" / "RESULTS.md"
    page.parent.mkdir()
    page.write_text("# Results\n\nthe accuracy tables\n")
    arguments = ["--quick", "--preset", "logistic", "--preset", "deep", "--output", str(tmp_path / "cost"),
                 "--results-page", str(page)]
    result = CliRunner().invoke(cost.main, arguments)
    assert result.exit_code == 0, result.output
    results = json.loads((tmp_path / "cost" / "cost.json").read_text())
    assert [(row["preset"], row["batch_size"]) for row in results["rows"]] == [("logistic", 8), ("deep", 8)]
    for row in results["rows"]:
        config = preset(row["preset"]).model
        # The analytic side is the very function the model module owns (and `tf-mlp info` prints).
        assert row["analytic"]["backward_over_forward"] == model.forward_backward_ratio(config)
        for clock in ("seconds", "cpu_seconds"):
            for phase in cost.PHASES:
                assert len(row[clock][phase]["values"]) == 3 and row[clock][phase]["median"] >= 0
        assert all(row["seconds"][phase]["median"] > 0 for phase in cost.PHASES)
        for ratio in ("backward_over_forward", "backward_over_forward_cpu", "backward_over_training_forward",
                      "backward_over_training_forward_cpu"):
            assert len(row[ratio]["values"]) == 3 and row[ratio]["q1"] <= row[ratio]["median"] <= row[ratio]["q3"]
        memory = row["memory_bytes"]
        assert set(memory) == {f"{phase}_peak_bytes" for phase in cost.PHASES} | {"kept_by_tape_bytes"}
        # The allocator rounds up (256-byte granules, unsplit chunks up to twice the request), never down.
        activations = row["analytic"]["memory_bytes"]["activations"]
        assert activations <= memory["kept_by_tape_bytes"] <= 2 * activations + 256 * 16
        # Forward and backward returns the gradients: at least one copy of the parameters.
        assert memory["forward_backward_peak_bytes"] >= model.parameter_count(config) * 4
    assert (tmp_path / "cost" / "cost.png").stat().st_size > 0
    deep_ratio = model.forward_backward_ratio(preset("deep").model)
    assert f"| deep | 8 | {deep_ratio:.2f} |" in result.output and "load average" in result.output
    text = page.read_text()
    assert text.startswith("# Results\n\nthe accuracy tables\n") and text.count(cost_page.BEGIN) == 1
    assert "| logistic | 8 | 1.00 |" in text and (page.parent / "results" / "cost.png").stat().st_size > 0
    assert json.loads((page.parent / "results" / "cost.json").read_text())["rows"] == results["rows"]
    # The figures name the machine that gave them, on the page and beside the command's output.
    assert results["machine"] == machine.current() and 0 <= results["other_processes_share"] <= 1
    named = machine.name(results["machine"])
    assert f"Machine: {named}; no GPU, default intra-op threads. Other processes used" in text
    assert f"Machine: {machine.name(results['machine'])}" in result.output

    # The section renders again from the JSON beside the page alone, as it was.
    page.write_text("# Results\n\nthe accuracy tables\n")
    rendered = CliRunner().invoke(cost.main, ["--render-only", "--results-page", str(page)])
    assert rendered.exit_code == 0, rendered.output
    assert page.read_text() == text


def test_render_only_needs_figures_to_render(tmp_path):
    from tf_mlp.benchmark import cost

    result = CliRunner().invoke(cost.main, ["--render-only", "--results-page", str(tmp_path / "RESULTS.md")])
    assert result.exit_code == 1
    assert result.output == f"Error: {tmp_path}/results/cost.json: no cost figures to render; measure first\n"
    assert list(tmp_path.iterdir()) == []


def test_the_published_cost_section_is_what_its_json_renders(tmp_path):
    """docs/RESULTS.md's cost section is rendered from docs/results/cost.json, never edited by hand."""
    from tf_mlp.benchmark import cost_page

    docs = pathlib.Path(__file__).resolve().parents[1] / "docs"
    published = (docs / "RESULTS.md").read_text()
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "cost.json").write_bytes((docs / "results" / "cost.json").read_bytes())
    (tmp_path / "RESULTS.md").write_text(published)
    cost_page.render_section(tmp_path / "RESULTS.md")
    assert (tmp_path / "RESULTS.md").read_text() == published


def test_results_section_is_replaced_in_place_and_survives_the_reproduce_page(tmp_path):
    from tf_mlp import reproduce
    from tf_mlp.benchmark import cost_page

    page = tmp_path / "RESULTS.md"
    old = f"# Results\n\nold tables\n\n{cost_page.BEGIN}\nold cost figures\n{cost_page.END}\n"
    page.write_text(old)
    reproduce.write_results_page(page, [], "tf-mlp reproduce --epochs 1")
    text = page.read_text()
    assert "old tables" not in text and "tf-mlp reproduce --epochs 1" in text
    assert text.endswith(f"{cost_page.BEGIN}\nold cost figures\n{cost_page.END}\n")
    page.write_text("# Results\n\nnew tables\n")
    reproduce.write_results_page(page, [], "tf-mlp reproduce")
    assert cost_page.BEGIN not in page.read_text()
