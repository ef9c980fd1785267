r"""Tabular agents with the interface of the Gymnasium tutorial: one small class per method.

Every agent offers ``get_action(obs)`` (a behaviour action: epsilon-greedy unless another
:mod:`~tabrl.exploration` strategy is chosen), ``update(obs, action, reward, terminated, next_obs,
truncated)`` (learn from one step; returns the TD error), ``end_episode()`` (after every episode;
the tutorial's ``decay_epsilon()`` is the same),
``q_values`` (``agent.q_values[obs]`` are a state's action values) and ``training_error``. The loop
that drives them is the tutorial's, the same for every method::

    action = agent.get_action(obs)
    next_obs, reward, terminated, truncated, _ = env.step(action)
    agent.update(obs, action, reward, terminated, next_obs, truncated)

An agent made with ``action_mask=True`` (:mod:`tabrl.masks`) never plays an action that the
environment masks, and bootstraps from the allowed actions of the next state only; the loop then
hands it the masks of ``info``: ``get_action(obs, mask=info["action_mask"])`` and
``update(..., next_mask=next_info["action_mask"])`` (Taxi's mask is known from its state, and
the agent reads the whole table from the environment beforehand).

Every method moves :math:`Q(s, a)` a step :math:`\alpha` towards a target:
:math:`Q(s, a) \leftarrow Q(s, a) + \alpha\,(G - Q(s, a))`, and the methods differ in :math:`G`:

=================== =============================================================================
q-learning          :math:`r + \gamma \max_{a'} Q(s', a')`
sarsa               :math:`r + \gamma Q(s', a')`, :math:`a'` the action the agent plays next
expected-sarsa      :math:`r + \gamma \sum_{a'} \pi(a' \mid s') Q(s', a')`
double-q-learning   :math:`r + \gamma Q_B(s', \arg\max_{a'} Q_A(s', a'))`, A and B swapped at random
n-step-sarsa        :math:`r_1 + \gamma r_2 + \dots + \gamma^{n-1} r_n + \gamma^n Q(s_n, a_n)`
sarsa-lambda        the :math:`\lambda`-return, spread backwards by eligibility traces
q-lambda            Q-learning's, spread backwards by traces cut at exploratory actions
monte-carlo         the episode's whole return after the first visit of :math:`(s, a)`
dyna-q              Q-learning's, on real steps and on steps replayed from a learned model
tree-backup         n steps of a tree whose branches off the actions played are valued greedily
q-sigma             n steps, each the sample of SARSA or the policy's expectation, mixed by sigma
=================== =============================================================================

``update`` is the same template for every method: it turns the observations into rows of the
Q-table and hands the step, as a :class:`Transition`, to the method's own ``step``. Each ``step``
names its twin in :mod:`tabrl.compiled.kernels`, which does the same on the compiled engine.
Each class declares its method once, in ``spec`` (:class:`~tabrl.methods.MethodSpec`): its name,
what it is and its own parameters, which the agent takes as keywords.

A terminal transition bootstraps zero (no reward follows); a truncated one (time limit) still
bootstraps, since the state itself had a future. Methods that need later steps (Monte Carlo,
n-step SARSA) buffer the episode and finish their updates when it ends; the step that ends it
then returns the sum of the magnitudes of the errors it completed, so that the loop's per-episode
mean absolute error counts each update once. The SARSA family chooses its next action inside
``update`` and plays it at the following ``get_action``, so the generic loop needs no change.
"""

from __future__ import annotations

from collections import deque
from dataclasses import replace
from typing import Any, ClassVar, NamedTuple

import gymnasium as gym
import numpy as np

from tabrl.errors import UsageError, did_you_mean
from tabrl.exploration import exploration_for, first_greedy, sample, uniform_index
from tabrl.masks import check_gives_masks, checked, mask_table
from tabrl.methods import MethodSpec, Param, between, own_params, whole_at_least
from tabrl.qtable import QTable
from tabrl.schedules import Schedule, as_schedule
from tabrl.spaces import encoder_for, n_actions_of


def check_hyperparameters(
    learning_rate: float, discount_factor: float, initial_epsilon: float, final_epsilon: float
) -> None:
    """One-line errors for hyperparameters outside the range where the update rule is sound."""
    if not 0 < learning_rate <= 1:
        raise UsageError(f"the learning rate must be in (0, 1], not {learning_rate}")
    if not 0 <= discount_factor <= 1:
        raise UsageError(f"the discount factor must be in [0, 1], not {discount_factor}")
    for name, value in (("start", initial_epsilon), ("floor", final_epsilon)):
        if not 0 <= value <= 1:
            raise UsageError(f"the epsilon {name} must be in [0, 1], not {value}")
    if final_epsilon > initial_epsilon:
        raise UsageError(
            f"the epsilon floor {final_epsilon} is above its start {initial_epsilon}: "
            "the floor must be at most the start"
        )


def require(condition: bool, message: str) -> None:
    """A one-line :class:`UsageError` unless ``condition`` holds."""
    if not condition:
        raise UsageError(message)


