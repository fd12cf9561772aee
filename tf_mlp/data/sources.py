"""Which TFDS builder serves a DataConfig, prepared and ready to read.

- fashion_mnist: Debian's dataset-fashion-mnist files when installed (no
  network needed), else the TFDS catalogue; with --source-dir, that directory.
- mnist: the TFDS catalogue, or the IDX files of --source-dir.
- notmnist: --source-dir with the notMNIST archives/folders, or IDX files;
  without it, the 8,000-image sample shipped in the package
  (tf_mlp/data/notmnist_sample: IDX pair, MIT licence, attribution).
- idx: any directory of IDX files; class names from its labels.txt if present.
"""

from __future__ import annotations

import dataclasses
import logging
import pathlib
import socket
import urllib.parse

import tensorflow_datasets as tfds

from tf_mlp.config import DATA_SETS, DataConfig
from tf_mlp.contract import CLASS_NAMES, NUM_CLASSES
from tf_mlp.data import idx_builder, local_builder, notmnist_builder
from tf_mlp.errors import DataError

log = logging.getLogger(__name__)

DEBIAN_FASHION_MNIST = pathlib.Path("/usr/share/datasets/fashion-mnist")
"""Where Debian's dataset-fashion-mnist package installs the four IDX files."""

PACKAGED_NOTMNIST = pathlib.Path(__file__).resolve().parent / "notmnist_sample"
"""The notMNIST sample's IDX pair shipped as package data (see its README.md for source and licence)."""

LABELS_FILE = "labels.txt"
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
    if config.name not in DATA_SETS:
        raise DataError(f"unknown data set {config.name!r}; choose one of {', '.join(DATA_SETS)}")
    source_dir = _checked_directory(config.source_dir) if config.source_dir else None

    if config.name == "fashion_mnist":
        if source_dir is None and DEBIAN_FASHION_MNIST.is_dir():
            source_dir = DEBIAN_FASHION_MNIST
        if source_dir is None:
            return _catalogue(
                config, "install Debian's dataset-fashion-mnist package or pass --source-dir with the IDX files"
            )
        return _idx_source(source_dir, config, CLASS_NAMES["fashion_mnist"])

    if config.name == "mnist":
        if source_dir is None:
            return _catalogue(config, "pass --source-dir with the MNIST IDX files")
        return _idx_source(source_dir, config, CLASS_NAMES["mnist"])

    if config.name == "notmnist" and source_dir is None:
        if not idx_builder.find_idx_files(PACKAGED_NOTMNIST):
            raise DataError(f"the packaged notMNIST sample is missing from {PACKAGED_NOTMNIST} (a broken install?); "
                            f"reinstall tf-mlp or pass --source-dir")
        builder = local_builder.prepare(idx_builder.IdxImages, PACKAGED_NOTMNIST, config.data_dir)
        return Source(builder, CLASS_NAMES["notmnist"], "the notMNIST sample shipped with tf-mlp")
    if source_dir is None:
        raise DataError(f"data set {config.name!r} needs --source-dir (a directory of {_what(config.name)})")
    if config.name == "notmnist":
        if notmnist_builder.find_sources(source_dir):
            builder = local_builder.prepare(notmnist_builder.NotmnistArchives, source_dir, config.data_dir)
            return Source(builder, CLASS_NAMES["notmnist"], f"notMNIST PNG archives in {source_dir}")
        return _idx_source(source_dir, config, CLASS_NAMES["notmnist"])
    return _idx_source(source_dir, config, _class_names_file(source_dir))


def _idx_source(source_dir: pathlib.Path, config: DataConfig, class_names: tuple[str, ...]) -> Source:
    if not idx_builder.find_idx_files(source_dir):
        raise DataError(f"{source_dir}: no {_what(config.name)} found (expected {_IDX_NAMES})")
    builder = local_builder.prepare(idx_builder.IdxImages, source_dir, config.data_dir)
    return Source(builder, class_names, f"IDX files in {source_dir}")


def _catalogue(config: DataConfig, remedy: str) -> Source:
    """A data set from TFDS's own catalogue, downloaded on first use."""
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
    return Source(builder, CLASS_NAMES[config.name], f"TFDS catalogue data set {config.name}")


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


def _class_names_file(source_dir: pathlib.Path) -> tuple[str, ...]:
    """Names from ``labels.txt`` (one per line, class id order), else "0".."9"."""
    path = source_dir / LABELS_FILE
    if not path.is_file():
        return CLASS_NAMES["mnist"]
    names = tuple(line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip())
    if len(names) != NUM_CLASSES:
        raise DataError(f"{path}: has {len(names)} class names (expected {NUM_CLASSES}, one per line)")
    return names


def _what(name: str) -> str:
    if name == "notmnist":
        return "notMNIST archives (notMNIST_large.tar.gz, notMNIST_small.tar.gz), extracted A..J folders or IDX files"
    return "IDX files"
