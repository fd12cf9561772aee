"""HAProxy in front of model-server replicas: deploy/haproxy/haproxy.cfg, run unchanged as a child process.

    with LoadBalancer(["127.0.0.1:8511", "127.0.0.1:8512", "127.0.0.1:8513"], work_dir) as balancer:
        requests.get(f"{balancer.rest_url}/v1/models/tf_mlp")
        balancer.server_rows()["replica-1"]["status"]        # UP, DOWN, "UP 1/2" (one failed check) ...

The configuration file owns the pool: its `server NAME "${VARIABLE}"`
lines name the replicas and the environment variables that give their
addresses; this module only fills those in (and the two addresses of the
load balancer itself), starts /usr/sbin/haproxy in the foreground, and reads
its counters from the stats page's CSV.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime
import io
import os
import pathlib
import re
import shutil
import signal
import subprocess
import time

import urllib3

from tf_mlp import contract
from tf_mlp.errors import ConfigError
from tf_mlp.server.process import free_port

HAPROXY = "/usr/sbin/haproxy"
"""Debian's HAProxy (scripts/get_haproxy.sh installs it)."""
CONFIG = pathlib.Path(__file__).resolve().parents[2] / "deploy" / "haproxy" / "haproxy.cfg"
"""The configuration shipped in the repository (not in the installed package: pass your own elsewhere)."""
REST_VARIABLE = "TF_MLP_LB_REST"
STATS_VARIABLE = "TF_MLP_LB_STATS"
START_TIMEOUT_SECONDS = 30

_SERVER_LINE = re.compile(r'^\s*server\s+(\S+)\s+"\$\{(\w+)\}"', re.MULTILINE)
_BACKEND_LINE = re.compile(r"^backend\s+(\S+)", re.MULTILINE)
# option httplog: client [accept date] frontend backend/server Tq/Tw/Tc/Tr/Ta status bytes ... "request"
_REQUEST_LINE = re.compile(r"^\S+ \[(?P<accepted>[^\]]+)\] \S+ \S+/(?P<server>\S+) (?:-?\d+/){4}(?P<total>-?\d+) "
                           r"(?P<status>-?\d+) ")


@dataclasses.dataclass(frozen=True)
class LoggedRequest:
    """One request as HAProxy logged it (option httplog)."""

    server: str
    """The replica that answered (or <NOSRV>); after a retry elsewhere, the last one tried."""
    status: int
    accepted: float
    """When HAProxy accepted it (seconds since the epoch, to the millisecond)."""
    finished: float


class LoadBalancerError(RuntimeError):
    """HAProxy is missing, refused the configuration, or exited."""


def replica_slots(config_path: pathlib.Path = CONFIG) -> list[tuple[str, str]]:
    """(server name, environment variable of its address) for each replica the configuration lists, in order."""
    slots = _SERVER_LINE.findall(config_path.read_text())
    if not slots:
        raise ConfigError(f"{config_path}: no `server NAME \"${{VARIABLE}}\"` lines: no replicas to fill in")
    return slots


