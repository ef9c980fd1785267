"""tabrl: the whole tabular reinforcement-learning workflow on Gymnasium environments.

>>> import tabrl
>>> training = tabrl.train("FrozenLake-v1", n_episodes=5_000, learning_rate=0.1, seed=0)
>>> policy = training.agent.q_values.greedy_policy()
>>> round(tabrl.evaluate_policy_exact(training.env, policy).value, 4)
0.7109
>>> round(tabrl.solve(training.env).value, 4)
0.7442
"""

from tabrl import examples  # noqa: F401  (registers tabrl/MaximizationBias-v0)
from tabrl.agents import (
    METHODS,
    DoubleQLearningAgent,
    DynaQAgent,
    ExpectedSarsaAgent,
    MonteCarloAgent,
    NStepSarsaAgent,
    QLambdaAgent,
    QLearningAgent,
    QSigmaAgent,
    SarsaAgent,
    SarsaLambdaAgent,
    TabularAgent,
    TreeBackupAgent,
)
from tabrl.app.export import Policy, load_policy
from tabrl.app.runs import Run, load_agent, load_run
from tabrl.app.sweep import Sweep, sweep
from tabrl.envs import make_env
from tabrl.errors import TabrlError
from tabrl.evaluate import Evaluation, evaluate
from tabrl.exact.dp import PolicyValue, Solution, evaluate_policy_exact, solve
from tabrl.loop import TrainingLog
from tabrl.schedules import Schedule
from tabrl.training import Training, train
from tabrl.version import __version__

__all__ = [
    "__version__",
    "METHODS",
    "DoubleQLearningAgent",
    "DynaQAgent",
    "Evaluation",
    "ExpectedSarsaAgent",
    "MonteCarloAgent",
    "NStepSarsaAgent",
    "Policy",
    "PolicyValue",
    "QLambdaAgent",
    "QLearningAgent",
    "QSigmaAgent",
    "Run",
    "SarsaAgent",
    "SarsaLambdaAgent",
    "Schedule",
    "Solution",
    "Sweep",
    "TabrlError",
    "TabularAgent",
    "Training",
    "TrainingLog",
    "TreeBackupAgent",
    "evaluate",
    "evaluate_policy_exact",
    "load_agent",
    "load_policy",
    "load_run",
    "make_env",
    "solve",
    "sweep",
    "train",
]
