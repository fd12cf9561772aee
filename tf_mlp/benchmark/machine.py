"""What machine a benchmark ran on, and how much of it other processes used while it ran.

The load average cannot say: it counts the benchmark's own threads (a
TensorFlow process training on 2 cores alone shows a load near 3), so it
calls a quiet machine busy and cannot tell a busy one from a hard-working
benchmark. Instead this takes the machine's busy CPU time from /proc/stat and
subtracts this process tree's own CPU time (os.times, whose children fields
count every child the benchmark has waited for): what is left is other
processes' work, as a share of all cores over the wall time.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import os
import pathlib
import platform
import subprocess
import sys
import time

PROC_STAT = pathlib.Path("/proc/stat")
# Fields of the aggregate "cpu" line of /proc/stat that are work, not idle or iowait
# (user, nice, system, irq, softirq, steal); guest time is already inside user.
_BUSY_FIELDS = (0, 1, 2, 5, 6, 7)
QUIET_SHARE = 0.05
"""Other processes' share of the cores below which the machine counts as quiet."""


def machine_busy_seconds(stat_path: pathlib.Path = PROC_STAT) -> float | None:
    """CPU seconds every process on the machine has spent working since boot, or None without /proc/stat."""
    try:
        first_line = stat_path.read_text().splitlines()[0].split()
    except (OSError, IndexError):
        return None
    if first_line[0] != "cpu":
        return None
    ticks = [int(value) for value in first_line[1:]]
    return sum(ticks[index] for index in _BUSY_FIELDS if index < len(ticks)) / os.sysconf("SC_CLK_TCK")


def own_cpu_seconds() -> float:
    """CPU seconds of this process and of every child it has waited for."""
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


@dataclasses.dataclass
class OtherProcesses:
    """A stopwatch for other processes' CPU use: start(), then share() as often as wanted."""

    cpus: int = dataclasses.field(default_factory=lambda: os.cpu_count() or 1)
    stat_path: pathlib.Path = PROC_STAT

    def start(self) -> "OtherProcesses":
        self._wall = time.monotonic()
        self._machine = machine_busy_seconds(self.stat_path)
        self._own = own_cpu_seconds()
        return self

    def share(self) -> float | None:
        """Other processes' CPU seconds since start() over (wall seconds x cores); None where it cannot be measured."""
        machine = machine_busy_seconds(self.stat_path)
        wall = time.monotonic() - self._wall
        if machine is None or self._machine is None or wall <= 0:
            return None
        others = (machine - self._machine) - (own_cpu_seconds() - self._own)
        # Clock ticks are coarse (10 ms) and sampled at slightly different instants, so a quiet
        # machine can come out a hair below zero.
        return max(others, 0.0) / (wall * self.cpus)


def describe(shares: list[float | None], cpus: int) -> str:
    """'other processes used 0-3% of the 2 cores' (or that it could not be measured)."""
    measured = [share for share in shares if share is not None]
    if not measured:
        return "other processes' CPU use could not be measured (no /proc/stat)"
    low, high = min(measured), max(measured)
    span = f"{low:.0%}" if round(low, 2) == round(high, 2) else f"{low:.0%}–{high:.0%}"
    return f"other processes used {span} of the {cpus} cores while it ran"


def quiet(shares: list[float | None]) -> bool | None:
    """True when no measured interval saw other processes use QUIET_SHARE or more of the cores; None if unmeasured."""
    measured = [share for share in shares if share is not None]
    return max(measured) < QUIET_SHARE if measured else None


# --- What the machine is ------------------------------------------------------------------------------
# Every figure a benchmark or `tf-mlp reproduce` writes names the machine that gave it: speed on one CPU says
# little about another (an AVX2-only core runs this project's training several times slower than an AVX-512
# one), so the record is taken where the figures are measured and rendered beside them from the JSON.

PROC_CPUINFO = pathlib.Path("/proc/cpuinfo")
PROC_MEMINFO = pathlib.Path("/proc/meminfo")
CGROUP_CPU_MAX = pathlib.Path("/sys/fs/cgroup/cpu.max")
INSTRUCTION_SET_FLAGS = (
    "sse4_2", "avx", "avx2", "fma", "avx_vnni", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16",
    "avx512_fp16", "amx_tile", "amx_bf16", "amx_int8", "amx_fp16",
)
"""The /proc/cpuinfo flags that decide how fast float32 matrix products run (the rest are left out)."""
_CPUINFO_KEYS = {"model name": "cpu_model", "vendor_id": "vendor", "cpu family": "family", "model": "model",
                 "stepping": "stepping", "flags": "flags"}
NOT_RECORDED = "not recorded"
"""What a page says, after "Machine:", of results from before the machine was recorded."""


def read_cpuinfo(path: pathlib.Path = PROC_CPUINFO) -> dict[str, str]:
    """The first processor's fields of /proc/cpuinfo that name the CPU (the model name lscpu shows, family,
    model, stepping, flags); empty where there is no /proc/cpuinfo."""
    try:
        text = path.read_text()
    except OSError:
        return {}
    fields: dict[str, str] = {}
    for line in text.split("\n\n")[0].splitlines():
        key, separator, value = line.partition(":")
        if separator and key.strip() in _CPUINFO_KEYS:
            fields[_CPUINFO_KEYS[key.strip()]] = value.strip()
    return fields


def _memory_bytes(path: pathlib.Path = PROC_MEMINFO) -> int | None:
    try:
        for line in path.read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _cpu_quota(path: pathlib.Path = CGROUP_CPU_MAX) -> float | None:
    """Cores' worth of CPU time the cgroup allows (cgroup v2 cpu.max), None when unlimited or unknown."""
    try:
        quota, period = path.read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        return None


