"""The greedy policy drawn the way each environment family is read.

A policy picture shows, for a Q-table ``Q`` (one row per state as :func:`tabrl.spaces.encoder_for`
encodes it), the greedy action ``argmax_a Q(s, a)`` (lowest action on ties) and the state value
``V(s) = max_a Q(s, a)``, laid out the way the environment is read by people:

* Blackjack: hit/stick grids over player sum x dealer card, with and without a usable ace
  (Sutton & Barto, figure 5.2), and the values beside them;
* FrozenLake, CliffWalking, Taxi: arrows on the map, cells shaded by value, special tiles marked;
* anything else: value and greedy action per Q-table row, folded into a near-square grid.

Given the optimal policy, the picture puts it beside the learned one and outlines the states where
they differ. Figures are built on :class:`matplotlib.figure.Figure` with the Agg canvas (no pyplot,
no global state, no display) and written atomically.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import gymnasium as gym
import matplotlib
import matplotlib.image
import numpy as np
from gymnasium.envs.toy_text.blackjack import BlackjackEnv
from gymnasium.envs.toy_text.cliffwalking import CliffWalkingEnv
from gymnasium.envs.toy_text.taxi import TaxiEnv
from gymnasium.wrappers import DiscretizeObservation
from matplotlib import patheffects
from matplotlib.artist import Artist
from matplotlib.axes import Axes
from matplotlib.cm import ScalarMappable
from matplotlib.collections import LineCollection, PatchCollection, PathCollection
from matplotlib.colors import Colormap, ListedColormap, Normalize, to_rgba
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties, findfont, get_font
from matplotlib.ft2font import LoadFlags
from matplotlib.lines import Line2D
from matplotlib.markers import MarkerStyle
from matplotlib.patches import Patch, Rectangle
from matplotlib.path import Path as Outline
from matplotlib.textpath import TextPath
from matplotlib.transforms import Affine2D, IdentityTransform

from tabrl.errors import UsageError
from tabrl.plots.figures import (
    LABEL,
    SUPTITLE,
    TICKS,
    UNVISITED,
    PathLike,
    action_cmap,
    axes_at,
    figure_title,
    grid_at,
    legend_below,
    legend_height,
    new_figure,
    normalize,
    save_png,
    text_at,
    title_room,
)
from tabrl.spaces import encoder_for

# Light values and dark glyphs: arrows stay readable on every cell.
_VALUE_CMAP = ListedColormap(
    matplotlib.colormaps["YlGnBu"](np.linspace(0.0, 0.72, 256)), name="value"
).with_extremes(bad="#d4d4d4")


_BACKGROUND = "#eef2f6"


_DIFFER = "#d62728"


_HOLE = "#26324a"


_GOAL = "#f2b134"


_CLIFF = "#8c6d5a"


# Actions as drawn on a map: a move is (dx, dy) in cell units, y pointing down the rows.
Glyph = tuple[float, float] | str


_LEFT, _DOWN, _RIGHT, _UP = (-1.0, 0.0), (0.0, 1.0), (1.0, 0.0), (0.0, -1.0)


_LAKE_GLYPHS: dict[int, Glyph] = {0: _LEFT, 1: _DOWN, 2: _RIGHT, 3: _UP}


_CLIFF_GLYPHS: dict[int, Glyph] = {0: _UP, 1: _RIGHT, 2: _DOWN, 3: _LEFT}


_TAXI_GLYPHS: dict[int, Glyph] = {0: _DOWN, 1: _UP, 2: _RIGHT, 3: _LEFT, 4: "P", 5: "D"}


_BLACKJACK_GLYPHS: dict[int, Glyph] = {0: "S", 1: "H"}


_LETTER_NAMES = {"P": "pick up", "D": "drop off", "H": "hit", "S": "stick"}


_BLACKJACK_CMAP = ListedColormap(["#9ecae1", "#fdae6b"]).with_extremes(bad=UNVISITED)


def plot_policy(
    env: gym.Env,
    q_values: np.ndarray,
    path: PathLike,
    *,
    optimal_policy: np.ndarray | None = None,
    visited: np.ndarray | None = None,
    title: str = "",
    optimum: bool = False,
) -> Path:
    """Draw the greedy policy of ``q_values`` and its state values, as ``env`` is usually pictured.

    ``optimum=True``: the values are the optimum's and ``optimal_policy`` its policy (``tabrl
    solve``), drawn alone under the optimal panel's title.

    ``q_values`` has one row per state in the order of ``encoder_for(env.observation_space)``.
    ``optimal_policy`` (one action per row), when given, is drawn beside the learned policy and the
    states where they disagree are outlined in red: that is where learning is not finished.
    ``visited`` (true for each row the agent has seen) greys out the rows the agent never reached,
    whose greedy action is only the tie-break of an untouched row. Returns the PNG's path.
    """
    return save_png(policy_figure(env, q_values, optimal_policy=optimal_policy, visited=visited,
                                  title=title, optimum=optimum), path)


def policy_figure(
    env: gym.Env,
    q_values: np.ndarray,
    *,
    optimal_policy: np.ndarray | None = None,
    visited: np.ndarray | None = None,
    title: str = "",
    optimum: bool = False,
) -> Figure:
    """The figure :func:`plot_policy` saves (same arguments, no path)."""
    q = np.asarray(q_values, dtype=np.float64)
    if q.ndim != 2 or q.shape[1] < 1:
        raise UsageError(f"q_values must be a 2-d table (states x actions), got shape {q.shape}")
    policy = _Policy(q, _rows_array(optimal_policy, q, "optimal_policy", int),
                     _rows_array(visited, q, "visited", bool), optimum)
    optimal = policy.optimal
    if optimal is not None and not np.all((optimal >= 0) & (optimal < q.shape[1])):
        raise UsageError(f"optimal_policy holds actions outside 0..{q.shape[1] - 1}")
    title = title or _default_title(env)
    unwrapped = env.unwrapped
    if isinstance(unwrapped, BlackjackEnv):
        fig = _blackjack_figure(env, policy, title)
    elif isinstance(unwrapped, TaxiEnv):
        fig = _boards_figure(policy, *_taxi_boards(unwrapped, q), _TAXI_GLYPHS, title)
    elif isinstance(unwrapped, CliffWalkingEnv):
        fig = _boards_figure(policy, [_cliff_board(unwrapped, q)], (1, 1), _CLIFF_GLYPHS, title)
    elif _is_lake(unwrapped):
        fig = _boards_figure(policy, [_lake_board(unwrapped, q)], (1, 1), _LAKE_GLYPHS, title)
    elif (bins := _plotted_bins(env)) is not None:
        fig = _bins_figure(bins, policy, title)
    else:
        fig = _generic_figure(policy, title)
    return fig


@dataclass(frozen=True)
class _Policy:
    """What every policy picture reads from: greedy actions, values, optimum, visited rows."""

    q: np.ndarray
    optimal: np.ndarray | None
    visited: np.ndarray | None
    optimum: bool = False  #: ``q`` and ``optimal`` are the optimum's: one panel, no differences

    @cached_property
    def greedy(self) -> np.ndarray:
        """The greedy action of every row; ``argmax`` picks the lowest action on ties."""
        if self.optimum and self.optimal is not None:
            return self.optimal
        return self.q.argmax(axis=1)

    @cached_property
    def values(self) -> np.ndarray:
        return self.q.max(axis=1)

    @cached_property
    def shown_values(self) -> np.ndarray:
        """State values, NaN (drawn grey) on the rows never visited."""
        return np.where(self.seen, self.values, np.nan)

    @cached_property
    def seen(self) -> np.ndarray:
        return np.ones(len(self.q), bool) if self.visited is None else self.visited

    @cached_property
    def differ(self) -> np.ndarray:
        """Rows (among the visited) where the learned greedy action is not the optimal one."""
        if self.optimal is None:
            return np.zeros(len(self.q), bool)
        return (self.greedy != self.optimal) & self.seen

    def panels(self, learned: str, optimal: str) -> list[tuple[str, np.ndarray]]:
        """Titles and actions per row to draw: the learned policy (-1 where never visited), and
        the optimal one when known (drawn everywhere: it does not depend on what was visited)."""
        if self.optimum:
            return [(optimal, self.greedy)]
        shown = [(learned, np.where(self.seen, self.greedy, -1))]
        if self.optimal is not None:
            shown.append((optimal, self.optimal))
        return shown


def _rows_array(
    array: np.ndarray | None, q: np.ndarray, name: str, dtype: type
) -> np.ndarray | None:
    """``array`` as one entry per Q-table row, or a one-line error when it does not fit."""
    if array is None:
        return None
    array = np.asarray(array).ravel()
    if array.shape != (len(q),):
        raise UsageError(f"{name} has {array.size} entries but the Q-table has {len(q)} rows")
    return array.astype(dtype)


def _default_title(env: gym.Env) -> str:
    spec = getattr(env, "spec", None)
    return f"{spec.id}: greedy policy" if spec is not None else "Greedy policy"


def _check_rows(q: np.ndarray, n_states: int, what: str) -> None:
    if len(q) != n_states:
        raise UsageError(
            f"the Q-table has {len(q)} rows but {what} has {n_states} states: "
            "it belongs to another environment"
        )


@dataclass(frozen=True)
class _Tile:
    """A kind of special cell: where it is, its fill (None keeps the shading) and its letter."""

    label: str
    mask: np.ndarray
    color: str | None
    letter: str


def _grid_panel(
    ax: Axes,
    shading: np.ndarray,
    *,
    cmap: Colormap,
    norm: Normalize,
    origin: str = "upper",
    actions: np.ndarray | None = None,
    glyphs: Mapping[int, Glyph] | None = None,
    tiles: Sequence[_Tile] = (),
    differ: np.ndarray | None = None,
) -> Artist:
    """Cells shaded by ``shading`` (NaN: the colour map's grey), tiles, glyphs, red outlines.

    The one drawing routine behind every policy picture: Blackjack grids, maps, folded tables.
    ``actions`` holds one action per cell (-1: none) drawn with ``glyphs``.
    """
    image = ax.imshow(shading, cmap=cmap, norm=norm, origin=origin, interpolation="nearest")
    height, width = shading.shape
    cell = _cell_inches(ax, width, height)
    if max(height, width) <= 40:
        _grid_lines(ax, height, width)
    for tile in tiles:
        if tile.color is not None:
            _cells(ax, tile.mask, facecolor=tile.color, edgecolor="white", linewidth=0.8)
    if actions is not None and glyphs is not None:
        _draw_glyphs(ax, actions, glyphs, cell)
    for tile in tiles:
        _draw_letters(ax, tile, actions, cell)
    if differ is not None and differ.any():
        _outline_cells(ax, differ, cell, fine=max(height, width) <= 40, origin=origin)
    return image


def _outline_cells(ax: Axes, mask: np.ndarray, cell: float, fine: bool, origin: str) -> None:
    """Red outlines (white halo, visible on any colour) around the cells of ``mask``; on grids
    too fine for outlines, a translucent red layer instead (one image, fast for a million)."""
    if not fine:
        layer = np.zeros((*mask.shape, 4))
        layer[mask] = to_rgba(_DIFFER, 0.55)
        ax.imshow(layer, origin=origin, interpolation="nearest", zorder=5)
        return
    width = max(1.0, 2.4 * min(cell, 0.5) / 0.5)
    halo = [patheffects.withStroke(linewidth=width + 2, foreground="white")]
    _cells(ax, mask, inset=0.08, facecolor="none", edgecolor=_DIFFER, linewidth=width,
           zorder=5, path_effects=halo)


def _grid_lines(ax: Axes, height: int, width: int) -> None:
    """Thin white lines between cells (one collection: cheaper than minor-tick grids)."""
    rows = [((-0.5, y), (width - 0.5, y)) for y in np.arange(0.5, height - 1)]
    cols = [((x, -0.5), (x, height - 0.5)) for x in np.arange(0.5, width - 1)]
    ax.add_collection(LineCollection(rows + cols, colors="white", linewidths=0.8, zorder=1.5))


def _cell_inches(ax: Axes, width: int, height: int) -> float:
    """The side of a cell in inches, to scale letters and outlines with the picture."""
    box = ax.get_window_extent()
    dpi = ax.get_figure(root=True).dpi
    return min(box.width / width, box.height / height) / dpi


def _cells(ax: Axes, mask: np.ndarray, inset: float = 0.0, **style) -> None:
    """One rectangle per true cell of ``mask``, as a single collection (fast for big grids)."""
    side = 1.0 - 2 * inset
    corner = -0.5 + inset
    boxes = [Rectangle((j + corner, i + corner), side, side) for i, j in np.argwhere(mask)]
    if boxes:
        ax.add_collection(PatchCollection(boxes, **style))


def _draw_glyphs(ax: Axes, actions: np.ndarray, glyphs: Mapping[int, Glyph], cell: float) -> None:
    """Arrows for moves (one quiver call), centred letters for other actions (pick up, hit...).

    A letter is a marker, one scatter per letter: hundreds of text objects would each be laid
    out and drawn on their own.
    """
    arrows = [(i, j, glyphs[a]) for (i, j), a in np.ndenumerate(actions)
              if a in glyphs and not isinstance(glyphs[a], str)]
    if arrows:
        rows, cols, moves = zip(*arrows, strict=True)
        dx, dy = np.array(moves).T * 0.56
        ax.quiver(cols, rows, dx, dy, angles="xy", scale_units="xy", scale=1, pivot="middle",
                  units="xy", width=0.075, headwidth=3.2, headlength=3.0, headaxislength=2.7,
                  color="#1a1a1a", zorder=3)
    size = _font_size(cell, 0.5)
    for action, glyph in glyphs.items():
        if isinstance(glyph, str) and (cells := np.argwhere(actions == action)).size:
            ax.scatter(cells[:, 1], cells[:, 0], s=(0.9 * size) ** 2, marker=_letter(glyph),
                       color="#1a1a1a", linewidths=0, zorder=3)


@functools.cache
def _letter(glyph: str) -> MarkerStyle:
    """A bold letter as a marker, centred, as tall as the marker's size (the capital of a font
    about 1.1 times that size); its outline is made once per process."""
    path = TextPath((0, 0), glyph, prop=FontProperties(weight="bold"))
    box = path.get_extents()
    return MarkerStyle(path.transformed(Affine2D().translate(-box.x0 - box.width / 2,
                                                             -box.y0 - box.height / 2)))


def _draw_letters(ax: Axes, tile: _Tile, actions: np.ndarray | None, cell: float) -> None:
    """A tile's letter: centred on an empty cell, in the corner when an arrow is there."""
    fonts = {busy: FontProperties(size=_font_size(cell, 0.25 if busy else 0.45), weight="bold")
             for busy in (False, True)}  # shared: a font per text is looked up per text
    color = "white" if tile.color in (_HOLE, _CLIFF) else "#1a1a1a"
    for i, j in np.argwhere(tile.mask):
        busy = actions is not None and actions[i, j] >= 0
        ax.text(j - 0.4 if busy else j, i - 0.4 if busy else i, tile.letter,
                ha="left" if busy else "center", va="top" if busy else "center",
                fontproperties=fonts[busy], color=color, zorder=6, in_layout=False)


