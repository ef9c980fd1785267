"""``--tensorboard``: event files read back with the tensorboard package's own reader, their
values checked against the run's metrics, evaluation and settings."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import optuna
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2

from tabrl.app.runs import RunConfig, load_run
from tabrl.app.tensorboard import MAX_POINTS, TrainingBoard, bucket_size
from tabrl.app.workflow import prepare_run, resume_run, train_run
from tabrl.curve import Curve
from tabrl.loop import TrainingLog
from tabrl.schedules import Schedule

OUTCOMES = {"charts/episodic_return": "return", "charts/episodic_length": "length",
            "losses/td_error": "td_error"}
CHARTS = [*OUTCOMES, "charts/epsilon", "charts/learning_rate", "charts/SPS",
          "charts/episodes_per_second"]


def read(folder: Path) -> EventAccumulator:
    events = EventAccumulator(str(folder))
    events.Reload()
    return events


def scalars(events: EventAccumulator, tag: str) -> tuple[np.ndarray, np.ndarray]:
    points = events.Scalars(tag)
    return np.array([p.step for p in points]), np.array([p.value for p in points])


def hparams(events: EventAccumulator) -> tuple[dict, list[str]]:
    """The HParams of a run (name -> value) and the tags of its metrics."""
    content = events.PluginTagToContent("hparams")
    start = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"])
    experiment = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/experiment"])
    values = {name: getattr(value, value.WhichOneof("kind"))
              for name, value in start.session_start_info.hparams.items()}
    return values, [metric.name.tag for metric in experiment.experiment.metric_infos]


def check_points(events: EventAccumulator, metrics: dict[str, np.ndarray], every: int,
                 learning_rate: float) -> np.ndarray:
    """Every chart's points: one per bucket of ``every`` episodes, at its end, the outcomes
    averaged over it and the schedules read at its last episode; returns the steps."""
    n = len(metrics["return"])
    expected = np.unique(np.r_[np.arange(every, n + 1, every), n])
    for tag in CHARTS:
        steps, _ = scalars(events, tag)
        np.testing.assert_array_equal(steps, expected, err_msg=tag)
    starts = np.r_[0, expected[:-1]]
    for tag, column in OUTCOMES.items():
        means = [np.mean(metrics[column][a:b], dtype=np.float64) for a, b in zip(starts, expected)]
        np.testing.assert_allclose(scalars(events, tag)[1], means, rtol=1e-6, err_msg=tag)
    np.testing.assert_allclose(scalars(events, "charts/epsilon")[1],
                               metrics["epsilon"][expected - 1], rtol=1e-6)
    np.testing.assert_allclose(scalars(events, "charts/learning_rate")[1], learning_rate,
                               rtol=1e-6)
    assert (scalars(events, "charts/SPS")[1] > scalars(events, "charts/episodes_per_second")[1]
            ).all()  # FrozenLake's episodes take more than one step
    return expected


def test_a_run_is_logged_with_its_metrics_evaluation_and_settings(tabrl_cli, tmp_path):
    result = tabrl_cli("train", "FrozenLake-v1", "--episodes", "1500", "--engine", "python",
                       "--eval-episodes", "200", "--out", tmp_path / "run",
                       "--tensorboard", tmp_path / "tb", "-q")
    assert result.code == 0, result.stderr
    run = load_run(tmp_path / "run")
    assert [p.name for p in (tmp_path / "tb").iterdir()] == ["run"]  # named after the run
    events = read(tmp_path / "tb" / "run")
    steps = check_points(events, run.metrics().columns(), 2, run.config.learning_rate)
    assert len(steps) == 750  # 1,500 episodes in buckets of 2
    curve = run.curve()  # the greedy learning curve, exact on FrozenLake: 100 points
    steps, values = scalars(events, "charts/greedy_value")
    assert steps.tolist() == curve.episodes.tolist() and len(steps) == 100
    np.testing.assert_allclose(values, curve.values, rtol=1e-6)

    evaluation = json.loads((tmp_path / "run" / "evaluation.json").read_text())
    figures = {"eval/mean_return": evaluation["mean_return"],
               "eval/greedy_value": evaluation["exact"]["policy_value"],
               "eval/optimal_value": evaluation["exact"]["optimal_value"]}
    for tag, value in figures.items():
        steps, values = scalars(events, tag)
        assert steps.tolist() == [1500] and values.tolist() == [np.float32(value)]

    settings, metrics = hparams(events)
    assert settings["env_id"] == "FrozenLake-v1" and settings["algo"] == "q-learning"
    assert settings["episodes"] == 1500 and settings["learning_rate"] == run.config.learning_rate
    assert json.loads(settings["env_kwargs"]) == run.config.env_kwargs
    assert set(metrics) == {*figures, "charts/episodic_return"}


def test_a_resumed_run_continues_its_tensorboard_run_as_one_curve(tmp_path):
    """Interrupted mid-bucket, then resumed, then resumed again with more episodes: the points
    are those of one run over the whole metrics, each step once, one evaluation per ending."""
    tb, path = tmp_path / "tb", tmp_path / "run"
    config = RunConfig.resolve("FrozenLake-v1", {}, episodes=1200, eval_episodes=50,
                               engine="python", chunk_steps=700)

    def interrupt(done: int, mean: float) -> None:
        if done >= 500:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_run(prepare_run(config, path), progress=interrupt, say=lambda _: None,
                  tensorboard=tb)
    stopped = load_run(path).episodes_done
    assert 0 < stopped < 1200 and stopped % bucket_size(1200)  # a bucket cut in two
    first = resume_run(path, say=lambda _: None, tensorboard=tb)
    last = resume_run(path, 1500, say=lambda _: None, tensorboard=tb)  # buckets of 2 still

    events = read(tb / "run")
    steps = check_points(events, last.metrics().columns(), 2, config.learning_rate)
    assert len(steps) == 750
    steps, values = scalars(events, "eval/greedy_value")
    assert steps.tolist() == [1200, 1500]
    assert values.tolist() == [np.float32(run.evaluation().exact["policy_value"])
                               for run in (first, last)]


def test_a_sweep_logs_one_run_per_setting_and_seed(tabrl_cli, tmp_path):
    settings = tmp_path / "settings.yml"
    settings.write_text("episodes: 300\nengine: python\n")
    result = tabrl_cli("sweep", "FrozenLake-v1", "--grid", "learning_rate=0.1,0.5", "--seeds", "2",
                       "--jobs", "1", "--hyperparams", settings, "--out", tmp_path / "sweep",
                       "--tensorboard", tmp_path / "tb", "-q")
    assert result.code == 0, result.stderr
    with open(tmp_path / "sweep" / "results.csv") as handle:
        jobs = list(csv.DictReader(handle))
    runs = sorted(path.parent for path in (tmp_path / "tb").rglob("events.out.tfevents.*"))
    assert [run.relative_to(tmp_path / "tb").as_posix() for run in runs] == [
        f"learning_rate={rate}/seed-{seed}" for rate in ("0.1", "0.5") for seed in (0, 1)]
    for job in jobs:
        events = read(tmp_path / "tb" / f"learning_rate={job['learning_rate']}/seed-{job['seed']}")
        steps, values = scalars(events, "eval/greedy_value")
        assert steps.tolist() == [300] and values.tolist() == [np.float32(job["value"])]
        assert len(scalars(events, "charts/episodic_return")[0]) == 300
        settings, metrics = hparams(events)
        assert settings["learning_rate"] == float(job["learning_rate"])
        assert settings["seed"] == int(job["seed"]) and "eval/greedy_value" in metrics


def test_a_tuning_logs_each_trial_and_seed_with_its_sampled_settings(tabrl_cli, tmp_path):
    settings = tmp_path / "settings.yml"
    settings.write_text("episodes: 300\nengine: python\n")
    result = tabrl_cli("tune", "FrozenLake-v1", "--trials", "2", "--seeds", "2", "--hyperparams",
                       settings, "--out", tmp_path / "tune", "--tensorboard", tmp_path / "tb",
                       "-q")
    assert result.code == 0, result.stderr
    study = optuna.load_study(study_name="FrozenLake-v1-q-learning",
                              storage=f"sqlite:///{tmp_path / 'tune' / 'study.db'}")
    for trial in study.trials:
        values = []
        for seed in (0, 1):
            events = read(tmp_path / "tb" / f"trial-{trial.number}" / f"seed-{seed}")
            settings, _ = hparams(events)
            assert settings["trial"] == trial.number and settings["seed"] == seed
            assert all(settings[name] == pytest.approx(value)
                       for name, value in trial.params.items())
            values.append(scalars(events, "eval/greedy_value")[1][0])
        assert np.mean(values) == pytest.approx(trial.value, rel=1e-6)


def test_without_tensorboardx_the_option_says_what_to_install(tabrl_cli, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboardX", None)  # as if it were not installed
    result = tabrl_cli("train", "FrozenLake-v1", "--episodes", "10", "--out", tmp_path / "run",
                       "--tensorboard", tmp_path / "tb")
    assert result.code == 2
    assert result.stderr == ("error: --tensorboard needs tensorboardX: "
                             "pip install 'tabrl[tensorboard]'\n")
    assert not (tmp_path / "run").exists()  # checked before the run folder is made


def test_a_run_of_any_length_writes_at_most_max_points_per_tag(tmp_path):
    """10^7 episodes in chunks of 10^5: 1,000 points per tag, one per 10^4 episodes."""
    episodes, chunk = 10**7, 10**5
    log = TrainingLog(np.ones(chunk), np.full(chunk, 2), np.zeros(chunk), np.zeros(chunk), 1.0)
    with TrainingBoard(tmp_path, episodes, Schedule.constant(0.1)) as board:
        for done in range(chunk, episodes + 1, chunk):
            board.after_chunk(SimpleNamespace(chunk_log=log, episodes_done=done,
                                              chunk_curve=Curve()))
    events = read(tmp_path)
    for tag in CHARTS:
        steps, _ = scalars(events, tag)
        assert len(steps) == MAX_POINTS and steps[-1] == episodes
    assert set(scalars(events, "charts/SPS")[1]) == {2 * chunk}
