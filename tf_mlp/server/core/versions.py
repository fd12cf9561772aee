"""The versions of one model: what is on disk, what the version policy wants, what is loaded.

This is TensorFlow Serving's FileSystemStoragePathSource plus its
AspiredVersionsManager with the AvailabilityPreservingPolicy, for one model:

- every child directory of the base path whose name is a number is a version
  (`tf_mlp.layout.version_dirs`; "007" is version 7, as upstream parses it);
- the model's version policy picks the *aspired* versions among them:
  `latest` (the N highest, N = 1 by default), `all`, or `specific`;
- actions are taken one at a time, as the policy orders them: first unload a
  loaded version that is no longer aspired, but only while another loaded
  version can take its place (an aspired one is available, or nothing is
  aspired, or more than one such version is loaded); otherwise load the
  highest aspired version not loaded yet. So a new version is loaded, warmed
  up and serving before the version it replaces is unloaded;
- a version that fails to load (after the configured retries) is reported as
  END with its error and is not tried again while it stays on disk; the
  versions already loaded keep serving.

`poll()` runs in the server's manager thread; requests read `latest()` and
`specific()` from an immutable snapshot that each load or unload replaces.
"""

from __future__ import annotations

import dataclasses
import enum
import logging
import pathlib
import threading
import time

import tensorflow as tf

from tf_mlp import layout
from tf_mlp.server.core.status import Code, ServingError

log = logging.getLogger(__name__)

MISSING_BASE_PATH_LOG_SECONDS = 60
"""How often a base path that does not exist is reported again while polling for it."""


class State(enum.Enum):
    """ModelVersionStatus.State, as GetModelStatus reports it."""

    START = 10
    LOADING = 20
    AVAILABLE = 30
    UNLOADING = 40
    END = 50


@dataclasses.dataclass(frozen=True)
class VersionStatus:
    state: State
    error: ServingError | None = None


def aspired_versions(model_config, on_disk) -> set:
    """The versions the model's ServableVersionPolicy wants served, among those on disk."""
    policy = model_config.model_version_policy
    choice = policy.WhichOneof("policy_choice")
    if choice == "all":
        return set(on_disk)
    if choice == "specific":
        return {version for version in policy.specific.versions if version in on_disk}
    count = max(policy.latest.num_versions, 1) if choice == "latest" else 1
    return set(sorted(on_disk, reverse=True)[:count])