def _font_size(cell_inches: float, fraction: float) -> float:
    """Points for a letter filling ``fraction`` of a cell, kept between legible bounds."""
    return float(np.clip(cell_inches * 72 * fraction, 5, 18))


@dataclass(frozen=True)
class _Board:
    """One map: the Q-table row behind each cell, its special tiles, walls and blocked cells."""

    title: str
    rows: np.ndarray
    tiles: Sequence[_Tile] = ()
    no_action: np.ndarray | None = None
    walls: Sequence[tuple[tuple[float, float], tuple[float, float]]] = ()
    note: str = ""

    @property
    def blocked(self) -> np.ndarray:
        """Cells without an action to draw: terminal tiles, cells that are not states."""
        return np.zeros(self.rows.shape, bool) if self.no_action is None else self.no_action


def _is_lake(env: gym.Env) -> bool:
    """FrozenLake or a custom map in its style: a ``desc`` of S/F/H/G letters."""
    desc = getattr(env, "desc", None)
    if desc is None:
        return False
    letters = np.char.decode(np.asarray(desc, dtype=bytes), "ascii")
    return letters.ndim == 2 and set(np.unique(letters)) <= set("SFHG")


def _lake_board(env: gym.Env, q: np.ndarray) -> _Board:
    letters = np.char.decode(np.asarray(env.desc, dtype=bytes), "ascii")
    _check_rows(q, letters.size, f"the {letters.shape[0]}x{letters.shape[1]} lake")
    tiles = [
        _Tile("start", letters == "S", None, "S"),
        _Tile("hole", letters == "H", _HOLE, "H"),
        _Tile("goal", letters == "G", _GOAL, "G"),
    ]
    rows = np.arange(letters.size).reshape(letters.shape)
    return _Board("", rows, tiles, no_action=(letters == "H") | (letters == "G"))


