"""The end-of-run summary: counts, failures, accuracy and confusion matrix, throughput, latency percentiles."""

from __future__ import annotations

import dataclasses

import numpy as np

MAX_ERROR_EXAMPLES = 5


@dataclasses.dataclass
class BatchSummary:
    output: str
    inputs: int
    """Rows in the output: one per input."""
    resumed: int
    """Rows taken from an interrupted run's journal rather than computed now."""
    processed: int
    """Inputs classified (or failed) by this run."""
    failures: int
    """Rows with an error instead of a prediction."""
    labelled: int
    """Classified rows whose true class id is known."""
    unmatched: int
    """Rows from a class folder whose name matches no class name: no true label, left out of accuracy."""
    correct: int
    accuracy: float | None
    confusion: dict | None
    """{"classes": names, "matrix": [[...]]}: rows true class, columns predicted class."""
    seconds: float
    images_per_second: float
    """processed / seconds: this run's throughput, start-up excluded."""
    requests: int
    """Successful prediction requests; latencies are theirs."""
    latency_ms: dict
    """p50, p90, p99 and max milliseconds per request (retries included)."""
    client: dict
    """The client's counters: calls, attempts, retries, failures."""
    error_examples: list = dataclasses.field(default_factory=list)
    """Up to five (id, error) pairs."""
    unmatched_folders: list = dataclasses.field(default_factory=list)
    """Names of the folders that matched no class, sorted."""

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def summarize(rows, output, resumed, processed, seconds, latencies, client_stats, class_names) -> BatchSummary:
    """The summary of a finished run; rows are every output row, in input order."""
    failed = [row for row in rows if row.get("error")]
    scored = [row for row in rows if not row.get("error") and row.get("label") is not None]
    correct = sum(row["label"] == row["class_id"] for row in scored)
    unmatched = [row for row in rows if row.get("label") is None and row.get("label_name") is not None]
    latency_ms = {}
    if latencies:
        values = np.asarray(latencies) * 1000.0
        latency_ms = {f"p{q}": round(float(np.percentile(values, q)), 3) for q in (50, 90, 99)}
        latency_ms["max"] = round(float(values.max()), 3)
    return BatchSummary(
        output=str(output),
        inputs=len(rows),
        resumed=resumed,
        processed=processed,
        failures=len(failed),
        labelled=len(scored),
        unmatched=len(unmatched),
        correct=int(correct),
        accuracy=correct / len(scored) if scored else None,
        confusion=_confusion(scored, class_names),
        seconds=round(seconds, 3),
        images_per_second=round(processed / seconds, 1) if seconds > 0 else 0.0,
        requests=len(latencies),
        latency_ms=latency_ms,
        client=client_stats,
        error_examples=[(row["id"], row["error"]) for row in failed[:MAX_ERROR_EXAMPLES]],
        unmatched_folders=sorted({row["label_name"] for row in unmatched}),
    )


def unmatched_warning(summary: BatchSummary) -> str | None:
    """The one-line warning about inputs whose class folder names no class, or None."""
    if not summary.unmatched:
        return None
    folders = ", ".join(repr(name) for name in summary.unmatched_folders[:MAX_ERROR_EXAMPLES])
    more = f" and {len(summary.unmatched_folders) - MAX_ERROR_EXAMPLES} more" \
        if len(summary.unmatched_folders) > MAX_ERROR_EXAMPLES else ""
    return (f"warning: {summary.unmatched} inputs are in folders that match no class name ({folders}{more}); "
            "they have no true label and are left out of accuracy (folder names match class names ignoring case, "
            "with any run of other characters such as '/', ' ', '-' written as '_')")


def _confusion(scored, class_names) -> dict | None:
    if not scored:
        return None
    size = max([len(class_names or ())] + [max(row["label"], row["class_id"]) + 1 for row in scored])
    names = list(class_names or ()) + [str(class_id) for class_id in range(len(class_names or ()), size)]
    matrix = np.zeros((size, size), dtype=np.int64)
    for row in scored:
        matrix[row["label"], row["class_id"]] += 1
    return {"classes": names, "matrix": matrix.tolist()}


def format_summary(summary: BatchSummary) -> str:
    lines = [f"wrote {summary.inputs} rows to {summary.output}"
             + (f" ({summary.resumed} from the interrupted run's journal)" if summary.resumed else "")]
    lines.append(f"failures     {summary.failures}")
    for identifier, error in summary.error_examples:
        lines.append(f"  {identifier}: {error}")
    if summary.accuracy is not None:
        lines.append(f"accuracy     {summary.accuracy:.4f} ({summary.correct} of {summary.labelled} labelled)")
    if summary.unmatched:
        lines.append(f"unmatched    {summary.unmatched} inputs in folders named after no class "
                     f"({', '.join(summary.unmatched_folders[:MAX_ERROR_EXAMPLES])}"
                     f"{', ...' if len(summary.unmatched_folders) > MAX_ERROR_EXAMPLES else ''})")
    lines.append(f"throughput   {summary.images_per_second:.1f} images/s "
                 f"({summary.processed} in {summary.seconds:.2f} s)")
    if summary.latency_ms:
        latency = summary.latency_ms
        lines.append(f"latency      p50 {latency['p50']:.1f} ms, p90 {latency['p90']:.1f} ms, "
                     f"p99 {latency['p99']:.1f} ms per request ({summary.requests} requests, "
                     f"{summary.client.get('retries', 0)} retries)")
    if summary.confusion is not None:
        lines.append("confusion matrix (rows: true class, columns: predicted class)")
        lines.extend(_matrix_lines(summary.confusion))
    return "\n".join(lines)


def _matrix_lines(confusion: dict) -> list[str]:
    """Each row labelled "<id> <name>"; the columns are headed by the same ids, and nothing else is printed."""
    labels = [f"{index} {name[:12]}" for index, name in enumerate(confusion["classes"])]
    matrix = confusion["matrix"]
    width = max(max(len(str(value)) for row in matrix for value in row), len(str(len(labels) - 1)), 3)
    label_width = max(len(label) for label in labels)
    header = " " * label_width + "  " + " ".join(f"{index:>{width}}" for index in range(len(labels)))
    lines = [header.rstrip()]
    for label, row in zip(labels, matrix):
        lines.append(f"{label:<{label_width}}  " + " ".join(f"{value:>{width}}" for value in row))
    return lines