def grown(array: np.ndarray, rows: int) -> np.ndarray:
    """``array`` padded with zero rows to ``rows`` rows (a lazy Q-table grows as states appear)."""
    if len(array) >= rows:
        return array
    return np.vstack([array, np.zeros((rows - len(array), array.shape[1]), array.dtype)])


class Transition(NamedTuple):
    """One step of an episode as the methods learn from it: observations made rows."""

    row: int
    action: int
    reward: float
    terminated: bool
    next_row: int
    truncated: bool


#: Own parameters that several methods share.
STEPS = Param("n", int, 4, "Steps of the multi-step target", "{} steps",
              whole_at_least(1), "a whole number >= 1")
TRACE_DECAY = Param("lam", float, 0.9, "Trace decay lambda", "lambda {}",
                    between(0, 1), "in [0, 1]")


class TabularAgent:
    """Exploration over a Q-table and the one-step TD update; subclasses define the target.

    ``exploration`` is ``"epsilon-greedy"`` (epsilon from ``initial_epsilon`` along
    ``epsilon_schedule``), ``"softmax"`` (``temperature``, or ``temperature_schedule`` decayed per
    episode) or ``"ucb"`` (bonus weight ``ucb_c``). Schedules may be given as their dicts. The
    method's own parameters (``spec.params``) are keywords too, each kept as an attribute.
    ``action_mask=True`` restricts every choice and target to the actions the environment allows.
    """

    spec: ClassVar[MethodSpec] = MethodSpec("", "")
    algo: ClassVar[str] = ""  #: ``spec.name``

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Keep ``algo`` and ``spec.name`` one: a class declares its spec, or (a user's
        subclass, say) only its ``algo``, and keeps its parent's parameters under that name."""
        super().__init_subclass__(**kwargs)
        if "spec" in cls.__dict__:
            cls.algo = cls.spec.name
        elif "algo" in cls.__dict__:
            cls.spec = replace(cls.spec, name=cls.algo)

    def __init__(
        self,
        env: gym.Env,
        learning_rate: float = 0.01,
        initial_epsilon: float = 1.0,
        epsilon_decay: float = 0.0,
        final_epsilon: float = 0.1,
        discount_factor: float = 0.95,
        *,
        seed: int | None = None,
        epsilon_schedule: Schedule | dict | None = None,
        learning_rate_schedule: Schedule | dict | None = None,
        exploration: str = "epsilon-greedy",
        temperature: float | None = None,
        temperature_schedule: Schedule | dict | None = None,
        ucb_c: float = 1.0,
        action_mask: bool = False,
        **own: Any,
    ) -> None:
        check_hyperparameters(learning_rate, discount_factor, initial_epsilon, final_epsilon)
        self._take_own(own)
        self.env = env
        self.n_actions = n_actions_of(env.action_space)
        self.q_values = QTable(encoder_for(env.observation_space), self.n_actions)
        self.action_mask = action_mask
        if action_mask:
            check_gives_masks(env)
            table = mask_table(env, self.q_values.encoder, self.n_actions)
            self.q_values.allowed = (np.ones_like(self.q_values.array, dtype=np.bool_)
                                     if table is None else table)
        self.discount_factor = discount_factor
        self.epsilon = initial_epsilon
        self.final_epsilon = final_epsilon
        self.epsilon_decay = epsilon_decay
        self.epsilon_schedule = as_schedule(epsilon_schedule) or Schedule(
            "linear", initial_epsilon, final_epsilon, epsilon_decay
        )
        self.learning_rate_schedule = (
            as_schedule(learning_rate_schedule) or Schedule.constant(learning_rate)
        )
        self._lr_by_visits = self.learning_rate_schedule.kind == "visits"
        #: the step size of this episode; a per-episode schedule starts it at its own start
        self.lr = (self.learning_rate_schedule.start
                   if self.learning_rate_schedule.kind in ("linear", "exponential")
                   else learning_rate)
        require(0 < self.lr <= 1 and self.learning_rate_schedule.end >= 0,
                f"the learning rate must start in (0, 1] and decay to a floor >= 0, not "
                f"{self.learning_rate_schedule.describe()}")
        self.exploration = exploration_for(exploration)
        self.temperature_schedule = self._temperature_schedule(temperature, temperature_schedule)
        self.temperature = self.temperature_schedule.start
        require(ucb_c >= 0, f"the UCB bonus weight ucb_c must be >= 0, not {ucb_c}")
        self.ucb_c = ucb_c
        self.training_error: list[float] = []
        self.rng = np.random.default_rng(seed)

    def _take_own(self, given: dict[str, Any]) -> None:
        """Keep the method's own parameters as attributes (their defaults where not given)."""
        unknown = sorted(set(given) - {param.name for param in self.spec.params})
        if unknown:
            own = ", ".join(param.name for param in self.spec.params) or "none"
            raise UsageError(f"{self.algo or type(self).__name__} has no parameter "
                             f"{', '.join(unknown)} (its own: {own})")
        for name, value in self.spec.own_values(given).items():
            setattr(self, name, value)

    @staticmethod
    def _temperature_schedule(
        temperature: float | None, schedule: Schedule | dict | None
    ) -> Schedule:
        """A constant ``temperature`` (1 by default), or ``schedule``, which starts at it."""
        given = as_schedule(schedule)
        if given is not None and temperature is not None and temperature != given.start:
            raise UsageError(
                f"the temperature {temperature} differs from its schedule's start {given.start}: "
                "give one of them"
            )
        chosen = given or Schedule.constant(1.0 if temperature is None else temperature)
        require(chosen.end > 0 and chosen.start > 0,
                f"a softmax temperature must be positive, not {chosen.start} (floor {chosen.end})")
        return chosen

    # --- acting -----------------------------------------------------------------------------------
    def get_action(self, obs: Any, mask: Any = None) -> int:
        """An action of the behaviour policy (epsilon-greedy, softmax or UCB) at ``obs``.

        Set ``agent.epsilon = 0`` to switch exploration off, as the tutorial does: then every
        strategy plays the greedy policy, ties to the lowest action, which is exactly the policy
        tabrl evaluates (``q_values.greedy_policy()``). ``mask`` (``info["action_mask"]``: one
        entry per action, nonzero where allowed) is kept as the state's mask, and only the
        actions it allows are played there.
        """
        return self.act(self.row_of(obs, mask))

    def row_of(self, obs: Any, mask: Any = None) -> int:
        """The row of ``obs``, whose allowed actions become ``mask`` if one is given."""
        row = self.q_values.row(obs)
        if mask is not None:
            self.q_values.allow(row, checked(mask, self.n_actions, obs))
        return row

    def first_action(self, obs: Any, mask: Any = None) -> int:
        """The action that opens an episode in training: ``get_action``'s, except for a method
        that explores by its starts (Monte Carlo ES), which chooses the start here."""
        return self.get_action(obs, mask)

    def act(self, row: int) -> int:
        """The behaviour action at ``row``; the greedy policy's when exploration is off."""
        if self.epsilon == 0:
            return first_greedy(self.q_values.choices(row))
        return self.exploration.action(self, row)

    def probabilities(self, row: int) -> list[float]:
        """``pi(a|s)`` of every action at ``row`` under the behaviour policy; with exploration
        off, all on the greedy policy's action (the one :meth:`act` plays)."""
        if self.epsilon == 0:
            chosen = first_greedy(self.q_values.choices(row))
            return [float(action == chosen) for action in range(self.n_actions)]
        return self.exploration.probabilities(self, row)

    def policy_value(self, row: int) -> float:
        """``sum_a pi(a|s) Q(s, a)``: the value of ``row`` under the behaviour policy (the
        greedy value when exploration is off); a masked action has probability 0."""
        values = self.q_values.array[row].tolist()
        return sum(p * q for p, q in zip(self.probabilities(row), values, strict=True))

    def epsilon_at(self, row: int) -> float:
        """Epsilon in the state of ``row``: the episode's, or its own under a per-visit schedule."""
        if self.epsilon_schedule.kind == "visits":
            return self.epsilon_schedule.in_state(self.epsilon, self.state_updates(row))
        return self.epsilon

    def temperature_at(self, row: int) -> float:
        """The softmax temperature in the state of ``row``, as :meth:`epsilon_at`."""
        if self.temperature_schedule.kind == "visits":
            return self.temperature_schedule.in_state(self.temperature, self.state_updates(row))
        return self.temperature

    def state_updates(self, row: int) -> int:
        """``n(s)``: the updates of the state's pairs so far, which per-visit schedules count."""
        return int(self.q_values.visits[row].sum())

    def end_episode(self) -> None:
        """Move epsilon, the softmax temperature and the learning rate one episode along their
        schedules: called after every episode."""
        self.epsilon = self.epsilon_schedule.next(self.epsilon)
        self.temperature = self.temperature_schedule.next(self.temperature)
        self.lr = self.learning_rate_schedule.next(self.lr)

    def decay_epsilon(self) -> None:
        """The Gymnasium tutorial's name of :meth:`end_episode` (which moves more than epsilon)."""
        self.end_episode()

    # --- learning ---------------------------------------------------------------------------------
    def step_size(self, row: int, action: int) -> float:
        """The learning rate of this update: constant, or ``1/n^w`` of the pair's visit count."""
        if self._lr_by_visits:
            return self.learning_rate_schedule.visit_value(int(self.q_values.visits[row, action]))
        return self.lr

    def learn(self, row: int, action: int, target: float, *, logged: bool = True) -> float:
        """Count a visit and move ``Q(row, action)`` a step towards ``target``; return the error,
        also kept in ``training_error`` if ``logged`` (a real step's, not a planned one's)."""
        q = self.q_values.array
        error = target - float(q[row, action])
        self.q_values.visits[row, action] += 1
        q[row, action] += self.step_size(row, action) * error
        if logged:
            self.training_error.append(error)
        return error

    def bootstrap(self, next_row: int) -> float:
        """The estimate of the next state's value that the TD target uses."""
        raise NotImplementedError

    def target(self, reward: float, terminated: bool, next_row: int) -> float:
        """The one-step target: ``r``, plus ``gamma * bootstrap(s')`` unless ``s'`` is terminal."""
        if terminated:
            return reward
        return reward + self.discount_factor * self.bootstrap(next_row)

    def update(
        self,
        obs: Any,
        action: int,
        reward: float,
        terminated: bool,
        next_obs: Any,
        truncated: bool = False,
        next_mask: Any = None,
    ) -> float:
        """Learn from one step by the method's :meth:`step`; returns its TD error.

        A terminal transition bootstraps zero (no reward follows); a truncated one (time limit)
        still bootstraps, since the state itself had a future. ``next_mask`` (the step's
        ``info["action_mask"]``) is kept as the next state's mask, before the target reads it.
        """
        row = self.q_values.row(obs)
        return self.step(Transition(row, action, reward, terminated,
                                    self.row_of(next_obs, next_mask), truncated))

    def step(self, t: Transition) -> float:
        """The one-step TD update of ``Q(s, a)`` towards :meth:`target`; returns the TD error.

        Twin of the kernels' ``_learn_q_learning`` (and of ``_learn_expected_sarsa``)."""
        return self.learn(t.row, t.action, self.target(t.reward, t.terminated, t.next_row))

    def hyperparameters(self) -> dict[str, Any]:
        """Everything that defines this agent's learning, for the run's config."""
        exploration = {
            "softmax": {"temperature_schedule": self.temperature_schedule.to_dict()},
            "ucb": {"ucb_c": self.ucb_c},
        }.get(self.exploration.name, {})
        return {
            "algo": self.algo,
            "learning_rate": self.lr,
            "discount_factor": self.discount_factor,
            "epsilon_schedule": self.epsilon_schedule.to_dict(),
            "learning_rate_schedule": self.learning_rate_schedule.to_dict(),
            "exploration": self.exploration.name,
            **exploration,
            **{param.name: getattr(self, param.name) for param in self.spec.params},
            **({"action_mask": True} if self.action_mask else {}),
        }

    def learning_state(self) -> dict[str, np.ndarray]:
        """What, beside the Q-table, epsilon and visits, learning needs to go on exactly.

        Saved with every checkpoint, so that a resumed run ends where an uninterrupted one does.
        """
        return {"temperature": np.array(self.temperature), "rate": np.array(self.lr)}

    def restore_learning_state(self, arrays: dict[str, np.ndarray]) -> None:
        """Take back what :meth:`learning_state` gave (a checkpoint older than the learning rate
        schedules has no rate: it was constant)."""
        self.temperature = float(arrays["temperature"])
        if "rate" in arrays:
            self.lr = float(arrays["rate"])