def _cliff_board(env: gym.Env, q: np.ndarray) -> _Board:
    shape = tuple(getattr(env, "shape", (4, 12)))
    _check_rows(q, math.prod(shape), "CliffWalking")
    cliff = np.asarray(getattr(env, "_cliff", np.zeros(shape, bool)), dtype=bool)
    start, goal = np.zeros(shape, bool), np.zeros(shape, bool)
    start[np.unravel_index(getattr(env, "start_state_index", (shape[0] - 1) * shape[1]), shape)] = 1
    goal[shape[0] - 1, shape[1] - 1] = True
    tiles = [_Tile("start", start, None, "S"), _Tile("cliff", cliff, _CLIFF, "C"),
             _Tile("goal", goal, _GOAL, "G")]
    rows = np.arange(math.prod(shape)).reshape(shape)
    return _Board("", rows, tiles, no_action=cliff | goal)


def _taxi_boards(env: TaxiEnv, q: np.ndarray) -> tuple[list[_Board], tuple[int, int]]:
    """One 5x5 map per (passenger location, destination): 5 rows x 4 columns of maps."""
    _check_rows(q, 500, "Taxi")
    names = "RGYB"
    shape = (env.max_row + 1, env.max_col + 1)
    landmarks = []
    for name, (r, c) in zip(names, env.locs, strict=True):
        mask = np.zeros(shape, bool)
        mask[r, c] = True
        landmarks.append(_Tile(name, mask, None, name))
    walls = _taxi_walls(np.char.decode(np.asarray(env.desc, dtype=bytes), "ascii"))
    boards = []
    for passenger in range(5):
        for dest in range(4):
            rows = np.array([[env.encode(r, c, passenger, dest) for c in range(shape[1])]
                             for r in range(shape[0])])
            where = "in taxi" if passenger == 4 else f"at {names[passenger]}"
            done = passenger == dest
            boards.append(_Board(f"passenger {where}, to {names[dest]}", rows, landmarks,
                                 no_action=np.full(shape, done), walls=walls,
                                 note="delivered\n(terminal)" if done else ""))
    return boards, (5, 4)


