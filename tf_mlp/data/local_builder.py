"""What the project's two TFDS builders share: a local source directory,
a fingerprint of it, and preparation that never serves stale data.

TFDS prepares a data set once into ``<data_dir>/<builder>/<config>/<version>/``
and afterwards only reads it back. For data that TFDS downloads itself that is
right; for files a user keeps in a local directory it is a trap, because
replacing those files would silently keep serving the old copy. So each
builder config is named after its source directory, the prepared data records
a fingerprint of the source files (paths, sizes, modification times) in its
metadata, and ``prepare`` regenerates whenever the fingerprint differs.
"""

from __future__ import annotations

import abc
import contextlib
import dataclasses
import hashlib
import io
import json
import logging
import os
import pathlib
import re
import sys

import numpy as np
import tensorflow_datasets as tfds

from tf_mlp.contract import IMAGE_SIZE, NUM_CLASSES
from tf_mlp.errors import DataError, first_line

log = logging.getLogger(__name__)


class _CustomConfigNoise(logging.Filter):
    """Drop TFDS's "Using custom data configuration" warning.

    Every config here is custom by design (one per source directory), so TFDS
    would print it on each load, and users read it as something to fix.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Using custom data configuration")


logging.getLogger("absl").addFilter(_CustomConfigNoise())

FINGERPRINT_KEY = "source_fingerprint"
SKIPPED_KEY = "skipped_files"


@dataclasses.dataclass(eq=False)
class LocalSourceConfig(tfds.core.BuilderConfig):
    """A builder config for one local source directory."""

    source_dir: str = ""


class LocalSourceBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """Base of builders whose raw files sit in a local (manual) directory.

    Subclasses say which files make up the source (``source_files``) and
    generate the examples. Registration is skipped (and TFDS does not inherit
    that, so each subclass passes ``skip_registration=True`` too): these
    builders are always constructed by ``tf_mlp.data`` with an explicit
    config, and a registered name would collide if the module were imported
    twice.
    """

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "First release."}

    @classmethod
    @abc.abstractmethod
    def source_files(cls, directory: pathlib.Path) -> list[pathlib.Path]:
        """The files (or folders) whose contents the prepared data depends on."""

    def _info(self) -> tfds.core.DatasetInfo:
        # Raw uint8 tensors rather than tfds.features.Image: the images are
        # already decoded pixels, and PNG-encoding 70,000 of them only to
        # decode them again on every load costs time for nothing.
        return tfds.core.DatasetInfo(
            builder=self,
            description=self.__doc__,
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Tensor(shape=(IMAGE_SIZE, IMAGE_SIZE), dtype=np.uint8),
                    "label": tfds.features.ClassLabel(num_classes=NUM_CLASSES),
                }
            ),
            supervised_keys=("image", "label"),
            # Keep the source order (examples are keyed by their position), so
            # the prepared data reads back in the order of the files.
            disable_shuffling=True,
            metadata=tfds.core.MetadataDict(),
        )

    def _record_source(self, directory: pathlib.Path) -> None:
        """Store the fingerprint of what is being prepared (called while generating)."""
        self.info.metadata[FINGERPRINT_KEY] = fingerprint(self.source_files(directory))
        self.info.metadata.setdefault(SKIPPED_KEY, {})


def fingerprint(paths: list[pathlib.Path]) -> str:
    """A short hash of the paths, sizes and modification times of the source.

    Folders count by every file beneath them. Contents are not hashed: that
    would mean reading hundreds of megabytes on every load just to find out
    nothing changed.
    """
    entries = []
    for path in sorted(paths):
        files = sorted(_walk(path)) if path.is_dir() else [path]
        for file in files:
            status = file.stat()
            entries.append([str(file.resolve()), status.st_size, status.st_mtime_ns])
    return hashlib.sha256(json.dumps(entries).encode()).hexdigest()[:16]


def config_for(source_dir: pathlib.Path) -> LocalSourceConfig:
    """The config of a source directory: readable name plus a hash of its path."""
    resolved = source_dir.resolve()
    slug = re.sub(r"[^a-z0-9]+", "_", resolved.name.lower()).strip("_") or "root"
    path_hash = hashlib.sha256(str(resolved).encode()).hexdigest()[:10]
    return LocalSourceConfig(
        name=f"{slug}_{path_hash}",
        description=f"Prepared from {resolved}",
        source_dir=str(resolved),
    )


def prepare(
    builder_class: type[LocalSourceBuilder], source_dir: pathlib.Path, data_dir: str | None
) -> LocalSourceBuilder:
    """A builder of ``builder_class`` for ``source_dir``, prepared and up to date."""
    config = config_for(source_dir)
    builder = builder_class(config=config, data_dir=data_dir)
    current = fingerprint(builder_class.source_files(source_dir))
    # Checking the folder first spares a TFDS warning about a missing
    # dataset_info.json on every first preparation.
    if builder.data_path.exists() and builder.is_prepared():
        if builder.info.metadata.get(FINGERPRINT_KEY) == current:
            return builder
        log.warning("%s changed since it was prepared in %s; preparing it again", source_dir, builder.data_dir)
        mode = tfds.download.GenerateMode.FORCE_REDOWNLOAD
    else:
        mode = tfds.download.GenerateMode.REUSE_DATASET_IF_EXISTS
    # TFDS announces "Downloading and preparing dataset Unknown size" on stdout
    # for every builder, and its progress bars garble a log file; ours only read
    # local files, so say that instead, and keep the bars for a terminal.
    print(f"preparing {source_dir} in {builder.data_dir} (once; later runs reuse it)", flush=True)
    tfds.display_progress_bar(sys.stderr.isatty())
    with contextlib.redirect_stdout(io.StringIO()):
        builder.download_and_prepare(
            download_config=tfds.download.DownloadConfig(
                manual_dir=str(source_dir),
                download_mode=mode,
                try_download_gcs=False,  # our builders are never on the TFDS bucket
            )
        )
    # A fresh builder reads the newly written dataset_info and metadata, rather
    # than whatever the old instance loaded before regenerating.
    return builder_class(config=config, data_dir=data_dir)


def read_split(builder: tfds.core.DatasetBuilder, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Images uint8 [N, 28, 28] and labels int64 [N] of one prepared split."""
    if isinstance(builder, LocalSourceBuilder):
        return _read_records(builder, split)
    arrays = tfds.as_numpy(builder.as_dataset(split=split, batch_size=-1))
    images = np.asarray(arrays["image"], dtype=np.uint8)
    if images.ndim == 4:  # catalogue builders use tfds.features.Image: [N, 28, 28, 1]
        images = images[..., 0]
    return images, np.asarray(arrays["label"], dtype=np.int64)


