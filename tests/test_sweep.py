"""Multi-seed statistics and sweeps: the statistics, the grid, the same results on every backend."""

from __future__ import annotations

import csv
import json
import math
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from scipy import stats

from tabrl.app.runs import RunConfig
from tabrl.app.sweep import JobResult, expand, parse_grid, run_sweep, setting_labels, summarize
from tabrl.app.workflow import sweep_to_folder
from tabrl.errors import UsageError

SMALL = dict(episodes=3000, eval_episodes=200)


def test_grid_parsing_and_expansion():
    grid = parse_grid(["learning_rate=0.02,0.05", "episodes=1000,2000", "discount=0.9"])
    assert grid == {"learning_rate": [0.02, 0.05], "episodes": [1000, 2000], "discount": [0.9]}
    configs = expand(RunConfig.resolve("FrozenLake-v1"), grid)
    assert [(c.learning_rate, c.episodes, c.discount) for c in configs] == [
        (0.02, 1000, 0.9), (0.02, 2000, 0.9), (0.05, 1000, 0.9), (0.05, 2000, 0.9)]
    assert [c.epsilon_decay_episodes for c in configs] == [500, 1000, 500, 1000]
    with pytest.raises(UsageError, match="not a setting"):
        parse_grid(["learning_rat=0.1"])
    with pytest.raises(UsageError, match="malformed"):
        parse_grid(["learning_rate"])


def test_summary_intervals_stay_within_the_seeds_values():
    # seven seeds at the best stationary value, one stuck: Student's t reached above 0.7402
    values = [0.7402] * 7 + [0.6522]
    results = [JobResult(0, seed, value, True, 0.0, "compiled", 0.0)
               for seed, value in enumerate(values)]
    results.append(JobResult(0, 8, math.nan, False, math.nan, "", 0.0, error="ValueError: x"))
    summary = summarize(RunConfig.resolve("FrozenLake-v1"), results, optimum=0.7442)
    t_high = np.mean(values) + stats.t.ppf(0.975, 7) * np.std(values, ddof=1) / math.sqrt(8)
    assert t_high > 0.7402  # what the old table printed
    assert (summary.n_seeds, summary.n_failed) == (8, 1)
    assert summary.mean.value == pytest.approx(np.mean(values))
    assert summary.iqm.value == pytest.approx(0.7402) and summary.median.value == 0.7402
    for estimate in (summary.mean, summary.median, summary.iqm):
        assert summary.min <= estimate.low <= estimate.value <= estimate.high <= summary.max
    assert summary.gap == pytest.approx(0.7442 - np.mean(values))


def test_local_processes_give_the_in_process_results():
    configs = expand(RunConfig.resolve("FrozenLake-v1", **SMALL),
                     parse_grid(["learning_rate=0.05,0.2"]))
    one, jobs_one = run_sweep(configs, [0, 1, 2], n_jobs=1)
    two, jobs_two = run_sweep(configs, [0, 1, 2], n_jobs=2)
    assert [r.value for r in jobs_one] == [r.value for r in jobs_two]
    assert [s.mean for s in one] == [s.mean for s in two]
    assert all(r.exact and r.engine == "compiled" for r in jobs_one)
    assert one[0].optimal_value == pytest.approx(0.74419, abs=1e-4)
    assert all(s.mean.high <= s.optimal_value for s in one)


def test_python_engine_jobs_use_monte_carlo_where_the_mdp_is_unknown():
    config = RunConfig.resolve("Taxi-v4", {"fickle_passenger": True}, episodes=300,
                               eval_episodes=20, curve_points=5)  # Monte Carlo points: a few
    summaries, jobs = run_sweep([config], [0, 1], n_jobs=1)
    assert all(not r.exact and r.engine == "python" for r in jobs)
    assert summaries[0].optimal_value is None and summaries[0].gap is None