def _taxi_walls(desc: np.ndarray) -> list[tuple[tuple[float, float], tuple[float, float]]]:
    """The '|' of Taxi's map as segments between cells, in cell coordinates."""
    walls = []
    for i, line in enumerate(desc[1:-1]):
        for j in range((len(line) - 3) // 2):
            if line[2 * j + 2] == "|":
                walls.append(((j + 0.5, i - 0.5), (j + 0.5, i + 0.5)))
    return walls


def _boards_figure(
    policy: _Policy,
    boards: Sequence[_Board],
    layout: tuple[int, int],
    glyphs: Mapping[int, Glyph],
    title: str,
) -> Figure:
    """The learned policy on every map (shaded by value), and the optimal one beside it."""
    parts = policy.panels("Learned greedy policy", "Optimal policy")
    greyed = any((~policy.seen[b.rows] & ~b.blocked).any() for b in boards)
    handles = _legend_handles(_board_handles(boards[0].tiles, glyphs), policy, greyed)
    place = _BoardsLayout(boards[0], layout, len(parts), legend_height(len(handles), 6))
    fig = new_figure(place.size, layout=None)
    norm = _board_norm(policy, boards)
    for k, (name, actions) in enumerate(parts):
        shaded = k == 0
        left, top = place.corner(k)
        text_at(fig, left + place.grid_w / 2, top, name, fontsize="large")
        top += _BLOCK_TITLE
        axes = grid_at(fig, *layout, left=left, top=top + place.map_title,
                       width=place.grid_w, height=place.grid_h - place.map_title,
                       wspace=_MAP_GAP, hspace=_MAP_GAP + place.map_title).subplots(squeeze=False)
        for ax, board in zip(axes.flat, boards, strict=True):
            _draw_board(ax, board, policy, actions, glyphs, norm if shaded else None)
        if shaded:
            bar = axes_at(fig, left + place.grid_w + _BAR_GAP, top + 0.075 * place.grid_h,
                          _BAR_WIDTH, 0.85 * place.grid_h)
            fig.colorbar(ScalarMappable(norm, _VALUE_CMAP), cax=bar,
                         label=r"state value  $\max_a Q(s, a)$")
    legend_below(fig, handles, 6, frameon=False)
    figure_title(fig, title, fontsize="x-large")
    return fig


# Inches of a policy's title, of the gaps between maps, and of the colour bar beside them.
_BLOCK_TITLE, _MAP_GAP, _BAR_GAP, _BAR_WIDTH, _BAR_LABELS = 0.34, 0.1, 0.2, 0.17, 0.9


@dataclass(frozen=True)
class _BoardsLayout:
    """A fixed layout for ``n`` policies of ``layout`` maps like ``board``: each policy a block
    (its title, the grid of maps, the colour bar's room), stacked for wide maps (CliffWalking),
    side by side for square ones, the legend under them. Cells are at most 0.9 inch."""

    board: _Board
    layout: tuple[int, int]
    n: int
    legend: float

    @property
    def cell(self) -> float:
        height, width = self.board.rows.shape
        return min(0.9, 6.0 / max(height, width)) if self.layout == (1, 1) else 0.36

    @property
    def map_title(self) -> float:
        """Room above each map for its title (Taxi's passenger and destination)."""
        return title_room(1, 8.33) if self.board.title else 0.0  # fontsize="small"

    @property
    def grid_w(self) -> float:
        cols = self.layout[1]
        return cols * self.board.rows.shape[1] * self.cell + (cols - 1) * _MAP_GAP

    @property
    def grid_h(self) -> float:
        """The maps and their titles."""
        rows = self.layout[0]
        return (rows * (self.board.rows.shape[0] * self.cell + self.map_title)
                + (rows - 1) * _MAP_GAP)

    def block(self, k: int) -> tuple[float, float]:
        """The ``k``-th block's size: only the first, the learned policy, has a colour bar."""
        bar = _BAR_GAP + _BAR_WIDTH + _BAR_LABELS if k == 0 else 0.0
        return self.grid_w + bar, _BLOCK_TITLE + self.grid_h

    @property
    def stacked(self) -> bool:
        height, width = self.board.rows.shape
        return width > 1.6 * height

    def corner(self, k: int) -> tuple[float, float]:
        """Inches from the figure's top-left corner to the ``k``-th block's."""
        width, height = self.block(0)
        if self.stacked:
            return _MARGIN, SUPTITLE + k * (height + _BLOCK_GAP)
        return _MARGIN + k * (width + _BLOCK_GAP), SUPTITLE

    @property
    def size(self) -> tuple[float, float]:
        right, bottom = self.corner(self.n - 1)
        width, height = self.block(self.n - 1)
        return (max(right + width, _MARGIN + self.block(0)[0]) + _MARGIN,
                bottom + height + 0.1 + self.legend)


_MARGIN, _BLOCK_GAP = 0.15, 0.3


def _board_norm(policy: _Policy, boards: Sequence[_Board]) -> Normalize:
    """One value scale for all maps, over the cells that are shaded (visited, not terminal)."""
    return normalize(np.concatenate([policy.shown_values[b.rows][~b.blocked] for b in boards]))


def _draw_board(
    ax: Axes,
    board: _Board,
    policy: _Policy,
    actions: np.ndarray,
    glyphs: Mapping[int, Glyph],
    norm: Normalize | None,
) -> None:
    """One map: value shading (or a plain background for the optimum), glyphs, tiles, walls."""
    active = (actions[board.rows] >= 0) & ~board.blocked
    if norm is None:
        shading, cmap, norm = np.zeros(board.rows.shape), ListedColormap([_BACKGROUND]), Normalize()
    else:
        shading, cmap = np.where(active, policy.values[board.rows], np.nan), _VALUE_CMAP
    if board.note:
        shading, cmap = np.zeros(board.rows.shape), ListedColormap(["#f7f7f7"])
    cells = np.where(active, actions[board.rows], -1)
    differ = policy.differ[board.rows] & ~board.blocked
    _grid_panel(ax, shading, cmap=cmap, norm=norm, actions=cells, glyphs=glyphs,
                tiles=board.tiles, differ=differ)
    if board.walls:
        ax.add_collection(LineCollection(board.walls, colors="black", linewidths=3, zorder=4))
    if board.note:
        ax.text(0.5, 0.5, board.note, transform=ax.transAxes, ha="center", va="center",
                color="grey", fontsize="small", zorder=6,
                bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.8})
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(board.title, fontsize="small", y=1.0)  # y: placed, not measured (see below)


