"""A TFDS builder over the original notMNIST archives of PNG files.

notMNIST (Yaroslav Bulatov) ships as ``notMNIST_large.tar.gz`` (~530,000
images) and ``notMNIST_small.tar.gz`` (~18,700), each holding
``notMNIST_<size>/<Letter>/<name>.png`` for the letters A-J. The builder
reads the PNGs straight out of the archives (streaming, nothing is extracted)
or from already extracted folders. Split ``train`` comes from the large
archive and ``test`` from the small one; a directory with a single archive or
folder, of any name, gives only ``train``.

The real archives contain unreadable and zero-byte PNGs. They are skipped,
counted per split and reason, logged, and stored in the prepared data's
metadata (``skipped_files``), so loading later still reports them.
"""

from __future__ import annotations

import io
import logging
import pathlib
import tarfile
from collections import Counter

import numpy as np
import PIL.Image
import tensorflow_datasets as tfds

from tf_mlp.contract import IMAGE_SIZE
from tf_mlp.data import catalog, local_builder
from tf_mlp.errors import DataError

log = logging.getLogger(__name__)

LETTERS = catalog.CATALOG["notmnist"].class_names
_ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar")
# What a damaged PNG makes Pillow raise: OSError covers UnidentifiedImageError
# and truncated or broken streams; Pillow reports some malformed chunks as
# SyntaxError and impossible sizes as ValueError.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError)


def find_sources(directory: pathlib.Path) -> dict[str, pathlib.Path]:
    """Map split -> archive or extracted folder of notMNIST PNGs in ``directory``.

    Empty when there is none. ``directory`` may itself be an extracted folder
    (holding A..J). When an archive and its extracted folder are both present
    the archive wins: it is the complete original, the folder may be a
    half-finished extraction.
    """
    if _is_letter_folder(directory):
        return {"train": directory}
    by_stem: dict[str, pathlib.Path] = {}
    for entry in sorted(directory.iterdir()):
        # Archives count by name: a damaged one should fail loudly when read,
        # not be passed over as if it were not there.
        if entry.is_file() and entry.name.lower().endswith(_ARCHIVE_SUFFIXES):
            by_stem[_stem(entry.name)] = entry
        elif entry.is_dir() and _is_letter_folder(entry):
            by_stem.setdefault(entry.name, entry)
    sources = list(by_stem.values())
    if len(sources) <= 1:
        return {"train": sources[0]} if sources else {}
    large = [source for source in sources if "large" in source.name.lower()]
    small = [source for source in sources if "small" in source.name.lower()]
    if len(large) == 1 and len(small) == 1 and len(sources) == 2:
        return {"train": large[0], "test": small[0]}
    names = ", ".join(source.name for source in sources)
    raise DataError(
        f"{directory}: found several notMNIST sources ({names}); expected notMNIST_large "
        "and/or notMNIST_small (archive or folder), or a single archive"
    )


def decode_png(data: bytes) -> np.ndarray | str:
    """The 28x28 uint8 pixels of a PNG, or the reason it cannot be used."""
    if not data:
        return "zero-byte"
    try:
        with PIL.Image.open(io.BytesIO(data)) as image:
            image.load()  # decode now: a truncated file fails here, not later
            if image.mode != "L":
                image = image.convert("L")
            pixels = np.asarray(image, dtype=np.uint8)
    except _DECODE_ERRORS:
        return "unreadable"
    if pixels.shape != (IMAGE_SIZE, IMAGE_SIZE):
        return "wrong size"
    return pixels


def iterate_pngs(source: pathlib.Path):
    """Yield (member name, letter folder, PNG bytes) from an archive or folder, in a stable order."""
    if source.is_dir():
        for path in sorted(source.rglob("*")):
            if path.suffix.lower() == ".png" and path.is_file():
                yield str(path.relative_to(source)), path.parent.name, path.read_bytes()
        return
    try:
        # "r|*" streams the archive (any compression) without random access or extraction.
        with tarfile.open(source, mode="r|*") as archive:
            for member in archive:
                if member.isfile() and member.name.lower().endswith(".png"):
                    stream = archive.extractfile(member)
                    data = stream.read() if stream is not None else b""
                    yield member.name, pathlib.PurePosixPath(member.name).parent.name, data
    except (tarfile.TarError, EOFError, OSError) as error:
        raise DataError(f"{source}: corrupt or truncated archive ({error})") from None


class NotmnistArchives(local_builder.LocalSourceBuilder, skip_registration=True):
    """notMNIST letters A-J (28x28 uint8) from the original archives of PNG files."""

    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        "Put notMNIST_large.tar.gz and/or notMNIST_small.tar.gz (or their extracted "
        "notMNIST_large/ and notMNIST_small/ folders of A..J) in the manual directory."
    )

    @classmethod
    def source_files(cls, directory: pathlib.Path) -> list[pathlib.Path]:
        return sorted(find_sources(directory).values())

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        directory = pathlib.Path(dl_manager.manual_dir)
        sources = find_sources(directory)
        if not sources:
            raise DataError(
                f"{directory}: no notMNIST archive (notMNIST_large.tar.gz, notMNIST_small.tar.gz) or folder of A..J"
            )
        self._record_source(directory)
        return {split: self._generate_examples(split, source) for split, source in sources.items()}

    def _generate_examples(self, split: str, source: pathlib.Path):
        skipped = Counter()
        key = 0
        for name, folder, data in iterate_pngs(source):
            if folder not in LETTERS:
                skipped["not in a folder A-J"] += 1
                continue
            pixels = decode_png(data)
            if isinstance(pixels, str):
                skipped[pixels] += 1
                log.debug("%s: skipping %s (%s)", source, name, pixels)
                continue
            yield key, {"image": pixels, "label": LETTERS.index(folder)}
            key += 1
        if key == 0:
            raise DataError(f"{source}: no readable PNG in folders A..J")
        # Runs once TFDS has drained the generator, before it writes the
        # metadata, so the counts are saved with the prepared data.
        self.info.metadata[local_builder.SKIPPED_KEY][split] = {"total": sum(skipped.values()), **skipped}
        if skipped:
            reasons = ", ".join(f"{count} {reason}" for reason, count in sorted(skipped.items()))
            log.warning("%s: skipped %d unusable PNG files (%s)", source, sum(skipped.values()), reasons)


def _is_letter_folder(directory: pathlib.Path) -> bool:
    try:
        return any((directory / letter).is_dir() for letter in LETTERS)
    except OSError:
        return False


def _stem(name: str) -> str:
    lowered = name.lower()
    for suffix in _ARCHIVE_SUFFIXES:
        if lowered.endswith(suffix):
            return name[: -len(suffix)]
    return name
