"""The metrics store: one growing ``.npy`` file per per-episode column, appended chunk by chunk.

```
metrics/
  index.json     {"run_id": ..., "columns": {"return": "<f8", ...}}
  return.npy     float64: the episode's return (exact for every shipped environment)
  length.npy     int32: the episode's steps
  td_error.npy   float32: the episode's mean absolute TD error
  epsilon.npy    float32: the epsilon the episode was played with
  curve_episode.npy  int64: the episode count of each point of the greedy learning curve
  curve_value.npy    float64: the greedy policy's value there (exact, or Monte Carlo)
```
Each file is a plain ``.npy`` (``np.load(path, mmap_mode="r")`` reads it), written once with an
empty shape and then appended in place: the new rows go after the old ones and the header's shape
is rewritten (numpy pads headers so that the shape can grow without moving the data). Each chunk
of training is written as it ends, so memory holds one chunk, and a write costs what the rows
weigh, never the whole history; nothing is compressed.

The store is not the commit point: ``q_table.npz`` names the episodes a checkpoint holds and its
``metrics_id`` the store they belong to. Rows beyond that count (a kill between an append and the
Q-table's write) are ignored by readers and cut off before a resumed run appends. The curve's
two files hold one row per point (:mod:`tabrl.curve`), placed by point and read and cut by their
episode count in the same way; a run folder made before curves has none (its curve is empty until
it resumes).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from tabrl.curve import Curve
from tabrl.errors import RunFolderError
from tabrl.fileio import atomic_write_json, fsync_folder, read_json, writing
from tabrl.loop import COLUMNS, TrainingLog

FOLDER, INDEX = "metrics", "index.json"
#: The stored type of each column: exact returns, compact everything else.
DTYPES = {"return": "<f8", "length": "<i4", "td_error": "<f4", "epsilon": "<f4"}
#: The greedy learning curve's columns: one row per point.
CURVE_DTYPES = {"curve_episode": "<i8", "curve_value": "<f8"}
ALL_DTYPES = DTYPES | CURVE_DTYPES
BLOCK = 1 << 20  #: values per block when a column is scanned without loading all of it


def _header(dtype: str, n: int) -> dict:
    return {"descr": dtype, "fortran_order": False, "shape": (n,)}


def _data_offset(handle) -> tuple[int, int]:
    """The header's length and the row count it declares (the handle is left at the data)."""
    np.lib.format.read_magic(handle)
    shape, _, _ = np.lib.format.read_array_header_1_0(handle)
    return handle.tell(), shape[0]