def _board_handles(tiles: Sequence[_Tile], glyphs: Mapping[int, Glyph]) -> list[Artist]:
    """Legend entries of a map: its coloured tiles and its actions drawn as letters."""
    handles: list[Artist] = [Patch(facecolor=t.color, edgecolor="grey", label=t.label)
                             for t in tiles if t.color is not None]
    letters = [g for g in glyphs.values() if isinstance(g, str)]
    handles += [Line2D([], [], linestyle="", marker=f"${g}$", color="black", markersize=9,
                       label=_LETTER_NAMES.get(g, g)) for g in letters]
    return handles


def _legend_handles(handles: list[Artist], policy: _Policy, greyed: bool) -> list[Artist]:
    """The family's own entries, then greyed and differing cells: the legend under a policy."""
    if greyed:
        handles.append(Patch(facecolor=UNVISITED, edgecolor="grey", label="never visited"))
    if policy.optimal is not None and not policy.optimum:
        handles.append(Patch(facecolor="none", edgecolor=_DIFFER, linewidth=2,
                             label="learned differs from optimal"))
    return handles


def _legend(fig: Figure, handles: list[Artist], policy: _Policy, greyed: bool) -> None:
    """The legend of :func:`_legend_handles`, in one row under a figure of constrained layout."""
    if handles := _legend_handles(handles, policy, greyed):
        fig.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 6),
                   frameon=False)


