"""Distributed batch inference on Apache Beam's RunInference (the optional `beam` extra).

    from tf_mlp import beam as tf_mlp_beam

    summary = tf_mlp_beam.run("tfds:fashion_mnist/test", "predictions.csv", "models/tf_mlp",
                              ["--direct_num_workers=2", "--direct_running_mode=multi_processing"])
    print(summary.format())

Same inputs, rows and file as `tf-mlp batch-predict` with --target
local:MODEL; any Beam runner (with none named, Beam's local FnApiRunner;
Dataflow, Flink, Spark) through the usual pipeline options. Modules: handler (the RunInference model
handler), staging (inputs into the job as chunk files), pipeline (the
steps, and run).
"""

import logging


class _DropOptionalClientWarning(logging.Filter):
    """Beam's BigQuery package logs this on import when its optional Google API client is absent.

    tf-mlp never uses BigQuery, so the line would only alarm; it is dropped
    while Beam imports, and every other log line passes.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("apitools not found")


_filter = _DropOptionalClientWarning()
logging.getLogger().addFilter(_filter)
try:
    from tf_mlp.beam.handler import Example, SavedModelHandler
    from tf_mlp.beam.pipeline import (
        BeamSummary,
        JobFailedError,
        MissingRowsError,
        ModelLocation,
        build_pipeline,
        locate_model,
        run,
    )
finally:
    logging.getLogger().removeFilter(_filter)

__all__ = ["BeamSummary", "Example", "JobFailedError", "MissingRowsError", "ModelLocation", "SavedModelHandler",
           "build_pipeline", "locate_model", "run"]
