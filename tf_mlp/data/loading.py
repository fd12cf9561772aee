"""``load_splits``: a DataConfig turned into in-memory train, validation and test splits.

Preparation (the TFDS builders) depends only on the source files; the split
policy below is applied after loading, so changing sizes or seeds never
re-prepares anything.

Split policy (each data set's is named in tf_mlp/data/catalog.py; all random
choices seeded by ``DataConfig.seed``):

- Sources with a test split (the Fashion-MNIST/MNIST IDX files, the TFDS
  catalogue): the test split is kept whole; validation is ``validation_size``
  examples drawn at random from train, the rest is train.
- Sources without a test split (a single IDX pair, a single notMNIST archive):
  a stratified ``test_fraction`` of every class is held out as test; then
  validation takes min(``validation_size``, 10% of what remains) at random,
  so a small source keeps most of its data for training.
- Course sizes (notMNIST): with the large and the small archive,
  validation is ``validation_size`` drawn from the large archive, train is
  ``train_size`` drawn from the rest of it (capped at what exists) and test is
  ``test_size`` drawn from the small archive. With one source it is the
  hold-out rule above, and train is then capped at ``train_size``.
- ``drop_overlap``: validation and test images whose exact pixels also occur
  in train are dropped, and the counts recorded in ``dropped_overlap``.
"""

from __future__ import annotations

import logging
import typing

from tf_mlp.data import catalog, local_builder, overlap, partition, sources
from tf_mlp.data.splits import DataSplits, Split
from tf_mlp.errors import DataError

if typing.TYPE_CHECKING:
    from tf_mlp.config import DataConfig

log = logging.getLogger(__name__)

def load_splits(config: DataConfig) -> DataSplits:
    """Prepare (once) and load ``config``'s data set as train/validation/test arrays."""
    if config.seed < 0:
        raise DataError(f"data seed must be >= 0, got {config.seed}")
    source = sources.open_source(config)
    available = [str(split) for split in source.builder.info.splits]
    loaded = {split: Split(*local_builder.read_split(source.builder, split)) for split in available}

    if catalog.CATALOG[config.name].split_policy == catalog.COURSE_SIZES:
        train, validation, test = _course_sizes_policy(config, loaded)
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
    validation, train = _validation_drawn_from(config, loaded["train"], "the train split has {} examples")
    return train, validation, loaded["test"]


def _validation_drawn_from(config: DataConfig, source: Split, what: str) -> tuple[Split, Split]:
    """(validation, rest): validation_size examples drawn from source, which must keep some for training."""
    if config.validation_size >= len(source):
        raise DataError(
            f"validation_size {config.validation_size} leaves no training data: "
            f"{what.format(len(source))}; lower --validation-size"
        )
    return partition.random_subset(source, config.validation_size, config.seed, partition.VALIDATION)


def _holdout_policy(config: DataConfig, source: Split) -> tuple[Split, Split, Split]:
    test, rest = partition.stratified_holdout(source, config.test_fraction, config.seed)
    size = partition.capped_validation_size(config.validation_size, len(rest))
    validation, train = partition.random_subset(rest, size, config.seed, partition.VALIDATION)
    return train, validation, test


def _course_sizes_policy(config: DataConfig, loaded: dict[str, Split]) -> tuple[Split, Split, Split]:
    if "test" not in loaded:
        train, validation, test = _holdout_policy(config, loaded["train"])
    else:
        # Validation first, so a train_size as large as the archive still leaves one.
        validation, train = _validation_drawn_from(config, loaded["train"], "the large archive has {} images")
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