def _blackjack_figure(env: gym.Env, policy: _Policy, title: str) -> Figure:
    """Sutton & Barto's figure: hit/stick over player sum 12-21 x dealer card, values beside."""
    encoder = encoder_for(env.observation_space)
    _check_rows(policy.q, encoder.n_states, "Blackjack")
    parts = policy.panels("Learned policy", "Optimal policy")
    grids = {ace: np.array([[encoder.key((p, d, ace)) for d in range(1, 11)]
                            for p in range(12, 22)]) for ace in (1, 0)}
    rows = np.concatenate(list(grids.values()))
    norm = normalize(policy.shown_values[rows])
    handles = _legend_handles(
        [Patch(facecolor=_BLACKJACK_CMAP(a), edgecolor="grey", label=f"{g}: {_LETTER_NAMES[g]}")
         for a, g in _BLACKJACK_GLYPHS.items()], policy, not policy.seen[rows].all())
    fig, axes, bar = _blackjack_layout(len(parts) + 1, handles)
    for row_axes, (ace, rows) in zip(axes, grids.items(), strict=True):
        hand = "usable ace" if ace else "no usable ace"
        for ax, (name, actions) in zip(row_axes[:-1], parts, strict=True):
            _grid_panel(ax, _shown(actions[rows]), cmap=_BLACKJACK_CMAP, norm=Normalize(-0.5, 1.5),
                        origin="lower", actions=actions[rows], glyphs=_BLACKJACK_GLYPHS,
                        differ=policy.differ[rows])
            ax.set_title(f"{name}, {hand}", y=1.0)
        values = policy.shown_values[rows]
        _grid_panel(row_axes[-1], values, cmap=_VALUE_CMAP, norm=norm, origin="lower")
        _annotate_values(row_axes[-1], values)
        row_axes[-1].set_title(f"State value, {hand}", y=1.0)
    _blackjack_axes(axes)
    fig.colorbar(ScalarMappable(norm, _VALUE_CMAP), cax=bar, label=r"$\max_a Q(s, a)$")
    legend_below(fig, handles, 6, frameon=False)
    figure_title(fig, title, fontsize="x-large")
    return fig


