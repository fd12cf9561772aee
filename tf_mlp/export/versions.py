"""Version directories under an export base, published atomically.

    <export_base>/tf_mlp/<version>/     one SavedModel per integer version

TensorFlow Serving polls <export_base>/tf_mlp and loads every child whose
name is a number. So a version is first written and verified in a staging
directory beside it whose name is not a number (`.export-<version>-<random>`,
ignored by the server), then renamed to `<version>` in one step: a server
never sees half a model. Staging is on the same file system as the version,
which is what makes the rename atomic. A crash before the rename leaves at
most a staging directory, never a numeric one; a later export ignores it.

Replacing an existing version (`overwrite=True`) swaps the two directories
with one renameat2(RENAME_EXCHANGE) call on Linux, so the version path never
disappears; where that call is unavailable the old directory is renamed
aside and the new one renamed in immediately after (a gap of two system
calls). The old contents are deleted only after the swap. A server that
already loaded that version number keeps serving the old model until it is
restarted: TensorFlow Serving does not reload a version it already serves.

Pruning keeps the newest N versions by number (plus the one just exported,
if it was given an older number); each removed version is first renamed to
a non-numeric name, so it vanishes from the server's view at once.
"""

from __future__ import annotations

import ctypes
import errno
import os
import pathlib
import shutil
import tempfile

from tf_mlp import contract, layout
from tf_mlp.errors import ExportError

STAGING_PREFIX = ".export-"
RETIRED_PREFIX = ".retired-"


def model_dir(export_base) -> pathlib.Path:
    """<export_base>/tf_mlp: the directory TensorFlow Serving's base_path points at."""
    return pathlib.Path(export_base) / contract.MODEL_NAME


def version_dir(export_base, version: int) -> pathlib.Path:
    return model_dir(export_base) / str(version)


def list_versions(export_base) -> list[int]:
    """Published versions, ascending; staging and retired directories are not versions."""
    return list(layout.version_dirs(model_dir(export_base)))


def next_version(export_base) -> int:
    """One more than the highest published version; 1 for an empty base."""
    versions = list_versions(export_base)
    return versions[-1] + 1 if versions else 1


def check_version(version) -> int:
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ExportError(f"version must be a positive integer, got {version!r}")
    return version


def check_keep(keep) -> int | None:
    if keep is not None and (isinstance(keep, bool) or not isinstance(keep, int) or keep < 1):
        raise ExportError(f"keep must be a positive number of versions, got {keep!r}")
    return keep


def check_can_publish(export_base, version: int, overwrite: bool) -> None:
    """Fail early, before any work, if the version exists and may not be replaced."""
    if version_dir(export_base, version).exists() and not overwrite:
        raise ExportError(
            f"version {version} already exists in {model_dir(export_base)}; pass --overwrite to replace it"
        )


def make_staging_dir(export_base, version: int) -> pathlib.Path:
    """A new empty directory beside the versions, whose name is not a number."""
    directory = model_dir(export_base)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        return pathlib.Path(tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}{version}-", dir=directory))
    except OSError as error:
        raise ExportError(f"cannot write to export base {export_base}: {error.strerror or error}") from None


def publish(staging: pathlib.Path, export_base, version: int, *, overwrite: bool) -> pathlib.Path:
    """Rename the fully written staging directory to <version>, atomically."""
    target = version_dir(export_base, version)
    if not target.exists():
        try:
            # rename(2) on one file system is atomic: a server polling the
            # base path sees no version <version> or all of it, never half.
            # On Linux, rename onto an existing non-empty directory fails, so
            # a concurrent export that took the same number is never clobbered.
            os.rename(staging, target)
        except OSError as error:
            raise ExportError(f"cannot publish version {version} at {target}: {error.strerror or error}") from None
        return target
    check_can_publish(export_base, version, overwrite)  # it exists: only replaced with overwrite
    _replace(staging, target)
    return target


def _replace(staging: pathlib.Path, target: pathlib.Path) -> None:
    """Put staging at target, and delete what target held before."""
    try:
        if _exchange(staging, target):
            # staging now holds the old version.
            shutil.rmtree(staging, ignore_errors=True)
            return
        retired = target.with_name(f"{RETIRED_PREFIX}{target.name}-{os.getpid()}")
        os.rename(target, retired)
        try:
            os.rename(staging, target)
        except OSError:
            os.rename(retired, target)  # put the old version back
            raise
        shutil.rmtree(retired, ignore_errors=True)
    except OSError as error:
        raise ExportError(f"cannot replace version at {target}: {error.strerror or error}") from None


def _exchange(first: pathlib.Path, second: pathlib.Path) -> bool:
    """Swap two paths in one step (Linux renameat2 RENAME_EXCHANGE); False where unsupported."""
    renameat2 = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
    if renameat2 is None:
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    here, exchange = -100, 2  # AT_FDCWD (<fcntl.h>), RENAME_EXCHANGE (<linux/fs.h>)
    if renameat2(here, os.fsencode(first), here, os.fsencode(second), exchange) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
        return False  # old kernel or a file system without exchange
    raise OSError(code, os.strerror(code), str(second))


def discard(directory: pathlib.Path) -> None:
    """Remove a staging directory after a failed export."""
    shutil.rmtree(directory, ignore_errors=True)


def prune(export_base, keep: int, *, protect: tuple[int, ...] = ()) -> list[int]:
    """Delete all but the newest `keep` versions (never those in protect); return the deleted ones."""
    check_keep(keep)
    versions = list_versions(export_base)
    kept = set(versions[-keep:]) | set(protect)
    removed = []
    for version in versions:
        if version in kept:
            continue
        path = version_dir(export_base, version)
        retired = path.with_name(f"{RETIRED_PREFIX}{version}-{os.getpid()}")
        try:
            os.rename(path, retired)
        except OSError as error:
            raise ExportError(f"cannot remove old version {path}: {error.strerror or error}") from None
        shutil.rmtree(retired, ignore_errors=True)
        removed.append(version)
    return removed
