"""The greedy learning curve: where its points fall, that they never change training, what they
are worth (exactly, or by Monte Carlo), how a run folder stores them, and that resume keeps them."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

import tabrl
from tabrl import plots
from tabrl.app.runs import RunConfig, load_run
from tabrl.app.workflow import prepare_run, resume_run, train_run
from tabrl.curve import CURVE_EVAL_EPISODES, Curve, curve_episodes
from tabrl.envs import make_env
from tabrl.errors import UsageError
from tabrl.evaluate import evaluate
from tabrl.exact.dp import evaluate_policy_exact
from tabrl.metrics import CURVE_DTYPES, MetricsStore


def quiet(_: str) -> None:
    pass


@pytest.fixture(autouse=True)
def low_dpi(monkeypatch: pytest.MonkeyPatch) -> None:
    """Same pictures, fewer pixels: run folders are drawn fast."""
    monkeypatch.setattr(plots.figures, "DPI", 30)


def test_points_are_evenly_spaced_and_the_last_ends_the_run():
    assert curve_episodes(10, 4).tolist() == [3, 5, 8, 10]
    assert curve_episodes(1000, 100).tolist() == list(range(10, 1001, 10))
    assert curve_episodes(3, 100).tolist() == [1, 2, 3]  # fewer episodes than points
    assert curve_episodes(50, 0).tolist() == []
    with pytest.raises(UsageError, match="curve points"):
        curve_episodes(50, -1)


@pytest.mark.parametrize("engine", ["python", "compiled"])
def test_curve_points_never_change_training_and_the_last_is_the_final_policy(engine):
    """Small chunks, points inside and at their ends: the same Q-table and log with 0, 7 or 70
    points; the last point is the exact value of the final greedy policy."""
    trained = [tabrl.train("FrozenLake-v1", n_episodes=700, seed=4, engine=engine,
                           chunk_steps=900, curve_points=points) for points in (0, 7, 70)]
    for other in trained[1:]:
        assert np.array_equal(other.agent.q_values.array, trained[0].agent.q_values.array)
        assert np.array_equal(other.log.returns, trained[0].log.returns)
    assert trained[0].chunks_done > 3 and len(trained[0].curve) == 0
    seven, seventy = trained[1].curve, trained[2].curve
    assert seven.episodes.tolist() == curve_episodes(700, 7).tolist()
    final = evaluate_policy_exact(trained[0].env, trained[0].agent.q_values.greedy_policy())
    assert seven.values[-1] == seventy.values[-1] == final.value
    assert np.array_equal(seventy.values[seventy.episodes % 100 == 0], seven.values)


def test_monte_carlo_curve_where_the_mdp_is_unknown():
    """CartPole in bins: each point is the mean return of the same greedy episodes' seed, the
    last that of the final policy, and a second run gives the same curve."""
    kwargs = dict(n_episodes=60, seed=2, engine="python", curve_points=3, learning_rate=0.1,
                  discount_factor=1.0)
    curves = []
    for _ in range(2):
        env = make_env("CartPole-v1", {}, [1, 1, 6, 12],
                       [[-2.4, 2.4], [-3.0, 3.0], [-0.21, 0.21], [-0.87, 0.87]])
        training = tabrl.train(env, **kwargs)
        curves.append(training.curve)
    assert curves[0].episodes.tolist() == [20, 40, 60]
    assert np.array_equal(curves[0].values, curves[1].values)
    final = evaluate(training.agent, make_env("CartPole-v1", {}, [1, 1, 6, 12],
                                              [[-2.4, 2.4], [-3.0, 3.0], [-0.21, 0.21],
                                               [-0.87, 0.87]]),
                     CURVE_EVAL_EPISODES, seed=2 + 1_000_003)
    assert curves[0].values[-1] == final.mean_return >= 8


def run(tmp_path, name, **given):
    settings = {"episodes": 900, "eval_episodes": 0, "engine": "compiled", "chunk_steps": 400,
                "seed": 5, "checkpoint_seconds": 1e9, **given}
    config = RunConfig.resolve("FrozenLake-v1", **settings)
    return train_run(prepare_run(config, tmp_path / name), say=quiet)


def test_a_run_folder_keeps_100_points_by_default_the_last_its_exact_evaluation(tmp_path):
    done = run(tmp_path, "run", eval_episodes=10)
    curve = done.curve()
    assert done.config.curve_points == 100 and len(curve) == 100
    assert curve.episodes[-1] == 900
    assert curve.values[-1] == done.evaluation().exact["policy_value"]
    stored = np.load(MetricsStore(done.path).column_path("curve_value"))  # plain .npy
    assert np.array_equal(stored, curve.values)
    off = run(tmp_path, "off", curve_points=0)
    assert len(off.curve()) == 0
    assert np.array_equal(off.load_agent().q_values.array, done.load_agent().q_values.array)


def test_an_interrupted_run_resumes_to_the_same_curve(tmp_path, interrupted_run):
    whole = run(tmp_path, "whole", engine="python")
    config = RunConfig.resolve("FrozenLake-v1", episodes=900, eval_episodes=0, engine="python",
                               chunk_steps=400, seed=5, checkpoint_seconds=1e9)
    cut = interrupted_run(config, tmp_path / "cut")
    assert 0 < len(cut.curve()) < 100 and cut.curve().episodes[-1] <= cut.episodes_done
    resumed = resume_run(cut.path, say=quiet).curve()
    assert np.array_equal(resumed.episodes, whole.curve().episodes)
    assert np.array_equal(resumed.values, whole.curve().values)


def test_points_beyond_the_checkpoint_are_ignored_and_a_run_without_a_curve_gains_one(tmp_path):
    done = run(tmp_path, "run", episodes=300)
    store = MetricsStore(done.path)
    store.write_curve(100, Curve(np.array([301, 302]), np.array([0.5, 0.6])))  # then a kill
    assert len(load_run(done.path).curve()) == 100
    resumed = resume_run(done.path, 600, say=quiet).curve()
    assert len(resumed) == 150 and resumed.episodes[-1] == 600  # then the new total's points
    assert np.all(np.diff(resumed.episodes) > 0)
    for name in CURVE_DTYPES:  # as a run folder made before curves
        store.column_path(name).unlink()
    assert len(load_run(done.path).curve()) == 0
    again = resume_run(done.path, 900, say=quiet).curve()
    assert again.episodes.tolist() == list(range(603, 901, 9))


def test_a_damaged_curve_is_refused_in_one_line(tmp_path, tiny_run):
    copy = tmp_path / "copy"
    shutil.copytree(tiny_run, copy)
    path = MetricsStore(copy).column_path("curve_value")
    values = np.load(path)
    assert len(values) == 30  # 30 episodes: a point after each
    values[3] = np.nan
    np.save(path, values)
    with pytest.raises(tabrl.TabrlError, match="curve_episode.npy holds points that cannot be"):
        load_run(copy).curve()
    np.save(path, values[:10])
    with pytest.raises(tabrl.TabrlError, match="holds 30 points but curve_value.npy 10"):
        load_run(copy).curve()


def test_the_greedy_panel_draws_loops_and_references(tmp_path):
    metrics = {"return": np.zeros(100), "length": np.ones(100), "td_error": np.ones(100)}
    curve = Curve(np.arange(10, 101, 10), np.array([-np.inf] * 3 + [-20.0, -15, -13] * 2 +
                                                   [-13.0]))
    panel = plots.GreedyPanel({"": curve}, "exact value", -13.0, -13.0)
    path = plots.plot_learning_curves(metrics, tmp_path / "curves.png", window=10, greedy=panel)
    assert path.read_bytes()[:4] == b"\x89PNG"


def test_a_policy_valued_again_is_remembered_and_its_value_is_exact(monkeypatch):
    """A curve's exact value is the one evaluate_policy_exact gives, bit for bit; a policy
    valued lately is not solved again, and only the last REMEMBERED are kept."""
    import tabrl.exact.dp as dp
    from tabrl.curve import GreedyValue
    from tabrl.spaces import encoder_for

    env = make_env("FrozenLake-v1")
    greedy = GreedyValue(env, encoder_for(env.observation_space), seed=0)
    solved = []
    monkeypatch.setattr(dp, "policy_value", lambda mdp, p: solved.append(p) or
                        dp.evaluate_policy_exact(mdp, p).value)
    policies = np.random.default_rng(0).integers(0, 4, (GreedyValue.REMEMBERED + 1, 16))
    values = [greedy(p) for p in policies]
    assert len(solved) == len(policies)
    assert [greedy(p) for p in policies[1:][::-1]] == values[1:][::-1] and len(solved) == \
        len(policies)
    assert greedy(policies[0]) == values[0] and len(solved) == len(policies) + 1  # forgotten
    monkeypatch.undo()
    for policy in policies[:20]:
        assert dp.policy_value(greedy.mdp, policy) == dp.evaluate_policy_exact(env, policy).value
