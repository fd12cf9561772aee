"""The one summary of repeated measurements that every benchmark writes into its JSON."""

from __future__ import annotations

import statistics


def summarize(values: list[float]) -> dict:
    """Median, quartiles and range of the values, and the values themselves in the order they were measured."""
    values = list(values)
    quartiles = statistics.quantiles(values, n=4, method="inclusive") if len(values) > 1 else [values[0]] * 3
    return {"median": statistics.median(values), "q1": quartiles[0], "q3": quartiles[2],
            "min": min(values), "max": max(values), "values": values}
