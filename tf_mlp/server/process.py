"""`tf-mlp serve` as a real subprocess, for tests that kill it or watch its memory and for the serving benchmark.

    with ServerProcess(work / "server.log", f"--model_base_path={base}") as server:
        urllib3.request("GET", f"{server.rest_url}/v1/models/tf_mlp")

The ports are picked free beforehand and passed as flags, so a restarted
server comes back on the same ports and a client that keeps its URL finds
it. `start()` returns once the model's status request answers (200 with an
AVAILABLE version by default); the server's output goes to the log file,
whose tail is in the error when it exits or never answers. `stop()` is the
clean stop of an operator: SIGTERM, then SIGKILL if it has not exited in time.
"""

from __future__ import annotations

import os
import pathlib
import random
import signal
import socket
import subprocess
import sys
import time

import urllib3

from tf_mlp import contract

START_TIMEOUT_SECONDS = 180
STOP_TIMEOUT_SECONDS = 60
LOG_TAIL_CHARACTERS = 3000
"""How much of the server's log an error about it quotes."""


class ServerProcessError(RuntimeError):
    """The server process exited, or did not answer, while it was being started."""


EPHEMERAL_PORTS_FILE = pathlib.Path("/proc/sys/net/ipv4/ip_local_port_range")
FIXED_PORTS_BELOW_EPHEMERAL = 10000
"""How many ports under Linux's ephemeral range free_port picks from."""
_PORT_CHOICE = random.SystemRandom()  # not the random module's state, which a caller may have seeded


def free_port(host: str = contract.DEFAULT_HOST) -> int:
    """A port nothing listens on now and that the kernel does not hand out by itself.

    The server binds it seconds later, once TensorFlow has imported. A port the kernel gave for bind(0)
    lies in its ephemeral range, which it also hands out as the local port of every outgoing connection:
    under load (HAProxy and clients opening thousands) one of them took such a port in between, and the
    server could not listen. On Linux the port is therefore picked at random just under that range, and
    checked free; elsewhere it is the kernel's bind(0).
    """
    try:
        ephemeral_low = int(EPHEMERAL_PORTS_FILE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        ephemeral_low = 0
    low = max(1024, ephemeral_low - FIXED_PORTS_BELOW_EPHEMERAL)
    for _ in range(100 if ephemeral_low > low else 0):
        port = _PORT_CHOICE.randrange(low, ephemeral_low)
        with socket.socket() as probe:
            try:
                probe.bind((host, port))
            except OSError:
                continue  # in use: another
            return port
    with socket.socket() as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def serve_command(flags) -> list:
    """The `tf-mlp serve` command line, run by this interpreter (so PYTHONPATH and the venv carry over)."""
    return [sys.executable, "-m", "tf_mlp.cli", "serve", *flags]


def _environment() -> dict:
    return dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")  # TensorFlow's C++ start-up chatter out of the log


class ServerProcess:
    """`tf-mlp serve` with the given flags on two free ports (gRPC, REST), its output appended to log_path."""

    def __init__(self, log_path, *flags: str, cwd=None, batching_config=None):
        self.log_path = pathlib.Path(log_path)
        self.cwd = cwd
        self.rest_port, self.grpc_port = free_port(), free_port()
        self.flags = [f"--port={self.grpc_port}", f"--rest_api_port={self.rest_port}", *flags]
        if batching_config is not None:
            self.flags += ["--enable_batching=true", f"--batching_parameters_file={batching_config}"]
        self.process = None

    @property
    def rest_url(self) -> str:
        return f"http://{contract.DEFAULT_HOST}:{self.rest_port}"

    @property
    def grpc_target(self) -> str:
        """host:port, as grpc.insecure_channel takes it."""
        return f"{contract.DEFAULT_HOST}:{self.grpc_port}"

    def client_target(self, protocol: str) -> str:
        """rest://host:port or grpc://host:port, as tf_mlp.client.connect takes it."""
        port = self.rest_port if protocol == "rest" else self.grpc_port
        return f"{protocol}://{contract.DEFAULT_HOST}:{port}"

    @property
    def pid(self) -> int:
        return self.process.pid

    def start(self, timeout: float = START_TIMEOUT_SECONDS, ready_status: int = 200) -> "ServerProcess":
        """Start, and wait until the model's status request answers ready_status (404: up, nothing loaded)."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(serve_command(self.flags), stdout=log, stderr=subprocess.STDOUT,
                                            env=_environment(), cwd=self.cwd)
        pool = urllib3.PoolManager(retries=False, timeout=5.0)
        deadline = time.monotonic() + timeout
        while not self._answers(pool, ready_status):
            if self.process.poll() is not None:
                raise ServerProcessError(f"the server exited with {self.process.returncode}: {self._log_tail()}")
            if time.monotonic() > deadline:
                self.stop()
                raise ServerProcessError(f"the server did not answer within {timeout:g} s: {self._log_tail()}")
            time.sleep(0.1)
        return self

    def _answers(self, pool: urllib3.PoolManager, ready_status: int) -> bool:
        try:
            answer = pool.request("GET", f"{self.rest_url}/v1/models/{contract.MODEL_NAME}")
        except urllib3.exceptions.HTTPError:  # not listening yet
            return False
        return answer.status == ready_status and (ready_status != 200 or b'"AVAILABLE"' in answer.data)

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self, timeout: float = STOP_TIMEOUT_SECONDS) -> None:
        """SIGTERM (the server finishes requests in flight), then SIGKILL if it is still running after timeout."""
        if self.alive():
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()

    def __enter__(self) -> "ServerProcess":
        return self if self.alive() else self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def _proc_status_bytes(self, field: str) -> int:
        """A memory line of /proc/<pid>/status (given in kB), in bytes."""
        for line in pathlib.Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) * 1024
        raise ServerProcessError(f"no {field} line in /proc/{self.pid}/status")

    def rss_bytes(self) -> int:
        """Resident set size now (VmRSS)."""
        return self._proc_status_bytes("VmRSS")

    def peak_rss_bytes(self) -> int:
        """Largest resident set size so far (VmHWM)."""
        return self._proc_status_bytes("VmHWM")

    def listening_addresses(self) -> set:
        """(ip, port) of every socket the server process listens on, from /proc (no psutil needed)."""
        inodes = set()
        for descriptor in pathlib.Path(f"/proc/{self.pid}/fd").iterdir():
            target = os.readlink(descriptor)
            if target.startswith("socket:["):
                inodes.add(target[len("socket:["):-1])
        found = set()
        for table, family in (("tcp", socket.AF_INET), ("tcp6", socket.AF_INET6)):
            for line in pathlib.Path(f"/proc/{self.pid}/net/{table}").read_text().splitlines()[1:]:
                fields = line.split()
                local, state, inode = fields[1], fields[3], fields[9]
                if state != "0A" or inode not in inodes:  # 0A: TCP_LISTEN
                    continue
                address, port = local.split(":")
                # /proc prints each 32-bit word of the address in host (little-endian) byte order.
                raw = b"".join(bytes.fromhex(address[start:start + 8])[::-1] for start in range(0, len(address), 8))
                found.add((socket.inet_ntop(family, raw), int(port, 16)))
        return found

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def _log_tail(self) -> str:
        return self.log()[-LOG_TAIL_CHARACTERS:]
