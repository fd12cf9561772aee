"""`tf-mlp rollout` against `tf-mlp serve`: a gate, a canary, a promotion and a rollback, under load.

One server per module serves pinned versions of hand-made logistic models
that classify tests/synthetic's images: version 1 and 2 are right on every
image but answer with different probabilities (so every row of a load says
which version gave it), 3 never recognises class 9 (worse), 4 is corrupt.
Every test leaves the server and its config file at stable 1, canary 1.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import shutil

import numpy as np
import pytest
from click.testing import CliRunner

from tests import synthetic
from tf_mlp import cli, locks
from tf_mlp.client.target import parse_target
from tf_mlp.rollout import config_file, drill, gate, report, steps
from tf_mlp.rollout.serving_api import LabelLookup, ServingApi, VersionState
from tf_mlp.rollout.session import Setup
from tf_mlp.rollout.state import read_state
from tf_mlp.server.process import ServerProcess, free_port

REPO = pathlib.Path(__file__).resolve().parents[1]
CLASS_NAMES = [str(index) for index in range(10)]
HEADER = "# The test's serving config: these comments stay when the file is rewritten.\n\n"
INITIAL = {"stable": 1, "canary": 1}

pytestmark = pytest.mark.slow


def _logistic_kernel(scale: float, blind_to=()) -> np.ndarray:
    """Weights that score class k by the brightness of synthetic's block k (none for the classes in blind_to)."""
    kernel = np.zeros((28, 28, 10), np.float32)
    for class_id in range(10):
        if class_id not in blind_to:
            row, column = divmod(class_id, 4)
            kernel[row * 7:(row + 1) * 7, column * 7:(column + 1) * 7, class_id] = scale
    return kernel.reshape(784, 10)


def _derive(base: pathlib.Path, version: int, kernel: np.ndarray) -> None:
    """Version `version`: a copy of version 1 with another kernel written into its variables checkpoint."""
    import tensorflow as tf

    shutil.copytree(base / "1", base / str(version))
    prefix = str(base / str(version) / "variables" / "variables")
    reader = tf.train.load_checkpoint(prefix)
    shapes = reader.get_variable_to_shape_map()
    names = sorted(shapes)
    tensors = [kernel if shapes[name] == [784, 10] else reader.get_tensor(name) for name in names]
    for stale in (base / str(version) / "variables").iterdir():
        stale.unlink()
    tf.raw_ops.SaveV2(prefix=prefix, tensor_names=names, shape_and_slices=[""] * len(names), tensors=tensors)


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    from tf_mlp import config, model
    from tf_mlp.export import export_model
    from tf_mlp.export.card import training_facts

    root = tmp_path_factory.mktemp("rollout")
    logistic = config.preset("logistic")
    keras_model = model.build_model(logistic.model)
    keras_model.get_layer("logits").set_weights([_logistic_kernel(0.10), np.zeros(10, np.float32)])
    card = {**training_facts(logistic, None, CLASS_NAMES), "data_set": "synthetic"}
    export_model(keras_model, CLASS_NAMES, root / "models", model_card=card, version=1,
                 verification_images=synthetic.make_split(16, seed=5).images)
    base = root / "models" / "tf_mlp"
    _derive(base, 2, _logistic_kernel(0.12))
    _derive(base, 3, _logistic_kernel(0.10, blind_to=(9,)))
    shutil.copytree(base / "1", base / "4")
    (base / "4" / "saved_model.pb").write_bytes(b"not a SavedModel")
    holdout = synthetic.make_split(400, seed=7)
    np.savez(root / "holdout.npz", images=holdout.images, labels=holdout.labels)
    return root


def _initial_config(exports: pathlib.Path) -> str:
    return HEADER + (
        f'model_config_list {{ config {{ name: "tf_mlp" base_path: "{exports / "models" / "tf_mlp"}" '
        'model_platform: "tensorflow" model_version_policy { specific { versions: 1 } } '
        'version_labels { key: "stable" value: 1 } version_labels { key: "canary" value: 1 } } }\n')


@pytest.fixture(scope="module")
def served(exports):
    path = exports / "models.config"
    path.write_text(_initial_config(exports))
    server = ServerProcess(exports / "server.log", f"--model_config_file={path}",
                           "--allow_version_labels_for_unavailable_models=true", "--max_num_load_retries=0",
                           "--file_system_poll_wait_seconds=1", "--model_config_file_poll_wait_seconds=1",
                           f"--monitoring_config_file={REPO / 'serving' / 'monitoring.config'}")
    with server:
        setup = Setup(config=path, model="tf_mlp", grpc=parse_target(server.client_target("grpc")),
                      rest=parse_target(server.client_target("rest")), export_base=exports / "models", timeout=60)
        yield setup


