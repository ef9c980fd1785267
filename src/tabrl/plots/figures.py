"""What every picture of tabrl shares: the Agg canvas, the resolution, colour scales, and
atomic PNG files (no pyplot, no global state, no display)."""

from __future__ import annotations

import io
import math
import os
from pathlib import Path

import matplotlib
import matplotlib.image
import numpy as np
from matplotlib.artist import Artist
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import Colormap, ListedColormap, Normalize
from matplotlib.figure import Figure
from matplotlib.gridspec import GridSpec

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


def new_figure(size: tuple[float, float], layout: str | None = "constrained") -> Figure:
    """A figure on the Agg canvas: no pyplot, no display, nothing global to clean up.

    ``layout=None``: the caller places its axes in inches (:func:`fix_grid`, :func:`axes_at`),
    as the pictures of every run do. Constrained layout measures every tick label and title
    of the figure as it draws (about a third of a run's picture, 0.3-1.7 s on this machine),
    which pictures of one known shape need not pay; it stays for those whose labels are the
    user's (sweep settings, outcome names).
    """
    fig = ShownFigure(figsize=size, layout=layout, facecolor="white")
    FigureCanvasAgg(fig)
    return fig


# Inches of the text around axes at matplotlib's default sizes (10-point labels and tick
# labels, 12-point titles), which a fixed layout adds up instead of measuring.
TICKS = 0.27  #: tick marks and a row of tick labels under an axes
LABEL = 0.22  #: an axis label beside its tick labels
SUPTITLE = 0.38  #: a figure's bold title (x-large) and the room around it


def title_room(lines: int, points: float = 12.0) -> float:
    """Inches above an axes for a title of ``lines`` lines of ``points`` (and its pad)."""
    return (lines * 1.2 * points + 6) / 72 if lines else 0.0


def lines_of(text: str) -> int:
    return text.count("\n") + 1 if text else 0


def fix_grid(axes: np.ndarray, *, left: float, right: float, top: float, bottom: float,
             wspace: float = 0.0, hspace: float = 0.0) -> None:
    """Place the figure's grid of ``axes`` (its one ``subplots`` call) with margins and gaps in
    inches, which ``subplots_adjust`` takes in fractions of the figure and of the mean axes."""
    grid = np.ravel(axes)[0].get_subplotspec().get_gridspec()
    width, height = grid.figure.get_size_inches()
    grid.figure.subplots_adjust(**_fractions(
        grid.figure, grid.nrows, grid.ncols, left, top, width - left - right,
        height - top - bottom, wspace, hspace))


def grid_at(fig: Figure, rows: int, cols: int, *, left: float, top: float, width: float,
            height: float, wspace: float = 0.0, hspace: float = 0.0) -> GridSpec:
    """A grid of ``rows x cols`` cells filling the box at ``left, top`` inches from the figure's
    top-left corner, ``wspace`` and ``hspace`` inches apart."""
    return fig.add_gridspec(rows, cols, **_fractions(fig, rows, cols, left, top, width, height,
                                                     wspace, hspace))


def _fractions(fig: Figure, rows: int, cols: int, left: float, top: float, width: float,
               height: float, wspace: float, hspace: float) -> dict[str, float]:
    fig_w, fig_h = fig.get_size_inches()
    cell_w, cell_h = (width - (cols - 1) * wspace) / cols, (height - (rows - 1) * hspace) / rows
    return {"left": left / fig_w, "right": (left + width) / fig_w, "top": 1 - top / fig_h,
            "bottom": 1 - (top + height) / fig_h, "wspace": wspace / cell_w,
            "hspace": hspace / cell_h}


def axes_at(fig: Figure, left: float, top: float, width: float, height: float) -> Axes:
    """New axes at ``left, top`` inches from the figure's top-left corner."""
    fig_w, fig_h = fig.get_size_inches()
    return fig.add_axes((left / fig_w, 1 - (top + height) / fig_h, width / fig_w, height / fig_h))


def text_at(fig: Figure, x: float, top: float, text: str, **style) -> None:
    """A line of text centred on ``x`` inches from the left, its top ``top`` inches down."""
    fig_w, fig_h = fig.get_size_inches()
    fig.text(x / fig_w, 1 - top / fig_h, text, ha="center", va="top", **style)


def legend_height(n_handles: int, ncols: int) -> float:
    """Inches that :func:`legend_below` takes for ``n_handles`` entries in ``ncols`` columns."""
    return 0.16 + 0.24 * math.ceil(n_handles / max(1, ncols)) if n_handles else 0.0


def legend_below(fig: Figure, handles: list[Artist], ncols: int, **style) -> float:
    """A legend centred at the bottom of the figure, in at most ``ncols`` columns and as many
    as fit its width (long labels: fewer); returns the inches it takes."""
    for columns in range(min(ncols, len(handles)), 0, -1):
        legend = fig.legend(handles=handles, loc="lower center", ncols=columns,
                            bbox_to_anchor=(0.5, 0.04 / fig.get_figheight()), **style)
        if columns == 1 or legend.get_window_extent().width < fig.bbox.width - 0.2 * fig.dpi:
            return legend_height(len(handles), columns)
        legend.remove()
    return 0.0


def figure_title(fig: Figure, title: str, **style) -> None:
    """The figure's bold title, a fixed distance from its top edge."""
    fig.suptitle(title, y=1 - 0.08 / fig.get_figheight(), va="top", fontweight="bold", **style)


def warm_up() -> None:
    """Draw a tiny figure with a bold title, tick labels and mathtext: a process's first text
    loads its fonts and its first mathtext builds the parser (about 0.2 s), which a run's
    pictures then find ready. Called while the kernel trains, on another thread."""
    fig = new_figure((1.0, 1.0), layout=None)
    ax = fig.add_subplot()
    ax.set_xticks([0, 1], ["A", "2"])
    ax.set_xlabel(r"$\max_a Q(s, a)$")
    figure_title(fig, "tabrl", fontsize="x-large")
    png_bytes(fig)


def png_bytes(fig: Figure, dpi: float = DPI) -> bytes:
    """The figure as PNG bytes, rendered in memory.

    One draw lays the figure out and renders it, and its pixels are written as ``savefig``
    writes them; ``savefig`` itself would lay out and draw twice (a dry run first). zlib's
    fastest level: a run's pictures are a few hundred kB either way.
    """
    fig.set_dpi(dpi)
    fig.canvas.draw()
    buffer = io.BytesIO()
    matplotlib.image.imsave(buffer, np.asarray(fig.canvas.buffer_rgba()), format="png", dpi=dpi,
                            pil_kwargs={"compress_level": 1})  # 20% larger, twice as fast
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
