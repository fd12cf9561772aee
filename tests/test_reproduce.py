import json
import pathlib

import pytest
from click.testing import CliRunner

from tf_mlp import reproduce
from tf_mlp.benchmark import machine
from tf_mlp.cli import main
from tf_mlp.config import DataConfig


@pytest.mark.slow
def test_reproduce_writes_the_results_table_overfitting_and_overlap(tmp_path, tiny_idx_dir, monkeypatch):
    # Shrink the experiment: 2 batches of 128 for 3 epochs instead of 5 for 100.
    monkeypatch.setattr(reproduce, "OVERFIT_BATCHES", 2)
    monkeypatch.setattr(reproduce, "OVERFIT_EPOCHS", 3)
    data = DataConfig(name="idx", source_dir=str(tiny_idx_dir), data_dir=str(tmp_path / "tfds"), validation_size=128)
    results = reproduce.reproduce(data, tmp_path / "out", runs_root=tmp_path / "runs", presets=["logistic", "mlp"],
                                  epochs=1, verbose=False)
    assert [row["run"] for row in results["presets"]] == ["logistic", "mlp"]
    assert results["presets"][0]["parameters"] == 7850 and results["presets"][1]["parameters"] == 814090
    assert [row["run"] for row in results["overfitting"]] == ["overfit_mlp", "overfit_mlp_dropout"]
    assert all(row["train_examples"] == 256 for row in results["overfitting"])
    assert results["overlap"]["test_images"] == 128
    saved = json.loads((tmp_path / "out" / "results.json").read_text())
    assert saved["best_run"] == results["best_run"]
    table = (tmp_path / "out" / "results.md").read_text()
    assert "| logistic | none | 7,850 |" in table and "Overlap:" in table
    # The wall times and rates name the machine that gave them.
    assert saved["machine"] == machine.current()
    assert f"\n\nMachine: {machine.name(saved['machine'])}.\n\n| preset |" in table
    for name in ("learning_curves.png", "confusion_matrix.png", "misclassified.png", "report.md"):
        assert (tmp_path / "out" / "best" / name).stat().st_size > 0

    # A second reproduction reuses the finished runs rather than training again.
    again = reproduce.reproduce(data, tmp_path / "out", runs_root=tmp_path / "runs", presets=["logistic", "mlp"],
                                epochs=1, verbose=False)
    assert [row["test_accuracy"] for row in again["presets"]] == [row["test_accuracy"] for row in results["presets"]]
    # Their training times are from then: the page does not pass them off as this machine's.
    assert [row["reused"] for row in results["presets"]] == [False, False]
    assert [row["reused"] for row in again["presets"]] == [True, True]
    assert "Reused from an earlier reproduction, so trained on a machine not recorded: logistic, mlp (" in (
        tmp_path / "out" / "results.md").read_text()
    # Quick looks train apart from the full runs, which would otherwise be refused as "other options".
    assert sorted(path.name for path in (tmp_path / "runs" / "idx").iterdir()) == ["epochs-1"]

    reproduce.write_results_page(tmp_path / "RESULTS.md", [results], "tf-mlp reproduce --data idx")
    page = (tmp_path / "RESULTS.md").read_text()
    assert "tf-mlp reproduce --data idx" in page and "results/idx/best/learning_curves.png" in page


def test_reproduce_command_rejects_an_unknown_data_set():
    result = CliRunner().invoke(main, ["reproduce", "--data", "cifar10"])
    assert result.exit_code == 2 and "Invalid value for '--data'" in result.output


def test_docs_are_recognised_wherever_they_are_named(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert reproduce.is_docs_dir("docs") and reproduce.is_docs_dir("docs/results/idx")
    assert reproduce.is_docs_dir(pathlib.Path(reproduce.__file__).resolve().parents[1] / "docs")
    assert not reproduce.is_docs_dir("runs/reproduce") and not reproduce.is_docs_dir(tmp_path / "documents")


@pytest.mark.parametrize("quick", [["--epochs", "1"], ["--preset", "mlp"], ["--data", "mnist"]])
def test_a_quick_reproduction_never_writes_into_docs(tmp_path, monkeypatch, quick):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["reproduce", "--output-dir", "docs", *quick])
    assert result.exit_code == 1 and result.output.count("\n") == 1, result.output
    assert result.output.startswith(f"Error: docs holds the shipped results; a run with {quick[0]} writes elsewhere")
    assert not (tmp_path / "docs").exists()


