"""The model server's config file, read as TensorFlow Serving reads it and rewritten in step with the server.

A rollout serves *pinned* versions: the model's entry in the
ModelServerConfig has `model_version_policy { specific { versions: ... } }`
and `version_labels` naming them. This module reads that entry, builds a copy
of the whole config with other pins and labels (every other model and field
kept as it was), and writes it back atomically (a reader, such as the
server polling the file, sees the old file or the new one, whole).

Protobuf's text format keeps no comments, so the file's leading comment
block (every line up to the first that is not a comment or blank) is kept
as it is, and whatever follows is written by `text_format`.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib

from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

from tf_mlp.batch.writers import check_output_location
from tf_mlp.errors import ConfigError
from tf_mlp.files import write_atomically
from tf_mlp.server import config_files

SPECIFIC_POLICY = "specific"


@dataclasses.dataclass(frozen=True)
class ConfigFile:
    path: pathlib.Path
    config: model_server_config_pb2.ModelServerConfig
    header: str
    """The file's leading comment lines, written back unchanged."""

    def model(self, name: str):
        """The ModelConfig named `name`; ConfigError if the file has none or it does not pin its versions."""
        for entry in self.config.model_config_list.config:
            if entry.name == name:
                policy = entry.model_version_policy.WhichOneof("policy_choice")
                if policy != SPECIFIC_POLICY:
                    raise ConfigError(
                        f"{self.path}: model {name} has version policy {policy or 'latest (the default)'}; a "
                        "rollout moves labels between pinned versions: give it model_version_policy { specific "
                        "{ versions: N } } and version_labels { key: \"stable\" value: N }")
                return entry
        names = ", ".join(entry.name for entry in self.config.model_config_list.config) or "none"
        raise ConfigError(f"{self.path} has no model named {name} (models: {names})")

    def labels(self, name: str) -> dict[str, int]:
        return dict(self.model(name).version_labels)

    def pinned(self, name: str) -> list[int]:
        return sorted(set(self.model(name).model_version_policy.specific.versions))

    def with_rollout(self, name: str, labels: dict[str, int],
                     versions) -> model_server_config_pb2.ModelServerConfig:
        """A copy of the whole config where model `name` pins exactly `versions` and has exactly `labels`."""
        self.model(name)  # checked: present, with pinned versions
        config = model_server_config_pb2.ModelServerConfig()
        config.CopyFrom(self.config)
        entry = next(entry for entry in config.model_config_list.config if entry.name == name)
        specific = entry.model_version_policy.specific
        del specific.versions[:]
        specific.versions.extend(sorted(set(versions)))
        entry.version_labels.clear()
        entry.version_labels.update(labels)
        return config


def read(path) -> ConfigFile:
    """The config file at path, checked as ServerCore checks it (ConfigError naming the file otherwise)."""
    path = pathlib.Path(path)
    config = config_files.read_model_server_config(path)
    lines = path.read_text().splitlines(keepends=True)
    header = []
    for line in lines:
        if line.strip() and not line.lstrip().startswith("#"):
            break
        header.append(line)
    return ConfigFile(path, config, "".join(header))


def render(config_file: ConfigFile, config) -> str:
    """The file's text for `config`: its own leading comments, then the config in protobuf's text format."""
    header = config_file.header
    if header and not header.endswith("\n"):
        header += "\n"
    return header + text_format.MessageToString(config)


def check_writable(config_file: ConfigFile) -> None:
    """ConfigError, before the server is asked for anything, if the file cannot be rewritten in place.

    Otherwise the server would take a config its file does not say, and go
    back to the file's at its next poll.
    """
    target = _real_path(config_file.path)
    if not os.access(target, os.W_OK):
        raise ConfigError(f"{config_file.path} cannot be written (it must be kept in step with the server)")
    try:
        check_output_location(target)
    except ConfigError as error:
        raise ConfigError(f"{config_file.path} cannot be rewritten in place: {error}") from None


def write(config_file: ConfigFile, config) -> ConfigFile:
    """Replace the file with `config` atomically; the file as it now is."""
    text = render(config_file, config)
    write_atomically(_real_path(config_file.path), text.encode("utf-8"))
    written = model_server_config_pb2.ModelServerConfig()
    written.CopyFrom(config)
    return dataclasses.replace(config_file, config=written)


def _real_path(path: pathlib.Path) -> pathlib.Path:
    # A symlinked config is replaced where it really is, never turned into a regular file at the link.
    return pathlib.Path(os.path.realpath(path))