class ModelVersions:
    """Loads and unloads one model's versions; `load_version(name, version, path)` returns a Servable."""

    def __init__(self, model_config, load_version, *, max_num_load_retries: int = 0,
                 load_retry_interval_seconds: float = 0.0, stop_event: threading.Event | None = None):
        self.config = model_config
        self._load_version = load_version
        self._retries = max(max_num_load_retries, 0)
        self._retry_interval = max(load_retry_interval_seconds, 0.0)
        self._stop = stop_event or threading.Event()
        self._lock = threading.Lock()
        self._available = {}  # version -> Servable; replaced, never mutated
        self._statuses = {}  # version -> VersionStatus, every version ever seen
        self._failed = set()
        self._missing_base_reported_at = None  # monotonic time the missing base path was last logged

    @property
    def name(self) -> str:
        return self.config.name

    def latest(self):
        available = self._available
        return available[max(available)] if available else None

    def specific(self, version: int):
        return self._available.get(version)

    def available_versions(self) -> list:
        return sorted(self._available)

    def statuses(self) -> dict:
        """version -> VersionStatus, highest version first (ServableStateMonitor's order)."""
        with self._lock:
            return dict(sorted(self._statuses.items(), reverse=True))

    def _set_status(self, version: int, state: State, error: ServingError | None = None) -> None:
        with self._lock:
            self._statuses[version] = VersionStatus(state, error)

    def poll(self) -> None:
        """Look at the base path once and take every action the policy asks for.

        While a profile is being captured (--enable_profiler), each poll is a
        trace event, so a trace of an idle server still shows it at work.
        """
        with tf.profiler.experimental.Trace(f"poll_file_system:{self.name}"):  # a no-op unless tracing
            self._poll()

    def _poll(self) -> None:
        on_disk = layout.version_dirs(self.config.base_path)
        if not on_disk:
            self._report_no_versions()
        else:
            self._missing_base_reported_at = None
        aspired = aspired_versions(self.config, on_disk)
        # A failed version is tried again only after it leaves and comes back.
        self._failed &= aspired
        for version in aspired - set(self._available) - self._failed:
            if version not in self._statuses or self._statuses[version].state == State.END:
                self._set_status(version, State.START)
        while not self._stop.is_set():
            action = self._next_action(aspired)
            if action is None:
                return
            kind, version = action
            if kind == "unload":
                self._unload(version)
            else:
                self._load(version, on_disk[version])

    def _report_no_versions(self) -> None:
        base = pathlib.Path(self.config.base_path)
        if base.is_dir():
            log.warning("No versions of servable %s found under base path %s. Did you forget to name your leaf "
                        "directory as a number (eg. '/1/')?", self.name, base)
            return
        # tensorflow_model_server logs this at every poll (every second by default) and keeps polling; it is
        # logged here when first seen, then once per MISSING_BASE_PATH_LOG_SECONDS while the path stays missing.
        now = time.monotonic()
        if self._missing_base_reported_at is not None and now - self._missing_base_reported_at < \
                MISSING_BASE_PATH_LOG_SECONDS:
            return
        self._missing_base_reported_at = now
        reason = "Not a directory" if base.exists() else "No such file or directory"
        log.error("FileSystemStoragePathSource encountered a filesystem access error: Could not find base path %s "
                  "for servable %s with error NOT_FOUND: %s; %s (polling until it appears)", base, self.name, base,
                  reason)

    def _next_action(self, aspired: set):
        unaspired_loaded = sorted(set(self._available) - aspired)
        aspired_loaded = aspired & set(self._available)
        if unaspired_loaded and (not aspired or aspired_loaded or len(unaspired_loaded) > 1):
            return "unload", unaspired_loaded[0]
        to_load = aspired - set(self._available) - self._failed
        if to_load:
            return "load", max(to_load)
        return None

    def _load(self, version: int, path) -> None:
        self._set_status(version, State.LOADING)
        attempt = 0
        while True:
            try:
                servable = self._load_version(self.name, version, path)
                break
            except ServingError as error:
                failure = error
            except Exception as error:  # noqa: BLE001 - any load failure is reported, the server keeps serving
                failure = ServingError(Code.UNKNOWN, f"{type(error).__name__}: {error}")
            attempt += 1
            if attempt > self._retries or self._stop.wait(self._retry_interval):
                log.error("Loading servable: {name: %s version: %d} failed: %s", self.name, version,
                          failure.to_string())
                self._failed.add(version)
                self._set_status(version, State.END, failure)
                return
            log.info("Retrying load on servable version {name: %s version: %d} (attempt %d)", self.name, version,
                     attempt + 1)
        self._available = {**self._available, version: servable}
        self._set_status(version, State.AVAILABLE)
        log.info("Successfully loaded servable version {name: %s version: %d}", self.name, version)

    def _unload(self, version: int) -> None:
        self._set_status(version, State.UNLOADING)
        log.info("Unloading servable version {name: %s version: %d}", self.name, version)
        servable = self._available[version]
        self._available = {key: value for key, value in self._available.items() if key != version}
        # New requests no longer find it; the session closes now, or when the last request holding it ends.
        servable.retire()
        self._set_status(version, State.END)
        log.info("Done unloading servable version {name: %s version: %d}", self.name, version)

    def unload_all(self) -> None:
        for version in sorted(self._available):
            self._unload(version)