def _blackjack_layout(columns: int, handles: list[Artist]) -> tuple[Figure, np.ndarray, Axes]:
    """A fixed layout of two rows of square panels, the colour bar on the right, the legend
    under them: its room in inches from the font sizes, nothing measured at draw time."""
    side, left, gap, bar_gap = 2.8, 0.62, 0.25, 0.22
    top = SUPTITLE + title_room(1) + 0.04
    row_gap = 0.12 + title_room(1)  # tick labels on the bottom row only
    bottom = TICKS + LABEL + 0.12 + legend_height(len(handles), 6)
    width = columns * side + (columns - 1) * gap
    height = 2 * side + row_gap
    fig = new_figure((left + width + bar_gap + _BAR_WIDTH + 0.85, top + height + bottom),
                     layout=None)
    axes = grid_at(fig, 2, columns, left=left, top=top, width=width, height=height, wspace=gap,
                   hspace=row_gap).subplots(squeeze=False)
    bar = axes_at(fig, left + width + bar_gap, top + 0.1 * height, _BAR_WIDTH, 0.8 * height)
    return fig, axes, bar


def _blackjack_axes(axes: np.ndarray) -> None:
    """Cards and sums as ticks on the outer panels only, which share them with the panels in
    their column and row: ticks are the costliest part of the picture to build and draw.
    (Titles sit at a fixed height, ``y=1``: placed automatically, they would measure the
    tick labels of every panel at each draw, though nothing sits above.)"""
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    for ax in axes[-1]:
        ax.set_xticks(range(10), ["A", *map(str, range(2, 11))])
        ax.set_xlabel("dealer showing")
    for ax in axes[:, 0]:
        ax.set_yticks(range(10), [str(s) for s in range(12, 22)])
        ax.set_ylabel("player sum")


def _annotate_values(ax: Axes, values: np.ndarray) -> None:
    """Each cell's value in small print: the colour scale alone hides small differences.

    The numbers are one collection of glyph outlines placed like scatter markers, not a text
    artist per cell: 200 texts took a third of the Blackjack picture's drawing time.
    """
    cells = [(j, i, f"{v:.2f}".replace("-0.00", "0.00"))
             for (i, j), v in np.ndenumerate(values) if np.isfinite(v)]
    if not cells:
        return
    numbers = PathCollection([_number(text) for *_, text in cells], sizes=[1.0],
                             offsets=[(x, y) for x, y, _ in cells],
                             offset_transform=ax.transData, facecolors="#1a1a1a",
                             edgecolors="none", zorder=3)
    numbers.set_transform(IdentityTransform())  # outlines in points, as scatter's markers
    ax.add_collection(numbers, autolim=False)


_NUMBER_POINTS = 5.5


def _number(text: str) -> Outline:
    """The outline of ``text`` (digits, point, minus) in points, centred on the origin."""
    x, vertices, codes = 0.0, [], []
    for char in text:
        glyph, advance = _glyph(char)
        vertices.append(glyph.vertices + (x, 0.0))
        codes.append(glyph.codes)
        x += advance
    return Outline(np.concatenate(vertices) - (x / 2, _digit_height() / 2), np.concatenate(codes))


@functools.cache
def _digit_height() -> float:
    return _glyph("0")[0].get_extents().y1


@functools.cache
def _glyph(char: str) -> tuple[Outline, float]:
    """A character's outline at :data:`_NUMBER_POINTS` and its advance, made once per process."""
    font = FontProperties(size=_NUMBER_POINTS)
    face = get_font(findfont(font))
    face.set_size(_NUMBER_POINTS, 72)  # 72 dpi: advances in points
    advance = face.load_char(ord(char), flags=LoadFlags.NO_HINTING).linearHoriAdvance / 65536
    return TextPath((0, 0), char, prop=font), advance


