"""Three `tf-mlp serve` replicas of one model base path behind HAProxy (deploy/haproxy/haproxy.cfg), under
steady load from the batch tool over REST through the load balancer: a replica SIGKILLed and restarted, one
SIGTERMed, a new version published. No row may be lost or wrong, and no request may fail: the load balancer
sends again whatever a disturbed replica refused or dropped.

Needs Debian's HAProxy (`make haproxy`); skipped without it, except in CI (CI=true), where it fails. The
figures of each run go to test-artifacts/replicas-PHASES.txt (TF_MLP_TEST_ARTIFACTS sets the directory).
"""

from __future__ import annotations

import os
import pathlib
import shutil

import pytest

from tests import serving_helpers
from tf_mlp.benchmark import load_balancer, replicas

pytestmark = pytest.mark.slow

REPO = pathlib.Path(__file__).resolve().parents[1]


def _require_haproxy() -> None:
    if shutil.which(load_balancer.HAPROXY):
        return
    reason = f"{load_balancer.HAPROXY} is not installed (make haproxy)"
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI runs the replica drill, but {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def drill(tmp_path_factory):
    """The replicas and HAProxy, started once for both drills (each `tf-mlp serve` costs ~5 s of CPU to start)."""
    _require_haproxy()
    images = serving_helpers.test_images(250)
    with replicas.Drill(serving_helpers.exported_version_dir(), images, tmp_path_factory.mktemp("drill"),
                        log=print) as started:
        yield started


@pytest.mark.parametrize("phases", [("steady", "publish"), ("kill", "terminate")], ids="-".join)
def test_replicas_behind_haproxy_lose_no_row_and_fail_no_request_when_killed_stopped_or_updated(drill, phases):
    # Two drills of two phases each rather than one of four: the same disturbances, each test within a minute.
    # Both on the same replicas, in the order of the script's drill (a replica SIGTERMed before another drill
    # is started again first); fresh replicas for the second would add three start-ups and prove nothing more.
    report = drill.run(phases)
    figures = report.format()
    artifacts = pathlib.Path(os.environ.get("TF_MLP_TEST_ARTIFACTS", REPO / "test-artifacts"))
    artifacts.mkdir(parents=True, exist_ok=True)
    (artifacts / f"replicas-{'-'.join(phases)}.txt").write_text(figures + "\n")

    phases_run = {phase.name: phase for phase in report.phases}
    assert tuple(phases_run) == phases, figures
    for phase in report.phases:
        assert phase.runs >= 2 and phase.errors == [], figures  # load before and after the disturbance
        assert phase.rows == phase.inputs == phase.runs * replicas.RUN_INPUTS, figures
        assert (phase.lost_rows, phase.wrong_rows) == (0, 0), figures
        assert (phase.failed_requests, phase.lb_errors) == (0, 0), figures
    events = {phase.name: [event for _, event in phase.events] for phase in report.phases}
    names = [name for name, _ in load_balancer.replica_slots()]
    if "publish" in phases:
        assert all(f"{name} serves version 2 alone" in events["publish"] for name in names), figures
    if "kill" in phases:
        assert events["kill"][-1] == f"{names[0]} back in the pool", figures
    if "terminate" in phases:
        # SIGTERM: a graceful shutdown (its log's line: ports closed, requests in flight answered), out of the
        # pool, exit 0. Whether HAProxy noticed before or just after the exit is a race, and either way no
        # request failed (asserted above): a refused connection is sent to another replica.
        assert phases_run["terminate"].drained is not None, figures
        assert phases_run["terminate"].left_pool_before_exit is not None, figures
        assert f"{names[1]} exited with status 0" in events["terminate"], figures
