"""Making environments from ids and keywords, with one-line errors.

``gymnasium.make`` does the work; this module turns its exceptions into advice (the closest
registered ids, the keywords the environment accepts) and checks that the spaces are tabular.

An environment of one's own is found as Gymnasium finds it: ``module:EnvName-v0`` imports
``module`` (which registers ``EnvName-v0``) before making it, and installed plugins (the
``gymnasium.envs`` entry points) are loaded when an id is not registered yet.
"""

from __future__ import annotations

import contextlib
import difflib
import importlib
import inspect
import math
import warnings
from collections.abc import Iterable, Sequence
from importlib import metadata
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.envs.registration import namespace
from gymnasium.wrappers import DiscretizeObservation, TimeLimit, TransformObservation

from tabrl.errors import TabrlError, UsageError, did_you_mean
from tabrl.spaces import encoder_for, n_actions_of

#: Bins of a continuous space: each count allocates its edges, and the cells of all dimensions
#: are numbered as one int64 state (beyond 2**62 the numbers would overflow).
MAX_BINS_PER_DIMENSION = 1_000_000
MAX_CELLS = 2**62
#: The words for a keyword's expected type, from the type of its default value.
TYPE_WORDS = {bool: "true or false", int: "a whole number", float: "a number", str: "a string",
              tuple: "a list", list: "a list"}
#: Keywords of ``gymnasium.make`` itself, which ``--env-kwargs`` passes on with the others.
MAKE_KEYWORDS = {"max_episode_steps": 1, "disable_env_checker": False}

#: Episodes of environments without a time limit (CliffWalking) stop after this many steps,
#: so that an exploring agent cannot wander forever; the step is a truncation, not a terminal.
DEFAULT_STEP_CAP = 10_000


#: The entry-point group of environment plugins. Gymnasium before 1.0 loaded it on import;
#: gymnasium 1.x no longer does, so tabrl loads it (:func:`load_plugin_envs`).
PLUGIN_GROUP = "gymnasium.envs"
#: Entry-point names that register at the root namespace rather than their own.
ROOT_PLUGIN_NAMES = ("__root__", "__internal__")

#: Which module's import registered an id, so that a run folder can import it again.
_registered_by: dict[str, str] = {}
#: Which plugin (its package) registered an id; a plugin is loaded wherever an id is unknown.
_registered_by_plugin: dict[str, str] = {}
_loaded_plugins: set[tuple[str, str]] = set()
#: Plugins that failed to load: ``name = value`` -> the error.
plugin_errors: dict[str, str] = {}


def import_env_module(module: str) -> list[str]:
    """Import a module that registers environments; the ids its first import registered."""
    before = set(gym.registry)
    try:
        importlib.import_module(module)
    except ImportError as error:
        raise UsageError(f"cannot import the environment module {module!r} ({error}): put it "
                         "on the Python path (PYTHONPATH) or install its package") from None
    except Exception as error:  # noqa: BLE001 - the user's module failed: one line, not a trace
        raise TabrlError(f"importing the environment module {module!r} failed: "
                         f"{type(error).__name__}: {error}") from None
    registered = sorted(set(gym.registry) - before)
    for env_id in registered:
        _registered_by.setdefault(env_id, module)
    return registered


def import_env_modules(modules: Iterable[str]) -> None:
    """Import every module of ``--env-module`` (each registers environments)."""
    for module in modules:
        import_env_module(module)


def load_plugin_envs() -> None:
    """Register the environments of installed plugins (entry points of :data:`PLUGIN_GROUP`).

    As gymnasium 0.26-0.29 did: an entry point ``name = package.module:function`` is called in the
    registry namespace ``name`` (the root namespace for ``__root__``); one that names a module
    registers by being imported. A plugin that fails is noted in :data:`plugin_errors`, not fatal.
    """
    for plugin in metadata.entry_points(group=PLUGIN_GROUP):
        key = (plugin.name, plugin.value)
        if key in _loaded_plugins:
            continue
        _loaded_plugins.add(key)
        before = set(gym.registry)
        root = plugin.name in ROOT_PLUGIN_NAMES
        try:
            with contextlib.nullcontext() if root else namespace(plugin.name):
                loaded = plugin.load()
                if plugin.attr:
                    loaded()
        except Exception as error:  # noqa: BLE001 - a broken plugin must not break tabrl
            plugin_errors[f"{plugin.name} = {plugin.value}"] = f"{type(error).__name__}: {error}"
            continue
        package = plugin.dist.name if plugin.dist is not None else plugin.value
        for env_id in set(gym.registry) - before:
            _registered_by_plugin[env_id] = f"plugin {package}"


