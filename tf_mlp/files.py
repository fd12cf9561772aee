"""Files written whole or not at all: the one way this package replaces a final output file.

A file is written to a temporary file in the same directory (.NAME.*.tmp),
flushed to disk (fsync), then renamed over the target in one step, and the
directory is synced: a crash at any moment leaves either the previous file
or the new complete one, never a truncated one.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import tempfile


def write_atomically(path, data: bytes) -> None:
    """Replace path with data so that a crash at any moment leaves the old file or the new one, whole."""
    path = pathlib.Path(path)
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        # mkstemp makes the file private (0600); give it the mode any newly created file would get.
        os.fchmod(descriptor, 0o666 & ~_umask())
        with os.fdopen(descriptor, "wb") as file:
            file.write(data)
            file.flush()
            # The data reaches the disk before the rename makes it visible; otherwise a power loss
            # could leave the output's name pointing at an empty file.
            os.fsync(file.fileno())
        # rename(2) within one directory is atomic: a reader sees the old file or the new one, whole.
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    sync_directory(path.parent)


def _umask() -> int:
    # The only way to read the umask is to set it; it is put back at once.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def remove_stale_temporaries(path) -> None:
    """Delete temporary files a killed write_atomically left beside path (.NAME.*.tmp): never a final file."""
    path = pathlib.Path(path)
    for stale in path.parent.glob(f".{path.name}.*.tmp"):
        with contextlib.suppress(OSError):
            stale.unlink()


def sync_directory(directory) -> None:
    """fsync a directory, so that a rename or unlink in it survives a power loss."""
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