class QLearningAgent(TabularAgent):
    """Q-learning (Watkins, 1989): bootstrap from the best next action, whatever is played.

    ``Q(s,a) += lr * (r + gamma * max_a' Q(s',a') - Q(s,a))`` (under a mask, the best allowed
    ``a'``: so in every method's target)
    """

    spec = MethodSpec("q-learning", "the best next action's value, whatever is played")

    def bootstrap(self, next_row: int) -> float:
        return max(self.q_values.choices(next_row))


class ExpectedSarsaAgent(TabularAgent):
    """Expected SARSA (van Seijen et al., 2009; S&B 6.6): the next value under the policy played.

    ``Q(s,a) += lr * (r + gamma * sum_a' pi(a'|s') Q(s',a') - Q(s,a))``, with ``pi`` the behaviour
    policy (epsilon-greedy, softmax or UCB). It learns what SARSA learns, without the variance of
    sampling ``a'``; with a greedy policy it is Q-learning.
    """

    spec = MethodSpec("expected-sarsa", "the next state's value under the policy played")

    def bootstrap(self, next_row: int) -> float:
        return self.policy_value(next_row)


class SarsaAgent(TabularAgent):
    """SARSA (Rummery and Niranjan, 1994; S&B 6.4): learn the value of the actions really played.

    ``Q(s,a) += lr * (r + gamma * Q(s',a') - Q(s,a))``, where ``a'`` is drawn from the behaviour
    policy at ``s'`` inside ``update``, and the following ``get_action(s')`` plays that same ``a'``.
    The promise does not outlive its episode: ``end_episode``, called after every episode, drops
    it. Exploration is part of what SARSA learns, so under epsilon-greedy it prefers paths where a
    random step costs little (S&B Example 6.6: the safe path away from the cliff).
    Its step is the one-step TD update (twin of the kernels' ``_learn_sarsa``).
    """

    spec = MethodSpec("sarsa", "the value of the next action played")

    def __init__(self, env: gym.Env, *args: Any, **kwargs: Any) -> None:
        super().__init__(env, *args, **kwargs)
        self.promised: tuple[int, int] | None = None  #: (row, action) that update chose to play

    def get_action(self, obs: Any, mask: Any = None) -> int:
        row = self.row_of(obs, mask)
        promised, self.promised = self.promised, None
        if promised is not None and promised[0] == row:
            return promised[1]
        return self.act(row)

    def next_action(self, next_row: int) -> int:
        """Draw the action to play at ``next_row`` and promise it to the next ``get_action``."""
        action = self.act(next_row)
        self.promised = (next_row, action)
        return action

    def bootstrap(self, next_row: int) -> float:
        return float(self.q_values.array[next_row, self.next_action(next_row)])

    def end_episode(self) -> None:
        self.promised = None
        super().end_episode()


