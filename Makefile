# The README's two commands: `make demo` (the main job end to end on the
# default data) and `make test` (the test suite). Each works on a fresh
# machine: it creates .venv, installs the package, and gets the data.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
RUN_DIR ?= runs/demo

.PHONY: demo test test-fast lint data browser haproxy manifests clean audit

$(BIN)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,beam]'
	touch $@

data:
	sh scripts/get_data.sh

# Debian's Chromium, for the `tf-mlp ui` page's browser tests (Playwright comes with the test extra).
browser:
	sh scripts/get_browser.sh

# Debian's HAProxy, for the replica drill behind a load balancer (tests/test_replicas.py, scripts/replicas.py).
haproxy:
	sh scripts/get_haproxy.sh

# The environment the Kubernetes manifests are validated in (deploy/kubernetes/validate.py), apart from .venv:
# the operators' SDKs pin versions that conflict with TensorFlow's (deploy/kubernetes/requirements.txt says how).
MANIFESTS_VENV := .venv-manifests
manifests: $(MANIFESTS_VENV)/.installed

$(MANIFESTS_VENV)/.installed: deploy/kubernetes/requirements.txt
	$(PYTHON) -m venv $(MANIFESTS_VENV)
	$(MANIFESTS_VENV)/bin/pip install --quiet --upgrade pip
	$(MANIFESTS_VENV)/bin/pip install --quiet -r deploy/kubernetes/requirements.txt
	touch $@

demo: $(BIN)/.installed data
	$(BIN)/python scripts/demo.py --run-dir $(RUN_DIR)

# Two workers (pytest-xdist), one per core, each given whole test files (--dist loadfile in setup.cfg): the suite
# spends much of its time waiting on subprocesses and servers. Tests that bound a latency compare it with an
# idle figure taken under the same sharing.
TEST_WORKERS ?= 2

test: $(BIN)/.installed data browser haproxy manifests
	$(BIN)/pytest -n $(TEST_WORKERS)

# The edit-test loop: every test but those marked slow (over 5 s: subprocesses, servers, training to
# convergence) or real_data (the full data sets); `make test` runs them all.
test-fast: $(BIN)/.installed data
	$(BIN)/pytest -n $(TEST_WORKERS) -m "not slow and not real_data"

# ruff with the rules in pyproject.toml (CI runs it before the tests).
lint: $(BIN)/.installed
	$(BIN)/ruff check .

# pip-audit of requirements.lock (`pip freeze --all --exclude-editable` of a fresh `pip install -e '.[test,beam]'`),
# from its own venv. --strict: a package that could not be checked fails the audit instead of passing unseen.
audit:
	$(PYTHON) -m venv .venv-audit
	.venv-audit/bin/pip install --quiet pip-audit
	.venv-audit/bin/pip-audit --strict --disable-pip --no-deps -r requirements.lock

clean:
	rm -rf $(VENV) .venv-audit $(MANIFESTS_VENV) runs models
