"""The replica drill: `tf-mlp serve` replicas of one model base path behind HAProxy, disturbed under steady load.

    report = run_drill(pathlib.Path("models/tf_mlp/3"), images, pathlib.Path("runs/replicas"))
    print(report.format())

    with Drill(pathlib.Path("models/tf_mlp/3"), images, pathlib.Path("runs/replicas")) as drill:
        first, then = drill.run(("steady", "publish")), drill.run(("kill", "terminate"))  # the same replicas

The model version is copied into the work directory (the drill publishes a
new version there, never in your export), and as many replicas as
deploy/haproxy/haproxy.cfg lists serve it on free ports, behind HAProxy with
that configuration. Each phase is one batch run over REST through the load
balancer and at most one disturbance, made once requests are flowing. The load
is the batch tool (tf_mlp.batch with `tf-mlp batch-predict`'s retry settings,
in this process), run again and again over the same inputs until one run has
started and finished after the disturbance was over:

    steady     none: the baseline
    publish    a new version appears in the shared base path; wait until every replica serves it alone
    kill       SIGKILL a replica, restart it, wait until HAProxy has it back in the pool
    terminate  SIGTERM a replica: it must close its ports, answer its requests in flight and exit 0

Counted per phase: rows lost (inputs without a prediction row), rows that
disagree with the model's own answer (class ids equal, probability within
1e-5: the server batches differently), requests the client saw fail (each
retried or given up), and the load balancer's own retries and 5xx answers.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import datetime
import pathlib
import shutil
import signal
import threading
import time

import numpy as np

from tf_mlp import contract
from tf_mlp.benchmark.load_balancer import CONFIG, LoadBalancer, replica_slots
from tf_mlp.server.process import ServerProcess

PHASES = ("steady", "publish", "kill", "terminate")
RUN_INPUTS = 2000
"""Inputs per batch run: a fraction of a second through the load balancer, so runs follow each other closely."""
PROBABILITY_TOLERANCE = contract.PROBABILITY_TOLERANCE
POOL_TIMEOUT_SECONDS = 120
IN_FLIGHT_WAIT_SECONDS = 5
SHUTDOWN_LINE = "Shutting down: finishing requests in flight"
"""What `tf-mlp serve` logs as it closes its ports on SIGTERM (with the time, to the millisecond)."""
SERVER_FLAGS = ("--file_system_poll_wait_seconds=1",)
"""Replicas look for new versions every second (TensorFlow Serving's default)."""


@dataclasses.dataclass
class Phase:
    name: str
    runs: int = 0
    """Batch runs made during the phase, back to back."""
    inputs: int = 0
    rows: int = 0
    """Prediction rows written (error rows not included)."""
    lost_rows: int = 0
    """Inputs without a prediction row: an error row, or no row at all."""
    wrong_rows: int = 0
    """Prediction rows whose class or probability differs from the model's own answer."""
    requests: int = 0
    """HTTP requests the load balancer received during the phase."""
    failed_requests: int = 0
    """Request attempts the client saw fail (it retried each, or gave up)."""
    lb_retries: int = 0
    """Attempts HAProxy sent again, to the same replica or another (retries and redispatches)."""
    lb_errors: int = 0
    """5xx answers HAProxy gave the client."""
    seconds: float = 0.0
    errors: list = dataclasses.field(default_factory=list)
    """Why batch runs stopped, for those that did not finish (all their inputs count as lost)."""
    events: list = dataclasses.field(default_factory=list)
    """(seconds since the phase started, what happened)."""
    replica: str | None = None
    """The replica disturbed (kill, terminate)."""
    drained: int | None = None
    """terminate: requests in flight on the replica when it began to shut down (its log's line) that it then
    answered (200), per HAProxy's log; None if its log has no such line (it did not shut down gracefully)."""
    left_pool_before_exit: bool | None = None
    """terminate: whether HAProxy took the replica out of the pool while its process was still running (None:
    it did not both leave and exit in time). A race: a replica with little left to answer may exit first, and
    HAProxy then takes it out at its next refused connection or failed check."""


@dataclasses.dataclass
class DrillReport:
    replicas: int
    chunk_size: int
    concurrency: int
    phases: list

    def format(self) -> str:
        header = (f"{'phase':<10} {'runs':>4} {'inputs':>7} {'rows':>7} {'lost':>5} {'wrong':>5} {'requests':>8} "
                  f"{'failed':>6} {'lb-retried':>10} {'lb-5xx':>6} {'seconds':>7}")
        lines = [f"{self.replicas} replicas behind HAProxy; batch load: chunks of {self.chunk_size}, "
                 f"{self.concurrency} in flight", header]
        for phase in self.phases:
            lines.append(f"{phase.name:<10} {phase.runs:>4} {phase.inputs:>7} {phase.rows:>7} {phase.lost_rows:>5} "
                         f"{phase.wrong_rows:>5} {phase.requests:>8} {phase.failed_requests:>6} "
                         f"{phase.lb_retries:>10} {phase.lb_errors:>6} {phase.seconds:>7.1f}")
        for phase in self.phases:
            if phase.left_pool_before_exit is not None:
                lines.append(f"  {phase.name}: {phase.replica} left the pool "
                             f"{'before' if phase.left_pool_before_exit else 'after'} it exited; requests in flight "
                             f"on it as it began to shut down and answered by it: {phase.drained}")
            for seconds, event in phase.events:
                lines.append(f"  {phase.name}: {seconds:6.2f} s  {event}")
            for error in phase.errors:
                lines.append(f"  {phase.name}: a batch run stopped: {error}")
        return "\n".join(lines)


def _expected(version_dir: pathlib.Path, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(class ids, their probabilities) of the model on `images`, in this process."""
    from tf_mlp import client

    with client.connect(f"local:{version_dir}") as model:
        prediction = model.predict(images)
    return np.asarray(prediction.class_ids), np.asarray(prediction.probability())


def batch_defaults() -> dict:
    """`tf-mlp batch-predict`'s chunk size, concurrency, timeout and retry settings, read from the command."""
    from tf_mlp import predict_cli

    names = ("chunk_size", "concurrency", "timeout", "max_attempts", "retry_seconds")
    return {parameter.name: parameter.default for parameter in predict_cli.batch_predict.params
            if parameter.name in names}


class Drill:
    def __init__(self, version_dir: pathlib.Path, images: np.ndarray, work_dir: pathlib.Path,
                 new_version_dir: pathlib.Path | None = None, chunk_size: int | None = None,
                 concurrency: int | None = None,
                 config_path: pathlib.Path = CONFIG, log=print):
        self.work_dir = pathlib.Path(work_dir)
        self.base = self.work_dir / "models" / contract.MODEL_NAME
        if self.base.exists():
            shutil.rmtree(self.base)
        for old_log in self.work_dir.glob("*.log"):  # the servers and HAProxy append to their logs
            old_log.unlink()
        _publish(pathlib.Path(version_dir), self.base, 1)
        self.new_version_dir = pathlib.Path(new_version_dir or version_dir)
        self.images = images
        defaults = batch_defaults()  # the batch command's own, unless given
        self.chunk_size = chunk_size or defaults["chunk_size"]
        self.concurrency = concurrency or defaults["concurrency"]
        self.config_path = config_path
        self.log = log
        # Every row must be one of the answers of the versions that may serve it. Without a new version of its
        # own, the drill publishes the model it serves again: one answer set (loading the model once) will do.
        self.answers = [_expected(self.base / "1", images)]
        if new_version_dir is not None:
            self.answers.append(_expected(self.new_version_dir, images))
        self.replicas = [ServerProcess(self.work_dir / f"{name}.log", f"--model_base_path={self.base}",
                                       *SERVER_FLAGS) for name, _ in replica_slots(config_path)]
        self.balancer = None

    # ---- the replicas and the load balancer -------------------------------------

    def start(self) -> "Drill":
        """HAProxy, then every replica; returns once all are in the pool."""
        # HAProxy first: its health checks find each replica as soon as it serves, while the others still load.
        self.balancer = LoadBalancer([f"{contract.DEFAULT_HOST}:{replica.rest_port}" for replica in self.replicas],
                                     self.work_dir, self.config_path).start()
        try:
            self._bring_up()
        except BaseException:
            self.stop()
            raise
        return self

    def _bring_up(self) -> None:
        """Start the replicas not running (all at first; after a terminate phase, that one), wait for the pool."""
        down = {name: replica for replica, name in zip(self.replicas, self.balancer.names) if not replica.alive()}
        started = time.monotonic()
        if down:
            with concurrent.futures.ThreadPoolExecutor(len(down)) as pool:
                list(pool.map(lambda replica: replica.start(), down.values()))
        self.balancer.wait_until(lambda: all(map(self.balancer.in_pool, self.balancer.names)),
                                 POOL_TIMEOUT_SECONDS, "every replica is in the pool")
        if down:
            self.log(f"{', '.join(down)} up in {time.monotonic() - started:.1f} s; HAProxy at "
                     f"{self.balancer.rest_url}")

    def stop(self) -> None:
        if self.balancer is not None:
            self.balancer.stop()
        # All at once: each takes a second or more to exit (TensorFlow's teardown), seconds of waiting in turn.
        with concurrent.futures.ThreadPoolExecutor(len(self.replicas)) as pool:
            list(pool.map(lambda replica: replica.stop(), self.replicas))

    def __enter__(self) -> "Drill":
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    # ---- the drill ----------------------------------------------------------------

    def run(self, phases=PHASES) -> DrillReport:
        """The phases in the order given, on the started drill's replicas (a stopped one is started again first)."""
        self._bring_up()
        inputs = self.work_dir / "inputs.npy"
        np.save(inputs, np.resize(self.images, (RUN_INPUTS, *self.images.shape[1:])))
        results = []
        for name in phases:
            phase = self._phase(name, inputs, getattr(self, f"_{name}"))
            results.append(phase)
            self.log(f"{name}: {phase.rows} rows, {phase.lost_rows} lost, {phase.failed_requests} failed "
                     f"requests, {phase.lb_retries} retried by HAProxy")
        return DrillReport(len(self.replicas), self.chunk_size, self.concurrency, results)

    # ---- one phase --------------------------------------------------------------

    def _phase(self, name: str, inputs: pathlib.Path, disturb) -> Phase:
        phase = Phase(name)
        before = self.balancer.server_rows()
        disturbance_over = threading.Event()
        load = threading.Thread(target=self._load, args=(phase, inputs, disturbance_over), name=f"load-{name}")
        started = time.monotonic()
        load.start()
        flowing = int(before["FRONTEND"]["req_tot"] or 0) + 4 * self.concurrency
        self.balancer.wait_until(lambda: int(self.balancer.server_rows()["FRONTEND"]["req_tot"] or 0) >= flowing,
                                 POOL_TIMEOUT_SECONDS, "the load is flowing")

        def event(text: str) -> None:
            phase.events.append((time.monotonic() - started, text))

        try:
            disturb(phase, event)
        finally:
            disturbance_over.set()
            load.join()
        phase.seconds = time.monotonic() - started
        after = self.balancer.server_rows()

        def grew(row: str, column: str) -> int:
            return int(after[row][column] or 0) - int(before[row][column] or 0)

        phase.requests = grew("FRONTEND", "req_tot")
        phase.lb_errors = grew("FRONTEND", "hrsp_5xx")
        phase.lb_retries = grew("BACKEND", "wretr") + grew("BACKEND", "wredis")
        if name == "terminate":
            shutdown = _shutdown_started(self.replicas[1].log())
            phase.drained = sum(request.server == phase.replica and request.status == 200
                                and request.accepted < shutdown < request.finished
                                for request in self.balancer.requests()) if shutdown else None
        return phase

    def _load(self, phase: Phase, inputs: pathlib.Path, disturbance_over: threading.Event) -> None:
        """Batch runs back to back until one has started after the disturbance was over, and finished."""
        output = self.work_dir / f"{phase.name}.csv"
        while True:
            last = disturbance_over.is_set()
            self._batch_run(phase, inputs, output)
            if last:
                return

    def _batch_run(self, phase: Phase, inputs: pathlib.Path, output: pathlib.Path) -> None:
        from tf_mlp import batch
        from tf_mlp.client import options

        phase.runs += 1
        phase.inputs += RUN_INPUTS
        settings = batch_defaults()
        try:
            with options.connect_from_options(server=self.balancer.rest_target, protocol=None,
                                              model=contract.MODEL_NAME, version=None, label=None, signature=None,
                                              max_connections=self.concurrency, timeout=settings["timeout"],
                                              max_attempts=settings["max_attempts"],
                                              retry_seconds=settings["retry_seconds"]) as model:
                summary = batch.run_batch(model, batch.open_inputs(str(inputs)), str(output),
                                          chunk_size=self.chunk_size, concurrency=self.concurrency, progress=False)
        except Exception as error:  # noqa: BLE001 - a run that could not finish is a figure of the phase
            phase.errors.append(str(error))
            phase.lost_rows += RUN_INPUTS
            return
        phase.failed_requests += summary.client["retries"] + summary.client["failures"]
        predicted = {row["index"]: row for row in batch.read_rows(output) if row["error"] is None}
        output.unlink()
        phase.rows += len(predicted)
        phase.lost_rows += RUN_INPUTS - len(predicted.keys() & set(range(RUN_INPUTS)))
        base = len(self.images)
        for index, row in predicted.items():
            if not any(row["class_id"] == class_ids[index % base]
                       and abs(row["probability"] - probabilities[index % base]) <= PROBABILITY_TOLERANCE
                       for class_ids, probabilities in self.answers):
                phase.wrong_rows += 1

    # ---- the disturbances -------------------------------------------------------

    def _steady(self, phase: Phase, event) -> None:
        event("no disturbance")

    def _restart(self, index: int, event) -> None:
        replica, name = self.replicas[index], self.balancer.names[index]
        replica.start()
        event(f"{name} restarted: its model is AVAILABLE")
        self.balancer.wait_until(lambda: self.balancer.in_pool(name), POOL_TIMEOUT_SECONDS, f"{name} is back")
        event(f"{name} back in the pool")

    def _kill(self, phase: Phase, event) -> None:
        replica, name = self.replicas[0], self.balancer.names[0]
        phase.replica = name
        replica.kill()
        event(f"SIGKILL {name}")
        self.balancer.wait_until(lambda: not self.balancer.in_pool(name), POOL_TIMEOUT_SECONDS, f"{name} is out")
        event(f"{name} out of the pool")
        self._restart(0, event)

    def _terminate(self, phase: Phase, event) -> None:
        replica, name = self.replicas[1], self.balancer.names[1]
        phase.replica = name
        # Signalled while it is answering a request if that happens within a few seconds, so that the drill
        # shows a request in flight being finished, not only new ones going elsewhere.
        deadline = time.monotonic() + IN_FLIGHT_WAIT_SECONDS
        while int(self.balancer.server_rows()[name]["scur"] or 0) == 0 and time.monotonic() < deadline:
            time.sleep(0.001)
        replica.process.send_signal(signal.SIGTERM)
        event(f"SIGTERM {name}")
        left = exited = None
        deadline = time.monotonic() + POOL_TIMEOUT_SECONDS
        while (left is None or exited is None) and time.monotonic() < deadline:
            row = self.balancer.server_rows()[name]
            if left is None and not row["status"].startswith("UP"):
                left = time.monotonic()
                event(f"{name} out of the pool ({row['scur'] or 0} requests in flight on it)")
            if exited is None and replica.process.poll() is not None:
                exited = time.monotonic()
                event(f"{name} exited with status {replica.process.returncode}")
            time.sleep(0.01)
        phase.left_pool_before_exit = None if left is None or exited is None else left < exited

    def _publish(self, phase: Phase, event) -> None:
        version = max(int(child.name) for child in self.base.iterdir() if child.name.isdigit()) + 1
        _publish(self.new_version_dir, self.base, version)
        event(f"version {version} published")
        for replica, name in zip(self.replicas, self.balancer.names):
            self.balancer.wait_until(lambda replica=replica: _serves_only(replica, version), POOL_TIMEOUT_SECONDS,
                                     f"{name} serves version {version}")
            event(f"{name} serves version {version} alone")


def _shutdown_started(log: str) -> float | None:
    """When the server logged that it began to shut down (seconds since the epoch), from its last such line."""
    times = [datetime.datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").astimezone().timestamp()
             for line in log.splitlines() if SHUTDOWN_LINE in line and line[:4].isdigit()]
    return times[-1] if times else None


def _publish(source: pathlib.Path, base: pathlib.Path, version: int) -> None:
    """Copy a version directory in as base/<version>, atomically (a staging name that is not a number, renamed)."""
    base.mkdir(parents=True, exist_ok=True)
    staging = base / f".staging-{version}"
    shutil.copytree(source, staging)
    staging.rename(base / str(version))


def _serves_only(replica: ServerProcess, version: int) -> bool:
    import urllib3

    answer = urllib3.request("GET", f"{replica.rest_url}/v1/models/{contract.MODEL_NAME}", retries=False,
                             timeout=5.0)
    if answer.status != 200:
        return False
    states = {int(status["version"]): status["state"] for status in answer.json()["model_version_status"]}
    return states.get(version) == "AVAILABLE" and all(
        state != "AVAILABLE" for number, state in states.items() if number != version)


def run_drill(version_dir: pathlib.Path, images: np.ndarray, work_dir: pathlib.Path, phases=PHASES,
              **options) -> DrillReport:
    """The drill (see the module's docstring), its phases in the order given; `options` as Drill takes them."""
    work_dir = pathlib.Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    with Drill(version_dir, images, work_dir, **options) as drill:
        return drill.run(phases)