def resolve_env_id(env_id: str) -> str:
    """The registered id that ``env_id`` names, registering it first if needed.

    ``module:EnvName-v0`` imports ``module``, as ``gymnasium.make`` does; an id not registered
    yet may come from a plugin. Anything else is a one-line error naming both ways in.
    """
    module, has_module, name = env_id.rpartition(":")
    if has_module and not (module and name):
        raise UsageError(f"{env_id!r} is not an environment id: give EnvName-v0, or "
                         "module:EnvName-v0 for one that module registers")
    if has_module:
        registered = import_env_module(module)
        if name not in gym.registry:
            also = f" (it registers {', '.join(registered)})" if registered else ""
            raise UsageError(f"the module {module} does not register {name!r}{also}: "
                             f"{suggest_ids(name)}")
    if name not in gym.registry:
        load_plugin_envs()
    if name not in gym.registry:
        raise UsageError(
            f"unknown environment id {name!r}: {suggest_ids(name)} (your own environment: give "
            f"module:{name}, the module that registers it, or --env-module MODULE)"
        )
    return name


def qualified_env_id(env_id: str) -> str:
    """``env_id`` with the module whose import registered it, ``module:EnvName-v0``: the form a
    run folder stores, so that a later process (resume, evaluate, a sweep's workers) finds it."""
    module = _registered_by.get(env_id)
    return f"{module}:{env_id}" if module and ":" not in env_id else env_id


def env_source(env_id: str) -> str:
    """Where a registered id comes from: the module tabrl imported for it, the plugin, or else
    the package of its entry point (``gymnasium``, ``tabrl``)."""
    if env_id in _registered_by or env_id in _registered_by_plugin:
        return _registered_by.get(env_id) or _registered_by_plugin[env_id]
    entry = gym.spec(env_id).entry_point
    module = entry if isinstance(entry, str) else getattr(entry, "__module__", "") or ""
    return module.partition(".")[0].partition(":")[0]


def suggest_ids(env_id: str) -> str:
    """Advice for an unknown id: other versions of the same name first, then similar names."""
    name = env_id.rsplit("-v", 1)[0]
    versions = [i for i in gym.registry if i.rsplit("-v", 1)[0] == name]
    close = versions or difflib.get_close_matches(env_id, list(gym.registry), n=3, cutoff=0.6)
    if close:
        return f"did you mean {' or '.join(sorted(close))}?"
    return "run `tabrl envs` for the environments tabrl can train on"


def constructor_parameters(env_id: str) -> dict[str, inspect.Parameter]:
    """The keyword parameters of the environment's constructor (``render_mode`` aside)."""
    params = inspect.signature(_entry_point(env_id)).parameters
    return {name: p for name, p in params.items()
            if name not in ("self", "render_mode") and not name.startswith("_")
            and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}


def check_env_kwargs(env_id: str, env_kwargs: dict[str, Any]) -> None:
    """A one-line error for a keyword the constructor lacks, or a value whose type differs from
    its default's (``is_slippery=maybe`` would be a string, and a non-empty string is true)."""
    defaults = {**{name: p.default for name, p in constructor_parameters(env_id).items()},
                **MAKE_KEYWORDS}
    takes_any = any(p.kind is p.VAR_KEYWORD for p in
                    inspect.signature(_entry_point(env_id)).parameters.values())
    for key, value in env_kwargs.items():
        if key not in defaults:
            if takes_any:
                continue
            raise UsageError(
                f"{env_id} has no keyword {key!r}: {did_you_mean(key, list(defaults))}")
        expected = type(defaults[key])
        if expected in TYPE_WORDS and not _fits(value, expected):
            raise UsageError(f"{key} takes {TYPE_WORDS[expected]}, not {value!r}: "
                             f"e.g. --env-kwargs {key}={_example(defaults[key])}")
    if env_kwargs.get("max_episode_steps", 1) < 1:
        raise UsageError(f"max_episode_steps must be at least 1, not "
                         f"{env_kwargs['max_episode_steps']}")


def _entry_point(env_id: str) -> Any:
    """The class (or function) ``gymnasium.make`` calls for ``env_id``."""
    entry = gym.spec(env_id).entry_point
    if isinstance(entry, str):
        module, _, name = entry.partition(":")
        entry = getattr(__import__(module, fromlist=[name]), name)
    return entry


def _fits(value: Any, expected: type) -> bool:
    """Whether ``value`` is of the type of a default: a bool is no number, an int serves as a
    float (and a float with no fraction as an int, as YAML reads ``2.0``)."""
    if expected is bool or isinstance(value, bool):
        return isinstance(value, bool) and expected is bool
    if expected is float:
        return isinstance(value, (int, float)) and math.isfinite(value)
    if expected in (tuple, list):
        return isinstance(value, (tuple, list))
    return isinstance(value, expected)


def _example(default: Any) -> str:
    """A default value as ``--env-kwargs`` writes it."""
    if isinstance(default, (tuple, list)):
        return f"[{','.join(map(str, default))}]"
    return str(default).lower() if isinstance(default, bool) else str(default)


def is_continuous(env_id: str, env_kwargs: dict[str, Any] | None = None) -> bool:
    """Whether the environment's observations are a continuous ``Box``."""
    env = make_env(env_id, env_kwargs, check=False)
    try:
        return isinstance(env.observation_space, gym.spaces.Box)
    finally:
        env.close()


