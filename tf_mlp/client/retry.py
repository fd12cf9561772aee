"""Retries with capped exponential backoff and full jitter, shared by the REST and gRPC clients.

Only failures that say "try again" are retried: the connection could not be
made or was dropped, the call timed out, or the server answered 429/503/504
(gRPC RESOURCE_EXHAUSTED, UNAVAILABLE, DEADLINE_EXCEEDED). Predict, status
and metadata calls change nothing on the server, so repeating them is safe.
A request the server refused (400, 404, INVALID_ARGUMENT, NOT_FOUND) is
never repeated: it would fail the same way.

Full jitter (sleep a uniform random time up to the backoff, as in the AWS
Architecture Blog's "Exponential Backoff And Jitter") keeps many clients
that failed together from retrying together.
"""

from __future__ import annotations

import dataclasses
import random
import threading
import time


@dataclasses.dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 8
    """Calls made at most, the first included (1: no retries)."""
    initial_backoff: float = 0.1
    """Seconds: upper bound of the first sleep; doubled (by `multiplier`) after each failure."""
    max_backoff: float = 5.0
    """Seconds: the sleep's upper bound never grows past this."""
    multiplier: float = 2.0
    max_elapsed: float = 60.0
    """Seconds: no new attempt starts after this much time since the first one."""

    def __post_init__(self):
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {self.max_attempts}")
        if self.initial_backoff < 0 or self.max_backoff < 0 or self.multiplier < 1:
            raise ValueError("backoffs must be >= 0 and the multiplier >= 1")

    def backoff(self, failures: int, uniform=random.uniform) -> float:
        """Seconds to sleep after `failures` failed attempts (1, 2, ...): uniform in [0, capped exponential]."""
        ceiling = min(self.max_backoff, self.initial_backoff * self.multiplier ** (failures - 1))
        return uniform(0.0, ceiling)


NO_RETRIES = RetryPolicy(max_attempts=1)


class RetryableFailure(Exception):
    """Raised by an attempt to ask for another: `error` is what to raise if attempts run out."""

    def __init__(self, error: Exception):
        super().__init__(str(error))
        self.error = error


@dataclasses.dataclass
class CallStats:
    """Counters of one client's calls, safe to update from many threads."""

    calls: int = 0
    attempts: int = 0
    retries: int = 0
    failures: int = 0
    _lock: threading.Lock = dataclasses.field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, attempts: int, failed: bool) -> None:
        with self._lock:
            self.calls += 1
            self.attempts += attempts
            self.retries += attempts - 1
            self.failures += int(failed)

    def as_dict(self) -> dict:
        with self._lock:
            return {"calls": self.calls, "attempts": self.attempts, "retries": self.retries, "failures": self.failures}


def call_with_retries(attempt, policy: RetryPolicy, stats: CallStats | None = None, sleep=time.sleep):
    """Return attempt(number) for number = 1, 2, ...; retry while it raises RetryableFailure.

    When attempts or time run out, the last RetryableFailure's error is raised
    with its `attempts` set; any other exception ends the call at once.
    """
    started = time.monotonic()
    number = 0
    while True:
        number += 1
        try:
            result = attempt(number)
        except RetryableFailure as failure:
            out_of_time = time.monotonic() - started >= policy.max_elapsed
            if number >= policy.max_attempts or out_of_time:
                if stats is not None:
                    stats.add(number, failed=True)
                failure.error.attempts = number
                raise failure.error from None
            sleep(policy.backoff(number))
            continue
        except Exception:
            if stats is not None:
                stats.add(number, failed=True)
            raise
        if stats is not None:
            stats.add(number, failed=False)
        return result
