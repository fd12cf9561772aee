"""What an export holds, read from its files without loading the model or asking a server.

    tf-mlp exports models/              every version of models/tf_mlp: signatures and model card
    tf-mlp exports models/tf_mlp/3      one version

For each version: the SignatureDefs (each input and output with dtype and
shape) as `saved_model_cli show --all` reads them from saved_model.pb
(tf_mlp.export.describe parses the SavedModel protocol buffer; no graph is
loaded), the class names (assets/labels.txt) and the model card
(assets.extra/model_card.json: data set, test accuracy, export time,
TensorFlow version, git commit).
"""

from __future__ import annotations

import json
import pathlib

from tf_mlp import contract, layout
from tf_mlp.errors import ExportError

_SAVED_MODEL = layout.SAVED_MODEL_FILE
_CARD_FIELDS = ("data_set", "test_accuracy", "test_examples", "parameters", "exported_at", "tensorflow_version",
                "git_commit")


def version_dirs(path, model_name: str = contract.MODEL_NAME) -> list[tuple[int, pathlib.Path]]:
    """(version, directory) of every version `path` names: a version directory, a model base or an export base."""
    path = pathlib.Path(path)
    if not path.exists():
        raise ExportError(f"{path} does not exist")
    versions = layout.saved_model_versions(path, model_name)
    if not versions:
        raise ExportError(f"no SavedModel in {path} (expected {path}/{_SAVED_MODEL}, {path}/<version>/ "
                          f"or {path}/{model_name}/<version>/)")
    return list(versions.items())


def describe_version(version: int, directory: pathlib.Path) -> dict:
    """Signatures, class names and model card of one version, as plain JSON types."""
    from google.protobuf.message import DecodeError

    from tf_mlp.export.describe import signature_summary

    try:
        signatures = signature_summary(directory)
    except DecodeError:
        raise ExportError(f"{directory / _SAVED_MODEL}: not a readable SavedModel protocol buffer") from None
    labels = layout.labels_asset_path(directory)
    card_path = layout.assets_extra_path(directory, contract.MODEL_CARD_FILE)
    card = None
    if card_path.is_file():
        try:
            card = json.loads(card_path.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as error:
            raise ExportError(f"{card_path}: not valid JSON ({error})") from None
    return {
        "version": version,
        "path": str(directory),
        "signatures": signatures,
        "class_names": labels.read_text(encoding="utf-8").splitlines() if labels.is_file() else None,
        "model_card": card,
    }


def describe_exports(path, model_name: str = contract.MODEL_NAME) -> list[dict]:
    return [describe_version(version, directory) for version, directory in version_dirs(path, model_name)]


def format_exports(descriptions: list[dict]) -> str:
    lines = []
    for description in descriptions:
        lines.append(f"version {description['version']}  {description['path']}")
        card = description["model_card"]
        if card is None:
            lines.append("  model card: none")
        else:
            facts = [f"{field} {card[field]}" for field in _CARD_FIELDS if card.get(field) is not None]
            lines.append("  model card: " + ", ".join(facts))
        if description["class_names"] is not None:
            lines.append("  classes: " + ", ".join(description["class_names"]))
        for name, signature in description["signatures"].items():
            lines.append(f"  signature {name} ({signature['method']})")
            for direction in ("inputs", "outputs"):
                for alias, tensor in signature[direction].items():
                    shape = "[" + ", ".join(str(size) for size in tensor["shape"]) + "]"
                    lines.append(f"    {direction[:-1]:6} {alias}: {tensor['dtype']} {shape}")
    return "\n".join(lines)