class MultiStepAgent(TabularAgent):
    """What n-step methods share (S&B chapter 7): the last ``n`` steps are buffered; each step
    completes the update of the oldest, and the episode's end completes the rest (bootstrapping
    zero after a terminal step, ``bootstrap(s')`` after a truncated one).

    The oldest pair's target is built backwards from the tail: ``G = r + gamma * G`` at every
    buffered step, and at each step after the oldest, :meth:`backed_up` turns the return of the
    action played there into the value of its state.
    """

    def __init__(self, env: gym.Env, *args: Any, **kwargs: Any) -> None:
        super().__init__(env, *args, **kwargs)
        self.recent: deque[tuple[int, int, float]] = deque()  #: (row, action, reward), oldest first

    def step(self, t: Transition) -> float:
        """Twin of the kernels' ``_multi_step`` (``backed_up``: ``_backed_up``)."""
        self.recent.append((t.row, t.action, t.reward))
        tail = 0.0 if t.terminated else self.bootstrap(t.next_row)
        if t.terminated or t.truncated:
            return sum(abs(self.complete_oldest(tail)) for _ in range(len(self.recent)))
        return self.complete_oldest(tail) if len(self.recent) == self.n else 0.0

    def complete_oldest(self, tail: float) -> float:
        """Update the oldest buffered pair towards its n-step return; return the error."""
        g = tail
        for age in range(len(self.recent) - 1, -1, -1):
            row, action, reward = self.recent[age]
            g = reward + self.discount_factor * g
            if age:
                g = self.backed_up(row, action, g)
        row, action, _ = self.recent.popleft()
        return self.learn(row, action, g)

    def backed_up(self, row: int, action: int, g: float) -> float:
        """The value of ``row`` given ``g``, the return of ``action`` played there."""
        raise NotImplementedError


