"""Which TFDS builder serves a DataConfig, prepared and ready to read.

Where each data set comes from is tf_mlp/data/catalog.py's table; this
module turns an entry and a DataConfig into a prepared builder:

- --source-dir given: that directory's IDX files (or, for notMNIST, its
  archives/folders); else the entry's default source when it exists (Debian's
  Fashion-MNIST files; the notMNIST sample shipped in the package); else the
  TFDS catalogue when the entry has one.
- class names: the entry's, or the source directory's labels.txt where the
  entry reads it.
"""

from __future__ import annotations

import dataclasses
import logging
import pathlib
import socket
import typing
import urllib.parse

import tensorflow_datasets as tfds

from tf_mlp import layout
from tf_mlp.contract import NUM_CLASSES
from tf_mlp.data import catalog, idx_builder, local_builder, notmnist_builder
from tf_mlp.errors import DataError

if typing.TYPE_CHECKING:
    from tf_mlp.config import DataConfig

log = logging.getLogger(__name__)

_IDX_NAMES = "train-images-idx3-ubyte.gz and friends, or images-idx3-ubyte.gz + labels-idx1-ubyte.gz"


@dataclasses.dataclass
class Source:
    """A prepared builder and what the loader needs to know about it."""

    builder: tfds.core.DatasetBuilder
    class_names: tuple[str, ...]
    description: str
    """For logs and errors: e.g. "IDX files in /usr/share/datasets/fashion-mnist"."""


def open_source(config: DataConfig) -> Source:
    """The prepared source of ``config.name``; DataError when it cannot be had."""
    data_set = catalog.CATALOG.get(config.name)
    if data_set is None:
        raise DataError(f"unknown data set {config.name!r}; choose one of {', '.join(catalog.DATA_SETS)}")
    source_dir = _checked_directory(config.source_dir) if config.source_dir else None

    if source_dir is None and data_set.default_source is not None:
        if data_set.default_source_required and not idx_builder.find_idx_files(data_set.default_source):
            raise DataError(f"the packaged {config.name} sample is missing from {data_set.default_source} "
                            "(a broken install?); reinstall tf-mlp or pass --source-dir")
        if data_set.default_source.is_dir():
            source = _idx_source(data_set.default_source, config, data_set)
            if data_set.default_source_required:
                source.description = f"the {config.name} sample shipped with tf-mlp"
            return source
    if source_dir is None:
        if data_set.catalogue_remedy:
            return _catalogue(config, data_set)
        raise DataError(f"data set {config.name!r} needs --source-dir (a directory of {data_set.source_kinds})")
    if data_set.archives and notmnist_builder.find_sources(source_dir):
        builder = local_builder.prepare(notmnist_builder.NotmnistArchives, source_dir, config.data_dir)
        return Source(builder, data_set.class_names, f"notMNIST PNG archives in {source_dir}")
    return _idx_source(source_dir, config, data_set)


def _idx_source(source_dir: pathlib.Path, config: DataConfig, data_set: catalog.DataSet) -> Source:
    if not idx_builder.find_idx_files(source_dir):
        raise DataError(f"{source_dir}: no {data_set.source_kinds} found (expected {_IDX_NAMES})")
    builder = local_builder.prepare(idx_builder.IdxImages, source_dir, config.data_dir)
    class_names = (_class_names_file(source_dir, data_set.class_names) if data_set.labels_from_source
                   else data_set.class_names)
    return Source(builder, class_names, f"IDX files in {source_dir}")


def _catalogue(config: DataConfig, data_set: catalog.DataSet) -> Source:
    """A data set from TFDS's own catalogue, downloaded on first use."""
    remedy = data_set.catalogue_remedy
    try:
        builder = tfds.builder(config.name, data_dir=config.data_dir)
    except Exception as error:  # TFDS raises many types here; any of them means "not available"
        raise DataError(f"TFDS cannot provide {config.name!r} ({error}); {remedy}") from None
    if not builder.is_prepared():
        # Offline, TFDS retries each download ten times with exponential
        # backoff (about 3.5 minutes) before failing; one quick connection
        # attempt tells the user the same thing at once.
        host = urllib.parse.urlparse(getattr(builder, "URL", "") or "").hostname
        if host and not _reachable(host):
            raise DataError(
                f"{config.name} is not prepared in the TFDS data dir and {host} "
                f"cannot be reached to download it; {remedy}"
            )
        try:
            builder.download_and_prepare(download_config=tfds.download.DownloadConfig(try_download_gcs=False))
        except Exception as error:  # network and archive errors of every kind end up here
            raise DataError(
                f"downloading {config.name} through TFDS failed ({type(error).__name__}); {remedy}"
            ) from None
    return Source(builder, data_set.class_names, f"TFDS catalogue data set {config.name}")


def _reachable(host: str, timeout: float = 5.0) -> bool:
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


def _checked_directory(path: str) -> pathlib.Path:
    directory = pathlib.Path(path).expanduser()
    if not directory.exists():
        raise DataError(f"{directory}: source directory does not exist")
    if not directory.is_dir():
        raise DataError(f"{directory}: source directory is not a directory")
    if not any(directory.iterdir()):
        raise DataError(f"{directory}: source directory is empty")
    return directory


def _class_names_file(source_dir: pathlib.Path, default: tuple[str, ...]) -> tuple[str, ...]:
    """Names from ``labels.txt`` (one per line, class id order), else ``default``."""
    path = layout.labels_path(source_dir)
    if not path.is_file():
        return default
    names = tuple(line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip())
    if len(names) != NUM_CLASSES:
        raise DataError(f"{path}: has {len(names)} class names (expected {NUM_CLASSES}, one per line)")
    return names
