"""`tf-mlp serve` as a real subprocess, for tests that SIGKILL it or watch its memory.

The ports are picked free beforehand and passed as flags, so a restarted
server comes back on the same ports and a client that keeps its URL finds it.
"""

from __future__ import annotations

import os
import pathlib
import signal
import socket
import subprocess
import sys
import time

import requests

from tests.conftest import free_port


class ServerProcess:
    def __init__(self, log_path: pathlib.Path, *flags: str, cwd=None):
        self.cwd = cwd
        self.rest_port, self.grpc_port = free_port(), free_port()
        self.flags = [f"--port={self.grpc_port}", f"--rest_api_port={self.rest_port}", *flags]
        self.log_path = log_path
        self.process = None
        self.starts = 0

    @property
    def rest_url(self) -> str:
        return f"http://127.0.0.1:{self.rest_port}"

    @property
    def grpc_target(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def pid(self) -> int:
        return self.process.pid

    def start(self, timeout: float = 120, ready_status: int = 200) -> "ServerProcess":
        """Start and wait until the model's status request answers ready_status (404: up, nothing loaded)."""
        self.starts += 1
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "tf_mlp.cli", "serve", *self.flags], stdout=log, stderr=subprocess.STDOUT,
                env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"), cwd=self.cwd)
        deadline = time.monotonic() + timeout
        while True:
            assert self.process.poll() is None, f"the server exited: {self.log()[-3000:]}"
            try:
                if requests.get(f"{self.rest_url}/v1/models/tf_mlp", timeout=5).status_code == ready_status:
                    return self
            except requests.ConnectionError:
                pass
            assert time.monotonic() < deadline, f"the server did not come up: {self.log()[-3000:]}"
            time.sleep(0.1)

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        if self.alive():
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.kill()

    def rss_bytes(self) -> int:
        """Resident set size from /proc/<pid>/status (VmRSS is in kB)."""
        for line in pathlib.Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise AssertionError("no VmRSS line")

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


def serve_until_exit(*flags: str, timeout: float = 300, cwd=None) -> subprocess.CompletedProcess:
    """Run `tf-mlp serve` with flags expected to make it exit; its exit code and output (stderr in stdout)."""
    return subprocess.run([sys.executable, "-m", "tf_mlp.cli", "serve", *flags], stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=timeout, cwd=cwd, check=False,
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
