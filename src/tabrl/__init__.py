"""tabrl: the whole tabular reinforcement-learning workflow on Gymnasium environments.

>>> import tabrl
>>> training = tabrl.train("FrozenLake-v1", n_episodes=5_000, learning_rate=0.1)
>>> tabrl.evaluate(training.agent, training.env, n_episodes=1_000).mean_return  # doctest: +SKIP
"""

__version__ = "0.1.0"

from tabrl import examples  # noqa: F401  (registers tabrl/MaximizationBias-v0)
from tabrl.agents import AGENTS, METHODS, TabularAgent
from tabrl.dp import PolicyValue, Solution, evaluate_policy_exact, solve
from tabrl.envs import make_env
from tabrl.errors import TabrlError
from tabrl.evaluate import Evaluation, evaluate
from tabrl.export import Policy, load_policy
from tabrl.loop import TrainingLog
from tabrl.runs import load_agent, load_run
from tabrl.schedules import Schedule
from tabrl.training import train

#: Every method's agent class, by its class name (``tabrl.QLearningAgent``, ...).
globals().update({cls.__name__: cls for cls in AGENTS.values()})

__all__ = [
    *sorted(cls.__name__ for cls in AGENTS.values()),
    "METHODS",
    "Evaluation",
    "Policy",
    "PolicyValue",
    "Solution",
    "Schedule",
    "TabrlError",
    "TabularAgent",
    "TrainingLog",
    "evaluate",
    "evaluate_policy_exact",
    "load_agent",
    "load_policy",
    "load_run",
    "make_env",
    "solve",
    "train",
]