class MetricsStore:
    """The per-episode columns of one run folder."""

    def __init__(self, run_path: Path) -> None:
        self.folder = Path(run_path) / FOLDER

    def column_path(self, name: str) -> Path:
        return self.folder / f"{name}.npy"

    def exists(self) -> bool:
        return (self.folder / INDEX).exists()

    def create(self) -> str:
        """Empty columns under a new id (returned: the Q-table file records it)."""
        run_id = uuid.uuid4().hex
        with writing(self.folder):
            self.folder.mkdir(exist_ok=True)
            self._create_empty(ALL_DTYPES)
        atomic_write_json(self.folder / INDEX, {"run_id": run_id, "columns": ALL_DTYPES})
        fsync_folder(self.folder.parent)
        return run_id

    def _create_empty(self, dtypes: dict[str, str]) -> None:
        for name, dtype in dtypes.items():
            with open(self.column_path(name), "wb") as handle:
                np.lib.format.write_array_header_1_0(handle, _header(dtype, 0))
                os.fsync(handle.fileno())

    def has_curve(self) -> bool:
        return self.column_path("curve_episode").exists()

    def add_curve(self) -> None:
        """Empty curve columns in a store made before curves (a resumed old run)."""
        if not self.has_curve():
            with writing(self.folder):
                self._create_empty(CURVE_DTYPES)

    def run_id(self) -> str:
        index = read_json(self.folder / INDEX, "the metrics' index")
        if not isinstance(index, dict) or not isinstance(index.get("run_id"), str):
            raise RunFolderError(f"{self.folder / INDEX} is not a tabrl metrics index")
        return index["run_id"]

    def write(self, start: int, log: TrainingLog) -> None:
        """Store the episodes of ``log`` as episodes ``start, start + 1, ...`` (not yet synced).

        Rows are placed by episode, not after whatever the file holds, so writing a chunk again
        after an interrupted attempt stores each episode once.
        """
        self._place(start, log.columns(), "episodes")

    def write_curve(self, start: int, curve: Curve) -> None:
        """Store ``curve``'s points as points ``start, start + 1, ...`` of the run's curve."""
        self._place(start, {"curve_episode": curve.episodes, "curve_value": curve.values},
                    "curve points")

    def _place(self, start: int, columns: dict[str, np.ndarray], rows_are: str) -> None:
        """Write each column's values from row ``start`` on, cutting what followed them."""
        with writing(self.folder):
            for name, column in columns.items():
                rows = np.asarray(column, dtype=ALL_DTYPES[name])
                with open(self.column_path(name), "r+b") as handle:
                    offset, n = _data_offset(handle)
                    if n < start:
                        raise RunFolderError(f"{self.column_path(name)} holds {n:,} {rows_are}, "
                                             f"not {start:,}: the run folder is damaged")
                    handle.seek(offset + start * rows.itemsize)
                    handle.write(rows.tobytes())
                    handle.truncate()
                    handle.seek(0)
                    header = _header(ALL_DTYPES[name], start + len(rows))
                    np.lib.format.write_array_header_1_0(handle, header)

    def _present(self) -> list[str]:
        return [*COLUMNS, *(CURVE_DTYPES if self.has_curve() else ())]

    def sync(self) -> None:
        """Make every column written so far reach the disk (before a checkpoint commits them)."""
        with writing(self.folder):
            for name in self._present():
                with open(self.column_path(name), "r+b") as handle:
                    os.fsync(handle.fileno())

    def truncate(self, n_episodes: int) -> None:
        """Cut every column to its first ``n_episodes`` rows (those a checkpoint committed), and
        the curve to its points within them."""
        points = len(self.read_curve(n_episodes)) if self.has_curve() else 0
        with writing(self.folder):
            for name in self._present():
                rows = points if name in CURVE_DTYPES else n_episodes
                with open(self.column_path(name), "r+b") as handle:
                    offset, n = _data_offset(handle)
                    if n < rows:
                        raise RunFolderError(
                            f"{self.column_path(name)} holds {n:,} episodes, fewer than the "
                            f"checkpoint's {n_episodes:,}: the run folder is damaged"
                        )
                    handle.truncate(offset + rows * np.dtype(ALL_DTYPES[name]).itemsize)
                    handle.seek(0)
                    np.lib.format.write_array_header_1_0(handle, _header(ALL_DTYPES[name], rows))
                    handle.flush()
                    os.fsync(handle.fileno())

    def read(self, n_episodes: int) -> dict[str, np.ndarray]:
        """The first ``n_episodes`` rows of every column, memory-mapped (nothing loaded yet)."""
        columns = {}
        for name in COLUMNS:
            path = self.column_path(name)
            column = self._load(name, "episode")
            if len(column) < n_episodes:
                raise RunFolderError(
                    f"{path} holds fewer episodes ({len(column):,}) than the Q-table's "
                    f"{n_episodes:,}: the run folder is damaged"
                )
            columns[name] = column[:n_episodes]
        return columns

    def read_curve(self, n_episodes: int) -> Curve:
        """The curve's points within the first ``n_episodes`` episodes (none in a run folder made
        before curves), checked: increasing episode counts, no NaN value."""
        if not self.has_curve():
            return Curve()
        episodes, values = (self._load(name, "point") for name in CURVE_DTYPES)
        path = self.column_path("curve_episode")
        if len(episodes) != len(values):
            raise RunFolderError(f"{path} holds {len(episodes):,} points but curve_value.npy "
                                 f"{len(values):,}: the run folder is damaged")
        episodes, values = np.array(episodes), np.array(values)
        if (episodes < 1).any() or (np.diff(episodes) <= 0).any() or np.isnan(values).any():
            raise RunFolderError(f"{path} holds points that cannot be (episode counts that do not "
                                 "increase from 1, or NaN values): the run folder is damaged")
        return Curve(episodes, values).head(n_episodes)

    def _load(self, name: str, row: str) -> np.ndarray:
        """One column memory-mapped, checked to be a .npy of its dtype, one value per ``row``."""
        path, dtype = self.column_path(name), np.dtype(ALL_DTYPES[name])
        try:
            column = np.load(path, mmap_mode="r", allow_pickle=False)
        except FileNotFoundError:
            raise RunFolderError(f"{path} is missing: the run's {name} column is lost; "
                                 "the run folder is damaged") from None
        except (ValueError, OSError) as error:
            raise RunFolderError(f"{path} is not a .npy column ({error})") from None
        if column.ndim != 1 or column.dtype != dtype:
            raise RunFolderError(f"{path} holds {column.dtype} of shape {column.shape}, not "
                                 f"one {dtype} per {row}")
        return column


def blocks(values: np.ndarray, size: int = BLOCK) -> Iterator[np.ndarray]:
    """``values`` as float64 blocks of ``size``: a memory-mapped column is never loaded whole."""
    for start in range(0, len(values), size):
        yield np.asarray(values[start : start + size], dtype=np.float64)


def first_non_finite(values: np.ndarray) -> int | None:
    """The index of the first NaN or infinite value of ``values``, or None."""
    for i, block in enumerate(blocks(values)):
        bad = np.flatnonzero(~np.isfinite(block))
        if bad.size:
            return i * BLOCK + int(bad[0])
    return None


def prefix_sums_at(values: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """``values[:i].sum()`` for every ``i`` of the sorted ``indices``, in one blockwise pass."""
    sums = np.zeros(len(indices))
    total, start = 0.0, 0
    for block in blocks(values):
        running = np.cumsum(np.concatenate(([total], block)))[1:]  # as one cumsum would add
        inside = (indices > start) & (indices <= start + len(block))
        sums[inside] = running[indices[inside] - start - 1]
        total, start = float(running[-1]), start + len(block)
    return sums