def test_ray_cluster_gives_the_local_results(tmp_path):
    """A real Ray cluster on this machine runs the jobs; results.csv is the local one."""
    ray = pytest.importorskip("ray")
    grid = parse_grid(["learning_rate=0.1,0.5"])
    configs = expand(RunConfig.resolve("CliffWalking-v1", episodes=300), grid)
    local, _ = sweep_to_folder(configs, grid, [0, 1], tmp_path / "local", backend="local",
                               n_jobs=1, address=None)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        remote, _ = sweep_to_folder(configs, grid, [0, 1], tmp_path / "ray", backend="ray",
                                    n_jobs=None, address=None)
        assert ray.cluster_resources()["CPU"] == 2
    finally:
        ray.shutdown()

    def rows(folder: str) -> list[dict]:
        table = csv.DictReader((tmp_path / folder / "results.csv").open())
        return [{name: value for name, value in row.items() if name != "seconds"}
                for row in table]

    assert rows("ray") == rows("local") and len(rows("local")) == 4
    assert [s.mean.value for s in remote] == [s.mean.value for s in local] == [-13.0, -13.0]


def test_sweep_command_writes_its_folder(tabrl_cli, tmp_path):
    result = tabrl_cli("sweep", "CliffWalking-v1", "--grid", "learning_rate=0.2,0.5",
                       "--grid", "episodes=200", "--seeds", "3", "--jobs", "1",
                       "--out", tmp_path / "sw")
    assert result.code == 0, result.stderr
    saved = json.loads((tmp_path / "sw" / "sweep.json").read_text())
    assert [s["label"] for s in saved["settings"]] == [
        "learning_rate=0.2, episodes=200", "learning_rate=0.5, episodes=200"]
    assert len(saved["jobs"]) == 6 and (tmp_path / "sw" / "sweep.png").is_file()
    assert saved["intervals"] == "95% stratified-bootstrap percentile intervals over 3 seeds"
    assert "learning_rate=0.5, episodes=200" in result.stdout
    assert "3 seeds per setting" in result.stdout and "stratified-bootstrap" in result.stdout
    rows = list(csv.DictReader((tmp_path / "sw" / "results.csv").open()))
    assert list(rows[0]) == ["learning_rate", "episodes", "seed", "value", "final_return",
                             "seconds", "engine", "error"]
    assert [(r["learning_rate"], r["seed"], r["engine"], r["error"]) for r in rows[:4]] == [
        ("0.2", "0", "compiled", ""), ("0.2", "1", "compiled", ""),
        ("0.2", "2", "compiled", ""), ("0.5", "0", "compiled", "")]
    for setting, row in zip(saved["settings"], (0, 3)):
        seeds = [float(r["value"]) for r in rows[row:row + 3]]
        for name in ("mean", "median", "iqm"):
            assert min(seeds) <= setting[name]["low"] <= setting[name]["high"] <= max(seeds)
    other = tabrl_cli("sweep", "CliffWalking-v1", "--grid", "learning_rate=0.3", "--seeds", "1",
                      "--out", tmp_path / "sw")
    assert other.code == 2 and "other settings" in other.stderr
    bad = tabrl_cli("sweep", "CliffWalking-v1", "--grid", "discount=2", "--out", tmp_path / "b")
    assert bad.code == 2 and "discount" in bad.stderr and not (tmp_path / "b").exists()
    one = tabrl_cli("sweep", "CliffWalking-v1", "--grid", "episodes=100", "--seeds", "1",
                    "--jobs", "1", "--out", tmp_path / "one")
    assert one.code == 0 and "one seed: no interval" in one.stdout and "inf" not in one.stdout


def test_agent_keywords_can_be_swept():
    grid = parse_grid(["n=2,4", "learning_rate=0.1"])
    configs = expand(RunConfig.resolve("CliffWalking-v1", algo="n-step-sarsa"), grid)
    assert [c.algo_params["n"] for c in configs] == [2, 4]
    assert all(c.algo_params["exploration"] == "softmax" for c in configs)  # shipped default kept
    assert setting_labels(configs, list(grid)) == ["n=2, learning_rate=0.1",
                                                   "n=4, learning_rate=0.1"]