def make_env(
    env_id: str,
    env_kwargs: dict[str, Any] | None = None,
    bins: int | Sequence[int] | None = None,
    obs_bounds: Sequence[Sequence[float]] | None = None,
    render_mode: str | None = None,
    check: bool = True,
) -> gym.Env:
    """``gymnasium.make(env_id, **env_kwargs)``, with its keywords and tabular spaces checked.

    ``env_id`` may name its module, ``module:EnvName-v0`` (see :func:`resolve_env_id`). A
    continuous observation space becomes a discrete one with ``bins`` (see :func:`discretize`);
    ``check=False`` leaves the spaces as they are, unchecked.
    """
    env_kwargs = dict(env_kwargs or {})
    env_id = resolve_env_id(env_id)
    check_env_kwargs(env_id, env_kwargs)
    render = {"render_mode": render_mode} if render_mode else {}  # not all envs take the word
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            env = gym.make(env_id, **render, **env_kwargs)
    except gym.error.Error as error:
        raise UsageError(f"cannot make {env_id}: {error}") from None
    except (TypeError, ValueError, KeyError, AssertionError, IndexError) as error:
        raise UsageError(f"cannot make {env_id} with {env_kwargs}: {error!r}") from None
    if not check:
        return env
    if bins is not None:
        env = discretize(env, bins, obs_bounds)
    elif obs_bounds is not None:
        raise UsageError("observation bounds only apply with --bins: give the number of bins too")
    check_tabular(env)
    return env


def discretize(
    env: gym.Env, bins: int | Sequence[int], obs_bounds: Sequence[Sequence[float]] | None = None
) -> gym.Env:
    """A continuous (``Box``) observation space cut into ``bins`` equal bins per dimension.

    Gymnasium's ``DiscretizeObservation`` numbers the cells of the grid, so the agent sees a
    ``Discrete`` state. The grid spans the space's bounds, or ``obs_bounds`` (one ``(low, high)``
    per dimension), to which observations are clipped first: an unbounded dimension (CartPole's
    velocities) needs them, and tighter bounds spend the bins where the states really are.
    """
    space = env.observation_space
    if not isinstance(space, gym.spaces.Box):
        raise UsageError(f"--bins is for continuous observations, and {space} is already discrete: "
                         "leave --bins out")
    n_dims = space.low.size
    per_dim = [int(bins)] * n_dims if np.isscalar(bins) else [int(b) for b in bins]
    if len(per_dim) != n_dims or min(per_dim) < 1 or max(per_dim) > MAX_BINS_PER_DIMENSION:
        raise UsageError(f"--bins needs one count in [1, {MAX_BINS_PER_DIMENSION:,}], or one per "
                         f"dimension ({n_dims}), not {bins}")
    if math.prod(per_dim) > MAX_CELLS:
        raise UsageError(f"--bins {bins} makes {math.prod(per_dim):.3g} cells over {n_dims} "
                         f"dimensions, more states than a Q-table can number (2**62): use fewer")
    low, high = space.low.astype(np.float64).ravel(), space.high.astype(np.float64).ravel()
    if obs_bounds is not None:
        bounds = np.asarray(obs_bounds, dtype=np.float64)
        if bounds.shape != (n_dims, 2) or not np.all(bounds[:, 0] < bounds[:, 1]):
            raise UsageError(f"--obs-bounds needs one low:high with low < high per dimension "
                             f"({n_dims}), not {obs_bounds}")
        low, high = bounds[:, 0], bounds[:, 1]
        clipped = gym.spaces.Box(low.astype(space.dtype), high.astype(space.dtype),
                                 dtype=space.dtype)
        env = TransformObservation(env, lambda obs: np.clip(obs, clipped.low, clipped.high),
                                   clipped)
    unbounded = [i for i in range(n_dims) if not np.isfinite(low[i]) or not np.isfinite(high[i])]
    if unbounded:
        raise UsageError(
            f"observation dimension(s) {unbounded} of {space} are unbounded: give every "
            f"dimension's range with --obs-bounds low:high,..., e.g. "
            f"{','.join('-1:1' for _ in range(n_dims))}"
        )
    return DiscretizeObservation(env, bins=tuple(per_dim))


def check_tabular(env: gym.Env) -> None:
    """A one-line error unless states and actions are discrete and finite."""
    encoder_for(env.observation_space)
    n_actions_of(env.action_space)


def with_step_cap(env: gym.Env, max_steps: int = DEFAULT_STEP_CAP) -> gym.Env:
    """``env`` itself if it has a time limit, else wrapped in a ``TimeLimit`` of ``max_steps``."""
    return env if time_limit_of(env) is not None else TimeLimit(env, max_episode_steps=max_steps)






def time_limit_of(env: gym.Env) -> int | None:
    """The ``max_episode_steps`` of the innermost ``TimeLimit`` around ``env``, if any."""
    limit = None
    while isinstance(env, gym.Wrapper):
        if isinstance(env, TimeLimit):
            limit = env._max_episode_steps
        env = env.env
    return limit