def test_reproduce_writes_under_runs_unless_publishing():
    defaults = {parameter.name: parameter.default for parameter in main.commands["reproduce"].params}
    assert defaults["output_dir"] == "runs/reproduce"


def test_reproduce_offers_every_data_set_in_the_catalog():
    from tf_mlp.data.catalog import DATA_SETS

    data_option = next(parameter for parameter in main.commands["reproduce"].params if parameter.name == "data_sets")
    assert tuple(data_option.type.choices) == DATA_SETS and "kmnist" in DATA_SETS


def test_source_dirs_map_each_data_set_to_its_directory(tmp_path):
    assert reproduce.parse_source_dirs([f"idx={tmp_path}", "mnist=~/m"], ("idx", "mnist")) == {
        "idx": str(tmp_path), "mnist": str(pathlib.Path("~/m").expanduser()),
    }
    assert reproduce.parse_source_dirs([], reproduce.DEFAULT_DATA_SETS) == {}


@pytest.mark.parametrize(("arguments", "message"), [
    (["--source-dir", "notmnist"], "--source-dir 'notmnist' is not DATA=DIR"),
    (["--source-dir", "=/tmp"], "--source-dir '=/tmp' is not DATA=DIR"),
    (["--source-dir", "mnist=/tmp"],
     "names 'mnist', which this run does not reproduce (it runs fashion_mnist, notmnist)"),
    (["--data", "idx", "--source-dir", "idx=/a", "--source-dir", "idx=/b"], "--source-dir gives 'idx' twice"),
])
def test_a_malformed_source_dir_is_a_one_line_error_before_any_training(tmp_path, monkeypatch, arguments, message):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(reproduce, "reproduce",
                        lambda *args, **kwargs: pytest.fail("trained despite a bad --source-dir"))
    result = CliRunner().invoke(main, ["reproduce", *arguments])
    assert result.exit_code == 1 and result.output.count("\n") == 1, result.output
    assert message in result.output
    assert list(tmp_path.iterdir()) == []


def test_each_data_set_trains_from_its_own_source_dir(tmp_path, monkeypatch):
    trained = []

    def fake_reproduce(data_config, output_dir, **options):
        trained.append((data_config.name, data_config.source_dir))
        output_dir.mkdir(parents=True)
        (output_dir / "results.md").write_text(f"{data_config.name}\n")
        return {"data_set": data_config.name}

    monkeypatch.setattr(reproduce, "reproduce", fake_reproduce)
    monkeypatch.setattr(reproduce, "write_results_page", lambda path, results, command: trained.append(command))
    result = CliRunner().invoke(main, ["reproduce", "--data", "idx", "--data", "notmnist",
                                       "--source-dir", f"idx={tmp_path}",
                                       "--output-dir", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert trained[:2] == [("idx", str(tmp_path)), ("notmnist", None)]


def test_the_published_results_are_what_their_json_renders(tmp_path):
    """docs/RESULTS.md and docs/results/*/results.md are rendered from results.json, never edited by hand."""
    docs = pathlib.Path(reproduce.__file__).resolve().parents[1] / "docs"
    results = [json.loads((docs / "results" / name / "results.json").read_text())
               for name in reproduce.DEFAULT_DATA_SETS]
    for data_set in results:
        published = (docs / "results" / data_set["data_set"] / "results.md").read_text()
        assert reproduce.results_markdown(data_set) == published
    page = tmp_path / "RESULTS.md"
    page.write_text((docs / "RESULTS.md").read_text())  # its cost section is carried over
    reproduce.write_results_page(page, results, "tf-mlp reproduce --output-dir docs")
    assert page.read_text() == (docs / "RESULTS.md").read_text()