def test_schedules_can_be_swept_and_replace_the_shipped_one():
    grid = parse_grid(["temperature_schedule={kind: constant, start: 1, end: 1, rate: 0},"
                       "{kind: exponential, start: 30, end: 0.5, rate: 0.99}", "temperature=2"])
    assert grid["temperature_schedule"][1] == {"kind": "exponential", "start": 30, "end": 0.5,
                                               "rate": 0.99}
    del grid["temperature"]
    shipped = RunConfig.resolve("CliffWalking-v1", algo="n-step-sarsa")
    configs = expand(shipped, grid)
    assert [c.algo_params["temperature_schedule"]["kind"] for c in configs] == [
        "constant", "exponential"]
    assert setting_labels(configs, ["temperature_schedule"]) == [
        "temperature_schedule=1", "temperature_schedule=30 -> 0.5 (x0.99 per episode)"]
    # a swept temperature drops the shipped schedule instead of clashing with it
    (hot,) = expand(shipped, parse_grid(["temperature=2"]))
    assert "temperature_schedule" not in hot.algo_params
    assert hot.make_agent(hot.make_env()).temperature == 2
    with pytest.raises(UsageError, match="YAML"):
        parse_grid(["temperature_schedule={kind: constant"])


def test_a_swept_learning_rate_schedule_sets_the_rate():
    grid = parse_grid(["learning_rate_schedule={kind: linear, start: 0.3, end: 0.1, rate: 0.01}"])
    (config,) = expand(RunConfig.resolve("FrozenLake8x8-v1"), grid)  # ships 1/n(s,a)^0.5
    assert (config.learning_rate, config.learning_rate_exponent) == (0.3, None)
    assert config.learning_rate_rule().kind == "linear"


def test_a_resumed_sweep_runs_only_the_missing_jobs(tmp_path):
    grid = parse_grid(["learning_rate=0.2,0.5"])
    configs = expand(RunConfig.resolve("CliffWalking-v1", episodes=200), grid)
    calls = []

    def sweep(seeds):
        calls.clear()
        return sweep_to_folder(configs, grid, seeds, tmp_path / "sw", backend="local", n_jobs=1,
                               address=None, progress=lambda done, total: calls.append(done))

    first, _ = sweep([0, 1])
    trials = tmp_path / "sw" / "trials"
    written = {p.name: p.stat().st_mtime_ns for p in trials.iterdir()}
    assert stored_jobs(trials) == [(0, 0), (0, 1), (1, 0), (1, 1)]
    again, _ = sweep([0, 1, 2])  # the same settings, one seed more: two new jobs
    assert calls == [4, 5, 6]
    assert {p.name: p.stat().st_mtime_ns for p in trials.iterdir() if p.name in written} == \
        written
    assert stored_jobs(trials) == [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2)]
    rows = list(csv.DictReader((tmp_path / "sw" / "results.csv").open()))
    assert [(r["learning_rate"], r["seed"]) for r in rows] == [
        ("0.2", "0"), ("0.2", "1"), ("0.2", "2"), ("0.5", "0"), ("0.5", "1"), ("0.5", "2")]
    assert [s.n_seeds for s in again] == [3, 3]
    done, _ = sweep([0, 1, 2])  # nothing left to train
    assert calls == [6] and [s.mean for s in done] == [s.mean for s in again]


def stored(trials) -> list[dict]:
    """Every job in the files of a sweep's ``trials/`` (a batch each, or one job)."""
    jobs = []
    for path in trials.glob("*.json"):
        data = json.loads(path.read_text())
        jobs += data if isinstance(data, list) else [data]
    return jobs


def stored_jobs(trials) -> list[tuple[int, int]]:
    """The (setting, seed) of every job stored in a sweep's ``trials/``."""
    return sorted((job["setting"], job["seed"]) for job in stored(trials))


