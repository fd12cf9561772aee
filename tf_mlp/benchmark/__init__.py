"""Benchmarks (issue 7): measured side by side in one run, written to docs/PERFORMANCE.md."""
