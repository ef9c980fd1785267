"""How a result shows itself: a title and a few named facts, as plain text for ``repr`` (at most
80 columns, so it reads in any terminal) and as a small HTML table for Jupyter's rich display.

A result class lists its facts once, in ``facts()``, and inherits both forms from :class:`Shown`
(declared ``@dataclass(repr=False)``, so the dataclass does not write a repr of every field:
a Q-table or a million episodes would fill the screen).

>>> from dataclasses import dataclass
>>> @dataclass(repr=False)
... class Result(Shown):
...     value: float
...     def facts(self):
...         return "a result", [("value", f"{self.value:+.2f}"), ("status", "<done>")]
>>> Result(0.5)
a result
  value   +0.50
  status  <done>
>>> print(Result(0.5)._repr_html_())  # doctest: +ELLIPSIS
<table class="tabrl">...<th ...>status</th><td ...>&lt;done&gt;</td>...
"""

from __future__ import annotations

from html import escape

import gymnasium as gym

#: A result's facts: (name, value) pairs, both already formatted as text.
Facts = list[tuple[str, str]]

#: Columns of the text form: a terminal's width.
WIDTH = 80

_CELL = 'style="text-align: left; padding: 1px 8px"'


def as_text(title: str, facts: Facts, width: int = WIDTH) -> str:
    """The title, then one indented line per fact, names aligned; a line too long for ``width``
    is cut in the middle of its value (``...``), so a long path still shows both ends."""
    name_width = max((len(name) for name, _ in facts), default=0)
    lines = [_fit(title, width)]
    for name, value in facts:
        lead = f"  {name:<{name_width}}  "
        lines.append(lead + _fit(value, max(width - len(lead), 9)))
    return "\n".join(lines)


def as_html(title: str, facts: Facts) -> str:
    """The same facts as an HTML table, every text escaped."""
    rows = "".join(f"<tr><th {_CELL}>{escape(name)}</th><td {_CELL}>{escape(value)}</td></tr>"
                   for name, value in facts)
    caption = f'<caption style="text-align: left; font-weight: bold">{escape(title)}</caption>'
    return f'<table class="tabrl">{caption}{rows}</table>'


def _fit(text: str, width: int) -> str:
    """``text`` on one line of at most ``width`` characters (its middle cut out if longer)."""
    text = " ".join(text.splitlines())
    if len(text) <= width:
        return text
    keep = width - 3
    return text[: (keep + 1) // 2] + "..." + text[len(text) - keep // 2:]


def env_name(env: gym.Env) -> str:
    """The id ``env`` was made from (through its wrappers), or its class for one made by hand."""
    return env.spec.id if env.spec is not None else type(env.unwrapped).__name__


class Shown:
    """A result with ``facts()``: ``repr`` is their text form, Jupyter shows their table."""

    def facts(self) -> tuple[str, Facts]:
        """The title and the facts worth a glance (a subclass names its own)."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return as_text(*self.facts())

    def _repr_html_(self) -> str:
        return as_html(*self.facts())