def test_an_interrupted_sweep_keeps_the_jobs_it_finished(tmp_path, monkeypatch):
    """Jobs are written in batches (here all within STORE_SECONDS: none before the end), and
    the jobs held are written when the sweep is stopped; the same command then trains only the
    others. A file of one job, as sweeps wrote each job before batches, still counts, and a new
    batch never takes an earlier batch's name."""
    from tabrl.app.sweep import SweepFolder

    monkeypatch.setattr(SweepFolder, "STORE_SECONDS", 3600.0)
    configs = expand(RunConfig.resolve("CliffWalking-v1", episodes=100), {})
    trials = tmp_path / "sw" / "trials"

    def stop_after_three(done: int, total: int) -> None:
        if done == 3:
            assert stored_jobs(trials) == []  # held, not yet written
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        sweep_to_folder(configs, {}, list(range(6)), tmp_path / "sw", backend="local",
                        n_jobs=1, address=None, progress=stop_after_three)
    assert stored_jobs(trials) == [(0, 0), (0, 1), (0, 2)]
    assert [p.name for p in trials.iterdir()] == ["0-0+2.json"]
    (batch,) = json.loads((trials / "0-0+2.json").read_text())[2:]
    (trials / "0-2.json").write_text(json.dumps(batch))  # a job's file, as before batches
    (trials / "0-3+2.json").write_text("[]")  # the name the next batch would take
    done = []
    summaries, _ = sweep_to_folder(configs, {}, list(range(6)), tmp_path / "sw",
                                   backend="local", n_jobs=1, address=None,
                                   progress=lambda n, total: done.append(n))
    assert done == [3, 4, 5, 6] and summaries[0].n_seeds == 6
    assert stored_jobs(trials) == [(0, 0), (0, 1), (0, 2), (0, 2), (0, 3), (0, 4), (0, 5)]
    assert json.loads((trials / "0-3+2.json").read_text()) == []
    assert len(json.loads((trials / "0-3+2~2.json").read_text())) == 3
    assert len(list(csv.DictReader((tmp_path / "sw" / "results.csv").open()))) == 6