class NStepSarsaAgent(MultiStepAgent, SarsaAgent):
    """n-step SARSA (S&B 7.2): SARSA's target looks ``n`` rewards ahead before it bootstraps.

    ``G = r_1 + gamma r_2 + ... + gamma^(n-1) r_n + gamma^n Q(s_n, a_n)`` for the pair played ``n``
    steps ago (:class:`MultiStepAgent`: the actions played are the policy's, so a state's value is
    its action's return). ``n = 1`` is SARSA.
    """

    spec = MethodSpec("n-step-sarsa", "n rewards, then the value of the action played",
                      (STEPS,))

    def backed_up(self, row: int, action: int, g: float) -> float:
        return g


class TreeBackupAgent(MultiStepAgent, QLearningAgent):
    """n-step Tree Backup (Precup et al., 2000; S&B 7.5): off-policy n-step returns without
    importance sampling, towards the greedy policy.

    ``G_t = r_(t+1) + gamma * (sum_(a != A_(t+1)) pi(a|S_(t+1)) Q(S_(t+1), a)
    + pi(A_(t+1)|S_(t+1)) G_(t+1))``, ending in ``max_a Q(S_(t+n), a)`` (:class:`MultiStepAgent`).
    The target policy ``pi`` is greedy (ties shared equally), so each branch off the actions
    played is worth ``max_a Q``: the return follows the actions played while they are greedy and
    is cut to ``max_a Q`` at the first exploratory one. ``n = 1`` is Q-learning.
    """

    spec = MethodSpec("tree-backup", "n steps of the greedy policy's tree, no importance sampling",
                      (STEPS,))

    def backed_up(self, row: int, action: int, g: float) -> float:
        values = self.q_values.choices(row)
        best = max(values)
        greedy = 1.0 / values.count(best) if values[action] == best else 0.0
        return (1.0 - greedy) * best + greedy * g


