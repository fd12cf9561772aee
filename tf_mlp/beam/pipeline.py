"""The Beam pipeline: batch-predict's inputs in, its output file out, RunInference in between.

    inputs (read by the launcher, cut into batch-predict's chunks, staged as files)
        ─> chunk files spread over the workers ─> RunInference ─> rows
        ─> gathered, sorted by index, checked for gaps ─> one CSV/JSONL file, as batch-predict writes it

The launcher opens the inputs with tf_mlp.batch.open_inputs, as the batch
script does, and cuts them into the same chunks (--chunk-size, default
256), staged as files (tf_mlp.beam.staging); each worker loads the model
once and classifies whole chunks; one worker writes the file. The output
therefore equals, byte for byte, `tf-mlp batch-predict INPUT --target
local:MODEL -o OUTPUT` with the same chunk size, when the workers run the
same kernels as that command (the same TensorFlow build on the same kind of
CPU, the same TF_ENABLE_ONEDNN_OPTS). Workers on other machines give the
same class ids (but for near-ties) and probabilities within about 1e-5:
README, "Batch output".
"""

from __future__ import annotations

import dataclasses
import os
import time

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics.metric import Metrics, MetricsFilter
from apache_beam.ml.inference.base import RunInference
from apache_beam.options.pipeline_options import GoogleCloudOptions, PipelineOptions, StandardOptions

from tf_mlp import contract, files
from tf_mlp.batch import DEFAULT_CHUNK_SIZE, writers
from tf_mlp.batch.inputs import open_inputs
from tf_mlp.beam import staging
from tf_mlp.beam.handler import SavedModelHandler, is_url
from tf_mlp.errors import ConfigError, DataError, TfMlpError

LOCAL_RUNNER = "FnApiRunner"
"""The runner when none is given: Beam's local batch runner (--direct_num_workers, --direct_running_mode)."""
_COUNTERS = ("rows", "failures", "labelled", "correct", "unmatched")


class MissingRowsError(TfMlpError):
    """The pipeline gave fewer or more rows than there are inputs (a runner bug; the output is not written)."""


class JobFailedError(TfMlpError):
    """The runner reported the job failed (a worker's error, after the runner's own retries)."""


@dataclasses.dataclass(frozen=True)
class ModelLocation:
    path: str
    """As given: a local version dir, model base or export base, or a URL of a version directory."""
    version: int | None
    """The version every worker loads (None for a URL, which names one version directory)."""
    class_names: tuple | None


@dataclasses.dataclass
class BeamSummary:
    output: str
    rows: int
    failures: int
    labelled: int
    correct: int
    unmatched: int
    """Inputs in class folders that match no class name (no true label; left out of accuracy)."""
    seconds: float
    """Launch to finish: pipeline start-up, model loading on every worker and the write included."""

    @property
    def accuracy(self) -> float | None:
        return self.correct / self.labelled if self.labelled else None

    def format(self) -> str:
        lines = [f"wrote {self.rows} rows to {self.output}", f"failures     {self.failures}"]
        if self.accuracy is not None:
            lines.append(f"accuracy     {self.accuracy:.4f} ({self.correct} of {self.labelled} labelled)")
        if self.unmatched:
            lines.append(f"unmatched    {self.unmatched} inputs in folders named after no class")
        rate = self.rows / self.seconds if self.seconds > 0 else 0.0
        lines.append(f"throughput   {rate:.1f} images/s ({self.rows} in {self.seconds:.2f} s, start-up included)")
        return "\n".join(lines)


def locate_model(model_path: str, model_name: str = contract.MODEL_NAME,
                 version: int | None = None) -> ModelLocation:
    """Check on the launcher that the model is there, pin its version and read its class names (one-line errors)."""
    import tensorflow as tf

    if is_url(model_path):
        if version is not None:
            raise ConfigError("a model URL names one version directory (…/tf_mlp/3); --version applies to local "
                              "paths only")
        if not tf.io.gfile.exists(f"{model_path.rstrip('/')}/saved_model.pb"):
            raise ConfigError(f"{model_path}: no saved_model.pb there; give the URL of a version directory")
        version_dir = model_path.rstrip("/")
    else:
        from tf_mlp.client import local

        directory, version = local.resolve_version_dir(model_path, model_name, version)
        version_dir = str(directory)
        # Workers resolve the path again, in their own working directory (a worker pool's, a container's).
        model_path = os.path.abspath(model_path)
    labels = f"{version_dir}/assets/{contract.LABELS_ASSET}"
    class_names = tuple(tf.io.gfile.GFile(labels).read().splitlines()) if tf.io.gfile.exists(labels) else None
    return ModelLocation(model_path, version, class_names)


def build_pipeline(pipeline: beam.Pipeline, chunk_paths: list, kind: str, count: int, model: ModelLocation,
                   output: str, output_format: str) -> None:
    """Add the steps to `pipeline`: classify the staged chunks of `count` inputs, write the file to `output`."""
    handler = SavedModelHandler(model.path, model.version, kind)
    (pipeline
     | "Chunk files" >> beam.Create(chunk_paths)  # reshuffled: the chunks are spread over the workers
     | "Read chunks" >> beam.Map(staging.read_chunk)
     # Each element is already a batch (see tf_mlp.beam.handler on why not BatchElements' adaptive sizes).
     | "Classify" >> RunInference(handler.with_no_batching())
     # A single sorted file needs every row in one place: about 200 bytes per input on the writing worker.
     # Without defaults: the default (an empty list for no input) is read back as a side input whose size Beam
     # measures object by object, which took 16 s of a 46 s run of 100,000 inputs.
     | "Gather rows" >> beam.CombineGlobally(beam.combiners.ToListCombineFn()).without_defaults()
     | "Write file" >> beam.Map(write_rows, output, output_format, count))