class LoadBalancer:
    """HAProxy with the replicas at `addresses` (host:port of their REST APIs), on two free ports of its own."""

    def __init__(self, addresses: list[str], work_dir: pathlib.Path, config_path: pathlib.Path = CONFIG):
        self.config_path = pathlib.Path(config_path)
        self.slots = replica_slots(self.config_path)
        if len(addresses) != len(self.slots):
            raise ConfigError(f"{self.config_path} has {len(self.slots)} replicas; {len(addresses)} addresses given")
        self.backend = _BACKEND_LINE.search(self.config_path.read_text()).group(1)
        self.addresses = list(addresses)
        self.log_path = pathlib.Path(work_dir) / "haproxy.log"
        self.rest_port, self.stats_port = free_port(), free_port()
        self.process = None
        self._pool = urllib3.PoolManager(retries=False, timeout=5.0)

    @property
    def names(self) -> list[str]:
        return [name for name, _ in self.slots]

    @property
    def rest_url(self) -> str:
        return f"http://{contract.DEFAULT_HOST}:{self.rest_port}"

    @property
    def rest_target(self) -> str:
        """rest://host:port, as tf_mlp.client.connect takes it."""
        return f"rest://{contract.DEFAULT_HOST}:{self.rest_port}"

    def environment(self) -> dict:
        variables = {REST_VARIABLE: f"{contract.DEFAULT_HOST}:{self.rest_port}",
                     STATS_VARIABLE: f"{contract.DEFAULT_HOST}:{self.stats_port}"}
        variables.update({variable: address for (_, variable), address in zip(self.slots, self.addresses)})
        return variables

    def start(self) -> "LoadBalancer":
        if not shutil.which(HAPROXY):
            raise LoadBalancerError(f"{HAPROXY} not found: install Debian's haproxy (sh scripts/get_haproxy.sh)")
        with self.log_path.open("ab") as log:
            # -db: stay in the foreground, as this process's child; -W not given: one process, no master.
            self.process = subprocess.Popen([HAPROXY, "-db", "-f", str(self.config_path)], stdout=log,
                                            stderr=subprocess.STDOUT, env={**os.environ, **self.environment()})
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while True:
            try:
                self.server_rows()
                return self
            except (urllib3.exceptions.HTTPError, LoadBalancerError):
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise LoadBalancerError(f"HAProxy did not start: {self.log_path.read_text()[-2000:]}") from None
                time.sleep(0.05)

    def stats(self) -> list[dict]:
        """Every row of the stats page's CSV (frontends, servers, backends), as dicts of its columns."""
        answer = self._pool.request("GET", f"http://{contract.DEFAULT_HOST}:{self.stats_port}/stats;csv")
        if answer.status != 200:
            raise LoadBalancerError(f"HAProxy's stats page answered {answer.status}")
        text = answer.data.decode().lstrip("# ")
        return list(csv.DictReader(io.StringIO(text)))

    def server_rows(self) -> dict:
        """{server name: its stats row} for the replicas, plus "BACKEND" and "FRONTEND" (the REST front end)."""
        rows = {}
        for row in self.stats():
            if row["pxname"] == self.backend:
                rows[row["svname"]] = row
            elif row["svname"] == "FRONTEND" and row["pxname"] != "stats":
                rows["FRONTEND"] = row
        return rows

    def requests(self) -> list[LoggedRequest]:
        """Every request HAProxy has logged so far (a line is written as its request ends)."""
        logged = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            match = _REQUEST_LINE.match(line)
            if match:
                # The accept date is local time, as time.time() compares with it once made aware.
                accepted = datetime.datetime.strptime(match["accepted"], "%d/%b/%Y:%H:%M:%S.%f").astimezone()
                start = accepted.timestamp()
                logged.append(LoggedRequest(match["server"], int(match["status"]), start,
                                            start + max(int(match["total"]), 0) / 1000))
        return logged

    def in_pool(self, name: str) -> bool:
        """True while HAProxy sends the replica requests (UP, or UP with some failed checks: "UP 1/2")."""
        return self.server_rows()[name]["status"].startswith("UP")

    def wait_until(self, predicate, timeout: float, what: str) -> float:
        """Poll predicate() until true; the seconds it took. LoadBalancerError after timeout."""
        started = time.monotonic()
        while not predicate():
            if time.monotonic() - started > timeout:
                raise LoadBalancerError(f"timed out after {timeout:g} s waiting until {what}")
            if self.process.poll() is not None:
                raise LoadBalancerError(f"HAProxy exited: {self.log_path.read_text()[-2000:]}")
            time.sleep(0.02)
        return time.monotonic() - started

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)  # HAProxy's immediate stop
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._pool.clear()

    def __enter__(self) -> "LoadBalancer":
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()