class QSigmaAgent(MultiStepAgent, SarsaAgent):
    """n-step Q(sigma) (De Asis et al., 2018; S&B 7.6), on-policy: between n-step SARSA and a
    tree backup of the behaviour policy ``pi``, by the degree of sampling ``sigma``.

    At each step after the oldest, the return ``g`` of the action ``A`` played in ``s`` becomes
    ``sigma g + (1 - sigma) (sum_a pi(a|s) Q(s,a) + pi(A|s) (g - Q(s,A)))``: the sample, or the
    policy's expectation with ``g`` in ``A``'s branch (:class:`MultiStepAgent`). The tail is
    ``sigma Q(s_n, a_n) + (1 - sigma) sum_a pi(a|s_n) Q(s_n, a)``, ``a_n`` the next action, which
    is then played (as SARSA does). ``sigma = 1`` is n-step SARSA; ``sigma = 0`` is Tree Backup
    of ``pi`` (n-step Expected SARSA); ``n = 1`` is a mix of SARSA and Expected SARSA.
    """

    spec = MethodSpec("q-sigma", "n steps, each sampled (sigma 1) or expected (sigma 0)", (
        STEPS, Param("sigma", float, 0.5, "Degree of sampling sigma, 1: SARSA, 0: expectation",
                     "sigma {}", between(0, 1), "in [0, 1]")))

    def bootstrap(self, next_row: int) -> float:
        sampled = super().bootstrap(next_row)  # SARSA's: draws and promises the next action
        return self.sigma * sampled + (1.0 - self.sigma) * self.policy_value(next_row)

    def backed_up(self, row: int, action: int, g: float) -> float:
        played = self.probabilities(row)[action]
        expected = self.policy_value(row) + played * (g - float(self.q_values.array[row, action]))
        return self.sigma * g + (1.0 - self.sigma) * expected


class SarsaLambdaAgent(SarsaAgent):
    """SARSA(lambda) with replacing eligibility traces (S&B 12.7; Singh and Sutton, 1996).

    ``delta = r + gamma Q(s',a') - Q(s,a)``; ``e(s,a) = 1``; ``Q += lr * delta * e``;
    ``e *= gamma * lambda``. Each TD error also corrects the pairs played before, the one played
    ``k`` steps ago with weight ``(gamma lambda)^k``; traces are cleared when an episode ends.
    ``lam = 0`` is SARSA; ``lam = 1`` approaches Monte Carlo. With a ``1/n^w`` learning rate the
    step size is the current pair's.
    """

    spec = MethodSpec("sarsa-lambda", "the lambda-return, spread backwards by traces",
                      (TRACE_DECAY,))

    def __init__(self, env: gym.Env, *args: Any, **kwargs: Any) -> None:
        super().__init__(env, *args, **kwargs)
        self.traces = np.zeros_like(self.q_values.array)

    def step(self, t: Transition) -> float:
        """Twin of the kernels' ``_learn_sarsa_lambda`` (and ``_learn_q_lambda``)."""
        q = self.q_values.array
        self.traces = grown(self.traces, len(q))
        error = self.target(t.reward, t.terminated, t.next_row) - float(q[t.row, t.action])
        self.q_values.visits[t.row, t.action] += 1
        self.traces[t.row, t.action] = 1.0
        q += (self.step_size(t.row, t.action) * error) * self.traces
        if t.terminated or t.truncated:
            self.traces[:] = 0.0
        else:
            self.traces *= self.trace_decay()
        self.training_error.append(error)
        return error

    def trace_decay(self) -> float:
        """What the traces are multiplied by after a step that did not end the episode."""
        return self.discount_factor * self.lam


class QLambdaAgent(SarsaLambdaAgent):
    """Watkins's Q(lambda) (Watkins, 1989; S&B 12.10): Q-learning's target, spread by traces.

    ``delta = r + gamma max_a' Q(s',a') - Q(s,a)``; ``e(s,a) = 1``; ``Q += lr * delta * e``; then
    ``e *= gamma * lambda`` if the action drawn for ``s'`` (and played next, as SARSA does) is a
    greedy one, else ``e = 0``: past an exploratory action, the return no longer follows the
    greedy policy whose values Q-learning learns. Off-policy like Q-learning, so exploration does
    not enter the values; ``lam = 0`` is Q-learning.
    """

    spec = MethodSpec("q-lambda", "Q-learning's target, spread by traces cut at exploration",
                      (TRACE_DECAY,))

    def __init__(self, env: gym.Env, *args: Any, **kwargs: Any) -> None:
        super().__init__(env, *args, **kwargs)
        self.next_is_greedy = True  #: whether the action promised for the next state is greedy

    def bootstrap(self, next_row: int) -> float:
        values = self.q_values.choices(next_row)
        best = max(values)
        self.next_is_greedy = values[self.next_action(next_row)] == best
        return best

    def trace_decay(self) -> float:
        return super().trace_decay() if self.next_is_greedy else 0.0