def write_rows(rows, output: str, output_format: str, count: int) -> None:
    """Write rows sorted by index, as batch-predict does; refuse to write a file with gaps or duplicates."""
    rows = sorted(rows, key=lambda row: row["index"])
    if [row["index"] for row in rows] != list(range(count)):
        raise MissingRowsError(f"the pipeline gave {len(rows)} rows for {count} inputs, not one per input; "
                               f"{output} is not written")
    data = writers.render(rows, output_format)
    if is_url(output):
        # Object stores (gs://, s3://) make an object visible only once it is closed: no half file either.
        with FileSystems.create(output) as file:
            file.write(data)
    else:
        files.remove_stale_temporaries(output)
        files.write_atomically(output, data)
    scored = [row for row in rows if row["error"] is None and row["label"] is not None]
    counts = {"rows": len(rows), "failures": sum(row["error"] is not None for row in rows), "labelled": len(scored),
              "correct": sum(row["label"] == row["class_id"] for row in scored),
              "unmatched": sum(row["label"] is None and row["label_name"] is not None for row in rows)}
    for name in _COUNTERS:
        Metrics.counter("tf_mlp", name).inc(counts[name])


def run(input_spec: str, output: str, model_path: str, pipeline_args=(), output_format: str | None = None,
        labels: str | None = None, source_dir: str | None = None, data_dir: str | None = None,
        model_name: str = contract.MODEL_NAME, version: int | None = None,
        chunk_size: int = DEFAULT_CHUNK_SIZE, polarity: str | None = None) -> BeamSummary:
    """Run the job with Beam options `pipeline_args` (e.g. --runner=FlinkRunner) and wait for it to finish.

    `polarity` as batch-predict's --polarity (None: as-is); it is
    applied by the launcher as the inputs are staged.
    """
    if chunk_size < 1:
        raise ConfigError("the chunk size must be at least 1")
    output_format = writers.format_for(output, output_format)
    if not is_url(output):
        # Workers may run in another directory; and an output that cannot be written must fail here, before
        # the job, not in its last step. (A URL's bucket is the runner's to check: it needs its credentials.)
        output = os.path.abspath(output)
        writers.check_output_location(output)
    inputs = open_inputs(input_spec, labels=labels, source_dir=source_dir, data_dir=data_dir)
    inputs.set_polarity(polarity)
    if not len(inputs):
        # batch-predict writes a header-only file; a job would write nothing (no row reaches the writer).
        raise DataError(f"{inputs.description}: no images to classify")
    model = locate_model(model_path, model_name, version)
    inputs.name_labels(model.class_names)

    started = time.perf_counter()
    options = PipelineOptions(list(pipeline_args))
    if options.view_as(StandardOptions).runner is None:
        # Beam's default, DirectRunner, first tries to download the Prism runner from GitHub and run the job
        # there, ignoring --direct_num_workers; offline it falls back to the FnApiRunner. Named here, the local
        # run is the same with or without a network, and never fetches a program at run time.
        options.view_as(StandardOptions).runner = LOCAL_RUNNER
    temp_location = options.view_as(GoogleCloudOptions).temp_location
    with staging.staged_chunks(inputs, chunk_size, temp_location) as chunk_paths:
        pipeline = beam.Pipeline(options=options)
        build_pipeline(pipeline, chunk_paths, inputs.kind, len(inputs), model, output, output_format)
        try:
            result = pipeline.run()
            result.wait_until_finish()
        except MissingRowsError:
            raise
        except Exception as error:  # noqa: BLE001 - runners raise anything; the runner has logged the details
            raise JobFailedError(f"the Beam job failed: {_cause(error)}") from None
    seconds = time.perf_counter() - started
    return BeamSummary(output, seconds=seconds, **_counters(result))


def _cause(error: Exception) -> str:
    """The last `Name: message` line of a worker's traceback as the runner passes it on, else the error itself.

    Portable runners report a failed job as one RuntimeError whose text holds
    the worker's whole traceback; its last exception line says what went wrong.
    """
    lines = [line for line in str(error).splitlines() if line.strip()]
    # A traceback's code lines are indented; its exception lines start at the margin.
    causes = [line.strip() for line in lines
              if not line[0].isspace() and ": " in line and not line.startswith(("Traceback ", "During handling"))]
    return causes[-1] if causes else f"{type(error).__name__}: {lines[-1].strip() if lines else 'no message'}"


def _counters(result) -> dict:
    counts = dict.fromkeys(_COUNTERS, 0)
    for counter in result.metrics().query(MetricsFilter().with_namespace("tf_mlp"))["counters"]:
        if counter.key.metric.name in counts:
            # Committed is exact under retries; a runner that reports only attempted values gives those.
            value = counter.committed if counter.committed is not None else counter.attempted
            counts[counter.key.metric.name] += value or 0
    return counts
