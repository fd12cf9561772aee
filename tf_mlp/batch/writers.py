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

A final file is written by tf_mlp.files.write_atomically: a crash leaves
either the previous file or the new complete one, never a truncated one.
"""

from __future__ import annotations

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
