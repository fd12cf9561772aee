"""The inputs' way into the job: the launcher cuts them into chunks and writes one file per chunk for the workers.

Not beam.Create with the data: Create puts its elements into the job's
description, pickled and bz2-compressed (measured: 100,000 images spent
~60 s of a 136 s run compressing and decompressing it, and Dataflow refuses
job descriptions over ~10 MB). Files in a staging directory cost a write
and a read: `--temp_location` when given (gs://, s3://, hdfs://: where
every worker of a cluster can read), else a local temporary directory,
which suits Beam's local runners and runners in local mode. The launcher
deletes the directory when the job ends.
"""

from __future__ import annotations

import contextlib
import tempfile
import uuid

from apache_beam import coders
from apache_beam.io.filesystems import FileSystems

from tf_mlp.batch import DEFAULT_CHUNK_SIZE
from tf_mlp.batch.inputs import InputSource
from tf_mlp.beam.handler import Example
from tf_mlp.client.base import PIXELS

# Beam's own binary encoding of tuples, lists, ints, strings, bytes and None: no pickle for what chunks hold.
_CODER = coders.FastPrimitivesCoder()


def chunks(inputs: InputSource, chunk_size: int = DEFAULT_CHUNK_SIZE):
    """batch-predict's chunks, in input order: tuples of Examples; unreadable image files carry their error."""
    for start in range(0, len(inputs), chunk_size):
        indices = list(range(start, min(start + chunk_size, len(inputs))))
        readable, payloads, failures = inputs.read(indices)
        by_index = dict(zip(readable, payloads))
        chunk = []
        for index in indices:
            payload = by_index.get(index)
            if payload is not None and inputs.kind == PIXELS:
                payload = payload.tobytes()
            chunk.append(Example(index, inputs.ids[index], inputs.label_ids[index], inputs.label_names[index],
                                 payload, failures.get(index)))
        yield tuple(chunk)


@contextlib.contextmanager
def staged_chunks(inputs: InputSource, chunk_size: int, temp_location: str | None):
    """Write the chunks as files and yield their paths; delete them all afterwards, whatever happened."""
    if temp_location:
        directory = FileSystems.join(temp_location, f"tf-mlp-inputs-{uuid.uuid4().hex}")
        FileSystems.mkdirs(directory)
    else:
        directory = tempfile.mkdtemp(prefix="tf-mlp-inputs-")
    try:
        paths = []
        for number, chunk in enumerate(chunks(inputs, chunk_size)):
            path = FileSystems.join(directory, f"chunk-{number:06d}.bin")
            with FileSystems.create(path) as file:
                file.write(_CODER.encode(tuple(tuple(example) for example in chunk)))
            paths.append(path)
        yield paths
    finally:
        # A directory left behind costs only space; it must not hide the job's own outcome.
        with contextlib.suppress(OSError):  # Beam's BeamIOError is an OSError
            FileSystems.delete([directory])


def read_chunk(path: str) -> tuple:
    """A chunk written by staged_chunks, as a tuple of Examples."""
    with FileSystems.open(path) as file:
        return tuple(Example(*fields) for fields in _CODER.decode(file.read()))