def _read_records(builder: LocalSourceBuilder, split: str) -> tuple[np.ndarray, np.ndarray]:
    """read_split for our own builders: the split's records parsed in one batched op.

    TFDS's as_dataset parses and decodes one example at a time: about 3.5 s of CPU for Fashion-MNIST's
    60,000 training images, paid by every command that loads the data. The features here are fixed-shape
    integers, which a tf.train.Example holds as int64 lists, so one parse of every record gives the same
    arrays in about a tenth of that (tests/test_data.py compares the two readers).
    """
    import tensorflow as tf

    info = builder.info.splits[split]
    files = [os.fspath(builder.data_path / name) for name in info.filenames]
    # The features _info declares, as the records hold them: every one an integer tensor, so an int64 list.
    spec = {name: tf.io.FixedLenFeature(serialized.shape, tf.int64)
            for name, serialized in builder.info.features.get_serialized_info().items()}
    try:
        records = tf.data.TFRecordDataset(files).batch(info.num_examples).get_single_element()
        parsed = tf.io.parse_example(records, spec)
    except tf.errors.OpError as error:  # a damaged or truncated file, or more records than the metadata counts
        raise DataError(f"{builder.data_path}: the prepared {split} split cannot be read ({first_line(error)}); "
                        f"delete {builder.data_path} to prepare it again") from None
    images, labels = parsed["image"].numpy(), parsed["label"].numpy()
    if len(labels) != info.num_examples:
        raise DataError(f"{builder.data_path}: the prepared {split} split holds {len(labels)} examples where its "
                        f"metadata counts {info.num_examples}; delete {builder.data_path} to prepare it again")
    return images.astype(np.uint8), labels


def skipped_files(builder: tfds.core.DatasetBuilder, splits: list[str]) -> int:
    """Unreadable source files skipped while preparing the given splits."""
    counts = (builder.info.metadata or {}).get(SKIPPED_KEY, {})
    return int(sum(counts.get(split, {}).get("total", 0) for split in splits))


def _walk(folder: pathlib.Path):
    for root, _, names in os.walk(folder):
        for name in names:
            yield pathlib.Path(root, name)
