"""The data layer: the catalog of data sets (catalog.py), TFDS builders for
local IDX files and notMNIST archives, and ``load_splits`` (loading.py),
which turns a DataConfig into in-memory train, validation and test splits.

``load_splits``, ``DataSplits`` and ``Split`` are imported on first use, so
that the catalog, which the config and the command line read, comes without
TensorFlow.
"""

__all__ = ["DataSplits", "Split", "load_splits"]


def __getattr__(name: str):
    if name == "load_splits":
        from tf_mlp.data.loading import load_splits

        return load_splits
    if name in ("DataSplits", "Split"):
        from tf_mlp.data import splits

        return getattr(splits, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
