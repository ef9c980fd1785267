"""``--tensorboard``: event files read back with the tensorboard package's own reader, their
values checked against the run's metrics, evaluation and settings."""

from __future__ import annotations

import csv
import json
import sys
from dataclasses import asdict
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
    config = RunConfig.resolve("FrozenLake-v1", {}, episodes=2400, eval_episodes=50,
                               engine="python", chunk_steps=700)

    def interrupt(done: int, mean: float) -> None:
        if done >= 1000:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_run(prepare_run(config, path), progress=interrupt, say=lambda _: None,
                  tensorboard=tb)
    stopped = load_run(path).episodes_done
    assert 0 < stopped < 2400 and stopped % bucket_size(2400)  # a bucket cut in two
    first = resume_run(path, say=lambda _: None, tensorboard=tb)
    last = resume_run(path, 3000, say=lambda _: None, tensorboard=tb)  # buckets of 3 still

    events = read(tb / "run")
    steps = check_points(events, last.metrics().columns(), 3, config.learning_rate)
    assert len(steps) == 1000
    steps, values = scalars(events, "eval/greedy_value")
    assert steps.tolist() == [2400, 3000]
    assert values.tolist() == [np.float32(run.evaluation().exact["policy_value"])
                               for run in (first, last)]
