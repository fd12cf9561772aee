"""Output rows as CSV or JSONL, written atomically, and read back.

One row per input, in input order, with these columns:

    index        position of the input (0-based)
    id           the input's id (its index for arrays, its relative path for image files)
    label        true class id, empty if unknown
    label_name   true class name, empty if unknown
    class_id     predicted class id (empty for a failed input)
    class_name   predicted class name
    probability  probability of the predicted class (float32, shortest text that reads back exactly)
    error        why this input has no prediction; empty when it has one

A final file is written to a temporary file in the same directory, flushed
to disk (fsync), then renamed over the output in one step, and the
directory is synced: a crash leaves either the previous file or the new
complete one, never a truncated one.
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
import pathlib
import tempfile

import numpy as np
import orjson

from tf_mlp.errors import ConfigError

COLUMNS = ("index", "id", "label", "label_name", "class_id", "class_name", "probability", "error")
FORMATS = ("csv", "jsonl")
_SUFFIXES = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl"}
_INTEGER_COLUMNS = ("index", "label", "class_id")


def prediction_row(index: int, identifier: str, label: int | None, label_name: str | None, class_id: int,
                   class_name: str, probability) -> dict:
    """The row of a classified input (what tf-mlp batch-predict and any other batch runner must write)."""
    return {"index": index, "id": identifier, "label": label, "label_name": label_name, "class_id": int(class_id),
            "class_name": class_name, "probability": float32_value(probability), "error": None}


def error_row(index: int, identifier: str, label: int | None, label_name: str | None, message: str) -> dict:
    """The row of an input that has no prediction; the message is folded to one line."""
    return {"index": index, "id": identifier, "label": label, "label_name": label_name, "class_id": None,
            "class_name": None, "probability": None, "error": " ".join(str(message).split())}


def float32_value(value) -> float:
    """The float whose shortest text is the float32's shortest text ("0.46875605", not 0.46875604987144470).

    The REST API sends float32 as its shortest round-trip text and gRPC as
    exact bits; both give this same float, so a back end writes the same row
    for the same float32. Which float32 the model gives depends on how its
    sums were blocked: byte-identical files need the same chunks through the
    same kernels (see README, "Batch output"); otherwise probabilities agree
    to about 1e-5 and class ids match but for near-ties.
    """
    return float(str(np.float32(value)))


def format_for(path, output_format: str | None = None) -> str:
    """The output format: the one given, else from the file suffix (.csv, .jsonl)."""
    if output_format is not None:
        if output_format not in FORMATS:
            raise ConfigError(f"unknown output format {output_format!r}; choose {' or '.join(FORMATS)}")
        return output_format
    suffix = pathlib.Path(path).suffix.lower()
    if suffix not in _SUFFIXES:
        raise ConfigError(f"cannot tell the output format of {path} from its suffix; name it .csv or .jsonl "
                          "or give --format")
    return _SUFFIXES[suffix]


def render(rows, output_format: str) -> bytes:
    """The whole file's bytes for rows (dicts with COLUMNS)."""
    if output_format == "jsonl":
        return b"".join(orjson.dumps({column: row.get(column) for column in COLUMNS}) + b"\n" for row in rows)
    text = io.StringIO(newline="")
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(COLUMNS)
    for row in rows:
        writer.writerow(["" if row.get(column) is None else row[column] for column in COLUMNS])
    return text.getvalue().encode("utf-8")


def check_output_location(path) -> None:
    """ConfigError, before any work, if `path` cannot be written: no such directory, not a directory, a
    directory at `path`, or no permission to create files beside it (the journal and the temporary file).

    Permission is tested by creating and deleting a probe file there, the only test that also covers
    read-only file systems, ACLs and root squash.
    """
    path = pathlib.Path(path)
    directory = path.parent
    if path.is_dir():
        raise ConfigError(f"{path} is a directory; give a file name for the output")
    if not directory.exists():
        raise ConfigError(f"{directory}: no such directory for the output {path.name}")
    if not directory.is_dir():
        raise ConfigError(f"{directory} is not a directory; cannot write the output {path.name} there")
    try:
        descriptor, probe = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".probe", dir=directory)
    except OSError as error:
        raise ConfigError(f"{directory}: cannot create files there for the output {path.name} "
                          f"({error.strerror or error})") from None
    os.close(descriptor)
    os.unlink(probe)


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
    """Delete temporary files a killed run left beside path (.NAME.*.tmp): never a final file."""
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


def read_rows(path, output_format: str | None = None) -> list[dict]:
    """The rows of an output file, typed as written (ints, floats, None for empty)."""
    output_format = format_for(path, output_format)
    data = pathlib.Path(path).read_bytes()
    if output_format == "jsonl":
        return [orjson.loads(line) for line in data.splitlines() if line.strip()]
    rows = []
    for record in csv.DictReader(io.StringIO(data.decode("utf-8"), newline="")):
        row = {column: (record[column] if record[column] != "" else None) for column in COLUMNS}
        for column in _INTEGER_COLUMNS:
            row[column] = None if row[column] is None else int(row[column])
        row["probability"] = None if row["probability"] is None else float(row["probability"])
        rows.append(row)
    return rows
