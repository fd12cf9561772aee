"""Batch inference that loses nothing: chunks sent with bounded concurrency, every input one output row.

`run_batch(model, inputs, output)` splits the inputs not yet done into
chunks, classifies them on a pool of `concurrency` threads (the client is
thread-safe; the threads spend their time waiting on the server or in
TensorFlow, both outside the GIL), appends each finished chunk to the
journal, and at the end writes the output atomically in input order.

What happens to failures:

- the server unreachable or busy: the client retries (backoff and jitter);
- a chunk the server refuses (HTTP 400/413/500, gRPC INVALID_ARGUMENT...):
  it is split in halves, recursively, so only the inputs that fail alone
  get error rows and the rest are classified;
- an image file that cannot be read: an error row, without asking the server;
- still unreachable after every retry, or the model gone (404): the run
  stops with a one-line error, its finished chunks kept in the journal for
  --resume; with keep_going=True those inputs get error rows instead.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import time

from tqdm import tqdm

from tf_mlp import files
from tf_mlp.batch import writers
from tf_mlp.batch.inputs import InputSource
from tf_mlp.batch.journal import Journal, journal_path
from tf_mlp.batch.summary import BatchSummary, summarize
from tf_mlp.client.base import ENCODED, Client
from tf_mlp.client.errors import ClientError, NotFoundError, UnavailableError
from tf_mlp.errors import ConfigError, TfMlpError

DEFAULT_CHUNK_SIZE = 256
"""Inputs per request: on 2 cores, 256 pixel images per gRPC or in-process call run ~40% faster than 128;
REST is bound by JSON either way. Halving a refused chunk of 256 takes at most 16 extra requests, so a batching
server must accept 256 per request (serving/batching.config: max_batch_size 256)."""
DEFAULT_CONCURRENCY = 2
"""One request in flight while the other is answered keeps a 2-core server busy; more only queue."""
STARTUP_ATTEMPTS = 3
"""Attempts of the first request, which checks that the server and model are there."""
_IN_FLIGHT_PER_THREAD = 2
"""Chunks submitted ahead per thread: enough to keep threads busy, few enough to bound memory."""


class BatchAborted(TfMlpError):
    """The run stopped before every input had a row; its finished chunks are in the journal."""


@dataclasses.dataclass
class _ChunkResult:
    rows: list
    latencies: list


def run_batch(model: Client, inputs: InputSource, output, output_format: str | None = None,
              chunk_size: int = DEFAULT_CHUNK_SIZE, concurrency: int = DEFAULT_CONCURRENCY, resume: bool = False,
              restart: bool = False, keep_going: bool = False, progress: bool = True) -> BatchSummary:
    """Classify every input with `model`, write one row per input to `output`; return the run's summary."""
    if chunk_size < 1 or concurrency < 1:
        raise ConfigError("chunk size and concurrency must be at least 1")
    output_format = writers.format_for(output, output_format)
    writers.check_output_location(output)
    path = journal_path(output)
    Journal.check(path, resume, restart)
    # Asked before any file is made, with few retries: a missing server or an unknown model stops the run here,
    # at once, while later requests get the client's full (patient) policy.
    startup = dataclasses.replace(model.retry, max_attempts=min(model.retry.max_attempts, STARTUP_ATTEMPTS))
    class_names = model.with_retry(startup).class_names()
    inputs.name_labels(class_names)

    files.remove_stale_temporaries(output)
    header = {"inputs": inputs.description, "count": len(inputs), "fingerprint": inputs.fingerprint}
    journal, done = Journal.open(path, header, resume, restart)
    resumed = len(done)
    todo = [index for index in range(len(inputs)) if index not in done]
    chunks = [todo[start:start + chunk_size] for start in range(0, len(todo), chunk_size)]
    latencies = []
    started = time.perf_counter()
    bar = tqdm(total=len(inputs), initial=resumed, unit="img", desc="classifying", disable=not progress,
               dynamic_ncols=True, leave=False)
    try:
        for result in _classify_chunks(model, inputs, chunks, concurrency, keep_going):
            journal.append(result.rows)
            for row in result.rows:
                done[row["index"]] = row
            latencies.extend(result.latencies)
            bar.update(len(result.rows))
    except (ClientError, KeyboardInterrupt) as error:
        reason = str(error) if isinstance(error, ClientError) else "interrupted"
        raise BatchAborted(f"{reason}; {len(done)} of {len(inputs)} inputs are saved in {journal.path}: "
                           "rerun with --resume to continue") from None
    finally:
        bar.close()
        journal.close()
    seconds = time.perf_counter() - started

    rows = [done[index] for index in range(len(inputs))]  # KeyError here would be a gap: it cannot pass silently
    files.write_atomically(output, writers.render(rows, output_format))
    journal.discard()
    return summarize(rows, output, resumed, len(todo), seconds, latencies, model.stats.as_dict(),
                                    class_names)


