"""Errors users can act on, atomic file writes and deterministic array files."""

from __future__ import annotations

import contextlib
import glob
import hashlib
import os
import tempfile
import warnings
import zipfile
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np


class HygieError(Exception):
    """A problem with the user's input or setup; the message names the file and the fix."""


class HygieWarning(UserWarning):
    """Something the user should know (the work goes on); printed as one `warning:` line."""


def one_line_warnings() -> None:
    """Show HygieWarnings as `warning: message` on stderr, without source lines."""
    warnings.formatwarning = lambda message, category, *_, **__: f"warning: {message}\n"
    warnings.simplefilter("always", HygieWarning)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temp path beside `path` (same suffix); rename it onto `path` only if the block succeeds.

    The temp name carries the writer's PID, so leftovers of a killed run (kill -9 leaves no chance to clean up)
    are removed by the next write of the same output.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temps(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.{os.getpid()}.", suffix=f".tmp{path.suffix}", dir=path.parent)
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


def _remove_stale_temps(path: Path) -> None:
    """Delete temp files of `path` left by writers that are no longer running."""
    for old in path.parent.glob(f".{glob.escape(path.stem)}.*.tmp{glob.escape(path.suffix)}"):
        pid = old.name[len(path.stem) + 2 :].split(".", 1)[0]
        if pid.isdigit() and not _running(int(pid)):
            old.unlink(missing_ok=True)


def _running(pid: int) -> bool:
    """Whether a process with this PID exists."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def check_output(path: str | os.PathLike, *, suffixes: Iterable[str], inputs: Iterable[str | os.PathLike] = ()) -> Path:
    """Return `path` if a file can be written there; else a HygieError, before any work is done.

    Refused: a suffix not in `suffixes` (what is written must match the name), an existing directory, a path
    under a file, a folder that cannot be written, and any of `inputs` (another spelling of the same file too).
    """
    path = Path(path)
    suffixes = [s.lower() for s in suffixes]
    if path.suffix.lower() not in suffixes:
        raise HygieError(
            f"{path}: this output is written as {' or '.join(suffixes)}; name it so (e.g. {path.stem}{suffixes[0]})."
        )
    if path.is_dir():
        raise HygieError(f"{path}: is a directory; give a file name (e.g. {path / ('out' + suffixes[0])}).")
    for source in inputs:
        if path.exists() and Path(source).exists() and os.path.samefile(path, source):
            raise HygieError(
                f"{path}: is also an input ({source}); writing it would destroy it. Choose another output."
            )
    check_folder(path.parent, path)
    return path


def check_folder(folder: str | os.PathLike, target: str | os.PathLike | None = None) -> Path:
    """Return `folder` if files can be created in it (or in the folders that will be made for it); else a HygieError."""
    folder = Path(folder)
    target = folder if target is None else target
    existing = folder
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise HygieError(f"{target}: {existing} is a file, not a folder. Choose another path.")
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as e:
        raise HygieError(f"{target}: cannot write in {existing} ({e.strerror}). Choose a writable folder.") from e
    return folder


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
