"""The metrics store: appended per chunk, read back exactly, checked, drawn without loading all."""

from __future__ import annotations

import json

import numpy as np
import pytest

import tabrl
from tabrl.app.runs import RunConfig, load_run
from tabrl.app.workflow import prepare_resume, prepare_run, train_run
from tabrl.loop import TrainingLog
from tabrl.metrics import (
    BLOCK,
    DTYPES,
    SUM_BLOCK,
    SUM_DTYPES,
    MetricsStore,
    SummedColumn,
    block_sums,
    first_non_finite,
    prefix_sums_at,
)
from tabrl.plots import rolling_mean
from tabrl.training import CHUNK_STEPS, ChunkPlan


def random_log(n: int, seed: int) -> TrainingLog:
    rng = np.random.default_rng(seed)
    return TrainingLog(rng.normal(size=n), rng.integers(1, 200, n), rng.random(n), rng.random(n))


def stored_bytes(store: MetricsStore) -> dict[str, bytes]:
    return {name: store.column_path(name).read_bytes() for name in DTYPES | SUM_DTYPES}


def test_columns_written_in_many_chunks_equal_one_write(tmp_path):
    logs = [random_log(n, seed) for seed, n in enumerate([1, 700, 0, 33, 5000, 1266])]
    chunked, whole = MetricsStore(tmp_path / "a"), MetricsStore(tmp_path / "b")
    for store in (chunked, whole):
        store.folder.parent.mkdir()
        store.create()
    start = 0
    for log in logs:
        chunked.write(start, log)
        start += len(log)
    whole.write(0, TrainingLog.concatenate(logs))
    chunked.sync()
    assert stored_bytes(chunked) == stored_bytes(whole)
    everything = TrainingLog.concatenate(logs)
    for name, column in everything.columns().items():
        stored = np.load(chunked.column_path(name))  # a plain .npy: one line of numpy reads it
        assert stored.dtype == np.dtype(DTYPES[name]) and stored.shape == (start,)
        assert np.array_equal(stored, column.astype(DTYPES[name])), name
    assert np.array_equal(chunked.read(start)["return"], everything.returns)  # exact float64
    for name in DTYPES:  # the sums of blocks cut across chunks, as of the rows stored
        sums = np.load(chunked.column_path(f"sums_{name}"))
        assert sums.shape == (start // SUM_BLOCK,) and start // SUM_BLOCK == 7
        assert np.array_equal(sums, block_sums(np.load(chunked.column_path(name))[:7000]))


def test_a_write_repeated_after_an_interruption_stores_each_episode_once(tmp_path):
    store = MetricsStore(tmp_path)
    store.create()
    first, second = random_log(100, 1), random_log(50, 2)
    store.write(0, first)
    store.write(100, second)
    store.write(100, second)  # the chunk written again: same place
    assert len(store.read(150)["length"]) == 150
    store.truncate(120)
    assert np.load(store.column_path("epsilon")).shape == (120,)
    with pytest.raises(tabrl.TabrlError, match="fewer episodes"):
        store.read(121)


def test_prefix_sums_across_blocks_equal_one_cumsum():
    values = np.random.default_rng(0).normal(size=BLOCK * 2 + 12_345)
    indices = np.array([0, 1, BLOCK - 1, BLOCK, BLOCK + 1, 2 * BLOCK + 7, len(values)])
    expected = np.concatenate(([0.0], np.cumsum(values)))[indices]
    assert np.array_equal(prefix_sums_at(values, indices), expected)


def test_rolling_mean_of_a_memory_mapped_column(tmp_path):
    values = np.random.default_rng(1).random(BLOCK + 5000).astype(np.float32)
    np.save(tmp_path / "td_error.npy", values)
    mapped = np.load(tmp_path / "td_error.npy", mmap_mode="r")
    episodes, means = rolling_mean(mapped, 500)
    assert len(means) == 2000 and episodes[0] == 499 and episodes[-1] == len(values) - 1
    as_float = values.astype(np.float64)
    assert means[0] == pytest.approx(as_float[:500].mean(), rel=1e-12)
    assert means[-1] == pytest.approx(as_float[-500:].mean(), rel=1e-12)
    middle = episodes[1000]
    assert means[1000] == pytest.approx(as_float[middle - 499 : middle + 1].mean(), rel=1e-9)


def test_chunks_hold_about_their_steps_and_grow_from_the_time_limit():
    plan = ChunkPlan(steps=CHUNK_STEPS["python"], time_limit=200)
    training = tabrl.train("Taxi-v4", n_episodes=1, engine="python")
    training.episodes_done, training.next_chunk = 0, 0
    assert plan.next(training, 10**6) == (training.chunks_done, 100)  # 20,000 steps of 200
    short = TrainingLog.empty(100)
    short.lengths[:] = 13
    assert plan.after(short) == 1000  # 20,000 / 13 = 1,538 episodes fit, at most ten times 100
    many = TrainingLog.empty(1000)
    many.lengths[:] = 13
    assert plan.after(many) == 1538


def test_training_into_a_folder_keeps_only_a_chunk_in_memory(tmp_path):
    seen = []
    tabrl.train("FrozenLake-v1", n_episodes=3000, engine="python", keep_log=False,
                on_chunk=lambda t: seen.append((len(t.chunk_log), len(t.log))))
    assert sum(size for size, _ in seen) == 3000 and len(seen) >= 2
    assert all(whole == 0 for _, whole in seen)


def run_folder(tmp_path):
    config = RunConfig.resolve("FrozenLake-v1", episodes=300, eval_episodes=0, engine="python")
    return train_run(prepare_run(config, tmp_path / "run"), say=lambda _: None)


def test_metrics_of_another_run_short_nan_or_missing_are_refused(tmp_path):
    run = run_folder(tmp_path)
    store = MetricsStore(run.path)
    index = json.loads((store.folder / "index.json").read_text())
    (store.folder / "index.json").write_text(json.dumps({**index, "run_id": "someone else"}))
    with pytest.raises(tabrl.TabrlError, match="another run"):
        load_run(run.path).metrics()
    (store.folder / "index.json").write_text(json.dumps(index))
    returns = np.load(store.column_path("return"))
    returns[17] = np.nan
    np.save(store.column_path("return"), returns)
    with pytest.raises(tabrl.TabrlError, match="return of episode 17 is not a finite"):
        load_run(run.path).metrics()
    np.save(store.column_path("return"), returns[:200])
    with pytest.raises(tabrl.TabrlError, match="fewer episodes"):
        load_run(run.path).metrics()
    store.column_path("return").unlink()
    with pytest.raises(tabrl.TabrlError, match="missing"):
        load_run(run.path).metrics()


def test_metrics_written_ahead_of_the_q_table_are_ignored_then_cut_on_resume(tmp_path):
    run = run_folder(tmp_path)
    store = MetricsStore(run.path)
    store.write(300, random_log(40, 3))  # a kill after the append, before the Q-table
    assert len(load_run(run.path).metrics()) == 300
    resumed = tabrl.app.workflow.resume_run(run.path, 400, say=lambda _: None)
    assert len(resumed.metrics()) == 400
    assert np.load(store.column_path("length")).shape == (400,)
    assert set(np.unique(np.load(store.column_path("return"))[300:340])) <= {0.0, 1.0}


def summed(values: np.ndarray) -> SummedColumn:
    whole = len(values) // SUM_BLOCK * SUM_BLOCK
    return SummedColumn.of(values, block_sums(values[:whole]), SUM_BLOCK)


def test_prefix_sums_from_block_sums_equal_one_cumsum_and_read_only_what_they_need():
    values = np.random.default_rng(2).normal(size=50 * SUM_BLOCK + 321)
    column = summed(values)
    indices = np.array([0, 1, 999, 1000, 1001, 25_678, 50_000, len(values)])
    expected = np.concatenate(([0.0], np.cumsum(values)))[indices]
    assert np.allclose(prefix_sums_at(column, indices), expected, rtol=0, atol=1e-9)
    column.block_sums = column.block_sums + 1.0  # block sums that lie: they are what is used
    lied = prefix_sums_at(column, indices) - expected
    assert np.allclose(lied, np.minimum(indices // SUM_BLOCK, 50), rtol=0, atol=1e-9)
    assert np.ravel(column).block_sums is column.block_sums  # a view of the whole column
    assert column[:10].block_sums is None and type(column * 2) is np.ndarray  # not of the rest


def test_first_non_finite_reads_only_the_blocks_whose_sum_is_not_finite():
    values = np.ones(5 * SUM_BLOCK + 10)
    values[[3 * SUM_BLOCK + 7, 5 * SUM_BLOCK + 2]] = [np.nan, np.inf]
    assert first_non_finite(summed(values)) == 3 * SUM_BLOCK + 7
    values[3 * SUM_BLOCK + 7] = 1.0
    assert first_non_finite(summed(values)) == 5 * SUM_BLOCK + 2  # after the last block
    values[5 * SUM_BLOCK + 2] = 1.0
    values[:2] = 1e308  # a sum that overflows, of finite rows
    assert first_non_finite(summed(values)) is None


def test_a_long_run_reads_back_with_block_sums_and_draws_as_the_scan_does(tmp_path):
    store = MetricsStore(tmp_path)
    store.create()
    log = random_log(40 * SUM_BLOCK + 17, 4)
    store.write(0, log)
    columns = store.read(len(log) - 5)
    assert all(len(c.block_sums) == 40 and c.block == SUM_BLOCK for c in columns.values())
    fast = rolling_mean(TrainingLog.from_columns(columns).td_errors, 30, max_points=200)
    scanned = rolling_mean(np.array(columns["td_error"]), 30, max_points=200)
    assert np.array_equal(fast[0], scanned[0])
    assert np.allclose(fast[1], scanned[1], rtol=1e-12)


def test_a_run_folder_made_before_block_sums_reads_by_a_scan_and_gets_them_on_resume(tmp_path):
    config = RunConfig.resolve("FrozenLake-v1", episodes=2500, eval_episodes=0)
    run = train_run(prepare_run(config, tmp_path / "run"), say=lambda _: None)
    store = MetricsStore(run.path)
    index = json.loads((store.folder / "index.json").read_text())
    del index["sum_block"]
    (store.folder / "index.json").write_text(json.dumps(index))
    for name in SUM_DTYPES:
        store.column_path(name).unlink()
    old = load_run(run.path).metrics()
    assert len(old) == 2500 and getattr(old.returns, "block_sums", None) is None
    assert load_run(run.path).plot("curves").axes  # tabrl plot: drawn from the rows
    prepare_resume(run.path, 3200).lock.close()
    returns = load_run(run.path).metrics().returns
    assert np.array_equal(returns.block_sums, block_sums(np.array(returns[:2000])))