@pytest.fixture
def setup(served):
    """The module's server at stable 1, canary 1 (and its file saying so) before and after each test."""
    yield served
    _reset(served)


def _reset(setup: Setup) -> None:
    file = config_file.read(setup.config)
    initial = file.with_rollout(setup.model, INITIAL, [1])
    config_file.write(file, initial)  # first, as the rollout does: the server's poll of the file cannot undo it
    with ServingApi(setup.grpc, setup.model, 60) as api:
        api.reload(initial)
    assert _labels(setup) == INITIAL


def _labels(setup: Setup) -> dict:
    with ServingApi(setup.grpc, setup.model, 60) as api:
        found = {label: api.label(label) for label in ("stable", "canary", "previous")}
    return {label: lookup.version for label, lookup in found.items() if lookup.version is not None}


def _file(setup: Setup) -> tuple[dict, list]:
    file = config_file.read(setup.config)
    return file.labels(setup.model), file.pinned(setup.model)


def _rollout(setup: Setup, *arguments):
    """`tf-mlp rollout ARGUMENTS...` on the module's server and config."""
    options = ["--config", setup.config, "--grpc", setup.grpc, "--rest", setup.rest,
               "--export-base", setup.export_base, "--timeout", 60]
    return CliRunner().invoke(cli.main, ["rollout", *map(str, arguments), *map(str, options)])


# ---- refusals ------------------------------------------------------------------------------------------------


def test_a_worse_candidate_is_refused_by_the_gate_with_a_report_and_unloaded(setup, exports):
    result = _rollout(setup, "gate", 3, "--holdout", exports / "holdout.npz", "--no-progress")
    assert result.exit_code == 3, result.output
    assert "refused: accuracy" in result.output and "refused: recall of class 9 (9) 0.0000" in result.output
    found = report.read(setup.export_base / "tf_mlp" / "3")
    assert found["passed"] is False and (found["candidate"], found["baseline"]) == (3, 1)
    blind = [test for test in found["classes"] if test["refused"]]
    assert [test["class_id"] for test in blind] == [9] and blind[0]["candidate"] == 0.0
    assert found["accuracy"]["baseline_only_right"] == blind[0]["images"] > 0
    assert found["accuracy"]["candidate_only_right"] == 0
    page = (setup.export_base / "tf_mlp" / "3" / "assets.extra" / "gate_report.md").read_text()
    assert "Verdict: **refused**." in page and "| recall 9 9 |" in page
    # The refused candidate was loaded for the comparison and is unloaded again; nothing else moved.
    assert _labels(setup) == INITIAL and _file(setup) == (INITIAL, [1])
    status = steps.status(setup)
    assert status["versions"][3]["state"] == "END" and status["last_gate"]["candidate"] == 3
    promoted = _rollout(setup, "promote", 3)
    assert promoted.exit_code == 1
    assert promoted.output.startswith("Error: version 3 was refused by its gate (accuracy 0.")


def test_a_corrupt_candidate_fails_to_load_and_stable_stays(setup):
    result = _rollout(setup, "canary", 4)
    assert result.exit_code == 1
    error = result.output.splitlines()[-1]
    assert error.startswith("Error: version 4 failed to load: ") and "labels stay stable 1, canary 1" in error
    assert error.endswith("(version 4 unpinned)")
    assert _labels(setup) == INITIAL and _file(setup) == (INITIAL, [1])


def test_a_refused_reload_leaves_stable_where_it_was(setup, monkeypatch):
    # The candidate goes away between the wait and the label move (here: it never loaded, and the wait is
    # skipped): TensorFlow Serving refuses to put a label on it, and the rollout says so in one line.
    monkeypatch.setattr(ServingApi, "wait_until_available", lambda *arguments: None)
    result = _rollout(setup, "canary", 4)
    assert result.exit_code == 1
    error = result.output.splitlines()[-1]
    assert error.startswith("Error: the server refused the new config (FAILED_PRECONDITION: Request to assign "
                            "label to version 4 of model tf_mlp, which is not currently available")
    assert error.endswith(f"labels stay stable 1, canary 1; {setup.config} says what it said before")
    assert _labels(setup) == INITIAL and _file(setup) == (INITIAL, [1])


