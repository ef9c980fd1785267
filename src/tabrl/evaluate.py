"""Greedy evaluation, on the real environment or on its known MDP.

Exploration off: every episode follows the greedy policy of the Q-table, ties to the lowest
action: the deterministic policy that is saved, drawn, evaluated exactly, and that a loaded agent
plays with ``agent.epsilon = 0``. The figures are those a practitioner reports: mean return with
its standard deviation, standard error and 95% interval, the mean episode length, and how the
episodes ended, in the words of the environment's family (:func:`outcome_names`).

**No evaluation hangs.** A greedy policy may never end (CliffWalking's agent walking into the
border). Where the MDP is known, tabrl knows exactly from which states that happens
(:func:`tabrl.exact.dp.endless_states`): an episode that enters such a state is cut at once and
counted as "loops" (its return would be unbounded), and the report says from how many start states
the policy may loop. Elsewhere episodes stop at the environment's own time limit, or at the step cap
where it has none, and the evaluation stops early once ``CAPPED_IN_A_ROW`` episodes in a row have
run into the cap, with a note saying so.

**Where the episodes are played** (``on``): on the real environment (``"env"``, ``env.step``
after ``env.step``), or, where tabrl knows the environment's MDP exactly, on that MDP in a numba
kernel (``"mdp"``, :func:`tabrl.compiled.play`): the same episodes in law, with the same report
(the same outcomes, cuts and cap), thousands of times faster. ``tabrl train`` plays them on the
MDP when it trained on the compiled engine (``--eval-on auto``, :func:`evaluation_place`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from typing import TYPE_CHECKING, Any

import gymnasium as gym
import numpy as np

from tabrl.agents import TabularAgent
from tabrl.display import Facts, Shown
from tabrl.envs import DEFAULT_STEP_CAP, time_limit_of, with_step_cap
from tabrl.errors import UsageError
from tabrl.exact.outcomes import (
    LOOPED,
    TERMINATED,
    TRUNCATED,
    endless_rows,
    outcome_codes,
    outcome_names,
    start_loops,
)
from tabrl.exact.readers import known_mdp
from tabrl.spaces import StateEncoder

if TYPE_CHECKING:
    from matplotlib.figure import Figure

#: Episodes in a row at the step cap after which an evaluation stops early (the policy loops).
CAPPED_IN_A_ROW = 20
#: Seconds after which an evaluation reports its progress, and between two reports.
PROGRESS_AFTER, PROGRESS_EVERY = 1.0, 0.25

#: ``progress(episodes_done, episodes_total)``: a few times a second, once past ``PROGRESS_AFTER``.
EvaluationProgress = Callable[[int, int], None]
#: Where an evaluation's episodes are played: ``auto`` is ``mdp`` after the compiled engine.
EVAL_ON = ("auto", "env", "mdp")
#: How the report names each place.
PLACES = {"env": "the real environment", "mdp": "the exact MDP (compiled)"}


#: Why an evaluation cannot play on the MDP of an environment whose MDP is unknown.
NO_MDP = ("tabrl does not know this environment's MDP, so its evaluation can only be played on "
          "the environment (--eval-on env)")


def evaluation_place(requested: str, engine: str, env: gym.Env | None = None) -> str:
    """``env`` or ``mdp``: where ``requested`` (one of ``EVAL_ON``) plays the evaluation of a
    run that trained on ``engine`` (the MDP where the compiled engine ran, which knew it);
    refused at once where that is the MDP of an ``env`` whose MDP is unknown."""
    if requested not in EVAL_ON:
        raise UsageError(f"unknown place to evaluate {requested!r}: use one of "
                         f"{', '.join(EVAL_ON)}")
    place = requested if requested != "auto" else "mdp" if engine == "compiled" else "env"
    if place == "mdp" and env is not None and known_mdp(env) is None:
        raise UsageError(NO_MDP)
    return place


@dataclass(repr=False)
class Evaluation(Shown):
    """Monte Carlo figures of a greedy policy (and, where the MDP is known, exact ones).

    The return statistics are over the episodes that ended; ``outcomes`` gives the share of every
    way an episode can end (they add up to 1), ``"loops"`` included where episodes were cut.
    Its facts are the table ``tabrl evaluate`` prints (``repr``, a table in Jupyter);
    :meth:`plot` draws the outcomes.
    """

    n_episodes: int  #: episodes played (fewer than asked when the evaluation stopped early)
    seed: int
    mean_return: float  #: NaN when no episode ended
    std_return: float
    sem: float
    ci95_low: float
    ci95_high: float
    mean_length: float
    outcomes: dict[str, float] = field(default_factory=dict)
    loop_start_states: int | None = None  #: start states from which the policy may never end
    start_states: int | None = None  #: start states of the known MDP
    step_cap: int | None = None  #: steps after which tabrl cut episodes (no own time limit)
    note: str | None = None  #: why the evaluation stopped early, if it did
    exact: dict[str, Any] | None = None
    played_on: str = "env"  #: ``env`` or ``mdp`` (:data:`PLACES`)

    @property
    def success_rate(self) -> float | None:
        return self.outcomes.get("success")

    @property
    def looping_rate(self) -> float:
        return self.outcomes.get("loops", 0.0)

    def facts(self) -> tuple[str, Facts]:
        """The Monte Carlo figures, then the exact ones where known (the rows of the table that
        ``tabrl train`` and ``tabrl evaluate`` print)."""
        ended = "mean return" + (" (episodes that ended)" if self.looping_rate else "")
        rows = [("episodes", f"{self.n_episodes:,} on {PLACES[self.played_on]}")]
        if self.note:
            rows.append(("note", self.note))
        if math.isnan(self.mean_return):
            rows.append((ended, "- (no episode ended)"))
        else:
            rows += [(ended, f"{self.mean_return:+.4f}  (95% CI {self.ci95_low:+.4f} .. "
                             f"{self.ci95_high:+.4f})"),
                     ("std / sem", f"{self.std_return:.4f} / {self.sem:.4f}")]
        rows.append(outcome_shares(self.outcomes))
        if not math.isnan(self.mean_length):
            rows.append(("mean length", f"{self.mean_length:.2f}"))
        if self.loop_start_states:
            rows.append(("greedy policy loops from",
                         f"{self.loop_start_states:,} of {self.start_states:,} start states"))
        if (x := self.exact) is not None:
            best = x["stationary_optimal_value"]
            rows += [
                ("exact value of this policy",
                 exact_figure(x["policy_value"], "-inf (the policy can loop forever)")),
                ("optimal value", f"{x['optimal_value']:+.4f}"
                 + (f"  (best stationary {best:+.4f})" if best < x["optimal_value"] - 1e-9
                    else "")),
                ("gap to optimum", exact_figure(x["gap"], "+inf (the policy can loop forever)")),
                ("optimal actions (visit-weighted)", f"{x['optimal_action_share']:.1%}"),
            ]
            if "outcomes" in x:  # evaluations saved before outcomes were named have none
                name, shares = outcome_shares(x["outcomes"])
                rows.append((f"exact {name}", shares))
        return f"Evaluation of the greedy policy (seed {self.seed})", rows

    def plot(self, title: str = "") -> Figure:
        """A new figure: the share of each outcome with its 95% interval, and the exact share
        beside it where the MDP is known."""
        from tabrl.plots.outcomes import outcomes_figure

        exact = (self.exact or {}).get("outcomes")
        mean = "" if math.isnan(self.mean_return) else f": mean return {self.mean_return:+.4f}"
        return outcomes_figure(self.outcomes, self.n_episodes, exact,
                               title or f"greedy policy{mean}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: a figure that does not exist (no episode ended) is null."""
        return {name: None if isinstance(value, float) and not math.isfinite(value) else value
                for name, value in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Evaluation:
        """Read ``to_dict``'s form back (older files lack the newer fields: defaults)."""
        known = {f.name for f in fields(cls)}
        values = {k: (math.nan if v is None and k in _STATISTICS else v)
                  for k, v in data.items() if k in known}
        values.setdefault("outcomes", {})
        return cls(**values)


_STATISTICS = ("mean_return", "std_return", "sem", "ci95_low", "ci95_high", "mean_length")


def outcome_shares(outcomes: dict[str, float]) -> tuple[str, str]:
    """``("success / failure / truncated", "74.1% / 25.9% / 0.0%")``: shares adding up to 100%."""
    return (" / ".join(outcomes),
            " / ".join(f"{share:.1%}" for share in outcomes.values()) or "-")


def exact_figure(value: float | None, endless: str) -> str:
    """An exact figure; None stands for one that is infinite because a policy may never end."""
    return endless if value is None else f"{value:+.4f}"


def summarize(returns: np.ndarray, lengths: np.ndarray, codes: np.ndarray,
              names: tuple[str, ...], seed: int) -> Evaluation:
    """The figures of an evaluation from its episodes' outcomes (``codes``: indices into
    ``names``); looping episodes count in the outcomes only (their return has no value)."""
    ended = codes != (names.index("loops") if "loops" in names else -1)
    returns, lengths = returns[ended], lengths[ended]
    n = len(returns)
    mean = float(returns.mean()) if n else math.nan
    std = float(returns.std(ddof=1)) if n > 1 else 0.0 if n else math.nan
    sem = std / math.sqrt(n) if n else math.nan
    counts = np.bincount(codes[codes >= 0], minlength=len(names))
    return Evaluation(
        n_episodes=len(codes), seed=seed, mean_return=mean, std_return=std, sem=sem,
        ci95_low=mean - 1.96 * sem, ci95_high=mean + 1.96 * sem,
        mean_length=float(lengths.mean()) if n else math.nan,
        outcomes={name: int(count) / len(codes) for name, count in zip(names, counts)},
    )


class Reporter:
    """Calls ``progress`` a few times a second once an evaluation has run ``PROGRESS_AFTER``."""

    def __init__(self, progress: EvaluationProgress | None, total: int) -> None:
        self.progress, self.total = progress, total
        self.next_report = time.perf_counter() + PROGRESS_AFTER
        self.reported = False

    def __call__(self, done: int) -> None:
        if self.progress is not None and time.perf_counter() >= self.next_report:
            self.progress(done, self.total)
            self.reported, self.next_report = True, time.perf_counter() + PROGRESS_EVERY

    def finish(self, done: int) -> None:
        """The last report, if any was made (a bar that appeared ends full)."""
        if self.progress is not None and self.reported:
            self.progress(done, done)


def evaluate(
    agent: TabularAgent,
    env: gym.Env,
    n_episodes: int = 10_000,
    *,
    seed: int = 1_000_003,
    max_steps: int = DEFAULT_STEP_CAP,
    progress: EvaluationProgress | None = None,
    on: str = "env",
) -> Evaluation:
    """Play the agent's greedy policy for ``n_episodes`` on ``env`` (exploration off), or on its
    known MDP (``on="mdp"``).

    The agent is not changed: its epsilon, Q-table and random stream stay as they were. Episodes
    that loop forever are cut (see the module docstring); ``progress`` hears how far it got.
    """
    return evaluate_policy(agent.q_values.greedy_policy(), agent.q_values.encoder, env,
                           n_episodes, seed=seed, max_steps=max_steps, progress=progress, on=on)


def evaluate_policy(
    policy: np.ndarray,
    encoder: StateEncoder,
    env: gym.Env,
    n_episodes: int,
    *,
    seed: int,
    max_steps: int = DEFAULT_STEP_CAP,
    progress: EvaluationProgress | None = None,
    on: str = "env",
) -> Evaluation:
    """Play ``policy`` (an action per row of ``encoder``; action 0 in a state it has no row for)
    for ``n_episodes`` on ``env`` or its MDP: :func:`evaluate` of a policy kept apart from its
    agent, such as a learning curve's snapshot taken during training."""
    if n_episodes <= 0:
        raise UsageError(f"the number of evaluation episodes must be positive, not {n_episodes}")
    if on not in PLACES:
        raise UsageError(f"an evaluation is played on {' or '.join(PLACES)}, not {on!r}")
    own_limit = time_limit_of(env)
    mdp = known_mdp(env)  # before the cap: the MDP the environment itself defines
    if on == "mdp" and mdp is None:
        raise UsageError(NO_MDP)
    names = outcome_names(mdp)
    cut = None if mdp is None or own_limit is not None else endless_rows(mdp, policy)
    stop_after = CAPPED_IN_A_ROW if own_limit is None else 0
    report = Reporter(progress, n_episodes)
    if on == "mdp":
        from tabrl.compiled.play import play  # numba: only here

        played = play(mdp, policy, n_episodes, seed=seed, max_steps=max_steps, cut_rows=cut,
                      stop_after_capped=stop_after, progress=report)
        returns, lengths, ends, rows = (played.returns, played.lengths, played.ends,
                                        played.final_rows)
    else:
        returns, lengths, ends, rows = play_on_env(
            policy, encoder, with_step_cap(env, max_steps), n_episodes, seed=seed, cut=cut,
            stop_after_capped=stop_after, report=report)
    report.finish(len(ends))
    evaluation = summarize(returns, lengths, outcome_codes(mdp, names, ends, rows, returns),
                           names, seed)
    if len(ends) < n_episodes:
        evaluation.note = (
            f"stopped after {len(ends):,} of {n_episodes:,} episodes: the last "
            f"{CAPPED_IN_A_ROW} all ran into the {max_steps:,}-step cap (the greedy policy "
            "seems to loop)")
    evaluation.step_cap = max_steps if own_limit is None else None
    evaluation.played_on = on
    if mdp is not None:
        evaluation.loop_start_states, evaluation.start_states = start_loops(mdp, policy)
    return evaluation


def play_on_env(
    policy: np.ndarray,
    encoder: StateEncoder,
    env: gym.Env,
    n_episodes: int,
    *,
    seed: int,
    cut: np.ndarray | None,
    stop_after_capped: int,
    report: Callable[[int], None],
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Play ``policy`` on ``env``: each episode's return, length, how it stopped (``TERMINATED``,
    ``TRUNCATED``, or ``LOOPED`` on entering a row where ``cut`` is set) and the row of its last
    state (-1: none), as :func:`tabrl.compiled.play` plays them on the MDP; stopped early once
    ``stop_after_capped`` episodes in a row were truncated (0: never)."""
    returns, lengths = np.zeros(n_episodes), np.zeros(n_episodes, dtype=np.int64)
    ends, rows = np.zeros(n_episodes, dtype=np.int8), np.zeros(n_episodes, dtype=np.int64)
    capped, played = 0, n_episodes
    obs, _ = env.reset(seed=seed)
    for episode in range(n_episodes):
        if episode:
            obs, _ = env.reset()
        total, steps, end = 0.0, 0, None
        row = encoder.find(obs)
        while end is None:
            known = row is not None and row < len(policy)  # a state never seen plays action 0
            if known and cut is not None and cut[row]:
                end = LOOPED
                break
            obs, reward, terminated, truncated, _ = env.step(int(policy[row]) if known else 0)
            row = encoder.find(obs)
            total += float(reward)
            steps += 1
            if terminated:
                end = TERMINATED
            elif truncated:
                end = TRUNCATED
        returns[episode], lengths[episode], ends[episode] = total, steps, end
        rows[episode] = -1 if row is None else row
        capped = capped + 1 if end == TRUNCATED else 0
        report(episode + 1)
        if stop_after_capped and capped == stop_after_capped:
            played = episode + 1
            break
    return returns[:played], lengths[:played], ends[:played], rows[:played]