class DoubleQLearningAgent(TabularAgent):
    """Double Q-learning (van Hasselt, 2010; S&B 6.7): two estimates, each judged by the other.

    With probability 1/2, ``Q_A(s,a) += lr * (r + gamma Q_B(s', argmax_a' Q_A(s',a')) - Q_A(s,a))``,
    otherwise the same with A and B swapped. One estimate picks the best next action and the other
    values it, which removes the maximisation bias of ``max_a' Q(s',a')``. The agent acts on (and is
    evaluated by) their mean ``q_values = (Q_A + Q_B) / 2``; it keeps the half difference
    ``D = (Q_A - Q_B) / 2`` beside it, so that ``Q_A = Q + D`` and ``Q_B = Q - D``.
    """

    spec = MethodSpec("double-q-learning", "two estimates: one picks the action, one values it")

    def __init__(self, env: gym.Env, *args: Any, **kwargs: Any) -> None:
        super().__init__(env, *args, **kwargs)
        self.half_difference = np.zeros_like(self.q_values.array)

    def step(self, t: Transition) -> float:
        """Twin of the kernels' ``_learn_double_q``."""
        q = self.q_values.array
        d = self.half_difference = grown(self.half_difference, len(q))
        sign = 1.0 if self.rng.random() < 0.5 else -1.0  # +1: learn Q_A = Q + D; -1: Q_B = Q - D
        target = t.reward
        if not t.terminated:
            mean, half = self.q_values.choices(t.next_row), d[t.next_row].tolist()
            learner = [m + sign * h for m, h in zip(mean, half, strict=True)]  # masked: -inf
            best = learner.index(max(learner))
            target += self.discount_factor * (mean[best] - sign * half[best])
        error = target - float(q[t.row, t.action] + sign * d[t.row, t.action])
        self.q_values.visits[t.row, t.action] += 1
        half_step = self.step_size(t.row, t.action) * error / 2  # the mean moves half as far
        q[t.row, t.action] += half_step
        d[t.row, t.action] += sign * half_step
        self.training_error.append(error)
        return error

    def learning_state(self) -> dict[str, np.ndarray]:
        return {**super().learning_state(), "half_difference": self.half_difference}

    def restore_learning_state(self, arrays: dict[str, np.ndarray]) -> None:
        super().restore_learning_state(arrays)
        self.half_difference = arrays["half_difference"].astype(np.float64)


class MonteCarloAgent(TabularAgent):
    """First-visit Monte Carlo control with an epsilon-soft policy (S&B 5.4).

    The episode is buffered. When it ends, for ``t = T-1, ..., 0``: ``G = r_(t+1) + gamma G``, and
    at the first visit of ``(s_t, a_t)``: ``Q(s_t,a_t) += lr * (G - Q(s_t,a_t))``. With
    ``learning_rate_schedule=Schedule.visits(1, 1)`` each ``Q`` is the plain average of its returns,
    as in the book. A truncated episode starts ``G`` from the value of its last state under the
    policy, ``sum_a pi(a|s_T) Q(s_T, a)``.

    ``exploring_starts=True`` is Monte Carlo ES (S&B 5.3): each episode starts in a uniformly
    random state with a uniformly random first action, so every pair keeps being tried even by a
    greedy policy. The agent chooses the start itself, in :meth:`first_action`, which a training
    loop calls at the first step of every episode (tabrl's does): it sets the state of its
    environment (``agent.env.unwrapped.s``, which the toy-text environments step from) and
    records that start in place of the reset observation. This needs an environment with a
    transition table ``P`` and integer states (FrozenLake, Taxi, CliffWalking, custom toy-text
    environments); elsewhere (Blackjack) it is refused. ``get_action`` never starts anywhere:
    with ``agent.epsilon = 0`` a trained agent plays its greedy policy, as every agent does.
    """

    spec = MethodSpec("monte-carlo", "the episode's return after the first visit", (
        Param("exploring_starts", bool, False, "Monte Carlo with exploring starts",
              "exploring starts"),))

    def __init__(self, env: gym.Env, *args: Any, **kwargs: Any) -> None:
        super().__init__(env, *args, **kwargs)
        if self.exploring_starts:
            check_exploring_starts(env)
        self.episode: list[tuple[int, int, float]] = []  #: (row, action, reward) of each step
        self.start_row: int | None = None  #: the start an exploring start chose, until learnt

    def first_action(self, obs: Any, mask: Any = None) -> int:
        """An exploring start: a uniform state set in the environment, a uniform action (among
        the start's allowed ones, under a mask)."""
        if not self.exploring_starts:
            return self.get_action(obs, mask)
        start = uniform_index(self.env.unwrapped.observation_space.n, self.rng)
        self.env.unwrapped.s = start
        self.start_row = self.q_values.row(start)
        allowed = self.q_values.allowed_actions(self.start_row)
        if allowed is None:
            return uniform_index(self.n_actions, self.rng)
        return allowed[uniform_index(len(allowed), self.rng)]

    def step(self, t: Transition) -> float:
        """Twin of the kernels' ``_learn_monte_carlo``."""
        row, self.start_row = (t.row if self.start_row is None else self.start_row), None
        self.episode.append((row, t.action, t.reward))
        if not (t.terminated or t.truncated):
            return 0.0
        g = 0.0 if t.terminated else self.policy_value(t.next_row)
        first_visit = {}
        for when, (row, action, _) in enumerate(self.episode):
            first_visit.setdefault((row, action), when)
        errors = []
        for when in reversed(range(len(self.episode))):
            row, action, reward = self.episode[when]
            g = reward + self.discount_factor * g
            if first_visit[row, action] == when:
                errors.append(self.learn(row, action, g, logged=False))
        self.episode.clear()
        self.training_error.extend(reversed(errors))
        return sum(abs(error) for error in errors)