def test_two_rollouts_at_once_on_one_model_are_refused(setup):
    with locks.exclusive(setup.lock_path, "pid 1: tf-mlp rollout canary 2", RuntimeError):
        result = _rollout(setup, "canary", 2)
    assert result.exit_code == 1
    assert result.output == (f"Error: another rollout holds {setup.lock_path} (pid 1: tf-mlp rollout canary 2); one "
                             "step at a time per config file: wait for it to finish\n")
    assert _labels(setup) == INITIAL


def test_a_server_that_cannot_be_reached_is_a_one_line_error(setup):
    unreachable = dataclasses.replace(setup, grpc=parse_target(f"grpc://127.0.0.1:{free_port()}"))
    result = _rollout(unreachable, "status")
    assert result.exit_code == 1 and result.output.count("\n") == 1
    assert result.output.startswith(f"Error: {unreachable.grpc}: UNAVAILABLE (after 4 attempts): ")


def test_promote_needs_a_gate_report(setup):
    result = _rollout(setup, "promote", 2)
    assert (result.exit_code, result.output) == (1, "Error: version 2 has no gate report: run `tf-mlp rollout gate "
                                                    "2` first\n")


# ---- the flow ------------------------------------------------------------------------------------------------


def test_the_whole_flow_under_load_fails_no_request_and_every_row_is_stables(setup, exports, tmp_path):
    load = synthetic.make_split(40_000, seed=11).images
    result = drill.drill(setup, 2, str(exports / "holdout.npz"), load, tmp_path, chunk_size=32, echo=print)
    print(json.dumps(result))  # the counts, shown with pytest -s
    assert result["failed_requests"] == 0 and result["error_rows"] == 0
    assert result["requests_from_a_version_not_stable_then"] == 0
    assert result["steps"]["promote"]["failed_requests"] == result["steps"]["rollback"]["failed_requests"] == 0
    by_version = result["rows_by_version"]
    assert by_version["None"] == by_version["ambiguous"] == 0
    assert by_version["1"] > 0 and by_version["2"] > 0 and by_version["1"] + by_version["2"] == result["rows"]
    # Rolled back: stable 1 again, canary following it, version 2 unloaded, the file saying the same.
    assert _labels(setup) == INITIAL and _file(setup) == (INITIAL, [1])


def test_every_step_is_safe_to_run_again(setup, exports):
    # Version 2's gate report (from the flow) compares it with version 1, stable again: still valid.
    if report.read(setup.export_base / "tf_mlp" / "2") is None:
        steps.gate(setup, 2, str(exports / "holdout.npz"))
    trial = {"stable": 1, "canary": 2}
    assert steps.canary(setup, 2)["labels"] == trial and steps.canary(setup, 2)["labels"] == trial
    promoted = {"stable": 2, "canary": 2, "previous": 1}
    assert steps.promote(setup)["labels"] == promoted and steps.promote(setup, 2)["labels"] == promoted
    assert _file(setup) == (promoted, [1, 2])
    assert steps.rollback(setup)["labels"] == INITIAL
    again = _rollout(setup, "rollback")
    assert (again.exit_code, again.output) == (1, "Error: there is no previous version to roll back to (stable 1, "
                                                  "canary 1)\n")
    # A promotion interrupted after the file was written, before the server was asked: the server's next poll
    # of the file or the promotion run again finishes it, whichever comes first.
    file = config_file.read(setup.config)
    config_file.write(file, file.with_rollout(setup.model, promoted, [1, 2]))
    assert steps.promote(setup, 2)["labels"] == promoted and _labels(setup) == promoted
    assert steps.rollback(setup)["labels"] == INITIAL and _file(setup) == (INITIAL, [1])
    assert config_file.read(setup.config).header == HEADER


def test_status_shows_labels_states_and_the_last_gate(setup):
    result = _rollout(setup, "status")
    assert result.exit_code == 0, result.output
    assert "labels: stable 1, canary 1" in result.output
    assert "1        AVAILABLE  canary, stable" in result.output
    assert "last gate: version " in result.output and "against stable version 1 on 400 images" in result.output
    as_json = json.loads(_rollout(setup, "status", "--json").output)
    assert as_json["labels"] == INITIAL and as_json["pinned"] == [1]


# ---- without a server: the file, the statistics ---------------------------------------------------------------


