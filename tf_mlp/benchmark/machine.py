"""How much of the machine other processes used while a benchmark ran.

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
import os
import pathlib
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
