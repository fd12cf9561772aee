"""One holder at a time for a file-backed resource: an exclusive fcntl.flock on a lock file that says who holds it.

The kernel releases an flock when its holder exits, however it exits (kill
-9 included), so a crash never leaves a stale lock behind. The lock file
itself stays (it is never replaced, so every process locks the same inode)
and holds the holder's description, which a refused process reports.
"""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Callable


@contextlib.contextmanager
def exclusive(path, holder: str, refused: Callable[[str], Exception]):
    """Hold `path` for the block, with `holder` written in it; else raise refused(the holder's description)."""
    # "a+" neither truncates nor (until written) touches the file, so a process that loses the race changes nothing.
    with open(path, "a+", encoding="utf-8") as lock_file:
        try:
            fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock_file.seek(0)
            raise refused(lock_file.read().strip() or "unknown") from None
        lock_file.seek(0)
        lock_file.truncate()
        lock_file.write(f"{holder}\n")
        lock_file.flush()
        try:
            yield
        finally:
            fcntl.flock(lock_file, fcntl.LOCK_UN)
