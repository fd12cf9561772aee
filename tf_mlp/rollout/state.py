"""Where a model's rollout stands: the server's labels and versions, and its config file beside them.

The server is the source of truth: a label's version is what the server
answers for it. The file can be behind the server (a step interrupted
between the server's change and the file's) or ahead of it (an edit its
next poll has not read yet); the two cannot be told apart, so the server's
view wins, every disagreement becomes a note, and the next change writes the
server's view to the file.
"""

from __future__ import annotations

import dataclasses

from tf_mlp import contract
from tf_mlp.errors import RolloutError
from tf_mlp.rollout.config_file import ConfigFile
from tf_mlp.rollout.serving_api import AVAILABLE, ServingApi, VersionState

ROLLOUT_LABELS = (contract.STABLE_LABEL, contract.CANARY_LABEL, contract.PREVIOUS_LABEL)


@dataclasses.dataclass
class RolloutState:
    model: str
    config_file: ConfigFile
    versions: dict[int, VersionState]
    """Every version the server has seen, highest first, with its state."""
    labels: dict[str, int]
    notes: list[str] = dataclasses.field(default_factory=list)
    """Where the file and the server disagreed (the server's view is in `labels`)."""

    def available(self, version: int | None) -> bool:
        state = self.versions.get(version)
        return state is not None and state.state == AVAILABLE

    def state_of(self, version: int | None) -> str:
        if version is None:
            return "none"
        state = self.versions.get(version)
        return str(state) if state is not None else "not seen by the server"

    @property
    def stable(self) -> int | None:
        return self.labels.get(contract.STABLE_LABEL)

    @property
    def canary(self) -> int | None:
        return self.labels.get(contract.CANARY_LABEL)

    @property
    def previous(self) -> int | None:
        return self.labels.get(contract.PREVIOUS_LABEL)

    def serving_stable(self) -> int:
        """The stable version, which must be serving; RolloutError saying why not otherwise."""
        stable = self.stable
        if stable is None:
            raise RolloutError(f"model {self.model} has no {contract.STABLE_LABEL} label on the server; give "
                               f"{self.config_file.path} version_labels {{ key: \"{contract.STABLE_LABEL}\" "
                               "value: N } for a pinned version N")
        if not self.available(stable):
            raise RolloutError(f"{contract.STABLE_LABEL} is version {stable}, which is not serving "
                               f"({self.state_of(stable)}); `tf-mlp rollout rollback` returns to the previous one")
        return stable


def describe_labels(labels: dict[str, int]) -> str:
    """"stable 3, canary 4, previous 2" (the rollout's labels first)."""
    order = [label for label in ROLLOUT_LABELS if label in labels] + sorted(set(labels) - set(ROLLOUT_LABELS))
    return ", ".join(f"{label} {labels[label]}" for label in order) or "no labels"


def read_state(api: ServingApi, config_file: ConfigFile) -> RolloutState:
    """The model's rollout state, asked of the server; RolloutError if the server does not serve the model."""
    model = api.model
    file_labels = config_file.labels(model)
    versions = api.statuses()
    if not versions:
        raise RolloutError(f"the server at {api.target} has no versions of model {model} (is it serving "
                           f"{config_file.path}, and are the pinned versions {config_file.pinned(model)} on its "
                           "disk?)")
    labels, notes = {}, []
    for label in list(ROLLOUT_LABELS) + sorted(set(file_labels) - set(ROLLOUT_LABELS)):
        version = api.label(label).version
        in_file = file_labels.get(label)
        if version is not None:
            labels[label] = version
        if in_file != version:
            said = f"{label} {in_file}" if in_file is not None else f"no {label}"
            notes.append(f"{config_file.path} said {said}; the server says "
                         f"{f'{label} {version}' if version is not None else f'no {label}'}")
    return RolloutState(model, config_file, versions, labels, notes)
