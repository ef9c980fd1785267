"""Atomic files: a reader sees the old file or the new one, never half of one.

Every file tabrl writes goes to a temporary name in the same folder and is renamed over the
target (``os.replace`` is atomic on POSIX). Arrays are stored as ``.npz`` and read back with
``allow_pickle=False``: a file handed in by a user is never unpickled.
"""

from __future__ import annotations

import io
import json
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from tabrl.errors import RunFolderError


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file and a rename."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    return atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode())


def atomic_save_npz(path: str | os.PathLike, **arrays: np.ndarray) -> Path:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    return atomic_write_bytes(path, buffer.getvalue())


def read_json(path: str | os.PathLike, what: str) -> Any:
    """Read a JSON file, or a one-line error naming ``what`` it should have been."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise RunFolderError(f"{path} is missing: {what} cannot be read") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise RunFolderError(f"{path} is not valid JSON ({error}): {what} is corrupted") from None


def load_npz(
    path: str | os.PathLike, what: str, required: tuple[str, ...]
) -> dict[str, np.ndarray]:
    """Read every array of an ``.npz`` file (never unpickling), or a one-line error."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
    except FileNotFoundError:
        raise RunFolderError(f"{path} is missing: {what} cannot be read") from None
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError) as error:
        raise RunFolderError(
            f"{path} is truncated or corrupted ({type(error).__name__}): {what} cannot be read; "
            "train the run again"
        ) from None
    missing = [name for name in required if name not in arrays]
    if missing:
        raise RunFolderError(f"{path} lacks {', '.join(missing)}: it is not {what}")
    return arrays
