#!/usr/bin/env python
"""Check Kubernetes manifests offline, failing on unknown fields and wrong types.

    .venv-manifests/bin/python deploy/kubernetes/validate.py                 # every manifest under deploy/kubernetes
    .venv-manifests/bin/python deploy/kubernetes/validate.py FILE_OR_DIR ...

Core kinds (Deployment, Service, StatefulSet, ...) are validated against
Kubernetes' published OpenAPI schemas, as carried by kubernetes-validate,
in their strict form (no field the API does not define), for the oldest
and the newest Kubernetes release it carries. The operators' kinds are
checked against their own SDKs' models, generated from the same API types
as their CRDs: TFJob against the Kubeflow Training Operator's
(kubeflow-training), InferenceService against KServe's (kserve). Every
field must be one the model (or a Kubernetes model inside it) defines, of
its type; the models themselves refuse missing required fields. The
ConfigMap the README makes from serving/'s files (kubectl create configmap
tf-mlp-serving-config --from-file=...) is rendered as that command makes it
(its name and files are those the serving Deployment mounts) and checked too.

One line per document, `ok PATH KIND NAME` or `error PATH KIND NAME: WHERE:
WHAT`; exit status 1 if any document failed. Needs its own environment
(the SDKs' dependencies conflict with TensorFlow's): `make manifests` makes
.venv-manifests from deploy/kubernetes/requirements.txt.
"""

from __future__ import annotations

import difflib
import importlib
import pathlib
import re
import sys

import kubernetes_validate
import yaml

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parents[1]
SDK_MODELS = {
    ("kubeflow.org/v1", "TFJob"): ("kubeflow.training.models", "KubeflowOrgV1TFJob"),
    ("serving.kserve.io/v1beta1", "InferenceService"): ("kserve.models", "V1beta1InferenceService"),
}
_MODEL_MODULES = ("kubeflow.training.models", "kserve.models", "kubernetes.client.models")
_QUANTITY_MAPS = {"limits", "requests", "overhead"}
"""Maps of resource quantities, which Kubernetes takes as strings or numbers (cpu: 2 or cpu: "2")."""


def render_configmap(deployment_path: pathlib.Path = HERE / "serving" / "deployment.yaml") -> dict:
    """The ConfigMap the serving Deployment mounts, as `kubectl create configmap NAME --from-file=serving/FILE ...`
    makes it: the name from the Deployment's volume, one key per file its flags name under the mount."""
    deployment = yaml.safe_load(deployment_path.read_text())
    pod = deployment["spec"]["template"]["spec"]
    volume = next(volume for volume in pod["volumes"] if "configMap" in volume)
    container = pod["containers"][0]
    mount = next(mount for mount in container["volumeMounts"] if mount["name"] == volume["name"])["mountPath"]
    files = sorted({argument.split("=", 1)[1][len(mount) + 1:] for argument in container["args"]
                    if "=" in argument and argument.split("=", 1)[1].startswith(f"{mount}/")})
    data = {name: (REPO / "serving" / name).read_text() for name in files}
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": volume["configMap"]["name"]}, "data": data}


class _Checker:
    """Walks a manifest against OpenAPI-generated model classes, collecting every problem with its path."""

    def __init__(self):
        self.errors = []

    def check(self, value, type_name: str, path: str, field: str = "") -> None:
        list_type = re.fullmatch(r"list\[(.+)\]", type_name)
        dict_type = re.fullmatch(r"dict\((\w+), (.+)\)", type_name)
        if list_type:
            if not isinstance(value, list):
                return self._error(path, f"expected a list, got {_kind_of(value)}")
            for index, item in enumerate(value):
                self.check(item, list_type.group(1), f"{path}[{index}]")
        elif dict_type:
            if not isinstance(value, dict):
                return self._error(path, f"expected a map, got {_kind_of(value)}")
            item_type = "object" if field in _QUANTITY_MAPS else dict_type.group(2)
            for key, item in value.items():
                self.check(item, item_type, f"{path}.{key}")
        elif type_name in _SCALARS:
            if not _SCALARS[type_name](value):
                self._error(path, f"expected {type_name}, got {_kind_of(value)} {value!r}")
        else:
            self._check_object(value, _model_class(type_name), path)

    def _check_object(self, value, model, path: str) -> None:
        if not isinstance(value, dict):
            return self._error(path, f"expected a {model.__name__} object, got {_kind_of(value)}")
        attribute_of = {json_name: attribute for attribute, json_name in model.attribute_map.items()}
        for key, item in value.items():
            if key not in attribute_of:
                close = difflib.get_close_matches(key, attribute_of, n=1)
                hint = f" (did you mean {close[0]}?)" if close else ""
                self._error(f"{path}.{key}", f"unknown field of {model.__name__}{hint}")
            else:
                self.check(item, model.openapi_types[attribute_of[key]], f"{path}.{key}", key)
        try:  # the model's own checks: required fields, allowed values
            model(**{attribute_of[key]: item for key, item in value.items() if key in attribute_of})
        except (ValueError, TypeError) as error:
            self._error(path, str(error).splitlines()[0])

    def _error(self, path: str, message: str) -> None:
        self.errors.append(f"{path}: {message}")


