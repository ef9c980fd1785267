"""The run folder: everything a run needs to be reloaded, evaluated, plotted, resumed, compared.

```
runs/<env>-<algo>-<time>/
  config.json      the resolved settings, the engine that ran, library versions
  state.json       progress: episodes done, epsilon, whether training finished
  q_table.npz      Q-table and visit counts (no pickles): the checkpoint's commit point
  metrics/         per-episode return, length, mean |TD error|, epsilon: a .npy per column;
                   the greedy learning curve: curve_episode.npy, curve_value.npy
  evaluation.json  the greedy evaluation (Monte Carlo and exact)
  curves.png       learning curves; policy.png: the greedy policy
  .lock            held by the process that writes the folder
```
Every file is written atomically and synced; metrics are appended (see ``tabrl.metrics``). A
checkpoint reaches the disk every few seconds of training, so a run stopped at any moment, even
killed, leaves a consistent checkpoint that ``--resume`` continues.
"""

from __future__ import annotations

import inspect
import json
import math
import platform
import re
import reprlib
from dataclasses import MISSING, asdict, dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gymnasium as gym
import numpy as np

from tabrl.agents import AGENTS, OWN_PARAMS, TabularAgent, agent_class
from tabrl.curve import CURVE_POINTS, MAX_CURVE_POINTS, Curve
from tabrl.display import Facts, Shown
from tabrl.envs import DEFAULT_STEP_CAP, make_env
from tabrl.errors import RunFolderError, UsageError
from tabrl.evaluate import EVAL_ON, PLACES, Evaluation, evaluation_place, exact_figure
from tabrl.exploration import EXPLORATIONS
from tabrl.fileio import atomic_save_npz, atomic_write_json, load_npz, read_json
from tabrl.hyperparams import defaults_for, registered_id
from tabrl.loop import COLUMNS, TrainingLog
from tabrl.metrics import MetricsStore, first_non_finite
from tabrl.schedules import KINDS, Schedule, as_schedule
from tabrl.training import ENGINES

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from tabrl.training import Training

CONFIG, STATE, Q_TABLE, METRICS, EVALUATION = (
    "config.json", "state.json", "q_table.npz", "metrics.npz", "evaluation.json",
)
CURVES, POLICY, SOLUTION = "curves.png", "policy.png", "solution.json"
SWEEP, SWEEP_PICTURE = "sweep.json", "sweep.png"
LEARNING = "learning_"  #: prefix of the agent's own arrays in q_table.npz


#: The settings of one way of exploring; a user's own exploration replaces the shipped ones.
EXPLORATION_PARAMS = ("temperature", "temperature_schedule", "ucb_c")


#: Bounds of what a run may ask for. Seeds are numpy's (non-negative, 64 bits); the metrics keep
#: 32 bytes per episode in memory, so 500 million episodes take 16 GB of this machine's 24.
MAX_SEED = 2**63 - 1
MAX_EPISODES = 500_000_000
MAX_STEPS = 1_000_000_000
MAX_INT = 2**63 - 1  #: any other whole number must fit the engines' int64
EPISODES_WHY = "the metrics keep 32 bytes per episode in memory"
_KIND_WORDS = {int: "a whole number", float: "a finite number", str: "a string",
               bool: "true or false", dict: "a mapping", list: "a list", type(None): "null"}


def _is_kind(value: Any, kind: type) -> bool:
    """JSON's types as a config means them: a bool is no number, an int serves as a float."""
    if kind in (int, float) and isinstance(value, bool):
        return False
    if kind is float:
        return isinstance(value, (int, float)) and math.isfinite(value)
    return isinstance(value, kind)


@dataclass(frozen=True)
class Setting:
    """The type of a setting and its range, checked wherever settings enter (the command line,
    a grid, config.json): one line names what is wrong before anything runs on it."""

    kinds: tuple[type, ...]
    low: float | None = None
    high: float | None = None
    why: str = ""  #: the reason for a bound that is not obvious
    choices: tuple[str, ...] = ()  #: the values a string may take (any, if empty)
    items: Setting | None = None  #: every item of a list
    keys: dict[str, Setting] | None = None  #: the keys a mapping may hold
    optional: tuple[str, ...] = ()  #: keys a mapping may lack (it must hold the others)
    open: bool = False  #: whether a mapping may hold other keys as well (left unread)

    def problem(self, value: Any) -> str | None:
        """What is wrong with ``value``, in words that follow the setting's name, or None."""
        if not any(_is_kind(value, kind) for kind in self.kinds):
            words = " or ".join(_KIND_WORDS[kind] for kind in self.kinds)
            return f"must be {words}, not {reprlib.repr(value)}"
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return self._range_problem(value)
        if isinstance(value, str) and self.choices and value not in self.choices:
            return f"must be one of {', '.join(self.choices)}, not {reprlib.repr(value)}"
        if isinstance(value, list) and self.items is not None:
            return next((f"item {p}" for p in map(self.items.problem, value) if p), None)
        if isinstance(value, dict) and self.keys is not None:
            return self._keys_problem(value)
        return None

    def _range_problem(self, value: float) -> str | None:
        low, high = self.low, self.high
        if (low is None or value >= low) and (high is None or value <= high):
            return None
        bounds = (f"at least {low:,}" if high is None else f"at most {high:,}" if low is None
                  else f"in [{low:,}, {high:,}]")
        return f"must be {bounds}, not {value:,}" + (f" ({self.why})" if self.why else "")

    def _keys_problem(self, value: dict) -> str | None:
        keys = self.keys or {}
        unknown = [k for k in value if k not in keys]
        if unknown and not self.open:
            return f"has no setting {unknown[0]!r}: it takes {', '.join(keys)}"
        wrong = next((f"{k} {p}" for k, p in ((k, keys[k].problem(v)) for k, v in value.items()
                                              if k in keys) if p), None)
        missing = [k for k in keys if k not in value and k not in self.optional]
        if wrong is None and missing:
            return f"lacks {missing[0]!r}: give {', '.join(keys)}"
        return wrong


