"""The shipped defaults (``hyperparams/<algo>.yml``) keep their promise: with nothing set but the
environment and the method, the greedy policy is within 0.02 of the exact optimum on the slippery
FrozenLake 4x4 and within 1% of it on CliffWalking-v1 and Taxi-v4, for every method and seed
tried here (the README's table has more seeds). Runs take the compiled engine, as a user's would.
"""

from __future__ import annotations

from dataclasses import asdict

import pytest

from tabrl import solve
from tabrl.agents import AGENTS
from tabrl.app.runs import RunConfig
from tabrl.app.sweep import run_job
from tabrl.envs import make_env

#: How far below the optimum a greedy value may be: absolute on FrozenLake, relative elsewhere.
ABSOLUTE_GAP = {"FrozenLake-v1": 0.02}
RELATIVE_GAP = {"CliffWalking-v1": 0.01, "Taxi-v4": 0.01}
SEEDS = range(4)


@pytest.mark.parametrize("env_id", [*ABSOLUTE_GAP, *RELATIVE_GAP])
@pytest.mark.parametrize("algo", sorted(AGENTS))
def test_shipped_defaults_reach_a_near_optimal_greedy_policy(algo, env_id):
    optimum = solve(make_env(env_id)).value
    allowed = ABSOLUTE_GAP.get(env_id) or RELATIVE_GAP[env_id] * abs(optimum)
    config = asdict(RunConfig.resolve(env_id, algo=algo))
    for seed in SEEDS:
        result = run_job(config, setting=0, seed=seed)
        assert result.engine == "compiled"
        assert result.exact
        assert result.value >= optimum - allowed, f"seed {seed}: {result.value} vs {optimum}"
