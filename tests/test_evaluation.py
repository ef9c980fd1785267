"""Greedy evaluation at the edges: policies that loop, outcomes per family, one greedy policy."""

from __future__ import annotations

import importlib
import json
import math
import time

import gymnasium as gym
import numpy as np
import pytest
from scipy import stats

import tabrl
from tabrl.agents import AGENTS
from tabrl.app.runs import RunConfig
from tabrl.app.workflow import prepare_run, train_run
from tabrl.compiled import warm_up
from tabrl.errors import UsageError
from tabrl.evaluate import CAPPED_IN_A_ROW, PLACES, Evaluation, evaluate
from tabrl.exact.readers import mdp_of
from tabrl.exact.reference import exact_report

#: The README's Sutton & Barto loop (section "The family of tabular methods"), one method.
README_LOOP = ["--episodes", "500", "--exploration", "epsilon-greedy", "--epsilon-schedule",
               "constant", "--epsilon-start", "0.1", "--epsilon-end", "0.1", "--learning-rate",
               "0.5", "--discount", "1"]


def quiet(_: str) -> None:
    pass


def test_the_readme_loop_finishes_fast_and_reports_that_its_greedy_policy_loops(tabrl_cli,
                                                                                tmp_path):
    warm_up()  # the compile (cached on disk) is not what is timed
    start = time.perf_counter()
    result = tabrl_cli("train", "CliffWalking-v1", "--algo", "sarsa-lambda", *README_LOOP,
                       "--out", tmp_path / "run")
    seconds = time.perf_counter() - start
    assert result.code == 0, result.stderr
    assert seconds < 30  # it used to play 10,000 episodes of 10,000 steps (killed after 14 min)
    saved = json.loads((tmp_path / "run" / "evaluation.json").read_text())
    assert saved["outcomes"] == {"success": 0.0, "truncated": 0.0, "loops": 1.0}
    assert (saved["loop_start_states"], saved["start_states"]) == (1, 1)
    assert saved["mean_return"] is None  # no episode ended: there is no mean to report
    assert saved["exact"]["policy_value"] is None and saved["exact"]["outcomes"]["loops"] == 1.0
    assert "loops from" in result.stdout and "1 of 1 start states" in result.stdout
    assert "-inf (the policy can loop forever)" in result.stdout


@pytest.mark.parametrize("on", ["env", "mdp"])
def test_a_looping_policy_on_a_known_mdp_is_cut_at_once(on):
    env = gym.make("CliffWalking-v1")
    agent = tabrl.QLearningAgent(env)  # all zeros: always up, then along the top border forever
    start = time.perf_counter()
    evaluation = evaluate(agent, env, 10_000, on=on)
    assert time.perf_counter() - start < 5
    assert evaluation.n_episodes == 10_000 and evaluation.looping_rate == 1.0
    assert (evaluation.loop_start_states, evaluation.start_states) == (1, 1)
    assert math.isnan(evaluation.mean_return)
    again = Evaluation.from_dict(json.loads(json.dumps(evaluation.to_dict())))
    assert again.outcomes == evaluation.outcomes and math.isnan(again.mean_return)
    assert again.played_on == on


def test_an_evaluation_on_the_mdp_is_refused_where_the_mdp_is_unknown():
    env = gym.wrappers.TransformReward(gym.make("FrozenLake-v1"), lambda r: r)
    with pytest.raises(UsageError, match="--eval-on env"):
        evaluate(tabrl.QLearningAgent(env), env, 10, on="mdp")
    with pytest.raises(UsageError, match="env or mdp"):
        evaluate(tabrl.QLearningAgent(env), env, 10, on="auto")


def test_a_policy_that_runs_into_the_cap_stops_early_alike_on_the_env_and_the_mdp():
    """CliffWalking (no time limit) whose optimal path (13 steps) is cut by a 3-step cap: every
    episode is truncated, both evaluations stop after the same episodes with the same note."""
    env = gym.make("CliffWalking-v1")
    agent = tabrl.QLearningAgent(env)
    agent.q_values.array[: agent.q_values.n_rows] = tabrl.solve(env).row_q_values
    reports = [evaluate(agent, env, 1_000, max_steps=3, on=on).to_dict() for on in PLACES]
    assert reports[0].pop("played_on") == "env" and reports[1].pop("played_on") == "mdp"
    assert reports[0] == reports[1]
    assert reports[0]["n_episodes"] == CAPPED_IN_A_ROW and reports[0]["step_cap"] == 3
    assert reports[0]["note"].startswith(f"stopped after {CAPPED_IN_A_ROW} of 1,000 episodes")


