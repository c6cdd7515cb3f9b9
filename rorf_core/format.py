"""The safe router format: a directory with JSON metadata and array files.

Layout::

    router.json          format name and version, models, embedder, scorer,
                         label scheme, decision rule, n-gram model settings,
                         calibration, training
    scorer.safetensors   the fitted scorer's arrays, and the n-gram model's
                         arrays (names starting with "lexical.")

Reading never executes code from the files: JSON is parsed with ``json`` and
arrays are read with safetensors. Writing goes to a temporary sibling
directory that replaces the target in one rename, so a crash leaves the old
router or no router, never a half-written one.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from rorf_core.errors import RouterFormatError, RouterNotFoundError

logger = logging.getLogger(__name__)

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "METADATA_FILE",
    "ARRAYS_FILE",
    "write_router_dir",
    "read_router_dir",
    "check_version",
]

FORMAT_NAME = "rorf-router"
#: major.minor; a reader accepts any minor version of its own major version.
#: 2.0 added the n-gram model ("lexical" and the lexical.* arrays), which a
#: 1.x reader would reject as unknown arrays.
FORMAT_VERSION = "2.0"
#: The oldest major version still read: a 1.x file is a router without an
#: n-gram model.
OLDEST_MAJOR = 1
METADATA_FILE = "router.json"
ARRAYS_FILE = "scorer.safetensors"
REQUIRED_KEYS = ("format", "format_version", "model_a", "model_b", "embedder", "scorer")


def write_router_dir(
    path: str | os.PathLike[str],
    metadata: dict[str, Any],
    arrays: dict[str, np.ndarray],
    extra_files: dict[str, bytes] | None = None,
) -> Path:
    """Write a router directory atomically and return its path."""
    from safetensors.numpy import save_file

    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        document = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, **metadata}
        text = json.dumps(document, indent=2, sort_keys=False, allow_nan=False)
        (staging / METADATA_FILE).write_text(text + "\n", encoding="utf-8")
        # np.ascontiguousarray would turn a 0-d array into shape (1,).
        contiguous = {name: np.asarray(array, order="C") for name, array in arrays.items()}
        save_file(contiguous, str(staging / ARRAYS_FILE))
        for name, content in (extra_files or {}).items():
            (staging / name).write_bytes(content)
        _fsync_dir_files(staging)
        _replace_dir(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    logger.info("saved router to %s", target)
    return target


def _fsync_dir_files(directory: Path) -> None:
    # mkdtemp makes the directory private (0700), and safetensors may write
    # 0600 files, so both get the permissions of the user's umask instead.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(directory, 0o777 & ~umask)
    for file in directory.iterdir():
        os.chmod(file, 0o666 & ~umask)
        with open(file, "rb") as handle:
            os.fsync(handle.fileno())


def _replace_dir(staging: Path, target: Path) -> None:
    # rename() cannot replace a non-empty directory, so the old router is
    # moved aside first; between the two renames only the old copy exists.
    if not target.exists():
        os.replace(staging, target)
        return
    if not (target / METADATA_FILE).is_file() and any(target.iterdir()):
        raise RouterFormatError(
            f"refusing to overwrite {str(target)!r}: it is a non-empty directory "
            f"without {METADATA_FILE}, so it does not look like a router"
        )
    backup = Path(tempfile.mkdtemp(prefix=f".{target.name}.old.", dir=target.parent))
    os.rmdir(backup)
    os.replace(target, backup)
    try:
        os.replace(staging, target)
    except BaseException:
        os.replace(backup, target)
        raise
    shutil.rmtree(backup, ignore_errors=True)


def check_version(version: Any, path: Path) -> None:
    """Raise unless ``version`` is a format version this reader understands."""
    try:
        major, minor = (int(part) for part in str(version).split("."))
    except ValueError:
        raise RouterFormatError(
            f"router {str(path)!r} has an invalid format_version {version!r}"
        ) from None
    supported_major = int(FORMAT_VERSION.split(".")[0])
    if major > supported_major:
        raise RouterFormatError(
            f"router {str(path)!r} uses format version {version}, newer than this "
            f"rorf-core reads ({FORMAT_VERSION}); upgrade rorf-core "
            "(pip install -U rorf-core)"
        )
    if major < OLDEST_MAJOR:
        raise RouterFormatError(
            f"router {str(path)!r} uses format version {version}, which this "
            f"rorf-core no longer reads (it reads {OLDEST_MAJOR}.x to {supported_major}.x)"
        )


def read_router_dir(path: str | os.PathLike[str]) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Read and check a router directory, returning its metadata and arrays."""
    directory = Path(path)
    if not directory.is_dir():
        raise RouterNotFoundError(f"router directory {str(directory)!r} does not exist")
    metadata_path = directory / METADATA_FILE
    arrays_path = directory / ARRAYS_FILE
    for required in (metadata_path, arrays_path):
        if not required.is_file():
            raise RouterNotFoundError(
                f"router directory {str(directory)!r} is missing {required.name}; "
                "it may be a legacy RoRF router (classifier.pkl) or an incomplete copy"
            )
    metadata = _read_metadata(metadata_path)
    return metadata, _read_arrays(arrays_path)


def _read_metadata(path: Path) -> dict[str, Any]:
    try:
        metadata = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise RouterFormatError(f"{str(path)!r} is not valid JSON: {error}") from error
    if not isinstance(metadata, dict):
        raise RouterFormatError(f"{str(path)!r} must hold a JSON object")
    if metadata.get("format") != FORMAT_NAME:
        raise RouterFormatError(
            f"{str(path)!r} is not a RoRF router: 'format' is "
            f"{metadata.get('format')!r}, expected {FORMAT_NAME!r}"
        )
    check_version(metadata.get("format_version"), path.parent)
    missing = [key for key in REQUIRED_KEYS if key not in metadata]
    if missing:
        raise RouterFormatError(f"{str(path)!r} is missing required keys: {', '.join(missing)}")
    return metadata


def _read_arrays(path: Path) -> dict[str, np.ndarray]:
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as error:
        raise RouterFormatError(
            f"{str(path)!r} is truncated or corrupt ({error}); save or download the router again"
        ) from error
