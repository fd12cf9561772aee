"""ServerCore: the models a config names, their versions and labels, and lookups by name, version or label.

Like TensorFlow Serving's ServerCore, it applies a ModelServerConfig (at
startup and at every poll of --model_config_file), keeps one ModelVersions
per model, and answers "which servable serves this request" with the same
errors: `Servable not found for request: Latest(foo)` (NOT_FOUND),
`Unrecognized servable version label: x` (INVALID_ARGUMENT), and status and
metadata with the shapes of GetModelStatusResponse and GetModelMetadataResponse.
One manager thread polls the config file and the base paths and does every
load and unload, so loads happen one at a time, as with upstream's default
of zero load threads.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time

from tensorflow_serving.apis import get_model_metadata_pb2, get_model_status_pb2, model_pb2

from tf_mlp.errors import ConfigError, TfMlpError
from tf_mlp.server import config_files
from tf_mlp.server.core import warmup
from tf_mlp.server.core.servable import LoadSettings, Servable
from tf_mlp.server.core.status import Code, ServingError, invalid_argument, not_found, shown
from tf_mlp.server.core.versions import ModelVersions, State
from tf_mlp.server.options import ServerOptions

log = logging.getLogger(__name__)

SIGNATURE_DEF_FIELD = "signature_def"
_HOLD_ATTEMPTS = 3


class ServerCore:
    def __init__(self, options: ServerOptions):
        self.options = options
        self._models = {}  # name -> ModelVersions; replaced, never mutated
        self._labels = {}  # name -> {label: version}; replaced, never mutated
        self._config = None
        self._stop = threading.Event()
        self._thread = None
        # Config reloads come from the manager thread and from gRPC's
        # HandleReloadConfigRequest; one at a time, never during a poll.
        self._lock = threading.RLock()

    # ---- lifecycle -------------------------------------------------------

    def start(self) -> None:
        """Apply the initial config and load what it names.

        ConfigError (TensorFlow Serving's "Failed to start server. Error: ...")
        if the config is refused or a model's version fails to load; then
        nothing stays loaded.
        """
        if self.options.model_config_file:
            config = config_files.read_model_server_config(self.options.model_config_file)
        else:
            config = config_files.single_model_config(self.options.model_name, self.options.model_base_path)
        try:
            self.reload_config(config)
        except ServingError as error:
            for model in self._models.values():
                model.unload_all()
            raise ConfigError(f"Failed to start server. Error: {error.to_string()}") from None
        self._thread = threading.Thread(target=self._manage, name="model-manager", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        for model in self._models.values():
            model.unload_all()

    def _manage(self) -> None:
        file_interval = self.options.file_system_poll_wait_seconds
        config_interval = self.options.model_config_file_poll_wait_seconds if self.options.model_config_file else 0
        next_file_poll = time.monotonic() + file_interval if file_interval > 0 else None
        next_config_poll = time.monotonic() + config_interval if config_interval > 0 else None
        while True:
            deadlines = [moment for moment in (next_file_poll, next_config_poll) if moment is not None]
            if not deadlines:
                return
            if self._stop.wait(max(min(deadlines) - time.monotonic(), 0)):
                return
            now = time.monotonic()
            with self._lock:
                if next_config_poll is not None and now >= next_config_poll:
                    self._reload_config_file()
                    next_config_poll = time.monotonic() + config_interval
                if next_file_poll is not None and now >= next_file_poll:
                    for model in self._models.values():
                        model.poll()
                    next_file_poll = time.monotonic() + file_interval

    def _reload_config_file(self) -> None:
        try:
            config = config_files.read_model_server_config(self.options.model_config_file)
            self.reload_config(config)
        except (TfMlpError, ServingError) as error:
            log.error("PollFilesystemAndReloadConfig failed to ReloadConfig: %s", error)

    # ---- configuration ---------------------------------------------------

    def reload_config(self, config) -> None:
        """Apply a ModelServerConfig: labels first (as upstream), then new and removed models."""
        with self._lock:
            self._apply_config(config)

    def _apply_config(self, config) -> None:
        config_files.validate_model_server_config(config)
        model_configs = {model.name: model for model in config.model_config_list.config}
        self._labels = self._checked_labels(model_configs)
        self._config = config
        models = dict(self._models)
        for name in list(models):
            if name not in model_configs:
                models.pop(name).unload_all()
        for name, model_config in model_configs.items():
            if name in models:
                models[name].config = model_config
            else:
                models[name] = ModelVersions(
                    model_config,
                    self.load_version,
                    max_num_load_retries=self.options.max_num_load_retries,
                    load_retry_interval_seconds=self.options.load_retry_interval_micros / 1e6,
                    stop_event=self._stop,
                )
        added = [name for name in models if name not in self._models]
        self._models = models
        for model in models.values():
            model.poll()
        error = self.unavailable_models_error(added)
        if error is not None:
            raise error

    def load_errors(self) -> dict:
        """(model, version) -> ServingError for every version whose last load attempt failed."""
        errors = {}
        for name, model in self._models.items():
            for version, status in model.statuses().items():
                if status.state == State.END and status.error is not None:
                    errors[(name, version)] = status.error
        return errors

    def unavailable_models_error(self, names) -> ServingError | None:
        """WaitUntilModelsAvailable: UNKNOWN if a model's latest version failed to load.

        A model with no version on disk yet is not counted: its first version
        is loaded whenever it appears.
        """
        failed = []
        for name in names:
            model = self._models.get(name)
            if model is None:
                continue
            statuses = model.statuses()
            if statuses:
                version, status = next(iter(statuses.items()))  # the highest version
                if status.state == State.END and status.error is not None:
                    failed.append(f"{{{{name: {name} version: {version}}} due to error: {status.error.to_string()}}}, ")
        if not failed:
            return None
        return ServingError(Code.UNKNOWN, f"{len(failed)} model(s) did not become available: {{{''.join(failed)}}}")

    def _checked_labels(self, model_configs: dict) -> dict:
        """UpdateModelVersionLabelMap: a label may only name an available version, unless allowed."""
        labels = {}
        for name, model_config in model_configs.items():
            model = self._models.get(name)
            available = set(model.available_versions()) if model else set()
            previous = self._labels.get(name, {})
            for label, version in model_config.version_labels.items():
                allowed = self.options.allow_version_labels_for_unavailable_models and previous.get(
                    label, version) == version
                if not allowed and version not in available:
                    raise ServingError(
                        Code.FAILED_PRECONDITION,
                        f"Request to assign label to version {version} of model {name}, "
                        "which is not currently available for inference",
                    )
                labels.setdefault(name, {})[label] = version
        return labels

    def load_version(self, model_name: str, version: int, path) -> Servable:
        """Load a version and replay its warmup requests; ServingError if either fails."""
        servable = Servable.load(model_name, version, path, LoadSettings.from_options(self.options))
        if self.options.enable_model_warmup:
            warmup.warm_up(servable, self.options.num_request_iterations_for_warmup)
        return servable

    # ---- lookups ---------------------------------------------------------

    def servable(self, model_name: str, version: int | None = None, label: str | None = None) -> Servable:
        """The servable asked for by name, version or label (ServerCore::GetServableHandle); the REST API
        passes what its URL names, the gRPC API what its ModelSpec names (servable_for_spec)."""
        if not model_name:
            raise invalid_argument("ModelSpec has no name specified.")
        if label is not None:
            version = self._labels.get(model_name, {}).get(label)
            if version is None:
                raise invalid_argument(f"Unrecognized servable version label: {shown(label)}")
        model = self._models.get(model_name)
        servable = None
        if model is not None:
            servable = model.latest() if version is None else model.specific(version)
        if servable is None:
            request = f"Latest({shown(model_name)})" if version is None else f"Specific({shown(model_name)}, {version})"
            raise not_found(f"Servable not found for request: {request}")
        return servable

    def servable_for_spec(self, model_spec) -> Servable:
        return self.servable(*_lookup(model_spec))

    @contextlib.contextmanager
    def serving(self, model_name: str, version: int | None = None, label: str | None = None):
        """The servable asked for (as servable()), held so that an unload does not close it until the block ends.

        A version closed between its lookup and its hold has just been
        unloaded: the lookup is made again, and finds its replacement.
        """
        for _ in range(_HOLD_ATTEMPTS):
            servable = self.servable(model_name, version, label)
            if servable.hold():
                break
        else:
            raise ServingError(Code.UNAVAILABLE, f"{servable.id} was unloaded while the request looked it up; retry")
        try:
            yield servable
        finally:
            servable.release()

    def serving_spec(self, model_spec):
        """serving() for what a ModelSpec names."""
        return self.serving(*_lookup(model_spec))

    def knows(self, model_name: str) -> bool:
        """Whether the config names this model (the metrics label only these)."""
        return model_name in self._models

    def model_status(self, model_name: str, version: int | None = None) -> get_model_status_pb2.GetModelStatusResponse:
        """GetModelStatusImpl: every version ever seen, or one; NOT_FOUND with upstream's messages."""
        model = self._models.get(model_name)
        statuses = model.statuses() if model else {}
        if version is not None:
            if version not in statuses:
                raise not_found(f"Could not find version {version} of model {shown(model_name)}")
            statuses = {version: statuses[version]}
        elif not statuses:
            raise not_found(f"Could not find any versions of model {shown(model_name)}")
        response = get_model_status_pb2.GetModelStatusResponse()
        for number, status in statuses.items():
            entry = response.model_version_status.add(version=number, state=status.state.value)
            # Always present, so JSON shows {"error_code": "OK", "error_message": ""} as upstream.
            entry.status.SetInParent()
            if status.error is not None:
                entry.status.error_code = status.error.code.value
                entry.status.error_message = status.error.message
        return response

    def model_metadata(self, model_name: str, version: int | None = None, label: str | None = None) -> tuple:
        """(ModelSpec, SignatureDefMap) of the servable asked for by name, version or label: its name and
        version, and its signature defs, as GetModelMetadata answers them."""
        servable = self.servable(model_name, version, label)
        model_spec = model_pb2.ModelSpec(name=servable.model_name)
        model_spec.version.value = servable.version
        signature_map = get_model_metadata_pb2.SignatureDefMap()
        for name, definition in servable.signature_defs.items():
            signature_map.signature_def[name].CopyFrom(definition)
        return model_spec, signature_map

    def metadata(self, model_spec, fields) -> get_model_metadata_pb2.GetModelMetadataResponse:
        """GetModelMetadataImpl: the signature_def map of the servable the spec names, packed in an Any."""
        if not fields:
            raise invalid_argument("GetModelMetadataRequest must specify at least one metadata_field")
        for field in fields:
            if field != SIGNATURE_DEF_FIELD:
                raise invalid_argument(f"Metadata field {shown(field)} is not supported")
        response_spec, signature_map = self.model_metadata(*_lookup(model_spec))
        response = get_model_metadata_pb2.GetModelMetadataResponse(model_spec=response_spec)
        response.metadata[SIGNATURE_DEF_FIELD].Pack(signature_map)
        return response


def _lookup(model_spec) -> tuple:
    """(name, version, label) a ModelSpec asks for; version and label None unless its version_choice sets them."""
    choice = model_spec.WhichOneof("version_choice")
    return (model_spec.name, model_spec.version.value if choice == "version" else None,
            model_spec.version_label if choice == "version_label" else None)
