"""Every data set tf-mlp trains on, in one table: its name, class names, default source and split policy.

Adding a data set is an entry here (and its test): the --data choices, the
config check, the source lookup (tf_mlp/data/sources.py) and the split
policy (tf_mlp/data/__init__.py) all read this table. This module imports
nothing heavy, so the command line can list the choices without TensorFlow.
"""

from __future__ import annotations

import dataclasses
import pathlib

VALIDATION_FROM_TRAIN = "validation_from_train"
"""The test split kept whole, validation drawn from train (a stratified test hold-out when the source has no test
split)."""
COURSE_SIZES = "course_sizes"
"""notMNIST's: validation and train drawn from the large archive, test from the small one (train_size, test_size)."""

DIGITS = tuple(str(digit) for digit in range(10))

DEBIAN_FASHION_MNIST = pathlib.Path("/usr/share/datasets/fashion-mnist")
"""Where Debian's dataset-fashion-mnist package installs the four IDX files."""

PACKAGED_NOTMNIST = pathlib.Path(__file__).resolve().parent / "notmnist_sample"
"""The notMNIST sample's IDX pair shipped as package data (see its README.md for source and licence)."""

IDX_FILES = "IDX files"


@dataclasses.dataclass(frozen=True)
class DataSet:
    """One data set: where its images come from and what its classes are called."""

    name: str
    class_names: tuple[str, ...]
    """Class id order; a labels.txt in the source directory replaces them when labels_from_source is set."""
    labels_from_source: bool = False
    """Read the class names from the source directory's labels.txt (one per line) when it has one."""
    default_source: pathlib.Path | None = None
    """Used without --source-dir when it exists."""
    default_source_required: bool = False
    """The default source ships with tf-mlp: its absence is a broken install, not a reason to download."""
    catalogue_remedy: str | None = None
    """Without a local source, download the TFDS catalogue data set of this name; the text says what else to do."""
    archives: bool = False
    """The source directory may also hold notMNIST PNG archives or extracted A..J folders."""
    source_kinds: str = IDX_FILES
    """What --source-dir must hold, for error messages."""
    split_policy: str = VALIDATION_FROM_TRAIN


CATALOG: dict[str, DataSet] = {data_set.name: data_set for data_set in (
    DataSet(
        "fashion_mnist",
        ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
        default_source=DEBIAN_FASHION_MNIST,
        catalogue_remedy="install Debian's dataset-fashion-mnist package or pass --source-dir with the IDX files",
    ),
    DataSet("mnist", DIGITS, catalogue_remedy="pass --source-dir with the MNIST IDX files"),
    DataSet(
        "notmnist", tuple("ABCDEFGHIJ"), default_source=PACKAGED_NOTMNIST, default_source_required=True, archives=True,
        source_kinds="notMNIST archives (notMNIST_large.tar.gz, notMNIST_small.tar.gz), extracted A..J folders or "
                     "IDX files",
        split_policy=COURSE_SIZES,
    ),
    DataSet("idx", DIGITS, labels_from_source=True),
    # Kuzushiji-MNIST, from the IDX files its authors distribute (train-images-idx3-ubyte.gz and friends):
    # ten cursive hiragana, named by their romanisation unless the directory's labels.txt names them.
    DataSet("kmnist", ("o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"), labels_from_source=True),
)}

DATA_SETS = tuple(CATALOG)
"""Names accepted as DataConfig.name and by --data."""
