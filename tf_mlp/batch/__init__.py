"""Batch inference: files in, one prediction row per input out, nothing lost.

    from tf_mlp import batch, client

    inputs = batch.open_inputs("tfds:fashion_mnist/test")          # or IDX, .npy/.npz, a directory of images
    with client.connect("rest://127.0.0.1:8501", max_connections=2) as model:
        summary = batch.run_batch(model, inputs, "predictions.csv", concurrency=2)
    print(batch.format_summary(summary))                             # accuracy, throughput, latency, ...
    rows = batch.read_rows("predictions.csv")

Another runner (e.g. a Beam pipeline) writes the same rows with
batch.prediction_row / batch.error_row and batch.render, so its output can
be compared with this one byte for byte when both computed the same chunks
with the same kernels (README, "Batch output", says when that holds).

Modules: inputs (readers), runner (chunks, concurrency, splitting failed
chunks), journal (the resumable record of finished chunks), writers (CSV and
JSONL, atomic), summary.
"""

from tf_mlp.batch.inputs import InputSource, open_inputs
from tf_mlp.batch.journal import journal_path
from tf_mlp.batch.runner import (
    DEFAULT_CHUNK_SIZE,
    DEFAULT_CONCURRENCY,
    STARTUP_ATTEMPTS,
    BatchAborted,
    classify_chunk,
    run_batch,
)
from tf_mlp.batch.summary import BatchSummary, format_summary, unmatched_warning
from tf_mlp.batch.writers import (
    COLUMNS,
    FORMATS,
    check_output_location,
    error_row,
    prediction_row,
    read_rows,
    render,
)

__all__ = [
    "COLUMNS", "DEFAULT_CHUNK_SIZE", "DEFAULT_CONCURRENCY", "FORMATS", "STARTUP_ATTEMPTS",
    "BatchAborted", "BatchSummary", "InputSource",
    "check_output_location", "classify_chunk", "error_row", "format_summary", "journal_path", "open_inputs",
    "prediction_row", "read_rows", "render", "run_batch", "unmatched_warning",
]
