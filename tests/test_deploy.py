"""The deployment files (deploy/): every Kubernetes manifest valid against its schema, and a misspelt field
failing; the images' Python, package, Beam and TensorFlow Serving versions agreeing with setup.cfg and
requirements.lock; the serving flags the same in the compose file, the serving image and the Deployment; the
readiness probe's own command, run against a server, passing only while a version is AVAILABLE.

There is no Docker engine or cluster here: the images are not built, the manifests not applied. The schema
checks run in their own environment, .venv-manifests (`make manifests`); without it they skip, except in CI
(CI=true), where they fail.
"""

from __future__ import annotations

import configparser
import os
import pathlib
import re
import shutil
import subprocess

import pytest
import yaml

import tf_mlp
from tests import serving_helpers
from tf_mlp import contract
from tf_mlp.benchmark import load_balancer

REPO = pathlib.Path(__file__).resolve().parents[1]
KUBERNETES = REPO / "deploy" / "kubernetes"
DOCKER = REPO / "deploy" / "docker"
VALIDATOR = KUBERNETES / "validate.py"
MANIFESTS_PYTHON = REPO / ".venv-manifests" / "bin" / "python"

BREAKAGES = [
    # (manifest, field as written, misspelt): a core kind, the operator's kind, KServe's kind.
    ("serving/deployment.yaml", "readinessProbe:", "readinessprobe:"),
    ("training/tfjob.yaml", "      restartPolicy: OnFailure", "      restartpolicy: OnFailure"),
    ("kserve/inferenceservice.yaml", "storageUri:", "storageURI:"),
]


def documents(relative: str) -> list:
    return [document for document in yaml.safe_load_all((KUBERNETES / relative).read_text()) if document]


def locked(name: str) -> str:
    for line in (REPO / "requirements.lock").read_text().splitlines():
        if line.lower().startswith(f"{name}=="):
            return line.split("==", 1)[1]
    raise AssertionError(f"{name} is not in requirements.lock")


def run_validator(*arguments) -> subprocess.CompletedProcess:
    if not MANIFESTS_PYTHON.exists():
        reason = f"{MANIFESTS_PYTHON} is missing (make manifests)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI validates the Kubernetes manifests, but {reason}")
        pytest.skip(reason)
    return subprocess.run([str(MANIFESTS_PYTHON), str(VALIDATOR), *map(str, arguments)], capture_output=True,
                          text=True, timeout=300, cwd=REPO)


@pytest.mark.slow
def test_every_manifest_is_valid_against_its_schema():
    result = run_validator()
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    manifests = sorted(KUBERNETES.rglob("*.yaml"))
    expected = 1 + sum(len(documents(path.relative_to(KUBERNETES).as_posix())) for path in manifests)
    assert len(lines) == expected + 1 and all(line.startswith("ok ") for line in lines[:-1]), result.stdout
    kinds = {line.split()[-2] for line in lines[:-1]}  # ok SOURCE KIND NAME
    assert {"ConfigMap", "Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget", "StatefulSet",
            "Job", "PersistentVolumeClaim", "TFJob", "InferenceService"} <= kinds
    assert lines[-1].startswith(f"{expected} valid, 0 invalid")