def test_the_config_file_keeps_its_comments_and_other_models(tmp_path):
    path = tmp_path / "models.config"
    path.write_text(HEADER + 'model_config_list { config { name: "other" base_path: "/o" model_platform: '
                    '"tensorflow" } config { name: "tf_mlp" base_path: "/m" model_platform: "tensorflow" '
                    'model_version_policy { specific { versions: 1 } } version_labels { key: "stable" value: 1 } '
                    '} }\n')
    file = config_file.read(path)
    written = config_file.write(file, file.with_rollout("tf_mlp", {"stable": 3, "previous": 1}, [3, 1]))
    again = config_file.read(path)
    assert again.header == HEADER and path.read_text().startswith(HEADER)
    assert again.labels("tf_mlp") == {"stable": 3, "previous": 1} and again.pinned("tf_mlp") == [1, 3]
    assert [entry.name for entry in again.config.model_config_list.config] == ["other", "tf_mlp"]
    assert written.config == again.config
    with pytest.raises(Exception, match="model other has version policy latest"):
        file.model("other")


class _StubServer:
    """What read_state asks a server, answered from dicts: the server's side of a disagreement."""

    model = "tf_mlp"
    target = "grpc://stub"

    def __init__(self, labels: dict, versions: dict):
        self._labels, self._versions = labels, versions

    def statuses(self):
        return self._versions

    def label(self, label):
        return LabelLookup(self._labels.get(label), label in self._labels)


def test_the_servers_labels_win_over_a_config_file_out_of_step(tmp_path):
    path = tmp_path / "models.config"
    path.write_text('model_config_list { config { name: "tf_mlp" base_path: "/m" model_platform: "tensorflow" '
                    'model_version_policy { specific { versions: 1 versions: 2 } } version_labels { key: "stable" '
                    'value: 2 } version_labels { key: "previous" value: 1 } } }\n')
    server = _StubServer({"stable": 1, "canary": 1}, {2: VersionState("AVAILABLE"), 1: VersionState("AVAILABLE")})
    state = read_state(server, config_file.read(path))
    assert state.labels == INITIAL
    assert state.notes == [f"{path} said stable 2; the server says stable 1",
                           f"{path} said no canary; the server says canary 1",
                           f"{path} said previous 1; the server says no previous"]


def test_mcnemar_exact_test_and_holm():
    assert gate.mcnemar_exact(0, 0) == 1.0
    assert gate.mcnemar_exact(10, 0) == pytest.approx(2 * 0.5**10)
    assert gate.mcnemar_exact(40, 60) == pytest.approx(0.056887933640980)  # scipy.stats.binomtest(40, 100)
    assert gate.mcnemar_exact(600, 0) > 0  # exact integers: far below what a float tail could hold
    assert gate.holm([0.01, 0.04, 0.03, 0.5]) == pytest.approx([0.04, 0.09, 0.09, 0.5])


def _answers(version: int, right: np.ndarray, labels: np.ndarray) -> gate.Answers:
    predicted = np.where(right, labels, (labels + 1) % 10)
    return gate.Answers(version, tuple(CLASS_NAMES), predicted, labels, [])


def test_a_drop_within_noise_passes_and_a_significant_one_beyond_the_margin_is_refused():
    labels = np.arange(2000) % 10
    baseline = np.ones(2000, bool)
    baseline[:200] = False  # 90% right
    # 10 images net worse (0.5 points) among 50 that changed: noise, not a refusal.
    noisy = baseline.copy()
    noisy[:20] = True
    noisy[220:250] = False
    verdict = gate.judge(_answers(1, baseline, labels), _answers(2, noisy, labels), gate.Criteria())
    assert verdict["passed"] and verdict["accuracy"]["drop"] == pytest.approx(0.005)
    assert verdict["accuracy"]["p_value"] > 0.1
    # 60 images worse and none better (3 points): refused, on accuracy.
    worse = baseline.copy()
    worse[300:360] = False
    verdict = gate.judge(_answers(1, baseline, labels), _answers(2, worse, labels), gate.Criteria())
    assert not verdict["passed"] and verdict["accuracy"]["refused"]
    # The same drop with a margin above it passes: practical and statistical significance are both needed.
    assert gate.judge(_answers(1, baseline, labels), _answers(2, worse, labels),
                      gate.Criteria(accuracy_margin=0.05, recall_margin=0.5))["passed"]
