"""What every picture of tabrl shares: the Agg canvas, the resolution, colour scales, and
atomic PNG files (no pyplot, no global state, no display)."""

from __future__ import annotations

import io
import os
from pathlib import Path

import matplotlib
import matplotlib.image
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import Colormap, ListedColormap, Normalize
from matplotlib.figure import Figure

from tabrl.errors import RunFolderError
from tabrl.fileio import atomic_write_bytes

PathLike = str | os.PathLike


#: Resolution of every PNG: sharp in a paper, small enough for a run folder.
DPI = 150


UNVISITED = "#d4d4d4"


def action_cmap(n_actions: int) -> Colormap:
    """Distinct colours (no red, kept for differences) for up to 18 actions; a ramp beyond."""
    tab10, tab20 = matplotlib.colormaps["tab10"].colors, matplotlib.colormaps["tab20"].colors
    if n_actions <= 9:
        colors = [c for i, c in enumerate(tab10) if i != 3][:n_actions]  # red marks differences
    elif n_actions <= 18:
        colors = [c for i, c in enumerate(tab20) if i not in (6, 7)][:n_actions]
    else:
        colors = matplotlib.colormaps["turbo"](np.linspace(0, 1, n_actions))
    return ListedColormap(colors).with_extremes(bad=UNVISITED)


def normalize(values: np.ndarray) -> Normalize:
    """A value scale over ``values``, widened when they are all equal (an untrained table)."""
    values = values[np.isfinite(values)]
    if values.size == 0:
        return Normalize(0.0, 1.0)
    low, high = float(values.min()), float(values.max())
    if high - low < 1e-12:
        low, high = low - 0.5, high + 0.5
    return Normalize(low, high)


#: Resolution of a figure shown in a notebook: as wide as a cell, a fraction of a file's bytes.
NOTEBOOK_DPI = 100


class ShownFigure(Figure):
    """A figure that Jupyter shows by itself (``_repr_png_``), with no pyplot and no
    ``%matplotlib inline``: the figures of tabrl live on their own Agg canvas, which IPython's
    display would otherwise print as ``<Figure size ...>``. Where pyplot's inline backend is
    active, its own display of figures takes over, once."""

    def _repr_png_(self) -> bytes:
        return png_bytes(self, NOTEBOOK_DPI)


def new_figure(size: tuple[float, float]) -> Figure:
    """A figure on the Agg canvas: no pyplot, no display, nothing global to clean up."""
    fig = ShownFigure(figsize=size, layout="constrained", facecolor="white")
    FigureCanvasAgg(fig)
    return fig


def png_bytes(fig: Figure, dpi: float = DPI) -> bytes:
    """The figure as PNG bytes, rendered in memory.

    One draw lays the figure out and renders it, and its pixels are written as ``savefig``
    writes them; ``savefig`` itself would lay out and draw twice (a dry run first).
    """
    fig.set_dpi(dpi)
    fig.canvas.draw()
    buffer = io.BytesIO()
    matplotlib.image.imsave(buffer, np.asarray(fig.canvas.buffer_rgba()), format="png", dpi=dpi)
    return buffer.getvalue()


def save_png(fig: Figure, path: PathLike) -> Path:
    """Render to PNG bytes in memory, then write them atomically (never a half-written image)."""
    data = png_bytes(fig, DPI)
    path = Path(path)
    try:
        return atomic_write_bytes(path, data)
    except OSError as error:
        raise RunFolderError(
            f"cannot write {path} ({error.strerror or error}): choose a writable folder"
        ) from None