def _hypervisor(flags: set[str]) -> str | None:
    """The hypervisor's vendor as lscpu reads it (KVM, Microsoft, ...), 'unknown' if lscpu cannot tell; None on
    bare metal."""
    if "hypervisor" not in flags:
        return None
    try:
        completed = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10,
                                   env={**os.environ, "LC_ALL": "C"})
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    for line in completed.stdout.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "Hypervisor vendor" and value.strip():
            return value.strip()
    return "unknown"


def onednn_opts(value: str | None, architecture: str) -> bool | None:
    """Whether TensorFlow's oneDNN optimizations are on, from TF_ENABLE_ONEDNN_OPTS as TensorFlow reads it
    (0/false, 1/true; unset: on by default on x86-64), or None where that cannot be told."""
    if value is None:
        return True if architecture in ("x86_64", "AMD64") else None
    return {"0": False, "false": False, "1": True, "true": True}.get(value.strip().lower())


def _version(module_name: str, distribution: str) -> str | None:
    module = sys.modules.get(module_name)
    if module is not None:
        return getattr(module, "__version__", None)
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def _blas() -> str | None:
    """numpy's BLAS library and version, as numpy's build configuration names it."""
    try:
        import numpy

        blas = numpy.show_config(mode="dicts")["Build Dependencies"]["blas"]
        return f"{blas['name']} {blas.get('version', '')}".strip()
    except Exception:  # an older numpy has no such configuration: the figure just goes unnamed
        return None


def current(cpuinfo_path: pathlib.Path = PROC_CPUINFO) -> dict:
    """The machine this process runs on, as every benchmark and results JSON records it."""
    cpu = read_cpuinfo(cpuinfo_path)
    flags = set(cpu.get("flags", "").split())
    architecture = platform.machine()
    onednn = os.environ.get("TF_ENABLE_ONEDNN_OPTS")
    return {
        "cpu_model": cpu.get("cpu_model") or platform.processor() or None,
        "cpu_vendor": cpu.get("vendor"),
        "cpu_family": cpu.get("family"),
        "cpu_model_number": cpu.get("model"),
        "cpu_stepping": cpu.get("stepping"),
        "instruction_sets": [flag for flag in INSTRUCTION_SET_FLAGS if flag in flags],
        "architecture": architecture,
        "hypervisor": _hypervisor(flags),
        "cpus": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "cpu_quota": _cpu_quota(),
        "memory_bytes": _memory_bytes(),
        "tensorflow": _version("tensorflow", "tensorflow"),
        "tf_enable_onednn_opts": onednn,
        "onednn_opts": onednn_opts(onednn, architecture),
        "numpy": _version("numpy", "numpy"),
        "blas": _blas(),
        "python": platform.python_version(),
    }


def instruction_sets(present: list[str]) -> str:
    """'AVX-512 (bf16, vnni), no AMX', 'AVX2+FMA, no AVX-512, no AMX' and the like."""
    present = set(present)
    if "avx512f" in present:
        extras = [name for flag, name in (("avx512_bf16", "bf16"), ("avx512_vnni", "vnni"), ("avx512_fp16", "fp16"))
                  if flag in present]
        vector = "AVX-512" + (f" ({', '.join(extras)})" if extras else "")
    elif "avx2" in present:
        vector = "AVX2" + ("+FMA" if "fma" in present else "") + (" (vnni)" if "avx_vnni" in present else "")
        vector += ", no AVX-512"
    elif "avx" in present:
        vector = "AVX, no AVX2"
    else:
        vector = "no AVX"
    amx = [name for flag, name in (("amx_bf16", "bf16"), ("amx_int8", "int8"), ("amx_fp16", "fp16")) if flag in present]
    return f"{vector}, " + (f"AMX ({', '.join(amx)})" if "amx_tile" in present else "no AMX")


def name(recorded: dict | None, noted: tuple[str, ...] = ()) -> str:
    """One line naming the machine a figure came from, from what its JSON recorded.

    Results written before the machine was recorded say so (with whatever
    the run did note, such as its core count), rather than borrow a
    description of some other machine.
    """
    if not isinstance(recorded, dict):
        return NOT_RECORDED + (f" (the run noted only: {', '.join(noted)})" if noted else "")
    identity = ", ".join(f"{label} {recorded[key]}" for label, key in
                         (("family", "cpu_family"), ("model", "cpu_model_number"), ("stepping", "cpu_stepping"))
                         if recorded.get(key) is not None)
    cpu = (recorded.get("cpu_model") or "unknown CPU") + (f" ({identity})" if identity else "")
    cores = f"{recorded['cpus']} cores"
    if recorded.get("usable_cpus") not in (None, recorded["cpus"]):
        cores += f" ({recorded['usable_cpus']} usable)"
    if recorded.get("cpu_quota"):
        cores += f" (CPU quota {recorded['cpu_quota']:g} cores)"
    if recorded.get("hypervisor"):
        cores += f" under {recorded['hypervisor']}" if recorded["hypervisor"] != "unknown" else " in a virtual machine"
    memory = f", {recorded['memory_bytes'] / 2**30:.0f} GiB" if recorded.get("memory_bytes") else ""
    onednn = {True: "on", False: "off", None: "unknown"}[recorded.get("onednn_opts")]
    setting = recorded.get("tf_enable_onednn_opts")
    onednn += f" (TF_ENABLE_ONEDNN_OPTS={setting})" if setting is not None else " (TF_ENABLE_ONEDNN_OPTS unset)"
    tensorflow = f"TensorFlow {recorded.get('tensorflow') or 'not installed'}, oneDNN opts {onednn}"
    return f"{cpu}, {instruction_sets(recorded.get('instruction_sets', []))}; {cores}{memory}; {tensorflow}"