@pytest.mark.parametrize(("env_id", "kwargs"), [("Blackjack-v1", {"sab": False}),
                                                 ("FrozenLake-v1", {})])
def test_the_mdp_and_the_environment_agree_on_a_trained_policy(env_id, kwargs):
    """Means within four standard errors of their difference, outcome shares by chi-square;
    the MDP's play is the same for the same seed, bit for bit."""
    env = gym.make(env_id, **kwargs)
    agent = tabrl.QLearningAgent(env, learning_rate=0.1, epsilon_decay=1e-3)
    tabrl.train(env, agent, 3_000, seed=1, engine="compiled")
    real, known = (evaluate(agent, env, 5_000, seed=3, on=on) for on in PLACES)
    assert abs(real.mean_return - known.mean_return) <= 4 * math.hypot(real.sem, known.sem)
    assert abs(real.mean_length - known.mean_length) <= 0.1 * real.mean_length
    counts = [[round(e.outcomes[name] * e.n_episodes) for name in real.outcomes if
               real.outcomes[name] + known.outcomes[name] > 0] for e in (real, known)]
    assert stats.chi2_contingency(counts).pvalue > 1e-3, counts
    assert evaluate(agent, env, 5_000, seed=3, on="mdp").to_dict() == known.to_dict()


def test_an_unknown_mdp_without_time_limit_stops_early_with_a_note():
    # A wrapper that may change rewards hides the MDP; CliffWalking has no time limit.
    env = gym.wrappers.TransformReward(gym.make("CliffWalking-v1"), lambda r: r)
    agent = tabrl.QLearningAgent(env)
    evaluation = evaluate(agent, env, 1_000, max_steps=200)
    assert evaluation.n_episodes == CAPPED_IN_A_ROW
    assert evaluation.outcomes == {"ended": 0.0, "truncated": 1.0}
    assert evaluation.note.startswith(f"stopped after {CAPPED_IN_A_ROW} of 1,000 episodes")
    assert evaluation.step_cap == 200 and evaluation.loop_start_states is None


def test_progress_is_reported_only_for_an_evaluation_longer_than_a_second(monkeypatch):
    module = importlib.import_module("tabrl.evaluate")  # tabrl.evaluate is also the function

    env = gym.make("FrozenLake-v1")
    agent = tabrl.QLearningAgent(env)
    heard = []
    evaluate(agent, env, 50, progress=lambda done, total: heard.append((done, total)))
    assert heard == []  # fast: no bar
    monkeypatch.setattr(module, "PROGRESS_AFTER", 0.0)
    evaluate(agent, env, 50, progress=lambda done, total: heard.append((done, total)))
    assert heard[0][1] == 50 and heard[-1] == (50, 50)
    assert [done for done, _ in heard] == sorted(done for done, _ in heard)


@pytest.mark.parametrize("on", ["env", "mdp"])
@pytest.mark.parametrize(("env_id", "kwargs", "names"), [
    ("FrozenLake-v1", {}, ["success", "failure", "truncated"]),
    ("Taxi-v4", {}, ["success", "truncated"]),
    ("CliffWalking-v1", {}, ["success", "truncated", "loops"]),
    ("Blackjack-v1", {"sab": True}, ["win", "draw", "loss"]),
])
def test_outcomes_are_named_per_family_and_match_the_exact_law(env_id, kwargs, names, on):
    env = gym.make(env_id, **kwargs)
    solution = tabrl.solve(env)
    agent = tabrl.QLearningAgent(env)
    agent.q_values.array[: agent.q_values.n_rows] = np.nan_to_num(solution.row_q_values,
                                                                   nan=-1e9)
    policy = agent.q_values.greedy_policy()
    evaluation = evaluate(agent, env, 2_000, seed=5, on=on)
    exact = exact_report(mdp_of(env), solution, policy)
    assert list(evaluation.outcomes) == list(exact["outcomes"]) == names
    assert sum(evaluation.outcomes.values()) == pytest.approx(1.0, abs=1e-12)
    assert sum(exact["outcomes"].values()) == pytest.approx(1.0, abs=1e-12)
    for name in names:
        p = exact["outcomes"][name]
        assert abs(evaluation.outcomes[name] - p) <= 4 * math.sqrt(p * (1 - p) / 2_000) + 1e-12