def check_exploring_starts(env: gym.Env) -> None:
    """A one-line error unless episodes of ``env`` can start in a state the agent chooses."""
    base = env.unwrapped
    settable = (
        hasattr(base, "P")
        and isinstance(env.observation_space, gym.spaces.Discrete)
        and env.observation_space == base.observation_space
        and env.observation_space.start == 0
    )
    if not settable:
        name = env.spec.id if env.spec else type(base).__name__
        raise UsageError(
            f"exploring starts need an environment whose start state can be set (a toy-text "
            f"environment with a transition table P), and {name} has none: "
            "use exploring_starts=False (an epsilon-soft policy explores instead)"
        )


class DynaQAgent(QLearningAgent):
    """Dyna-Q (Sutton, 1990; S&B 8.2): Q-learning that also learns from a model of its world.

    After each real step's Q-learning update, the outcome ``(r, s', terminal)`` is counted in a
    model of ``(s, a)``; then ``planning_steps`` times a pair seen before is drawn uniformly, an
    outcome is drawn from those observed for it in proportion to their counts (exact on a
    deterministic environment, the empirical law on a stochastic one) and Q-learning updates the
    pair from it. Planning updates count as visits of their pair; ``training_error`` lists the
    errors of real steps only. Time limits are not in the model: planning truncates nothing.
    """

    spec = MethodSpec("dyna-q", "Q-learning's, on real steps and on steps replayed from a model", (
        Param("planning_steps", int, 10, "Model updates per real step", "{} planning steps",
              whole_at_least(0), "a whole number >= 0"),))

    def __init__(self, env: gym.Env, *args: Any, **kwargs: Any) -> None:
        super().__init__(env, *args, **kwargs)
        #: outcome counts per pair: ``model[row, action][reward, next_row, terminated]``
        self.model: dict[tuple[int, int], dict[tuple[float, int, bool], int]] = {}
        self.seen: list[tuple[int, int]] = []  #: the pairs of the model, in order of first sight

    def step(self, t: Transition) -> float:
        """Twin of the kernels' ``_learn_dyna_q``."""
        error = super().step(t)
        pair = (t.row, t.action)
        if pair not in self.model:
            self.model[pair] = {}
            self.seen.append(pair)
        outcome = (float(t.reward), t.next_row, bool(t.terminated))
        self.model[pair][outcome] = self.model[pair].get(outcome, 0) + 1
        for _ in range(self.planning_steps):
            self.plan()
        return error

    def plan(self) -> None:
        """One Q-learning update on a transition drawn from the model."""
        row, action = self.seen[uniform_index(len(self.seen), self.rng)]
        counts = self.model[row, action]
        total = sum(counts.values())
        outcomes = list(counts)
        chosen = sample([counts[o] / total for o in outcomes], self.rng)
        reward, next_row, terminated = outcomes[chosen]
        self.learn(row, action, self.target(reward, terminated, next_row), logged=False)

    def learning_state(self) -> dict[str, np.ndarray]:
        """The model as flat arrays, in the order it was built (sampling depends on that order)."""
        outcomes = [(p, *outcome, count) for p, pair in enumerate(self.seen)
                    for outcome, count in self.model[pair].items()]
        return {
            **super().learning_state(),
            "model_pairs": np.array(self.seen, dtype=np.int64).reshape(-1, 2),
            "model_outcomes": np.array(outcomes, dtype=np.float64).reshape(-1, 5),
        }

    def restore_learning_state(self, arrays: dict[str, np.ndarray]) -> None:
        super().restore_learning_state(arrays)
        self.seen = [(int(row), int(action)) for row, action in arrays["model_pairs"]]
        self.model = {pair: {} for pair in self.seen}
        for pair, reward, next_row, terminated, count in arrays["model_outcomes"]:
            outcome = (float(reward), int(next_row), bool(terminated))
            self.model[self.seen[int(pair)]][outcome] = int(count)


AGENTS: dict[str, type[TabularAgent]] = {
    cls.algo: cls
    for cls in (
        QLearningAgent, SarsaAgent, ExpectedSarsaAgent, DoubleQLearningAgent, MonteCarloAgent,
        NStepSarsaAgent, SarsaLambdaAgent, QLambdaAgent, DynaQAgent, TreeBackupAgent,
        QSigmaAgent,
    )
}
#: Every method's declaration, by name (:mod:`tabrl.methods`).
METHODS: dict[str, MethodSpec] = {name: cls.spec for name, cls in AGENTS.items()}
#: The methods' own parameters, by name.
OWN_PARAMS: dict[str, Param] = own_params(METHODS.values())


def agent_class(algo: str) -> type[TabularAgent]:
    """The agent class of an algorithm name, or a one-line error listing the known ones."""
    try:
        return AGENTS[algo]
    except KeyError:
        raise UsageError(f"unknown method {algo!r}: {did_you_mean(algo, list(AGENTS))}") from None


def make_agent(env: gym.Env, algo: str = "q-learning", **hyperparameters) -> TabularAgent:
    """An agent of ``algo`` for ``env``, with the tutorial's keyword names."""
    return agent_class(algo)(env, **hyperparameters)
