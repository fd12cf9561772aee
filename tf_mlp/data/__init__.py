"""The data layer: TFDS builders for local IDX files and notMNIST archives,
and ``load_splits``, which turns a DataConfig into in-memory train,
validation and test splits.

Preparation (the TFDS builders) depends only on the source files; the split
policy below is applied after loading, so changing sizes or seeds never
re-prepares anything.

Split policy (all random choices seeded by ``DataConfig.seed``):

- Sources with a test split (the Fashion-MNIST/MNIST IDX files, the TFDS
  catalogue): the test split is kept whole; validation is ``validation_size``
  examples drawn at random from train, the rest is train.
- Sources without a test split (a single IDX pair, a single notMNIST archive):
  a stratified ``test_fraction`` of every class is held out as test; then
  validation takes min(``validation_size``, 10% of what remains) at random,
  so a small source keeps most of its data for training.
- notMNIST follows the course's sizes: with the large and the small archive,
  validation is ``validation_size`` drawn from the large archive, train is
  ``train_size`` drawn from the rest of it (capped at what exists) and test is
  ``test_size`` drawn from the small archive. With one source it is the
  hold-out rule above, and train is then capped at ``train_size``.
- ``drop_overlap``: validation and test images whose exact pixels also occur
  in train are dropped, and the counts recorded in ``dropped_overlap``.
"""

from __future__ import annotations

import logging

from tf_mlp.config import DATA_SETS, DataConfig
from tf_mlp.data import local_builder, overlap, partition, sources
from tf_mlp.data.splits import DataSplits, Split
from tf_mlp.errors import DataError

log = logging.getLogger(__name__)

__all__ = ["DataSplits", "Split", "dataset_names", "load_splits"]


def dataset_names() -> tuple[str, ...]:
    """Names accepted as ``DataConfig.name``."""
    return DATA_SETS


def load_splits(config: DataConfig) -> DataSplits:
    """Prepare (once) and load ``config``'s data set as train/validation/test arrays."""
    if config.seed < 0:
        raise DataError(f"data seed must be >= 0, got {config.seed}")
    source = sources.open_source(config)
    available = [str(split) for split in source.builder.info.splits]
    loaded = {split: Split(*local_builder.read_split(source.builder, split)) for split in available}

    if config.name == "notmnist":
        train, validation, test = _notmnist_policy(config, loaded)
    elif "test" in loaded:
        train, validation, test = _validation_from_train(config, loaded)
    else:
        train, validation, test = _holdout_policy(config, loaded["train"])

    splits = DataSplits(
        train=train,
        validation=validation,
        test=test,
        class_names=tuple(source.class_names),
        name=config.name,
        skipped_files=local_builder.skipped_files(source.builder, available),
    )
    if config.drop_overlap:
        _drop_overlap(splits)
    log.info("%s from %s: %s", config.name, source.description, splits.sizes())
    return splits


def _validation_from_train(config: DataConfig, loaded: dict[str, Split]) -> tuple[Split, Split, Split]:
    train = loaded["train"]
    if config.validation_size >= len(train):
        raise DataError(
            f"validation_size {config.validation_size} leaves no training data: "
            f"the train split has {len(train)} examples; lower --validation-size"
        )
    validation, train = partition.random_subset(train, config.validation_size, config.seed, partition.VALIDATION)
    return train, validation, loaded["test"]


def _holdout_policy(config: DataConfig, source: Split) -> tuple[Split, Split, Split]:
    test, rest = partition.stratified_holdout(source, config.test_fraction, config.seed)
    size = partition.capped_validation_size(config.validation_size, len(rest))
    validation, train = partition.random_subset(rest, size, config.seed, partition.VALIDATION)
    return train, validation, test


def _notmnist_policy(config: DataConfig, loaded: dict[str, Split]) -> tuple[Split, Split, Split]:
    if "test" not in loaded:
        train, validation, test = _holdout_policy(config, loaded["train"])
    else:
        # Validation first, so a train_size as large as the archive still leaves one.
        large = loaded["train"]
        if config.validation_size >= len(large):
            raise DataError(
                f"validation_size {config.validation_size} leaves no training data: "
                f"the large archive has {len(large)} images; lower --validation-size"
            )
        validation, train = partition.random_subset(large, config.validation_size, config.seed, partition.VALIDATION)
        test, _ = partition.random_subset(loaded["test"], config.test_size, config.seed, partition.TEST_SUBSET)
    train, _ = partition.random_subset(train, config.train_size, config.seed, partition.TRAIN_SUBSET)
    return train, validation, test


def _drop_overlap(splits: DataSplits) -> None:
    """Remove validation/test images that also occur in train; record how many."""
    for name in ("validation", "test"):
        split = splits.split(name)
        in_train = overlap.overlap_mask(splits.train.images, split.images)
        setattr(splits, name, split.take(~in_train))
        splits.dropped_overlap[name] = int(in_train.sum())
    log.info("dropped images with an exact duplicate in train: %s", splits.dropped_overlap)