NUMBER, OPTIONAL_NUMBER = Setting((float,)), Setting((float, type(None)))
#: The exponent w of ``1/n^w``: GLIE and convergent for w in (0.5, 1]; n^w must stay a float.
EXPONENT_WHY = "1/n^w converges for w in (0.5, 1]"
EXPONENT = Setting((float,), 0, 10, EXPONENT_WHY)
SCHEDULE = Setting((dict, type(None)), keys={
    "kind": Setting((str,), choices=KINDS), "start": NUMBER, "end": NUMBER,
    "rate": Setting((float,), 0, 10, "a decrement, a factor in (0, 1] or an exponent")})
#: The agents' own keywords (``RunConfig.algo_params``) and their types.
#: The methods' own parameters come from their specs (whose checks the agent applies).
ALGO_PARAMS = {
    **{name: Setting((param.type,)) for name, param in OWN_PARAMS.items()},
    "exploration": Setting((str,), choices=tuple(EXPLORATIONS)),
    "temperature": NUMBER, "temperature_schedule": SCHEDULE, "ucb_c": NUMBER,
}
#: Every field of ``RunConfig``: its type and range.
CONFIG_SCHEMA = {
    "env_id": Setting((str,)),
    "env_kwargs": Setting((dict,)),
    "algo": Setting((str,), choices=tuple(AGENTS)),
    "episodes": Setting((int,), 1, MAX_EPISODES, EPISODES_WHY),
    "learning_rate": NUMBER, "discount": NUMBER, "epsilon_start": NUMBER, "epsilon_end": NUMBER,
    "epsilon_decay_episodes": Setting((int,), 1, MAX_INT),
    "seed": Setting((int,), 0, MAX_SEED, "numpy's seeds are 64-bit, non-negative"),
    "engine": Setting((str,), choices=ENGINES),
    "max_steps": Setting((int,), 1, MAX_STEPS),
    "chunk_episodes": Setting((int, type(None)), 1, MAX_EPISODES),
    "chunk_steps": Setting((int, type(None)), 1, MAX_INT),
    "eval_episodes": Setting((int,), 0, MAX_EPISODES, EPISODES_WHY),
    "eval_on": Setting((str,), choices=EVAL_ON),
    "window": Setting((int,), 1, MAX_EPISODES),
    "epsilon_schedule": Setting((str,), choices=KINDS),
    "epsilon_exponent": EXPONENT,
    "learning_rate_exponent": Setting((float, type(None)), 0, 10, EXPONENT_WHY),
    "learning_rate_schedule": SCHEDULE,
    "checkpoint_seconds": Setting((float,), 0),
    "algo_params": Setting((dict,), keys=ALGO_PARAMS, optional=tuple(ALGO_PARAMS)),
    "bins": Setting((int, list, type(None)), 1, items=Setting((int,), 1)),
    "obs_bounds": Setting((list, type(None)), items=Setting((list,), items=NUMBER)),
    "action_mask": Setting((bool,)),
    "curve_points": Setting((int,), 0, MAX_CURVE_POINTS, "each point costs an evaluation"),
}


def merged_algo_params(shipped: dict[str, Any], given: dict[str, Any]) -> dict[str, Any]:
    """The shipped agent settings overridden by the user's, key by key.

    A shipped setting that would contradict the user's choice goes: its temperature schedule when
    the user sets a temperature (and the other way round), all its exploration settings when the
    user picks another exploration.
    """
    kept = dict(shipped)
    if "temperature" in given:
        kept.pop("temperature_schedule", None)
    if "temperature_schedule" in given:
        kept.pop("temperature", None)
    if given.get("exploration", kept.get("exploration")) != kept.get("exploration"):
        for name in EXPLORATION_PARAMS:
            kept.pop(name, None)
    return {**kept, **given}


def exponent(value: float, option: str) -> float:
    """An exponent of visit counts: a number >= 0 (NaN would silently stop all learning)."""
    if not math.isfinite(value) or value < 0:
        raise UsageError(f"{option} must be a number >= 0, not {value}")
    return value


