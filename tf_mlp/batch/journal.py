"""The append-only journal of finished chunks that makes a batch run resumable.

While a run is in progress its results live in `<output>.journal`, one JSON
line per finished chunk, appended with a single write: a chunk is in the
file whole or not at all, and a killed process loses nothing the kernel has.
Against power loss the file is fsync'ed at most once a second
(SYNC_INTERVAL_SECONDS) and on close, not after every chunk: one fsync took
about 4 ms here, 10-20% of a 10,000-image gRPC run, and a crash loses at most
the last second of chunks, which --resume simply redoes. The first line is a
header naming the inputs (count and fingerprint) so that --resume refuses a
journal written for other inputs. A SIGKILL can at worst cut the last line
short; loading drops that fragment (its chunk is simply redone), so no row
is ever lost or repeated. When every input has a row, the final output is
written atomically from the journal and only then is the journal deleted.
"""

from __future__ import annotations

import logging
import os
import pathlib
import time

import orjson

from tf_mlp.errors import ConfigError, DataError
from tf_mlp.files import sync_directory

log = logging.getLogger(__name__)

FORMAT = "tf-mlp-batch-journal/1"
SYNC_INTERVAL_SECONDS = 1.0
"""Longest time a finished chunk may sit in the kernel's cache only (see the module docstring)."""


def journal_path(output) -> pathlib.Path:
    output = pathlib.Path(output)
    return output.with_name(output.name + ".journal")


class Journal:
    def __init__(self, path: pathlib.Path, descriptor: int):
        self.path = path
        self._descriptor = descriptor
        self._synced_at = time.monotonic()
        self._unsynced = False

    @staticmethod
    def check(path, resume: bool, restart: bool) -> None:
        """ConfigError if an interrupted run's journal is in the way and neither resume nor restart was asked."""
        path = pathlib.Path(path)
        if path.exists() and not resume and not restart:
            raise ConfigError(f"{path} holds an interrupted run; pass --resume to continue it "
                              "or --restart to discard it and start over")

    @classmethod
    def open(cls, path, header: dict, resume: bool, restart: bool) -> tuple["Journal", dict]:
        """(journal ready to append to, {index: row} already done) for a run over the inputs `header` names."""
        path = pathlib.Path(path)
        cls.check(path, resume, restart)
        done = {}
        if path.exists():
            if restart:
                path.unlink()
            else:
                done = _load(path, header)
        elif resume:
            log.warning("%s not found: nothing to resume, starting from the first input", path)
        if not path.exists():
            _create(path, header)
        descriptor = os.open(path, os.O_WRONLY | os.O_APPEND)
        return cls(path, descriptor), done

    def append(self, rows: list) -> None:
        """Record one finished chunk's rows (one line, one write; fsync at most once a second)."""
        line = orjson.dumps({"rows": rows}) + b"\n"
        view = memoryview(line)
        # One line per write on an O_APPEND descriptor: a killed process leaves whole lines, or at worst a
        # last line cut short, which loading drops (its chunk is redone).
        while view:
            view = view[os.write(self._descriptor, view):]
        self._unsynced = True
        # Not an fsync per chunk: one costs about 4 ms, 10-20% of a fast run, while a power loss costs at
        # most the last second of chunks, which --resume redoes.
        if time.monotonic() - self._synced_at >= SYNC_INTERVAL_SECONDS:
            self._sync()

    def _sync(self) -> None:
        os.fsync(self._descriptor)
        self._synced_at = time.monotonic()
        self._unsynced = False

    def close(self) -> None:
        if self._descriptor is not None:
            if self._unsynced:
                self._sync()
            os.close(self._descriptor)
            self._descriptor = None

    def discard(self) -> None:
        """Delete the journal (after the final output is safely in place)."""
        self.close()
        self.path.unlink(missing_ok=True)
        sync_directory(self.path.parent)


def _create(path: pathlib.Path, header: dict) -> None:
    data = orjson.dumps(dict(header, journal=FORMAT)) + b"\n"
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        os.write(descriptor, data)
        # The header and the journal's directory entry are on disk before any chunk is appended, so a
        # journal that survives a power loss always says which inputs it belongs to.
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
    sync_directory(path.parent)


def _load(path: pathlib.Path, header: dict) -> dict:
    """{index: row} of the journal's whole lines; a cut-off last line is truncated away."""
    data = path.read_bytes()
    complete = data[: data.rfind(b"\n") + 1]
    if len(complete) < len(data):
        log.warning("%s: dropping a partly written last line (%d bytes); its chunk will be redone",
                    path, len(data) - len(complete))
        os.truncate(path, len(complete))
    lines = complete.splitlines()
    if not lines:
        # Killed while writing the header: nothing was done yet.
        path.unlink()
        return {}
    first = _parse(path, lines[0], 1)
    if first.get("journal") != FORMAT:
        raise DataError(f"{path} is not a batch journal (first line has no journal={FORMAT!r})")
    for key in ("count", "fingerprint"):
        if first.get(key) != header.get(key):
            raise ConfigError(f"{path} was written for other inputs ({first.get('inputs')!r}, "
                              f"{first.get('count')} inputs); pass --restart to discard it")
    done = {}
    for number, line in enumerate(lines[1:], start=2):
        for row in _parse(path, line, number).get("rows", []):
            done.setdefault(int(row["index"]), row)
    return done


def _parse(path: pathlib.Path, line: bytes, number: int) -> dict:
    try:
        return orjson.loads(line)
    except orjson.JSONDecodeError as error:
        # Whole lines are written with one write and fsync; a bad one means the file was damaged otherwise.
        raise DataError(f"{path}: line {number} is not valid JSON ({error}); pass --restart to start over") from None
