"""Atomic files: a reader sees the old file or the new one, never half of one.

Every file tabrl writes goes to a temporary name in the same folder, is synced to disk and renamed
over the target (``os.replace`` is atomic on POSIX), and the folder is synced so that the rename
survives a power cut. A full disk or a read-only filesystem is one line of error, the old file
kept. Arrays are stored as ``.npz`` and read back with ``allow_pickle=False``: a file handed in by
a user is never unpickled. A run folder has one writer at a time (:func:`folder_lock`).
"""

from __future__ import annotations

import fcntl
import io
import json
import math
import os
import stat
import struct
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from tabrl.errors import RunFolderError

LOCK = ".lock"  #: the lock file of a run folder; it holds the pid of the writer


class DiskWriteError(RunFolderError):
    """A file could not be written (full disk, read-only filesystem, no permission)."""


@contextmanager
def writing(target: str | os.PathLike) -> Iterator[None]:
    """Turn an ``OSError`` while writing ``target`` into one line naming the file and the cause."""
    try:
        yield
    except OSError as error:
        raise DiskWriteError(f"cannot write {target} ({error.strerror or error})") from None


def fsync_folder(path: str | os.PathLike) -> None:
    """Sync a folder's entries (renames, new files) to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a synced temporary file, a rename and a folder sync."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with writing(path):
            with open(tmp, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
            fsync_folder(path.parent)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    return atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode())


def atomic_save_npz(path: str | os.PathLike, compress: bool = True, **arrays: np.ndarray) -> Path:
    buffer = io.BytesIO()
    (np.savez_compressed if compress else np.savez)(buffer, **arrays)
    return atomic_write_bytes(path, buffer.getvalue())


#: Files tabrl reads are small: a config or an evaluation is a few kilobytes, and no array of a
#: run (a Q-table of 2**22 states, 500 million episodes of one metric) reaches 4 GiB.
MAX_JSON_BYTES = 16 << 20
MAX_ARRAY_BYTES = 4 << 30
MAX_ARCHIVE_MEMBERS = 64
#: What a damaged archive can raise while it is read (bad zip directory, bad deflate stream,
#: bad CRC, a header that does not parse, a member cut short).
_DAMAGED = (zipfile.BadZipFile, zlib.error, ValueError, OSError, EOFError, KeyError,
            struct.error, UnicodeDecodeError, SyntaxError, NotImplementedError, TypeError,
            OverflowError)


def regular_file(path: str | os.PathLike, what: str) -> Path:
    """``path`` if it is a regular file inside its own folder, else a one-line error.

    Checked with ``stat`` before anything opens it: a FIFO would block a reader forever and a
    device could be endless, and a symbolic link out of the folder would read someone else's file.
    """
    path = Path(path)
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise RunFolderError(f"{path} is missing: {what} cannot be read") from None
    except OSError as error:
        raise unreadable(path, what, error) from None
    if not path.resolve().is_relative_to(path.parent.resolve()):
        raise RunFolderError(f"{path} is a link out of its folder: {what} must be a file of the "
                             "folder itself")
    if not stat.S_ISREG(mode):
        raise RunFolderError(f"{path} is not a regular file (a FIFO, a device or a folder): "
                             f"{what} must be a plain file")
    return path


def read_bytes(path: str | os.PathLike, what: str, max_bytes: int) -> bytes:
    """The content of a regular file of at most ``max_bytes``, or a one-line error."""
    path = regular_file(path, what)
    size = path.stat().st_size
    if size > max_bytes:
        raise RunFolderError(f"{path} holds {size:,} bytes, more than {what} ever takes "
                             f"({max_bytes:,}): it is not a tabrl file")
    try:
        return path.read_bytes()
    except OSError as error:
        raise unreadable(path, what, error) from None


def unreadable(path: Path, what: str, error: OSError) -> RunFolderError:
    """The one-line error of a file the system refuses to read (permissions, I/O)."""
    return RunFolderError(f"cannot read {path} ({error.strerror}): {what} is unreadable")


def read_json(path: str | os.PathLike, what: str) -> Any:
    """Read a JSON file, or a one-line error naming ``what`` it should have been."""
    path = Path(path)
    data = read_bytes(path, what, MAX_JSON_BYTES)
    try:
        return json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise RunFolderError(f"{path} is not valid JSON ({error}): {what} is corrupted") from None
    except RecursionError:
        raise RunFolderError(f"{path} nests JSON too deeply: {what} is corrupted") from None


def load_npz(
    path: str | os.PathLike, what: str, required: tuple[str, ...],
    max_bytes: int = MAX_ARRAY_BYTES,
) -> dict[str, np.ndarray]:
    """Read every array of an ``.npz`` file, or a one-line error.

    Each array's header is read and checked first (a numeric dtype, never pickled objects, at
    most ``max_bytes``), so a damaged header cannot ask for terabytes before anything is read.
    """
    path = regular_file(path, what)
    try:
        with zipfile.ZipFile(path) as archive:
            members = [m for m in archive.namelist() if m.endswith(".npy")]
            if not members or len(archive.namelist()) > MAX_ARCHIVE_MEMBERS:
                raise RunFolderError(f"{path} is not an .npz archive of arrays: {what} cannot be "
                                     "read; train the run again")
            arrays = {m.removesuffix(".npy"): _read_member(archive, m, path, max_bytes)
                      for m in members}
    except _DAMAGED as error:
        raise RunFolderError(
            f"{path} is truncated or corrupted ({type(error).__name__}): {what} cannot be read; "
            "train the run again"
        ) from None
    missing = [name for name in required if name not in arrays]
    if missing:
        raise RunFolderError(f"{path} lacks {', '.join(missing)}: it is not {what}")
    return arrays


def lock_holder(folder: str | os.PathLike) -> int | None:
    """The pid of the process that holds ``folder``'s lock, or None when nobody does."""
    try:
        fd = os.open(Path(folder) / LOCK, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return _pid_in(fd) or -1
    finally:
        os.close(fd)  # closing drops a shared lock taken here
    return None


def _pid_in(fd: int) -> int | None:
    text = os.read(fd, 32).decode(errors="replace").strip()
    return int(text) if text.isdigit() else None


@contextmanager
def folder_lock(folder: str | os.PathLike) -> Iterator[None]:
    """Be the only writer of a run folder while the block runs.

    An ``flock`` on the folder's lock file: the operating system releases it when the process
    ends, however it ends, so a killed writer never leaves a stale lock behind. The file is
    removed on release; a writer that locked a file removed meanwhile tries again.
    """
    path = Path(folder) / LOCK
    while True:
        with writing(path):
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _pid_in(fd) or "?"
            os.close(fd)
            raise RunFolderError(f"{folder} is being trained by process {holder}: wait for it to "
                                 "end (or stop it), then try again") from None
        if _same_file(fd, path):
            break
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        path.unlink(missing_ok=True)
        os.close(fd)


def _same_file(fd: int, path: Path) -> bool:
    try:
        return os.path.samestat(os.fstat(fd), os.stat(path))
    except FileNotFoundError:
        return False


def _read_member(archive: zipfile.ZipFile, member: str, path: Path, max_bytes: int) -> np.ndarray:
    """One ``.npy`` member, its declared shape and dtype checked before its data is read."""
    with archive.open(member) as stream:
        version = np.lib.format.read_magic(stream)
        if version not in ((1, 0), (2, 0)):
            raise ValueError(f"unsupported .npy version {version}")
        read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                       else np.lib.format.read_array_header_2_0)
        shape, _, dtype = read_header(stream)
    if dtype.hasobject or dtype.kind not in "biufU":  # numbers, and text (a run id)
        raise RunFolderError(f"{path} holds {member} of dtype {dtype}: tabrl stores numbers "
                             "and text only (never pickled objects)")
    if any(size < 0 for size in shape) or math.prod(shape) * dtype.itemsize > max_bytes:
        raise RunFolderError(f"{path} declares {member} of shape {shape}, more than a run ever "
                             f"stores ({max_bytes:,} bytes): the file is damaged")
    with archive.open(member) as stream:
        return np.lib.format.read_array(stream, allow_pickle=False)