@pytest.mark.parametrize("on", ["env", "mdp"])
def test_a_hole_in_frozenlake_is_a_failure_not_a_draw(on):
    env = gym.make("FrozenLake-v1", is_slippery=False)
    agent = tabrl.QLearningAgent(env)
    agent.q_values[0][1] = 1.0  # down from the start to 4,
    agent.q_values[4][2] = 1.0  # then right into the hole at 5
    evaluation = evaluate(agent, env, 10, on=on)
    assert evaluation.outcomes == {"success": 0.0, "failure": 1.0, "truncated": 0.0}


def test_solve_json_outcomes_add_up_to_one_with_truncation(tabrl_cli, tmp_path):
    result = tabrl_cli("solve", "FrozenLake-v1", "--json", "--out", tmp_path / "s")
    assert result.code == 0, result.stderr
    outcomes = json.loads(result.stdout)["outcomes"]
    assert list(outcomes) == ["success", "failure", "truncated"]
    assert outcomes["truncated"] > 0.05  # the time limit cuts a tenth of the episodes
    assert sum(outcomes.values()) == pytest.approx(1.0, abs=1e-12)


def tutorial_returns(agent, env: gym.Env, n_episodes: int) -> np.ndarray:
    """The Gymnasium tutorial's loop with exploration off, as a user plays a loaded agent."""
    returns = np.zeros(n_episodes)
    obs, _ = env.reset(seed=11)
    for episode in range(n_episodes):
        if episode:
            obs, _ = env.reset()
        done = False
        while not done:
            action = agent.get_action(obs)
            obs, reward, terminated, truncated, _ = env.step(action)
            returns[episode] += reward
            done = terminated or truncated
    return returns


@pytest.mark.parametrize("algo", list(AGENTS))
def test_the_loaded_agent_plays_the_policy_whose_exact_value_is_reported(tmp_path, algo):
    config = RunConfig.resolve("CliffWalking-v1", {}, algo, eval_episodes=20)
    run = train_run(prepare_run(config, tmp_path / algo), say=quiet)
    reported = run.evaluation().exact["policy_value"]
    agent = tabrl.load_agent(run.path)
    agent.epsilon = 0
    env = gym.wrappers.TimeLimit(gym.make("CliffWalking-v1"), max_episode_steps=1_000)
    returns = tutorial_returns(agent, env, 20)
    assert reported is not None, "the shipped defaults reach the optimum, which never loops"
    half_width = 1.96 * returns.std(ddof=1) / math.sqrt(len(returns))
    assert abs(returns.mean() - reported) <= half_width + 1e-9  # deterministic: equal


def test_eval_on_chooses_where_train_and_evaluate_play_the_episodes(tabrl_cli, tmp_path):
    """After the compiled engine the evaluation plays on the MDP, unless ``--eval-on env``;
    ``tabrl evaluate`` follows the run's own choice unless told otherwise."""
    def played_on(run) -> str:
        return json.loads((run / "evaluation.json").read_text())["played_on"]

    base = ["train", "FrozenLake-v1", "--episodes", "300", "--eval-episodes", "200", "-q"]
    assert tabrl_cli(*base, "--out", tmp_path / "auto").code == 0
    assert tabrl_cli(*base, "--eval-on", "env", "--out", tmp_path / "env").code == 0
    assert tabrl_cli(*base, "--engine", "python", "--out", tmp_path / "py").code == 0
    assert [played_on(tmp_path / name) for name in ("auto", "env", "py")] == ["mdp", "env", "env"]
    result = tabrl_cli("evaluate", tmp_path / "env", "--episodes", "100")
    assert result.code == 0 and "on the real environment" in result.stdout
    result = tabrl_cli("evaluate", tmp_path / "env", "--episodes", "100", "--eval-on", "mdp")
    assert result.code == 0 and "on the exact MDP (compiled)" in result.stdout
    assert played_on(tmp_path / "env") == "mdp"
    result = tabrl_cli("evaluate", tmp_path / "env", "--eval-on", "nowhere")
    assert result.code == 2 and result.stderr.count("\n") == 1 and "auto, env, mdp" in result.stderr