def _plotted_bins(env: gym.Env) -> DiscretizeObservation | None:
    """The wrapper that cut ``env``'s observations into bins, if it made a grid of one or two
    dimensions (the others in one bin) that can be drawn in the observation's own units."""
    while isinstance(env, gym.Wrapper):
        if isinstance(env, DiscretizeObservation):
            cut = [n for n in env.bins if n > 1]
            return env if 1 <= len(cut) <= 2 and not env.multidiscrete else None
        env = env.env
    return None


def _bins_figure(bins: DiscretizeObservation, policy: _Policy, title: str) -> Figure:
    """Value and greedy action over the observation's cut dimensions, the first across, the
    second up (MountainCar: position x velocity; CartPole with one bin for the cart: the pole's
    angle x angular velocity)."""
    cut = [i for i, n in enumerate(bins.bins) if n > 1]
    sizes = [int(bins.bins[i]) for i in cut]

    def fold(array: np.ndarray) -> np.ndarray:
        grid = np.asarray(array, dtype=np.float64).reshape(sizes)  # rows are C-order cells
        return grid.T if grid.ndim == 2 else grid[None, :]

    def label(ax: Axes, name: str) -> None:
        ax.set_title(name)
        for axis, dim in zip((ax.xaxis, ax.yaxis), cut, strict=False):
            n = int(bins.bins[dim])
            axis.set_ticks([-0.5, n - 0.5], [f"{bins.low[dim]:.3g}", f"{bins.high[dim]:.3g}"])
            axis.set_label_text(f"observation[{dim}] ({n} bins)")
        if len(cut) == 1:
            ax.set_yticks([])

    return _grid_figure(policy, title, fold, label, origin="lower")


def _generic_figure(policy: _Policy, title: str) -> Figure:
    """Value and greedy action of every Q-table row, folded row-major into a near-square grid."""
    n = len(policy.q)
    width = math.ceil(math.sqrt(n))
    return _grid_figure(policy, title, _folder(n, math.ceil(n / width), width),
                        lambda ax, name: _fold_axes(ax, name, width))


def _grid_figure(
    policy: _Policy,
    title: str,
    fold: Callable[[np.ndarray], np.ndarray],
    label: Callable[[Axes, str], None],
    origin: str = "upper",
) -> Figure:
    """The state value, then the learned (and optimal) greedy actions, each row of the Q-table
    laid out on a grid by ``fold`` (NaN: no row there), each panel labelled by ``label``."""
    n, n_actions = policy.q.shape
    padding = [_Tile("", np.isnan(fold(np.zeros(n))), "white", "")]  # cells past the last row
    parts = policy.panels("Greedy action (learned)", "Optimal action")
    fig = new_figure((4.6 * (len(parts) + 1) + 0.6, 4.8))
    axes = fig.subplots(1, len(parts) + 1, squeeze=False)[0]
    values = policy.shown_values
    image = _grid_panel(axes[0], fold(values), cmap=_VALUE_CMAP, norm=normalize(values),
                        tiles=padding, origin=origin)
    fig.colorbar(image, ax=axes[0], shrink=0.8, label=r"$\max_a Q(s, a)$")
    label(axes[0], "State value")
    cmap = action_cmap(n_actions)
    differ = fold(policy.differ) == 1  # NaN padding compares False
    for ax, (name, actions) in zip(axes[1:], parts, strict=True):
        image = _grid_panel(ax, fold(_shown(actions)), cmap=cmap,
                            norm=Normalize(-0.5, n_actions - 0.5), tiles=padding, differ=differ,
                            origin=origin)
        label(ax, name)
    ticks = range(n_actions) if n_actions <= 18 else None
    fig.colorbar(image, ax=axes[1:], shrink=0.8, ticks=ticks, label="action")
    _legend(fig, [], policy, not policy.seen.all())
    fig.suptitle(title, fontsize="x-large", fontweight="bold")
    return fig


def _shown(actions: np.ndarray) -> np.ndarray:
    """Actions as a shading: NaN (the colour map's grey) where there is none to show."""
    return np.where(actions >= 0, actions, np.nan)


def _folder(n: int, height: int, width: int) -> Callable[[np.ndarray], np.ndarray]:
    """A function laying ``n`` row values out row-major on ``height x width`` (NaN padding)."""

    def fold(array: np.ndarray) -> np.ndarray:
        grid = np.full(height * width, np.nan)
        grid[:n] = array
        return grid.reshape(height, width)

    return fold


def _fold_axes(ax: Axes, title: str, width: int) -> None:
    ax.set_title(title)
    ax.set_xlabel(f"Q-table row mod {width}")
    ax.set_ylabel("first row of the line")
    ax.yaxis.set_major_formatter(lambda y, _: f"{int(round(y)) * width:,}")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.yaxis.get_major_locator().set_params(integer=True)