@pytest.mark.slow
def test_a_misspelt_field_fails_validation_naming_it(tmp_path):
    for relative, field, misspelt in BREAKAGES:
        text = (KUBERNETES / relative).read_text()
        assert text.count(field) == 1, f"{relative}: {field!r} should occur once"
        (tmp_path / relative.replace("/", "-")).write_text(text.replace(field, misspelt))
    result = run_validator(tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    errors = [line for line in result.stdout.splitlines() if line.startswith("error ")]
    for relative, _, misspelt in BREAKAGES:
        name = misspelt.strip().split(":")[0]
        assert any(relative.replace("/", "-") in line and name in line for line in errors), (name, result.stdout)
    assert result.stdout.splitlines()[-1].startswith(f"1 valid, {len(BREAKAGES)} invalid")  # the ConfigMap


def test_the_images_versions_agree_with_setup_cfg_and_the_lock():
    dockerfile = (DOCKER / "Dockerfile").read_text()
    beam_version = re.search(r"^ARG BEAM_VERSION=(\S+)$", dockerfile, re.MULTILINE).group(1)
    python_version = re.search(r"^FROM apache/beam_python(\d+\.\d+)_sdk:\$\{BEAM_VERSION\}$", dockerfile,
                               re.MULTILINE).group(1)
    assert beam_version == locked("apache-beam")
    setup = configparser.ConfigParser(interpolation=None)
    setup.read(REPO / "setup.cfg")
    assert f"Programming Language :: Python :: {python_version}" in setup["metadata"]["classifiers"]
    assert re.search(rf'org\.opencontainers\.image\.version="{re.escape(tf_mlp.__version__)}"', dockerfile)

    serving_image = f"tensorflow/serving:{locked('tensorflow-serving-api')}"
    assert f"FROM {serving_image} AS configured" in (DOCKER / "serving.Dockerfile").read_text()
    assert f"${{TF_SERVING_IMAGE:-{serving_image}}}" in (REPO / "serving" / "docker-compose.yml").read_text()
    deployment = documents("serving/deployment.yaml")[0]
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == serving_image
    predictor = documents("kserve/inferenceservice.yaml")[0]["spec"]["predictor"]["tensorflow"]
    assert predictor["runtimeVersion"] == locked("tensorflow-serving-api")
    for relative in ("training/tfjob.yaml", "training/statefulset.yaml", "training/export-job.yaml"):
        images = re.findall(r"image: (\S+)", (KUBERNETES / relative).read_text())
        assert images and set(images) == {f"REGISTRY/tf-mlp:{tf_mlp.__version__}"}, relative


def test_the_serving_flags_are_the_compose_files_everywhere():
    compose = yaml.safe_load((REPO / "serving" / "docker-compose.yml").read_text())
    flags = compose["services"]["tf-serving"]["command"]
    container = documents("serving/deployment.yaml")[0]["spec"]["template"]["spec"]["containers"][0]
    assert container["args"] == flags
    command = re.search(r"^CMD (\[.*?\])$", (DOCKER / "serving.Dockerfile").read_text(), re.MULTILINE | re.DOTALL)
    assert yaml.safe_load(command.group(1).replace("\\\n", "")) == flags
    # models.config's relative base_path resolves under the models mount, as in the compose file.
    assert container["workingDir"] == compose["services"]["tf-serving"]["working_dir"] == "/"
    mounts = {mount["mountPath"] for mount in container["volumeMounts"]}
    assert "/models" in mounts and "/config" in mounts
    assert f'base_path: "models/{contract.MODEL_NAME}"' in (REPO / "serving" / "models.config").read_text()


def test_the_readme_makes_the_configmap_the_deployment_mounts():
    pod = documents("serving/deployment.yaml")[0]["spec"]["template"]["spec"]
    name = next(volume["configMap"]["name"] for volume in pod["volumes"] if "configMap" in volume)
    files = sorted(argument.split("=", 1)[1][len("/config/"):] for argument in pod["containers"][0]["args"]
                   if "=/config/" in argument)
    readme = (REPO / "README.md").read_text()
    command = re.search(rf"kubectl create configmap {name} ((?:--from-file=serving/\S+ (?:\\\n\s*)?)+)", readme)
    assert command, f"the README has no `kubectl create configmap {name} --from-file=...` command"
    assert sorted(re.findall(r"--from-file=serving/(\S+)", command.group(1))) == files


def test_the_health_checks_ask_for_the_models_status():
    status_path = f"/v1/models/{contract.MODEL_NAME}"
    assert f"option httpchk GET {status_path}\n" in load_balancer.CONFIG.read_text()
    probe = documents("serving/deployment.yaml")[0]["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]
    assert f"GET {status_path} HTTP/1.0" in probe["exec"]["command"][-1]


@pytest.fixture(scope="module")
def readiness_probe():
    """The Deployment's readiness command, with the REST port to fill in."""
    if not shutil.which("bash"):
        pytest.skip("bash is not installed")
    container = documents("serving/deployment.yaml")[0]["spec"]["template"]["spec"]["containers"][0]
    command = container["readinessProbe"]["exec"]["command"]
    assert command[:2] == ["bash", "-c"] and "/dev/tcp/127.0.0.1/8501" in command[2]
    return lambda port: subprocess.run(["bash", "-c", command[2].replace("/8501", f"/{port}")],
                                       capture_output=True, timeout=10).returncode


@pytest.mark.slow
def test_the_readiness_probe_passes_only_while_a_version_is_available(tmp_path, readiness_probe):
    base = tmp_path / "models" / contract.MODEL_NAME
    base.mkdir(parents=True)
    with serving_helpers.start_server(model_base_path=str(base), port=-1) as server:
        assert readiness_probe(server.rest_port) != 0  # up, but no version yet: 404
        serving_helpers.add_version(base, 1)
        serving_helpers.wait_for(lambda: readiness_probe(server.rest_port) == 0, message="the probe to pass")
        port = server.rest_port
    assert readiness_probe(port) != 0  # nothing listening
