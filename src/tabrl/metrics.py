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
  sums_return.npy    float64: the sum of each block of 1,000 episodes of return.npy (block k:
  sums_length.npy      episodes 1000k to 1000k + 999; complete blocks only), and likewise of
  sums_td_error.npy    the other columns; index.json's "sum_block" is the block's size
  sums_epsilon.npy
```
Each file is a plain ``.npy`` (``np.load(path, mmap_mode="r")`` reads it), written once with an
empty shape and then appended in place: the new rows go after the old ones and the header's shape
is rewritten (numpy pads headers so that the shape can grow without moving the data). Each chunk
of training is written as it ends (by ``tabrl train`` on a second thread, while the next chunk
trains), so memory holds a chunk or two, and a write costs what the rows weigh, never the whole
history; nothing is compressed.

The store is not the commit point: ``q_table.npz`` names the episodes a checkpoint holds and its
``metrics_id`` the store they belong to. Rows beyond that count (a kill between an append and the
Q-table's write) are ignored by readers and cut off before a resumed run appends. The curve's
two files hold one row per point (:mod:`tabrl.curve`), placed by point and read and cut by their
episode count in the same way; a run folder made before curves has none (its curve is empty until
it resumes).

The block sums are written with each chunk (a block that straddles two chunks is summed when its
last row arrives, its first rows read back from the column) so that a long run is drawn and
checked without reading every row: a prefix sum at any episode is the sum of the blocks before it
plus at most 999 rows, and a NaN or an infinity in a column makes its block's sum non-finite.
The columns :meth:`MetricsStore.read` returns carry their block sums (:class:`SummedColumn`);
:func:`prefix_sums_at` and :func:`first_non_finite` use them where that reads fewer rows. A run
folder made before block sums gets them on resume (one pass over its columns) and is read by a
scan until then.
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
#: The block sums of each per-episode column: one row per block of ``SUM_BLOCK`` episodes.
SUM_DTYPES = {f"sums_{name}": "<f8" for name in DTYPES}
ALL_DTYPES = DTYPES | CURVE_DTYPES | SUM_DTYPES
BLOCK = 1 << 20  #: values per block when a column is scanned without loading all of it
#: Episodes per block sum: at 10^8 episodes, 10^5 sums per column (0.8 MB), and a prefix sum
#: reads at most 999 rows besides them.
SUM_BLOCK = 1000


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
        self._write_index(run_id)
        fsync_folder(self.folder.parent)
        return run_id

    def _write_index(self, run_id: str) -> None:
        atomic_write_json(self.folder / INDEX, {"run_id": run_id, "columns": ALL_DTYPES,
                                                "sum_block": SUM_BLOCK})

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

    def has_sums(self) -> bool:
        return self.column_path("sums_return").exists()

    def add_sums(self, n_episodes: int) -> None:
        """The block sums of the first ``n_episodes`` rows, in a store made before block sums (a
        resumed old run; cut to its checkpoint's episodes first)."""
        if self.has_sums():
            return
        with writing(self.folder):
            self._create_empty(SUM_DTYPES)
        step = BLOCK // SUM_BLOCK * SUM_BLOCK
        for start in range(0, n_episodes // SUM_BLOCK * SUM_BLOCK, step):
            rows = slice(start, min(start + step, n_episodes))
            self._sum_blocks(start, {name: self._load(name, "episode")[rows] for name in DTYPES})
        self.sync()
        self._write_index(self.run_id())

    def sum_block(self) -> int:
        """Episodes per block sum (0: the store has none)."""
        if not self.has_sums():
            return 0
        block = self._index().get("sum_block")
        if not isinstance(block, int) or isinstance(block, bool) or block < 1:
            raise RunFolderError(f"{self.folder / INDEX} has no valid sum_block for its block "
                                 "sums: the run folder is damaged")
        return block

    def run_id(self) -> str:
        index = self._index()
        if not isinstance(index.get("run_id"), str):
            raise RunFolderError(f"{self.folder / INDEX} is not a tabrl metrics index")
        return index["run_id"]

    def _index(self) -> dict:
        index = read_json(self.folder / INDEX, "the metrics' index")
        if not isinstance(index, dict):
            raise RunFolderError(f"{self.folder / INDEX} is not a tabrl metrics index")
        return index

    def write(self, start: int, log: TrainingLog) -> None:
        """Store the episodes of ``log`` as episodes ``start, start + 1, ...`` (not yet synced).

        Rows are placed by episode, not after whatever the file holds, so writing a chunk again
        after an interrupted attempt stores each episode once. The blocks that the new rows
        complete get their sums.
        """
        columns = {name: np.ascontiguousarray(column, dtype=DTYPES[name])
                   for name, column in log.columns().items()}
        self._place(start, columns, "episodes")
        self._sum_blocks(start, columns)

    def _sum_blocks(self, start: int, columns: dict[str, np.ndarray]) -> None:
        """Store the sums of the blocks that ``columns`` (stored rows from ``start`` on)
        complete; the rows of the first block before ``start`` are read back from disk."""
        first, last = start // SUM_BLOCK, (start + len(columns["return"])) // SUM_BLOCK
        if last <= first:
            return
        head = start - first * SUM_BLOCK  # rows of block ``first`` stored by an earlier write
        sums = {}
        for name, rows in columns.items():
            earlier = self._load(name, "episode")[first * SUM_BLOCK : start]
            rows = rows[: (last - first) * SUM_BLOCK - head]
            sums[f"sums_{name}"] = np.concatenate((  # each block summed alike, however cut
                block_sums(np.concatenate((earlier, rows[: SUM_BLOCK - head]))),
                block_sums(rows[SUM_BLOCK - head :])))
        self._place(first, sums, "block sums")

    def write_curve(self, start: int, curve: Curve) -> None:
        """Store ``curve``'s points as points ``start, start + 1, ...`` of the run's curve."""
        self._place(start, {"curve_episode": curve.episodes, "curve_value": curve.values},
                    "curve points")

    def _place(self, start: int, columns: dict[str, np.ndarray], rows_are: str) -> None:
        """Write each column's values from row ``start`` on, cutting what followed them."""
        with writing(self.folder):
            for name, column in columns.items():
                rows = np.ascontiguousarray(column, dtype=ALL_DTYPES[name])
                with open(self.column_path(name), "r+b") as handle:
                    offset, n = _data_offset(handle)
                    if n < start:
                        raise RunFolderError(f"{self.column_path(name)} holds {n:,} {rows_are}, "
                                             f"not {start:,}: the run folder is damaged")
                    handle.seek(offset + start * rows.itemsize)
                    handle.write(memoryview(rows).cast("B"))  # no copy
                    handle.truncate()
                    handle.seek(0)
                    header = _header(ALL_DTYPES[name], start + len(rows))
                    np.lib.format.write_array_header_1_0(handle, header)

    def _present(self) -> list[str]:
        return [*COLUMNS, *(CURVE_DTYPES if self.has_curve() else ()),
                *(SUM_DTYPES if self.has_sums() else ())]

    def sync(self) -> None:
        """Make every column written so far reach the disk (before a checkpoint commits them)."""
        with writing(self.folder):
            for name in self._present():
                with open(self.column_path(name), "r+b") as handle:
                    os.fsync(handle.fileno())

    def truncate(self, n_episodes: int) -> None:
        """Cut every column to its first ``n_episodes`` rows (those a checkpoint committed), and
        the curve to its points within them, the block sums to the blocks they complete."""
        points = len(self.read_curve(n_episodes)) if self.has_curve() else 0
        with writing(self.folder):
            for name in self._present():
                rows = (points if name in CURVE_DTYPES
                        else n_episodes // SUM_BLOCK if name in SUM_DTYPES else n_episodes)
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
        """The first ``n_episodes`` rows of every column, memory-mapped (nothing loaded yet),
        with their block sums where the store has them."""
        columns, block = {}, self.sum_block()
        for name in COLUMNS:
            path = self.column_path(name)
            column = self._load(name, "episode")
            if len(column) < n_episodes:
                raise RunFolderError(
                    f"{path} holds fewer episodes ({len(column):,}) than the Q-table's "
                    f"{n_episodes:,}: the run folder is damaged"
                )
            columns[name] = column[:n_episodes]
            if block:
                sums = self._load(f"sums_{name}", "block")
                if len(sums) < n_episodes // block:
                    raise RunFolderError(
                        f"{self.column_path(f'sums_{name}')} holds {len(sums):,} block sums, "
                        f"fewer than the {n_episodes // block:,} blocks of the Q-table's "
                        f"{n_episodes:,} episodes: the run folder is damaged")
                columns[name] = SummedColumn.of(columns[name], sums[: n_episodes // block], block)
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


class SummedColumn(np.ndarray):
    """A column with the sums of its complete blocks of ``block`` rows (``block_sums``), so that
    prefix sums and the finiteness check need not read every row.

    A view of the whole column (``np.ravel``, ``np.asanyarray``) keeps them; everything else
    derived from it (a slice, an arithmetic result) has none: the sums describe this column only.
    """

    block_sums: np.ndarray | None = None
    block: int = 0

    @classmethod
    def of(cls, column: np.ndarray, block_sums: np.ndarray, block: int) -> SummedColumn:
        summed = column.view(cls)
        summed.block_sums, summed.block = block_sums, block
        return summed

    def __array_finalize__(self, obj: object) -> None:
        whole = (isinstance(obj, SummedColumn) and obj.block_sums is not None
                 and _layout(self) == _layout(obj))
        self.block_sums, self.block = (obj.block_sums, obj.block) if whole else (None, 0)

    def __array_wrap__(self, array, context=None, return_scalar=False):  # as np.memmap's
        array = super().__array_wrap__(array, context, return_scalar)
        if array is self:
            return array
        return array[()] if return_scalar else array.view(np.ndarray)


def _layout(array: np.ndarray) -> tuple:
    return array.__array_interface__["data"][0], array.shape, array.strides, array.dtype


def block_sums(rows: np.ndarray, block: int = SUM_BLOCK) -> np.ndarray:
    """The float64 sum of each block of ``block`` consecutive ``rows`` (a whole number of them;
    a sum may overflow to infinity: :func:`first_non_finite` then reads its rows)."""
    with np.errstate(over="ignore", invalid="ignore"):
        return np.asarray(rows, dtype=np.float64).reshape(-1, block).sum(axis=1)


def _summed(values: np.ndarray) -> tuple[np.ndarray, int] | None:
    """The block sums of ``values`` and their block size, if it carries them."""
    sums = getattr(values, "block_sums", None)
    return None if sums is None else (sums, values.block)


def blocks(values: np.ndarray, size: int = BLOCK) -> Iterator[np.ndarray]:
    """``values`` as float64 blocks of ``size``: a memory-mapped column is never loaded whole."""
    for start in range(0, len(values), size):
        yield np.asarray(values[start : start + size], dtype=np.float64)


def first_non_finite(values: np.ndarray) -> int | None:
    """The index of the first NaN or infinite value of ``values``, or None (with block sums,
    only the blocks whose sum is not finite and the rows after the last block are read)."""
    if (summed := _summed(values)) is None:
        return _scan_non_finite(values)
    sums, size = summed
    starts = [*(np.flatnonzero(~np.isfinite(sums)) * size), len(sums) * size]
    for start in starts:  # a sum overflows without a bad row: read on
        end = start + size if start < len(sums) * size else len(values)
        if (bad := _scan_non_finite(values[start:end])) is not None:
            return int(start) + bad
    return None


def _scan_non_finite(values: np.ndarray) -> int | None:
    for i, block in enumerate(blocks(values)):
        bad = np.flatnonzero(~np.isfinite(block))
        if bad.size:
            return i * BLOCK + int(bad[0])
    return None


def prefix_sums_at(values: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """``values[:i].sum()`` for every ``i`` of the sorted ``indices``: from the block sums where
    ``values`` carries them and that reads fewer rows, else in one blockwise pass."""
    summed = _summed(values)
    if summed is not None and len(indices) * summed[1] < len(values):
        return _prefix_sums_from_blocks(values, *summed, indices)
    sums = np.zeros(len(indices))
    total, start = 0.0, 0
    for block in blocks(values):
        running = np.cumsum(np.concatenate(([total], block)))[1:]  # as one cumsum would add
        inside = (indices > start) & (indices <= start + len(block))
        sums[inside] = running[indices[inside] - start - 1]
        total, start = float(running[-1]), start + len(block)
    return sums


def _prefix_sums_from_blocks(values: np.ndarray, sums: np.ndarray, size: int,
                             indices: np.ndarray) -> np.ndarray:
    """Prefix sums as the blocks before each index plus the rows of its block up to it.

    The rows are read through a plain view: a slice of the column itself would check on each
    of thousands of points whether it still carries the block sums.
    """
    indices = np.asarray(indices, dtype=np.int64)
    first = np.minimum(indices // size, len(sums))
    prefix = np.concatenate(([0.0], np.cumsum(sums)))[first]
    rows = values.view(np.ndarray)
    for k, (start, end) in enumerate(zip((first * size).tolist(), indices.tolist(),
                                         strict=True)):
        prefix[k] += np.add.reduce(rows[start:end], dtype=np.float64)
    return prefix