_SCALARS = {
    "str": lambda value: isinstance(value, str),
    "int": lambda value: isinstance(value, int) and not isinstance(value, bool),
    "float": lambda value: isinstance(value, (int, float)) and not isinstance(value, bool),
    "bool": lambda value: isinstance(value, bool),
    "object": lambda value: True,
    "datetime": lambda value: isinstance(value, str),
    "date": lambda value: isinstance(value, str),
}


def _kind_of(value) -> str:
    return {dict: "a map", list: "a list", str: "a string", bool: "a boolean"}.get(type(value), type(value).__name__)


def _model_class(name: str):
    for module_name in _MODEL_MODULES:
        model = getattr(importlib.import_module(module_name), name, None)
        if model is not None:
            return model
    raise LookupError(f"no model class {name} in {', '.join(_MODEL_MODULES)}")


def _operator_rules(document: dict) -> list:
    """What the operators require beyond their models' types, from their SDKs' own constants."""
    errors = []
    if document.get("kind") == "TFJob":
        from kubeflow.training.constants import constants

        for replica_type, replica in (document.get("spec", {}).get("tfReplicaSpecs") or {}).items():
            if replica_type.lower() not in constants.TFJOB_REPLICA_TYPES:
                errors.append(f"spec.tfReplicaSpecs.{replica_type}: not a TFJob replica type "
                              f"({', '.join(constants.TFJOB_REPLICA_TYPES)})")
            containers = replica.get("template", {}).get("spec", {}).get("containers", [])
            if constants.TFJOB_CONTAINER not in [container.get("name") for container in containers]:
                errors.append(f"spec.tfReplicaSpecs.{replica_type}: no container named {constants.TFJOB_CONTAINER!r}, "
                              "the one the operator configures")
    return errors


def kubernetes_versions() -> list:
    """The oldest and the newest Kubernetes release whose schemas kubernetes-validate carries."""
    versions = sorted(kubernetes_validate.utils.all_versions(), key=lambda text: tuple(map(int, text.split("."))))
    return [versions[0], versions[-1]]


def validate_document(document: dict) -> list:
    """Every problem found in one manifest document (empty: valid)."""
    key = (document.get("apiVersion"), document.get("kind"))
    if key in SDK_MODELS:
        module_name, class_name = SDK_MODELS[key]
        checker = _Checker()
        checker._check_object(document, getattr(importlib.import_module(module_name), class_name), document["kind"])
        return checker.errors + _operator_rules(document)
    errors = []
    for version in kubernetes_versions():
        try:
            kubernetes_validate.validate(document, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            where = ".".join(str(part) for part in error.path) or "(document)"
            errors.append(f"{where}: {error.message} (Kubernetes {version})")
        except kubernetes_validate.SchemaNotFoundError:
            errors.append(f"no schema for {key[1]} {key[0]} in Kubernetes {version}")
    return errors


def manifest_files(arguments) -> list:
    paths = [pathlib.Path(argument) for argument in arguments] or [HERE]
    files = []
    for path in paths:
        files += sorted(path.rglob("*.yaml")) if path.is_dir() else [path]
    return files


def main(arguments) -> int:
    documents = [("(kubectl create configmap)", render_configmap())]
    for path in manifest_files(arguments):
        documents += [(str(path), document) for document in yaml.safe_load_all(path.read_text()) if document]
    failed = 0
    for source, document in documents:
        name = f"{source} {document.get('kind')} {document.get('metadata', {}).get('name')}"
        errors = validate_document(document)
        failed += bool(errors)
        print(f"ok {name}" if not errors else "\n".join(f"error {name}: {error}" for error in errors))
    print(f"{len(documents) - failed} valid, {failed} invalid (Kubernetes {' and '.join(kubernetes_versions())}; "
          f"kubeflow-training and kserve models)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