def _classify_chunks(model, inputs, chunks, concurrency, keep_going):
    """Yield each chunk's result as it finishes, never more than concurrency * 2 chunks submitted at once.

    On the first failure nothing more is submitted, chunks not yet started
    are cancelled, chunks already running finish and are still yielded (their
    work is kept), and then the failure is raised.
    """
    pending = set()
    remaining = iter(chunks)
    failure = None
    with concurrent.futures.ThreadPoolExecutor(concurrency, thread_name_prefix="batch") as executor:
        try:
            while True:
                while failure is None and len(pending) < concurrency * _IN_FLIGHT_PER_THREAD:
                    chunk = next(remaining, None)
                    if chunk is None:
                        break
                    pending.add(executor.submit(classify_chunk, model, inputs, chunk, keep_going))
                if not pending:
                    break
                finished, pending = concurrent.futures.wait(pending, return_when=concurrent.futures.FIRST_COMPLETED)
                for future in finished:
                    if future.cancelled():
                        continue
                    if future.exception() is not None:
                        if failure is None:
                            failure = future.exception()
                            for waiting in pending:
                                waiting.cancel()
                        continue
                    yield future.result()
        except BaseException:
            for waiting in pending:
                waiting.cancel()
            raise
    if failure is not None:
        raise failure


def classify_chunk(model: Client, inputs: InputSource, indices: list, keep_going: bool = False) -> _ChunkResult:
    """Rows for a chunk of input indices (in that order) and the latency of each request made for it."""
    readable, payload, failures = inputs.read(indices)
    rows = {index: _error_row(inputs, index, message) for index, message in failures.items()}
    latencies = []
    predict = model.predict_encoded if inputs.kind == ENCODED else model.predict
    _classify(predict, inputs, readable, payload, rows, latencies, keep_going)
    return _ChunkResult([rows[index] for index in indices], latencies)


def _classify(predict, inputs, indices, payload, rows, latencies, keep_going) -> None:
    if not indices:
        return
    started = time.perf_counter()
    try:
        prediction = predict(payload)
    except (UnavailableError, NotFoundError) as error:
        # Nothing about these inputs is wrong; the server is. Stop the run, or record it and go on.
        if not keep_going:
            raise
        for index in indices:
            rows[index] = _error_row(inputs, index, str(error))
        return
    except ClientError as error:
        if len(indices) == 1:
            rows[indices[0]] = _error_row(inputs, indices[0], str(error))
            return
        # Refused as a whole: halve until the inputs that fail alone are found; the others are classified.
        middle = len(indices) // 2
        _classify(predict, inputs, indices[:middle], payload[:middle], rows, latencies, keep_going)
        _classify(predict, inputs, indices[middle:], payload[middle:], rows, latencies, keep_going)
        return
    latencies.append(time.perf_counter() - started)
    probabilities = prediction.probability()
    for position, index in enumerate(indices):
        rows[index] = writers.prediction_row(*_known(inputs, index), int(prediction.class_ids[position]),
                                             prediction.class_names[position], probabilities[position])


def _known(inputs: InputSource, index: int) -> tuple:
    """What the inputs say about one input: index, id, true label id and name."""
    return index, inputs.ids[index], inputs.label_ids[index], inputs.label_names[index]


def _error_row(inputs: InputSource, index: int, message: str) -> dict:
    return writers.error_row(*_known(inputs, index), message)