@dataclass
class RunConfig:
    """Everything that decides a run's result (with the library versions, its reproduction)."""

    env_id: str
    env_kwargs: dict[str, Any]
    algo: str
    episodes: int
    learning_rate: float
    discount: float
    epsilon_start: float
    epsilon_end: float
    epsilon_decay_episodes: int
    seed: int = 0
    engine: str = "auto"
    max_steps: int = DEFAULT_STEP_CAP
    chunk_episodes: int | None = None  #: fixed chunks (old runs); None: chunks of ``chunk_steps``
    chunk_steps: int | None = None  #: environment steps per chunk; None: the engine's default
    eval_episodes: int = 10_000
    #: where the greedy evaluation plays its episodes: ``env``, ``mdp`` (the known MDP, in a
    #: kernel), or ``auto``: the MDP where the compiled engine trained (``tabrl.evaluate``)
    eval_on: str = "auto"
    window: int = 500
    epsilon_schedule: str = "linear"  #: linear, exponential, constant or visits
    epsilon_exponent: float = 1.0  #: w of the visits schedule ``epsilon_start / n(s)^w``
    #: w in the step size ``learning_rate / n(s,a)^w``; None: a constant step size
    learning_rate_exponent: float | None = None
    #: a per-episode schedule of the learning rate (a ``Schedule`` as a dict), starting at
    #: ``learning_rate``; None: constant, or by visits with ``learning_rate_exponent``
    learning_rate_schedule: dict[str, Any] | None = None
    #: a checkpoint reaches the disk after the first chunk that ends this many seconds after the
    #: last one (chunks last about a second)
    checkpoint_seconds: float = 2.0
    algo_params: dict[str, Any] = field(default_factory=dict)
    #: bins per dimension of a continuous observation space (one count for all), and the
    #: ``[low, high]`` of each dimension they span (default: the space's own bounds)
    bins: int | list[int] | None = None
    obs_bounds: list[list[float]] | None = None
    #: never play an action the environment masks (``info["action_mask"]``, Taxi), on both
    #: engines, in training and in the greedy policy (:mod:`tabrl.masks`)
    action_mask: bool = False
    #: points of the greedy learning curve (``tabrl.curve``), 0 for none; they never change
    #: training
    curve_points: int = CURVE_POINTS

    @classmethod
    def resolve(
        cls, env_id: str, env_kwargs: dict[str, Any] | None = None, algo: str = "q-learning",
        **given: Any,
    ) -> RunConfig:
        """Settings from the shipped defaults of ``algo`` on ``env_id``, overridden by ``given``.

        ``given`` values of None are not given; ``algo_params`` merge key by key.
        """
        defaults = defaults_for(algo, env_id)
        algo_params = merged_algo_params(defaults.pop("algo_params", {}),
                                         given.pop("algo_params", {}))
        if given.get("learning_rate_schedule") is not None:  # it replaces the shipped step rule
            start = as_schedule(given["learning_rate_schedule"]).start
            if given.get("learning_rate") not in (None, start):
                raise UsageError(
                    f"--learning-rate {given['learning_rate']} differs from the start of "
                    f"--learning-rate-schedule ({start}): give one of them"
                )
            if given.get("learning_rate_exponent") is not None:
                raise UsageError("give --learning-rate-schedule or --learning-rate-exponent, "
                                 "not both")
            given["learning_rate"] = start
            defaults.pop("learning_rate_exponent", None)
        chosen = {**defaults, **{k: v for k, v in given.items() if v is not None},
                  "algo_params": algo_params}
        if chosen["episodes"] <= 0:
            raise UsageError(f"the number of episodes must be positive, not {chosen['episodes']}")
        if chosen.get("epsilon_decay_episodes") is None:
            chosen["epsilon_decay_episodes"] = max(1, chosen["episodes"] // 2)
        if chosen["epsilon_decay_episodes"] <= 0:
            raise UsageError("--epsilon-decay-episodes must be positive")
        known = {f.name for f in fields(cls)}
        config = cls(env_id=env_id, env_kwargs=dict(env_kwargs or {}), algo=algo,
                     **{k: v for k, v in chosen.items() if k in known})
        if (found := config.problem()) is not None:
            name, problem = found
            raise UsageError(f"--{name.replace('_', '-')} {problem}")
        return config

    @classmethod
    def from_json(cls, data: Any, source: Path) -> RunConfig:
        """The config saved in ``source``, every field checked against ``CONFIG_SCHEMA``."""
        if not isinstance(data, dict):
            raise RunFolderError(f"{source} holds no settings: it is not a tabrl run config")
        required = [f.name for f in fields(cls) if f.default is MISSING
                    and f.default_factory is MISSING and f.name not in data]
        if required:
            raise RunFolderError(f"{source} lacks the setting {required[0]!r}: it is not a tabrl "
                                 "run config")
        if (found := settings_problem(data)) is not None:
            name, problem = found
            raise RunFolderError(f"{source}: {name} {problem}: the file is damaged or was edited; "
                                 "train the run again")
        return cls(**data)

    def problem(self) -> tuple[str, str] | None:
        """The first setting of a wrong type or out of range, and what is wrong, or None."""
        return settings_problem({f.name: getattr(self, f.name) for f in fields(self)})

    def agent_hyperparameters(self) -> dict[str, Any]:
        """The agent's constructor keywords (tutorial names) for these settings."""
        return {
            "learning_rate": self.learning_rate,
            "initial_epsilon": self.epsilon_start,
            "final_epsilon": self.epsilon_end,
            "discount_factor": self.discount,
            "epsilon_schedule": self.epsilon_rule(),
            "learning_rate_schedule": self.learning_rate_rule(),
            "action_mask": self.action_mask,
            **self.algo_params,
        }

    def epsilon_rule(self) -> Schedule:
        """Epsilon from its start to its floor over ``epsilon_decay_episodes``, by its kind."""
        start, end, episodes = self.epsilon_start, self.epsilon_end, self.epsilon_decay_episodes
        if self.epsilon_schedule == "linear":
            return Schedule.linear(start, end, episodes)
        if self.epsilon_schedule == "exponential":  # the factor that reaches the floor in time
            factor = (max(end, 1e-3 * start) / start) ** (1 / episodes) if start > 0 else 1.0
            return Schedule.exponential(start, end, factor)
        if self.epsilon_schedule == "constant":
            return Schedule.constant(start)
        if self.epsilon_schedule == "visits":  # per state: GLIE for an exponent up to 1
            return Schedule.visits(start, exponent(self.epsilon_exponent, "--epsilon-exponent"),
                                   end)
        raise UsageError(
            f"unknown epsilon schedule {self.epsilon_schedule!r}: use linear, exponential, "
            "constant or visits"
        )

    def learning_rate_rule(self) -> Schedule:
        """The learning rate: a per-episode schedule, ``learning_rate / n(s,a)^w``, or constant."""
        if self.learning_rate_schedule is not None:
            return as_schedule(self.learning_rate_schedule)
        if self.learning_rate_exponent is not None:
            return Schedule.visits(self.learning_rate, exponent(self.learning_rate_exponent,
                                                                "--learning-rate-exponent"))
        return Schedule.constant(self.learning_rate)

    def describe(self) -> str:
        """The settings in one line, as a run begins: what learns, how long, how it explores."""
        rate = f"learning rate {self.learning_rate_rule().describe()}"
        params = self.algo_params
        own = [text for name, param in OWN_PARAMS.items() if name in params
               if (text := param.described(params[name])) is not None]
        if self.bins is not None:
            own.append(f"observations in {self.bins} bins per dimension"
                       if isinstance(self.bins, int)
                       else f"observations in {' x '.join(map(str, self.bins))} bins")
        if self.action_mask:
            own.append("masked actions never played")
        return ", ".join([f"{self.episodes:,} episodes", rate, f"discount {self.discount}",
                          self.describe_exploration(), *own, f"seed {self.seed}"])

    def describe_exploration(self) -> str:
        params = self.algo_params
        exploration = params.get("exploration", "epsilon-greedy")
        if exploration == "softmax":
            schedule = as_schedule(params.get("temperature_schedule")) or Schedule.constant(
                params.get("temperature", 1.0))
            return f"softmax with temperature {schedule.describe()}"
        if exploration == "ucb":
            return f"UCB with bonus weight {params.get('ucb_c', 1.0)}"
        epsilon = self.epsilon_rule()
        if epsilon.kind == "visits":
            return f"epsilon {epsilon.describe()} per state"
        if epsilon.kind == "constant" or epsilon.start == epsilon.end:
            return f"epsilon {epsilon.start}"
        how = "" if epsilon.kind == "linear" else f" {epsilon.kind}ly"
        return (f"epsilon {epsilon.start} -> {epsilon.end}{how} "
                f"over {self.epsilon_decay_episodes:,} episodes")

    def make_env(self) -> gym.Env:
        return make_env(self.env_id, self.env_kwargs, self.bins, self.obs_bounds)

    def make_agent(self, env: gym.Env) -> TabularAgent:
        cls = agent_class(self.algo)
        accepted = agent_keywords(cls)
        for name in self.algo_params:
            if name not in accepted:
                takers = [algo for algo, other in AGENTS.items() if name in agent_keywords(other)]
                raise UsageError(f"--{name.replace('_', '-')} does not apply to {self.algo}: it "
                                 f"is a setting of {', '.join(takers)}")
        return cls(env, seed=self.seed, **self.agent_hyperparameters())


def settings_problem(values: dict[str, Any]) -> tuple[str, str] | None:
    """The first of ``values`` (a config's fields, its ``algo_params`` among them) whose type or
    range is wrong, with what is wrong; None if all are right. Unknown names are wrong too."""
    params = values.get("algo_params")
    flat = {**values, **(params if isinstance(params, dict) else {})}
    if isinstance(params, dict):
        del flat["algo_params"]
    schema = {**CONFIG_SCHEMA, **ALGO_PARAMS}
    for name, value in flat.items():
        setting = schema.get(name)
        problem = ("is not a setting of tabrl" if setting is None else setting.problem(value))
        if problem is not None:
            return name, problem
    return None


def agent_keywords(cls: type[TabularAgent]) -> set[str]:
    """The settings an agent class takes: its method's own parameters (its spec's) and the
    keyword-only ones of its constructors, its base classes' included."""
    return {param.name for param in cls.spec.params} | {
        parameter.name for klass in cls.__mro__ if "__init__" in vars(klass)
        for parameter in inspect.signature(klass.__init__).parameters.values()
        if parameter.kind is parameter.KEYWORD_ONLY}


def read_hyperparams(path: Path) -> dict[str, Any]:
    """A YAML file of run settings (the keys of ``RunConfig`` and of the shipped hyperparameter
    files, ``algo_params`` a mapping), e.g. the ``best.yml`` of ``tabrl tune``."""
    import yaml

    try:
        settings = yaml.safe_load(Path(path).read_text())
    except FileNotFoundError:
        raise UsageError(f"--hyperparams {path} does not exist: give a YAML file of settings, "
                         "such as the best.yml of tabrl tune") from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        raise RunFolderError(f"cannot read --hyperparams {path} as YAML "
                             f"({type(error).__name__}): fix or replace the file") from None
    settings = {} if settings is None else settings
    known = {f.name for f in fields(RunConfig)} - {"env_id", "env_kwargs", "algo"}
    if not isinstance(settings, dict) or not isinstance(settings.get("algo_params", {}), dict):
        raise RunFolderError(f"--hyperparams {path} is not a mapping of settings: write "
                             "name: value lines (algo_params: a mapping)")
    unknown = sorted(set(settings) - known)
    if unknown:
        raise UsageError(f"--hyperparams {path} sets {', '.join(unknown)}, which are not run "
                         f"settings: use {', '.join(sorted(known))}")
    return settings


def with_hyperparams(settings: dict[str, Any], given: dict[str, Any]) -> dict[str, Any]:
    """The options given on the command line over a ``--hyperparams`` file's settings (options
    left at None take the file's value; ``algo_params`` merge key by key)."""
    chosen = {**settings, **{name: value for name, value in given.items() if value is not None}}
    chosen["algo_params"] = merged_algo_params(settings.get("algo_params", {}),
                                               given.get("algo_params", {}))
    return chosen


def versions() -> dict[str, str]:
    """Library versions that can change a run's numbers."""
    import numba

    from tabrl.version import __version__

    return {"tabrl": __version__, "python": platform.python_version(),
            "gymnasium": gym.__version__, "numpy": np.__version__, "numba": numba.__version__}


def file_name(env_id: str) -> str:
    """An environment id as part of a folder name, without its module (``module:Id``); an id
    may hold a slash (``tabrl/MaximizationBias-v0``)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", registered_id(env_id))


def default_run_dir(config: RunConfig, root: Path = Path("runs"), kind: str = "") -> Path:
    """``runs/<env>-<algo>[-<kind>]-<UTC time>``, with a suffix if that name is taken."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    name = "-".join(filter(None, [file_name(config.env_id), config.algo, kind, stamp]))
    base = root / name
    candidate, n = base, 1
    while candidate.exists():
        n += 1
        candidate = base.with_name(f"{base.name}-{n}")
    return candidate


def default_solution_dir(env_id: str, root: Path = Path("runs")) -> Path:
    """``runs/<env>-optimal``: solving is deterministic, so a new solve may replace the old."""
    return root / f"{file_name(env_id)}-optimal"


def writable_dir(path: Path, hint: str = "choose another --out") -> Path:
    """Create ``path`` if needed and check that files can be written into it (``hint``: what
    to do if not)."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as error:
        raise RunFolderError(f"cannot write the folder {path} ({error.strerror}): {hint}") from None
    return path


def prepare_run_dir(
    path: Path, hint: str = "choose another --out, or continue that run with --resume"
) -> Path:
    """Create an empty run folder, or a one-line error saying why it cannot be one (``hint``:
    what to do instead, naming only options of the command that asks)."""
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise UsageError(f"{path} already exists and is not an empty folder: {hint}")
    return writable_dir(path)


@dataclass
class Checkpoint:
    """The whole learning state after some chunks, copied so that training can go on."""

    episodes_done: int
    chunks_done: int
    next_chunk: int
    epsilon: float
    q: np.ndarray
    visits: np.ndarray
    keys: np.ndarray
    learning: dict[str, np.ndarray]
    seconds: float
    metrics_id: str

    @classmethod
    def of(cls, training: Training, metrics_id: str) -> Checkpoint:
        agent, table = training.agent, training.agent.q_values
        learning = {name: np.array(array) for name, array in agent.learning_state().items()}
        return cls(training.episodes_done, training.chunks_done, training.next_chunk,
                   agent.epsilon, table.array[: table.n_rows].copy(),
                   table.visits[: table.n_rows].copy(), table.encoder.keys, learning,
                   training.seconds, metrics_id)


def save_checkpoint(path: Path, checkpoint: Checkpoint, finished: bool) -> None:
    """Commit a checkpoint: sync the metrics, write the Q-table (the commit point), then the
    progress note.

    The metrics of each chunk are written as it ends (:class:`tabrl.metrics.MetricsStore`);
    the Q-table file carries the episode count, so a run stopped between two writes reads back
    as the checkpoint its Q-table file belongs to (metrics written ahead of it are ignored, then
    cut off on resume). Every file is synced to disk.
    """
    MetricsStore(path).sync()
    learning = {LEARNING + name: array for name, array in checkpoint.learning.items()}
    atomic_save_npz(path / Q_TABLE, compress=False, q=checkpoint.q, visits=checkpoint.visits,
                    keys=checkpoint.keys, episodes_done=np.array(checkpoint.episodes_done),
                    chunks_done=np.array(checkpoint.chunks_done),
                    next_chunk=np.array(checkpoint.next_chunk),
                    epsilon=np.array(checkpoint.epsilon),
                    metrics_id=np.array(checkpoint.metrics_id), **learning)
    atomic_write_json(path / STATE, {
        "episodes_done": checkpoint.episodes_done, "epsilon": checkpoint.epsilon,
        "finished": finished, "train_seconds": checkpoint.seconds,
    })


@dataclass(repr=False)
class Run(Shown):
    """A run folder read back: its settings, progress, agent and metrics.

    It shows itself as a few facts (``repr``, a table in Jupyter); :meth:`plot` draws its
    curves or its policy, as ``tabrl plot`` saves them.
    """

    path: Path
    config: RunConfig
    info: dict[str, Any]
    state: dict[str, Any]

    @property
    def finished(self) -> bool:
        return bool(self.state.get("finished"))

    def q_table(self) -> dict[str, np.ndarray]:
        """The arrays of ``q_table.npz``: the agent's state at its last checkpoint, checked
        against each other and the config (a damaged file is refused, never half used)."""
        path = self.path / Q_TABLE
        arrays = load_npz(path, "a Q-table", ("q", "visits", "keys", "episodes_done", "epsilon"))
        if (problem := q_table_problem(arrays, self.info.get("n_actions"))) is not None:
            raise RunFolderError(f"{path} {problem}: the file is damaged; train the run again")
        return arrays

    @property
    def episodes_done(self) -> int:
        return int(self.q_table()["episodes_done"])

    def metrics(self) -> TrainingLog:
        """The per-episode columns up to the checkpoint, memory-mapped, checked to be this run's,
        complete and finite."""
        arrays = self.q_table()
        done = int(arrays["episodes_done"])
        store = MetricsStore(self.path)
        if store.exists():
            if "metrics_id" in arrays and str(arrays["metrics_id"]) != store.run_id():
                raise RunFolderError(f"{store.folder} belongs to another run than "
                                     f"{self.path / Q_TABLE}: the run folder is damaged")
            columns = store.read(done)
        else:
            columns = self.legacy_metrics(done)
        for name, column in columns.items():
            if (bad := first_non_finite(column)) is not None:
                raise RunFolderError(f"the run's {name} of episode {bad:,} is not a finite "
                                     f"number: {self.path} is damaged")
        return TrainingLog.from_columns(columns, float(self.state.get("train_seconds", 0.0)))

    def curve(self) -> Curve:
        """The greedy learning curve up to the checkpoint (empty for a run made before curves)."""
        return MetricsStore(self.path).read_curve(self.episodes_done)

    def legacy_metrics(self, done: int) -> dict[str, np.ndarray]:
        """The columns of a run folder made before the metrics store (one ``metrics.npz``)."""
        columns = load_npz(self.path / METRICS, "the run's metrics", COLUMNS)
        if any(len(column) < done for column in columns.values()):
            raise RunFolderError(
                f"{self.path / METRICS} holds fewer episodes than the Q-table's {done}: "
                "the run folder is damaged"
            )
        return {name: columns[name][:done] for name in COLUMNS}

    def facts(self) -> tuple[str, Facts]:
        done, total = self.episodes_done, self.config.episodes
        rows = [("folder", str(self.path)),
                ("episodes", f"{done:,} of {total:,}"
                 + ("" if self.finished else " (unfinished: train --resume continues it)")),
                ("settings", self.config.describe()),
                ("engine", str(self.info.get("engine", "?")))]
        if (evaluation := self.evaluation()) is not None:
            e, x = evaluation, evaluation.exact
            if not math.isnan(e.mean_return):
                rows.append(("greedy mean return",
                             f"{e.mean_return:+.4f} +- {e.ci95_high - e.mean_return:.4f} "
                             f"({e.n_episodes:,} episodes)"))
            if x is not None:
                rows.append(("exact value / optimum",
                             exact_figure(x["policy_value"], "-inf (loops)")
                             + f" / {x['optimal_value']:+.4f}"))
        return f"Run: {self.config.algo} on {self.config.env_id}", rows

    def plot(self, kind: str = "curves", *, window: int | None = None, title: str = "") -> Figure:
        """A new figure, as ``tabrl plot`` saves it: ``"curves"`` (moving averages over
        ``window`` episodes, the run's own by default) or ``"policy"``, the greedy policy, each
        beside the exact optimum where the environment's MDP is known."""
        from tabrl.plots.agent import agent_figure

        env = self.config.make_env()
        return agent_figure(kind, env, self.load_agent(env), lambda: self.metrics().columns(),
                            window or self.config.window,
                            title or f"{self.config.algo} on {self.config.env_id}", self.curve())

    def eval_place(self, requested: str | None = None) -> str:
        """``env`` or ``mdp``: where an evaluation of this run plays its episodes, as
        ``requested`` (one of ``EVAL_ON``) or else the run's own ``eval_on`` says."""
        return evaluation_place(requested or self.config.eval_on, str(self.info.get("engine")))

    def evaluation(self) -> Evaluation | None:
        path = self.path / EVALUATION
        if not path.exists():
            return None
        return Evaluation.from_dict(checked_json(path, "the evaluation", EVALUATION_SCHEMA))

    def load_agent(self, env: gym.Env | None = None) -> TabularAgent:
        """The trained agent, on ``env`` or a fresh environment made from the config."""
        env = env or self.config.make_env()
        agent = self.config.make_agent(env)
        arrays = self.q_table()
        table = agent.q_values
        if table.encoder.lazy:
            table.encoder.restore_keys(arrays["keys"])
        expected = (table.n_rows, agent.n_actions)
        if arrays["q"].shape != expected or arrays["visits"].shape != expected:
            raise RunFolderError(
                f"{self.path / Q_TABLE} holds a Q-table of shape {arrays['q'].shape}, but "
                f"{self.config.env_id} needs {expected}: the file belongs to another environment"
            )
        table.array = arrays["q"].astype(np.float64)
        table.visits = arrays["visits"].astype(np.int64)
        agent.epsilon = float(arrays["epsilon"])
        learning = {name.removeprefix(LEARNING): array for name, array in arrays.items()
                    if name.startswith(LEARNING)}
        try:
            agent.restore_learning_state(learning)
        except KeyError as missing:
            raise RunFolderError(
                f"{self.path / Q_TABLE} lacks the agent's {missing} array: it was not saved by "
                f"a {self.config.algo} run"
            ) from None
        except (IndexError, ValueError, TypeError) as error:
            raise RunFolderError(
                f"{self.path / Q_TABLE} holds learning state that does not fit a "
                f"{self.config.algo} agent ({error}): the file is damaged"
            ) from None
        return agent


def q_table_problem(arrays: dict[str, np.ndarray], n_actions: int | None) -> str | None:
    """What makes the arrays of a ``q_table.npz`` inconsistent, or None: shapes that disagree
    with each other or with the config's ``n_actions``, values that cannot be (NaN, negative
    counts), counters of the wrong kind."""
    q, visits, keys = arrays["q"], arrays["visits"], arrays["keys"]
    done, epsilon = arrays["episodes_done"], arrays["epsilon"]
    if q.ndim != 2 or q.dtype.kind != "f" or (n_actions is not None and q.shape[1] != n_actions):
        return f"holds a Q-table of shape {q.shape} and dtype {q.dtype}, not (states, {n_actions})"
    if visits.shape != q.shape or visits.dtype.kind not in "iu":
        return f"holds visit counts of shape {visits.shape} beside a Q-table of shape {q.shape}"
    if keys.shape != (len(q),) or keys.dtype.kind not in "iu":
        return f"holds {keys.shape} state keys of dtype {keys.dtype} for {len(q)} rows"
    if done.shape != () or done.dtype.kind not in "iu" or not 0 <= int(done) <= MAX_INT:
        return f"holds an episode count {done!r} that cannot be"
    if epsilon.shape != () or not 0 <= float(epsilon) <= 1:
        return f"holds an epsilon {epsilon!r} outside [0, 1]"
    if not np.isfinite(q).all() or (visits < 0).any():
        return "holds values that cannot be (NaN or infinite action values, negative counts)"
    learning = [a for name, a in arrays.items() if name.startswith(LEARNING)]
    if any(a.dtype.kind == "f" and not np.isfinite(a).all() for a in learning):
        return "holds learning state that is NaN or infinite"
    if (rate := arrays.get(LEARNING + "rate")) is not None and (rate < 0).any():
        return f"holds the learning rate {float(rate.min())}, below 0"
    return None


def save_config(
    path: Path, config: RunConfig, agent: TabularAgent, engine: str, reason: str
) -> None:
    """The settings, the engine that runs them and why, the agent's schedules, the versions."""
    atomic_write_json(path / CONFIG, {
        "config": asdict(config),
        "engine": engine,
        "engine_reason": reason,
        "agent": json.loads(json.dumps(agent.hyperparameters())),
        "observation_encoding": agent.q_values.encoder.describe(),
        "n_actions": agent.n_actions,
        "versions": versions(),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    })


#: What ``state.json`` and ``evaluation.json`` hold, checked when they are read back.
STATE_SCHEMA = Setting((dict,), keys={
    "episodes_done": Setting((int,), 0, MAX_INT), "epsilon": NUMBER,
    "finished": Setting((bool,)), "train_seconds": Setting((float,), 0),
}, optional=("train_seconds",), open=True)
SHARE = Setting((float,), 0, 1)
#: How an episode may end (``evaluate.outcome_names``): each a share, together 1.
OUTCOME_NAMES = ("win", "draw", "loss", "success", "failure", "truncated", "loops", "ended")
OUTCOMES = Setting((dict,), keys={name: SHARE for name in OUTCOME_NAMES}, optional=OUTCOME_NAMES)
COUNT = Setting((int, type(None)), 0, MAX_INT)
#: Figures of evaluation files written before outcomes were named per family (still read).
OLD_EVALUATION = {"win_rate": SHARE, "draw_rate": SHARE, "loss_rate": SHARE,
                  "success_rate": Setting((float, type(None)), 0, 1), "truncated_rate": SHARE}
OLD_EXACT = {"success_probability": Setting((float, type(None)), 0, 1), "win": SHARE,
             "draw": SHARE, "loss": SHARE, "truncated": SHARE}
EXACT_SCHEMA = Setting((dict, type(None)), keys={
    "policy_value": OPTIONAL_NUMBER, "optimal_value": NUMBER, "stationary_optimal_value": NUMBER,
    "gap": OPTIONAL_NUMBER, "optimal_action_share": SHARE, "outcomes": OUTCOMES,
    "loop_start_states": COUNT, "start_states": COUNT, "mean_length": OPTIONAL_NUMBER,
    "horizon": Setting((int, type(None)), 0), **OLD_EXACT,
}, optional=("outcomes", "loop_start_states", "start_states", *OLD_EXACT), open=True)
EVALUATION_SCHEMA = Setting((dict,), keys={
    "n_episodes": Setting((int,), 0, MAX_EPISODES), "seed": Setting((int,), 0, 2**64 - 1),
    "mean_return": OPTIONAL_NUMBER, "std_return": OPTIONAL_NUMBER, "sem": OPTIONAL_NUMBER,
    "ci95_low": OPTIONAL_NUMBER, "ci95_high": OPTIONAL_NUMBER,
    "mean_length": OPTIONAL_NUMBER, "outcomes": OUTCOMES, "loop_start_states": COUNT,
    "start_states": COUNT, "step_cap": COUNT, "note": Setting((str, type(None))),
    "exact": EXACT_SCHEMA, "played_on": Setting((str,), choices=tuple(PLACES)),
    **OLD_EVALUATION,
}, optional=("outcomes", "loop_start_states", "start_states", "step_cap", "note", "played_on",
             *OLD_EVALUATION))


def checked_json(path: Path, what: str, schema: Setting) -> Any:
    """A JSON file read and checked against ``schema``, or a one-line error."""
    data = read_json(path, what)
    if (problem := schema.problem(data)) is not None:
        raise RunFolderError(f"{path}: {problem}; {what} is damaged or not tabrl's")
    return data


def load_run(path: str | Path) -> Run:
    """Read a run folder, or a one-line error saying what is wrong with it.

    Every file is checked where it is read: config.json against ``CONFIG_SCHEMA`` and then by
    making its environment and agent (so a hand-edited value that tabrl refuses is refused here,
    as a damaged file), state.json against ``STATE_SCHEMA``.
    """
    path = Path(path)
    if not path.is_dir():
        raise UsageError(f"{path} is not a folder: give the path of a run folder (see runs/)")
    if not (path / CONFIG).exists():
        raise RunFolderError(f"{path} is not a run folder: it has no {CONFIG}")
    info = read_json(path / CONFIG, "the run's config")
    if not isinstance(info, dict) or "config" not in info:
        raise RunFolderError(f"{path / CONFIG} is not a tabrl run config: it has no settings")
    config = RunConfig.from_json(info["config"], path / CONFIG)
    n_actions = info.get("n_actions")
    try:
        env = config.make_env()
        agent = config.make_agent(env)
    except UsageError as error:
        raise RunFolderError(f"{path / CONFIG} holds settings tabrl refuses ({error})") from None
    if n_actions is not None and n_actions != agent.n_actions:
        raise RunFolderError(f"{path / CONFIG} says {n_actions!r} actions, but {config.env_id} "
                             f"has {agent.n_actions}: the file is damaged")
    state = checked_json(path / STATE, "the run's progress", STATE_SCHEMA)
    return Run(path, config, info, state)


def load_agent(path: str | Path, env: gym.Env | None = None) -> TabularAgent:
    """The agent of a run folder; with ``agent.epsilon = 0``, ``get_action`` plays greedy."""
    return load_run(path).load_agent(env)
