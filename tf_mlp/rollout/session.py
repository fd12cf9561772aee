"""One rollout step's hold on a model: its lock, its server, its config file, and the changes it sends.

Every change is one HandleReloadConfigRequest with the whole config: the
model pins exactly the versions its labels name (plus the version the step
is loading), so a version no label names any more is unloaded in the same
change that moves its last label away, and TensorFlow Serving's order
(labels first, then loads and unloads) keeps every request answered.

The file is written just before the request, and put back if the server
refuses the config. The other order would race the server's own poll of
the file (--model_config_file_poll_wait_seconds): a poll between the
server's answer and the file's rewrite would read the old file and undo the
change until the next poll (tf-mlp serve answers a reload once the new
versions are loaded, and a poll due meanwhile runs right after it). Written
first, a poll can only apply the same change a little early.

Two steps at once on one config file are refused: each holds
`<config>.lock` (tf_mlp.locks) from its first question to its last change.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import shlex
import sys

from tf_mlp import locks
from tf_mlp.client.errors import ClientError
from tf_mlp.client.target import Target
from tf_mlp.errors import RolloutError
from tf_mlp.rollout import config_file
from tf_mlp.rollout.serving_api import ReloadRefused, ServingApi
from tf_mlp.rollout.state import ROLLOUT_LABELS, RolloutState, describe_labels, read_state


@dataclasses.dataclass(frozen=True)
class Setup:
    """Where a rollout finds everything (the `tf-mlp rollout` options)."""

    config: pathlib.Path
    """The model server's --model_config_file, kept in step with the server."""
    model: str
    grpc: Target
    """ModelService (status, reloads) and label lookups."""
    rest: Target
    """Inference: the gate's evaluation."""
    export_base: pathlib.Path
    """Where `tf-mlp export` writes (EXPORT_BASE/MODEL/VERSION): gate reports go beside each version."""
    timeout: float = 600.0
    """Seconds a version may take to load, and a reload to be answered."""

    @property
    def lock_path(self) -> pathlib.Path:
        return self.config.with_name(self.config.name + ".lock")


class Session:
    """`with Session(setup, changes=True) as session:` the state is read; `session.apply(...)` changes it."""

    def __init__(self, setup: Setup, changes: bool):
        self.setup = setup
        self._changes = changes
        self._lock = None
        self.api = None
        self.state: RolloutState | None = None
        self.notes = []

    def __enter__(self) -> "Session":
        if self._changes:
            self._lock = locks.exclusive(self.setup.lock_path, _holder(), self._refused)
            self._lock.__enter__()
        try:
            self.api = ServingApi(self.setup.grpc, self.setup.model, self.setup.timeout)
            file = config_file.read(self.setup.config)
            file.model(self.setup.model)  # present, with pinned versions
            if self._changes:
                config_file.check_writable(file)
            self.state = read_state(self.api, file)
            self.notes = list(self.state.notes)
        except BaseException:
            self.__exit__(*sys.exc_info())
            raise
        return self

    def __exit__(self, *exc_info) -> None:
        if self.api is not None:
            self.api.close()
        if self._lock is not None:
            self._lock.__exit__(*exc_info)
            self._lock = None

    def _refused(self, holder: str) -> RolloutError:
        return RolloutError(f"another rollout holds {self.setup.lock_path} ({holder}); one step at a time per "
                            "config file: wait for it to finish")

    # ---- changes -----------------------------------------------------------------------------------------

    def apply(self, labels: dict[str, int], loading: tuple[int, ...] = ()) -> None:
        """Write, then send, the config where the model has `labels` and pins their versions and `loading`.

        RolloutError if the server refuses it (the file is put back), saying
        where the labels stand; TensorFlow Serving may have moved them before
        refusing (it swaps the labels before it loads), so they are asked
        again and put back if so.
        """
        state = self.state
        versions = set(labels.values()) | set(loading)
        config = state.config_file.with_rollout(state.model, labels, versions)
        written = config_file.write(state.config_file, config)
        try:
            self.api.reload(config)
        except (ReloadRefused, ClientError) as error:
            config_file.write(state.config_file, state.config_file.config)
            what = "refused" if isinstance(error, ReloadRefused) else "did not take"
            raise RolloutError(f"the server {what} the new config ({_one_line(error)}); "
                               f"{self._after_refusal()}") from None
        state.config_file = written
        state.labels = dict(labels)

    def _after_refusal(self) -> str:
        state = self.state
        try:
            now = {label: self.api.label(label).version for label in ROLLOUT_LABELS}
            moved = {label: version for label, version in now.items() if version != state.labels.get(label)}
            if moved:
                self.api.reload(state.config_file.with_rollout(state.model, state.labels,
                                                               state.config_file.pinned(state.model)))
        except (ReloadRefused, ClientError) as error:
            return (f"the labels could not be checked or put back ({_one_line(error)}): run `tf-mlp rollout "
                    f"status`; {state.config_file.path} says what it said before")
        restored = " (the server had moved them anyway: put back)" if moved else ""
        return (f"labels stay {describe_labels(state.labels)}{restored}; {state.config_file.path} says what it said "
                "before")

    def label(self, labels: dict[str, int], version: int) -> None:
        """apply(labels), which name the just loaded `version`; if refused, `version` is unpinned again."""
        try:
            self.apply(labels)
        except RolloutError as error:
            if version not in self.state.labels.values():
                try:
                    self.apply(self.state.labels)
                except RolloutError:
                    pass  # the first refusal is the story; the next step unpins it
            raise error from None

    def load(self, version: int) -> None:
        """Pin `version` (labels unchanged) and wait until it is AVAILABLE; unpinned again if it fails to load."""
        state = self.state
        if state.available(version):
            return
        before = state.versions.get(version)
        self.apply(state.labels, loading=(version,))
        try:
            self.api.wait_until_available(version, before, self.setup.timeout)
        except RolloutError as error:
            try:
                self.apply(state.labels)
                unpinned = f"version {version} unpinned"
            except RolloutError as undo:
                unpinned = f"version {version} still pinned: {undo}"
            raise RolloutError(f"{error}; labels stay {describe_labels(state.labels)} ({unpinned})") from None
        finally:
            state.versions = self.api.statuses()


def _holder() -> str:
    command = shlex.join(["tf-mlp", *sys.argv[1:]]) if sys.argv and "tf-mlp" in sys.argv[0] else "tf-mlp rollout"
    return f"pid {os.getpid()}: {command}"


def _one_line(error: Exception) -> str:
    return " ".join(str(error).split())
