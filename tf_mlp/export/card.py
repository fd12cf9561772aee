"""The model card: assets.extra/model_card.json, where a version came from and how good it is.

Fields (JSON):
    model_name, version, exported_at (UTC, ISO 8601), export_seconds (saving + verification)
    data_set, class_names, config (the run's resolved Config), parameters,
    run_finished                            False for a run exported with --allow-unfinished
    unfinished_reason                       why it had not finished (only when run_finished is False)
    test_accuracy, test_examples, train_seconds, steps
                                            from the run's final evaluation; None for an unfinished run
    run_dir, checkpoint                     what was exported
    tensorflow_version, keras_version
    git_commit, git_dirty                   the code's commit (None outside a git checkout)
    signatures                              {name: {method, inputs, outputs}} as exported
    verification                            what the export checked before publishing

assets.extra/ is TensorFlow Serving's place for files that travel with a
version but are not part of the graph; the server ignores all but the
warmup file there.
"""

from __future__ import annotations

import datetime
import json
import pathlib
import subprocess

from tf_mlp import contract, layout

_PACKAGE_DIR = pathlib.Path(__file__).resolve().parents[1]


def git_state(directory=_PACKAGE_DIR) -> tuple[str | None, bool | None]:
    """(commit, has uncommitted changes) of the checkout holding the code, or (None, None)."""

    def git(*arguments) -> str:
        return subprocess.run(
            ["git", "-C", str(directory), *arguments], capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no", "--", "."))
    except (OSError, subprocess.SubprocessError):
        # No git installed, not a checkout (an installed wheel), or no commit yet.
        return None, None
    return commit, dirty


def training_facts(
    config, evaluation: dict | None, class_names, *, run_dir=None, checkpoint=None, unfinished: str | None = None
) -> dict:
    """The part of the card known before exporting: data, config, size, accuracy, training time.

    unfinished: why the run had not finished, or None. An unfinished run's
    evaluation (if any) is of other weights than those exported, so none of
    it goes into the card.
    """
    from tf_mlp.model import parameter_count

    evaluation = {} if unfinished else (evaluation or {})
    status = {"run_finished": True} if unfinished is None else {"run_finished": False, "unfinished_reason": unfinished}
    return {
        **status,
        "data_set": evaluation.get("data_set", config.data.name),
        "class_names": list(class_names),
        "config": config.to_dict(),
        "parameters": evaluation.get("parameters", parameter_count(config.model)),
        "test_accuracy": evaluation.get("test_accuracy"),
        "test_examples": (evaluation.get("split_sizes") or {}).get("test"),
        "train_seconds": evaluation.get("train_seconds"),
        "steps": evaluation.get("steps"),
        "run_dir": None if run_dir is None else str(run_dir),
        "checkpoint": checkpoint,
    }


def complete(card: dict, *, version: int, export_seconds: float, signatures: dict, verification: dict) -> dict:
    """Add what only the export knows; these fields replace any of the same name in card."""
    import keras
    import tensorflow as tf

    commit, dirty = git_state()
    head = {
        "model_name": contract.MODEL_NAME,
        "version": version,
        "exported_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "export_seconds": round(export_seconds, 3),
    }
    tail = {
        "tensorflow_version": tf.__version__,
        "keras_version": keras.__version__,
        "git_commit": commit,
        "git_dirty": dirty,
        "signatures": signatures,
        "verification": verification,
    }
    middle = {key: value for key, value in card.items() if key not in head and key not in tail}
    return {**head, **middle, **tail}


def write(saved_model_dir, card: dict) -> pathlib.Path:
    path = layout.assets_extra_path(saved_model_dir, contract.MODEL_CARD_FILE)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(card, indent=2) + "\n")
    return path


def read(saved_model_dir) -> dict:
    return json.loads(layout.assets_extra_path(saved_model_dir, contract.MODEL_CARD_FILE).read_text())
