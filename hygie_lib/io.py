"""Errors users can act on, atomic file writes and deterministic array files."""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
import zipfile
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np


class HygieError(Exception):
    """A problem with the user's input or setup; the message names the file and the fix."""


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temp path beside `path` (same suffix); rename it onto `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    umask = os.umask(0)
    os.umask(umask)
    tmp.chmod(0o666 & ~umask)  # mkstemp makes 0600 files; outputs get the usual permissions
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def save_npz(path: str | os.PathLike, **arrays: np.ndarray) -> None:
    """Write an uncompressed .npz atomically with fixed zip timestamps, so equal arrays give equal bytes."""
    with atomic_path(path) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
        for name, array in arrays.items():
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            with zf.open(info, "w", force_zip64=True) as f:
                np.lib.format.write_array(f, np.asanyarray(array), allow_pickle=False)


def fingerprint(path: str | os.PathLike) -> str:
    """The MD5 of a file's content (what DVC hashes too): tells whether a prepared file still matches its source."""
    digest = hashlib.md5()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def check_choice(name: str, value: str, choices: Iterable[str]) -> str:
    """Return `value` if it is one of `choices`, else raise a HygieError naming the setting and the valid values."""
    choices = list(choices)
    if value not in choices:
        raise HygieError(f"{name}: {value!r} is not one of {', '.join(choices)}.")
    return value


def require_file(path: str | os.PathLike, what: str, fix: str) -> Path:
    """Return `path` if it is an existing file, else raise a HygieError saying what it should be."""
    path = Path(path)
    if not path.is_file():
        raise HygieError(f"{path}: {what} not found. {fix}")
    return path
