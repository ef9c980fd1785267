"""What a method declares about itself, once: its name, what it is, and its own parameters.

Every agent class of :mod:`tabrl.agents` carries a :class:`MethodSpec` (``spec``), and the
registry ``tabrl.agents.METHODS`` gathers them. What knows about methods reads them from there:
the command line's options for the methods' own parameters, the keys a sweep accepts, the run's
first line, the agents' keyword arguments, their checks and their ``hyperparameters()``. A
method's update lives in two short functions, its agent's ``step`` and its kernel twin in
:mod:`tabrl.compiled.kernels`, which name each other.

Adding a method touches four places: its agent class with its spec (``agents.py``), its kernel
step (``compiled/kernels.py``: a code, a ``_learn_*`` function and its line in ``_learn``), its
defaults (``hyperparams/<name>.yml``) and its tests.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from tabrl.errors import UsageError


def whole_at_least(low: int) -> Callable[[Any], bool]:
    """A check that a value is a whole number of at least ``low``."""
    return lambda value: int(value) == value and value >= low


def between(low: float, high: float) -> Callable[[Any], bool]:
    """A check that a value lies in ``[low, high]``."""
    return lambda value: low <= value <= high


@dataclass(frozen=True)
class Param:
    """One of a method's own parameters: an agent keyword, a command-line option, a sweep key.

    ``describe`` formats the value for the run's first line (``"{} steps"``); for a flag it is
    the words said when it is on. ``check`` and ``rule`` refuse values where the method is not
    sound, with ``rule`` saying what is allowed.
    """

    name: str
    type: type  #: int, float or bool
    default: int | float | bool
    help: str
    describe: str
    check: Callable[[Any], bool] = lambda value: True
    rule: str = ""

    @property
    def flag(self) -> str:
        """The command-line option: ``--planning-steps``, or ``--x/--no-x`` for a flag."""
        option = "--" + self.name.replace("_", "-")
        return f"{option}/--no-{option[2:]}" if self.type is bool else option

    def validated(self, value: Any) -> int | float | bool:
        """``value`` as this parameter's type, or a one-line error saying what is allowed."""
        if not self.check(value):
            raise UsageError(f"{self.name} must be {self.rule}, not {value}")
        return self.type(value)

    def described(self, value: Any) -> str | None:
        """The value as the run's first line says it (nothing for a flag that is off)."""
        if self.type is bool:
            return self.describe if value else None
        return self.describe.format(value)


@dataclass(frozen=True)
class MethodSpec:
    """A method's declaration: its ``--algo`` name, one line on what it is, its own parameters."""

    name: str
    summary: str
    params: tuple[Param, ...] = ()

    def own_values(self, given: dict[str, Any]) -> dict[str, int | float | bool]:
        """The method's own parameters from ``given`` (the defaults for those missing), checked."""
        return {p.name: p.validated(given.get(p.name, p.default)) for p in self.params}


def own_params(specs: Iterable[MethodSpec]) -> dict[str, Param]:
    """Every method's own parameters by name; methods sharing a name share its declaration."""
    params: dict[str, Param] = {}
    for spec in specs:
        for param in spec.params:
            params.setdefault(param.name, param)
    return params
