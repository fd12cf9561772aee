#!/usr/bin/env python
"""Run TensorFlow Serving's own integration test suite, unchanged, against `tf-mlp serve`.

    python scripts/tf_serving_conformance.py /path/to/serving            # a checkout of tensorflow/serving
    python scripts/tf_serving_conformance.py /path/to/serving testPredictUDS testBadModelConfig

The suite (tensorflow_serving/model_servers/tensorflow_model_server_test.py)
starts `$TEST_SRCDIR/tf_serving/tensorflow_serving/model_servers/tensorflow_model_server`
with tensorflow_model_server's flags and talks to it over gRPC, REST and a
UNIX socket, using the test models under servables/tensorflow/testdata. This
script lays out a TEST_SRCDIR where that executable is a two-line wrapper
running `tf-mlp serve` with the flags it was given, and the test data is the
checkout's own; it runs the suite from the checkout, with the
`tensorflow_serving` package extended by the checkout's Python test modules
(the installed tensorflow-serving-api provides the rest), and prints one
line per test and the totals. Nothing of the checkout is copied or changed.

Needs tensorflow-serving-api, TensorFlow and portpicker (`pip install -e '.[tf-serving-tests]'`),
and wget (the profiler test sends its requests with it). Exit status: 0 when every test passed, 1 otherwise.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import pathlib
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ElementTree

REPO = pathlib.Path(__file__).resolve().parents[1]
TEST = pathlib.Path("tensorflow_serving/model_servers/tensorflow_model_server_test.py")
TEST_CLASS = "TensorflowModelServerTest"
SUITE_MODULES = ("portpicker",)
"""Modules the suite imports that this package does not install by default."""
INSTALL_COMMAND = "pip install -e '.[tf-serving-tests]'"
_MISSING_MODULE = re.compile(r"No module named '([^']+)'")

# Runs the test file as __main__ once the checkout's Python modules are reachable under tensorflow_serving.
_RUNNER = """
import runpy, sys
import tensorflow_serving
tensorflow_serving.__path__.append(sys.argv[1])
sys.argv = sys.argv[2:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def layout(checkout: pathlib.Path, srcdir: pathlib.Path) -> None:
    """TEST_SRCDIR/tf_serving/tensorflow_serving: the checkout's test data and our tensorflow_model_server."""
    package = srcdir / "tf_serving" / "tensorflow_serving"
    (package / "model_servers").mkdir(parents=True)
    (package / "servables").symlink_to(checkout / "tensorflow_serving" / "servables")
    wrapper = package / "model_servers" / "tensorflow_model_server"
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m tf_mlp.cli serve "$@"\n')
    wrapper.chmod(0o755)


def results(xml_path: pathlib.Path) -> list[tuple[str, str, str]]:
    """(test, outcome, first line of the failure) from absltest's JUnit XML."""
    rows = []
    for case in ElementTree.parse(xml_path).getroot().iter("testcase"):
        outcome, detail = "passed", ""
        for kind in ("failure", "error", "skipped"):
            found = case.find(kind)
            if found is not None:
                outcome = {"failure": "failed", "error": "error", "skipped": "skipped"}[kind]
                lines = (found.text or found.get("message") or "").strip().splitlines()
                # A gRPC error's own words are on its `details = "..."` line; otherwise the exception's last line.
                grpc_details = [line.strip() for line in lines if line.strip().startswith("details = ")]
                detail = grpc_details[-1] if grpc_details else (lines[-1] if lines else "")
                break
        rows.append((case.get("name"), outcome, detail))
    return rows


def needs_module(name: str) -> str:
    return f"the suite needs the Python module {name}, which is not installed; {INSTALL_COMMAND}"


def missing_module_message(log_text: str) -> str | None:
    """What the suite's output says it could not import, with the command that installs it if we know one."""
    found = _MISSING_MODULE.search(log_text)
    if found is None:
        return None
    name = found.group(1)
    return needs_module(name) if name.split(".")[0] in SUITE_MODULES else f"it could not import the module {name}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkout", type=pathlib.Path, help="a checkout of the tensorflow/serving repository")
    parser.add_argument("tests", nargs="*", help="test names to run (default: the whole suite)")
    parser.add_argument("--log", type=pathlib.Path, help="write the suite's own output here (default: a temp file)")
    args = parser.parse_args(argv)
    checkout = args.checkout.resolve()
    if not (checkout / TEST).is_file():
        parser.error(f"{checkout} has no {TEST}; give the root of a tensorflow/serving checkout")
    for name in SUITE_MODULES:
        if importlib.util.find_spec(name) is None:
            print(f"error: {needs_module(name)}", file=sys.stderr)
            return 1
    if shutil.which("wget") is None:
        print("warning: wget is not installed; test_profiler_service_with_valid_trace_request sends no requests",
              file=sys.stderr)
    work = pathlib.Path(tempfile.mkdtemp(prefix="tf-serving-conformance-"))
    try:
        layout(checkout, work / "srcdir")
        xml_path = work / "results.xml"
        log_path = args.log or work / "suite.log"
        environment = dict(os.environ, TEST_SRCDIR=str(work / "srcdir"), TEST_TMPDIR=str(work / "tmp"),
                           XML_OUTPUT_FILE=str(xml_path), TF_CPP_MIN_LOG_LEVEL="2",
                           PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
        (work / "tmp").mkdir()
        tests = [name if "." in name else f"{TEST_CLASS}.{name}" for name in args.tests]
        command = [sys.executable, "-c", _RUNNER, str(checkout / "tensorflow_serving"), str(checkout / TEST), *tests]
        with open(log_path, "wb") as log:
            # The suite kills its servers at exit; in a process group of its own, none can outlive the run.
            suite = subprocess.Popen(command, cwd=checkout, env=environment, stdout=log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
            try:
                status = suite.wait()
            finally:
                try:
                    os.killpg(suite.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        if not xml_path.exists():
            reason = missing_module_message(log_path.read_text(errors="replace"))
            print(f"the suite did not run (exit {status}){': ' + reason if reason else ''}; see {log_path}",
                  file=sys.stderr)
            return 1
        rows = results(xml_path)
        for name, outcome, detail in rows:
            print(f"{outcome:8} {name}" + (f"  -- {detail[:300]}" if detail else ""))
        counts = {outcome: sum(row[1] == outcome for row in rows) for outcome in ("passed", "failed", "error",
                                                                                   "skipped")}
        print(f"{len(rows)} tests: " + ", ".join(f"{count} {outcome}" for outcome, count in counts.items()))
        print(f"suite output: {log_path}")
        return 0 if counts["failed"] == counts["error"] == 0 else 1
    finally:
        for directory in ("srcdir", "tmp"):
            shutil.rmtree(work / directory, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