def test_ctrl_c_on_the_command_says_where_the_finished_jobs_are(tmp_path):
    """A real Ctrl-C once jobs are stored: one line naming the folder and how to go on, exit
    130, no traceback; the folder holds the jobs finished."""
    folder = tmp_path / "sw"
    process = subprocess.Popen(
        [sys.executable, "-m", "tabrl", "sweep", "CliffWalking-v1", "--seeds", "10000",
         "--grid", "engine=python", "--grid", "episodes=20", "--jobs", "1", "--out", str(folder)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.monotonic() + 120
    while (process.poll() is None and not any((folder / "trials").glob("*.json"))
           and time.monotonic() < deadline):
        time.sleep(0.2)
    os.killpg(process.pid, signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr and stderr.count("interrupted") == 1, stderr
    assert stderr.strip().splitlines()[-1].endswith(
        f"interrupted: {folder} keeps every finished job; the same command with --out "
        f"{folder} runs the rest")
    assert stored_jobs(folder / "trials")


def test_a_failing_job_is_recorded_and_the_others_finish(tmp_path):
    """The compiled engine cannot run Taxi with a fickle passenger: those jobs fail, alone."""
    grid = parse_grid(["engine=python,compiled"])
    configs = expand(RunConfig.resolve("Taxi-v4", {"fickle_passenger": True}, episodes=50,
                                       eval_episodes=20), grid)
    summaries, path = sweep_to_folder(configs, grid, [0, 1], tmp_path / "sw", backend="local",
                                      n_jobs=1, address=None)
    assert [(s.n_seeds, s.n_failed) for s in summaries] == [(2, 0), (0, 2)]
    assert math.isnan(summaries[1].mean.value) and math.isfinite(summaries[0].mean.value)
    rows = list(csv.DictReader((path / "results.csv").open()))
    assert [(r["engine"], bool(r["error"])) for r in rows] == [
        ("python", False), ("python", False), ("", True), ("", True)]
    assert rows[2]["error"].startswith("NotCompilableError: ") and rows[2]["value"] == "nan"
    saved = json.loads((path / "sweep.json").read_text())
    assert saved["settings"][1]["mean"]["value"] is None and saved["jobs"][2]["error"]


@pytest.mark.parametrize(("env_id", "engine"), [("FrozenLake-v1", "compiled"),
                                                ("FrozenLake-v1", "python"),
                                                ("CliffWalking-v1", "compiled")])
def test_sweep_values_are_those_of_tabrl_train(tabrl_cli, tmp_path, env_id, engine):
    """One seeding scheme: a sweep's job is the run ``tabrl train`` makes with that seed (compiled
    jobs on threads of the sweep's process, sharing their setting's MDP; python ones in
    processes), also where the environment has no time limit of its own (CliffWalking)."""
    from tabrl import load_agent
    from tabrl.envs import make_env
    from tabrl.exact.dp import evaluate_policy_exact
    from tabrl.exact.readers import mdp_of

    config = RunConfig.resolve(env_id, episodes=400, engine=engine)
    _, jobs = run_sweep([config], [3, 4], n_jobs=2)
    for job in jobs:
        out = tmp_path / f"run{job.seed}"
        result = tabrl_cli("train", env_id, "--episodes", "400", "--engine", engine,
                           "--seed", str(job.seed), "--eval-episodes", "0", "--out", out, "-q")
        assert result.code == 0, result.err
        greedy = load_agent(out).q_values.greedy_policy()
        assert job.engine == engine
        assert job.value == evaluate_policy_exact(mdp_of(make_env(env_id)), greedy).value


def test_ray_batches_deal_the_jobs_evenly():
    from tabrl.app.sweep import batches

    jobs = [({}, 0, seed) for seed in range(7)]
    dealt = batches(jobs, 3)
    assert [len(batch) for batch in dealt] == [3, 2, 2]
    assert sorted(job for batch in dealt for job in batch) == sorted(jobs)
    assert batches(jobs[:2], 8) == [[jobs[0]], [jobs[1]]]


def test_every_job_keeps_its_greedy_curve_for_the_picture(tmp_path):
    """Each trial stores its exact learning curve (the last point is its greedy value); the
    sweep picture draws a band per setting beside the seeds' values; a resumed sweep reads the
    stored curves back."""
    grid = parse_grid(["learning_rate=0.1,0.5"])
    configs = expand(RunConfig.resolve("CliffWalking-v1", episodes=300, curve_points=10), grid)

    def sweep():
        return sweep_to_folder(configs, grid, [0, 1], tmp_path / "sw", backend="local", n_jobs=1,
                               address=None)

    sweep()
    (trial,) = [job for job in stored(tmp_path / "sw" / "trials")
                if (job["setting"], job["seed"]) == (1, 0)]
    assert trial["curve_episodes"] == list(range(30, 301, 30))
    assert float(trial["curve_values"][-1]) == float(trial["value"])
    assert "curve_values" not in json.loads((tmp_path / "sw" / "sweep.json").read_text())["jobs"][0]
    from tabrl.app.sweep import Sweep, SweepFolder

    finished = SweepFolder(tmp_path / "sw", configs, list(grid)).finished()
    assert [len(job.curve_values) for job in finished] == [10] * 4
    summaries, _ = sweep()  # all stored: nothing trains, the picture comes from the files
    figure = Sweep.of(configs, list(grid), summaries, finished, 2).plot()
    dots, curves = figure.axes
    assert curves.get_title().startswith("Greedy policy during training")
    assert [line.get_label() for line in curves.lines][:2] == [
        "learning_rate=0.1", "learning_rate=0.5"]


def test_a_stopped_sweep_does_not_train_the_jobs_it_had_not_started(monkeypatch):
    """A Ctrl-C cancels the jobs waiting for a thread: the sweep stops after the running ones
    instead of training (and dropping) every job left."""
    import tabrl.app.sweep as sweep_module

    started = []
    run_job = sweep_module.run_job
    monkeypatch.setattr(sweep_module, "run_job", lambda *job: started.append(job) or
                        run_job(*job))
    configs = expand(RunConfig.resolve("CliffWalking-v1", episodes=300), {})

    def stop(done: int, total: int) -> None:
        if done == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_sweep(configs, list(range(200)), n_jobs=2, progress=stop)
    assert 2 <= len(started) < 100
    assert not sweep_module._PLANS  # the setting's MDP is not kept after its sweep
