"""The command line starts light, and announces a first compile before it starts.

Timings live in ``bench/startup.py``; these tests check the behaviour behind them: which modules
an import or a command loads, and how a cold numba cache is told apart from a warm one (in a
fresh interpreter whose ``NUMBA_CACHE_DIR`` is an empty folder, without compiling anything).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tabrl import kernel_cache
from tabrl.app import sweep
from tabrl.app.cli import compile_announcement, kernels_for, prepare_kernels
from tabrl.app.runs import RunConfig
from tabrl.app.sweep import expand, sweep_kernels
from tabrl.app.workflow import prepare_run
from tabrl.errors import UsageError
from tabrl.kernel_cache import ENGINE, EXACT, PLAY, Q_LEARNING, KernelSet, method_kernels

HEAVY = ["matplotlib", "numba", "scipy", "optuna", "ray", "imageio", "pandas"]


def run_python(code: str, **env: str) -> subprocess.CompletedProcess:
    """``code`` in a fresh interpreter with tabrl's sources first on the path."""
    src = str(Path(__file__).resolve().parents[1] / "src")
    path = os.pathsep.join(filter(None, [src, os.environ.get("PYTHONPATH")]))
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=120, env={**os.environ, "PYTHONPATH": path, **env})


def loaded_after(code: str) -> tuple[list[str], str]:
    """The heavy libraries in ``sys.modules`` once ``code`` has run (a command exits), and
    what it wrote on stderr."""
    body = textwrap.indent(textwrap.dedent(code).strip(), "    ")
    done = run_python(f"import json, sys\ntry:\n{body}\nexcept SystemExit:\n    pass\n"
                      f"print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}} "
                      f"& set({HEAVY!r}))))")
    return json.loads(done.stdout.splitlines()[-1]), done.stderr


def test_importing_the_command_line_loads_no_heavy_library():
    assert loaded_after("import tabrl.app.cli") == ([], "")
    assert loaded_after("import matplotlib")[0] == ["matplotlib"]  # the check sees them


def test_help_and_an_unknown_environment_load_no_heavy_library():
    help_run = "sys.argv = ['tabrl', '--help']\nfrom tabrl.app.cli import main\nmain()"
    assert loaded_after(help_run)[0] == []
    loaded, stderr = loaded_after(help_run.replace("'--help'", "'train', 'Nope-v0'"))
    assert loaded == []
    assert stderr.count("\n") == 1 and stderr.startswith("error: unknown environment id 'Nope-v0'")


def test_the_program_leaves_its_objects_to_the_exit():
    """``tabrl`` freezes the objects its imports made on its way out, so that the interpreter's
    exit does not sweep them (half a second of every command: ``bench.e2e``'s start-up)."""
    done = run_python("""
        import atexit, gc, sys
        atexit.register(lambda: print("frozen:", gc.get_freeze_count() > 1000))
        sys.argv = ["tabrl", "--version"]
        from tabrl.app.cli import script
        script()
    """)
    assert done.returncode == 0 and done.stdout.splitlines()[-1] == "frozen: True"


def test_a_cold_cache_is_told_from_a_warm_one(tmp_path):
    """An empty cache folder is cold; a marker alone is not enough (the cache may have been
    deleted), nor is numba's index without the marker; both together are warm."""
    done = run_python("""
        from pathlib import Path
        from tabrl import kernel_cache
        from tabrl.kernel_cache import EXACT

        index = Path(EXACT.entry_point()._cache._cache_file._index_path)
        seen = [kernel_cache.is_cached(EXACT)]
        kernel_cache.mark_cached(EXACT)
        seen.append(kernel_cache.is_cached(EXACT))
        kernel_cache.marker_path(EXACT).unlink()
        index.parent.mkdir(parents=True, exist_ok=True)
        index.touch()  # numba's index of the entry point, as a compile leaves it
        seen.append(kernel_cache.is_cached(EXACT))
        kernel_cache.mark_cached(EXACT)
        seen.append(kernel_cache.is_cached(EXACT))
        print(seen, kernel_cache.marker_path(EXACT).parent == index.parent)
    """, NUMBA_CACHE_DIR=str(tmp_path))
    assert done.stdout.split() == ["[False,", "False,", "False,", "True]", "True"], done.stderr


def test_the_announcement_says_what_compiles_and_about_how_long():
    assert compile_announcement([ENGINE]) == (
        f"compiling the compiled engine's kernel of every method, first run only, about "
        f"{ENGINE.seconds:.0f} s")
    assert compile_announcement([Q_LEARNING, PLAY, EXACT]) == (
        "compiling the compiled engine's q-learning kernel, the compiled evaluation's kernel and "
        "the exact solver's kernels, first run only, about "
        f"{Q_LEARNING.seconds + PLAY.seconds + EXACT.seconds:.0f} s")
    assert method_kernels("sarsa", "softmax").what == (
        "the compiled engine's sarsa kernel with softmax exploration")


@pytest.fixture
def ready(monkeypatch):
    """``ready(*sets)``: the kernel sets that count as compiled, whatever numba's cache holds
    (which kernel trains a run depends on it: ``kernel_cache.kernels_to_train``)."""
    def only(*sets: KernelSet) -> None:
        monkeypatch.setattr(kernel_cache, "is_ready", lambda kernels: kernels in sets)
        monkeypatch.setattr(sweep, "_PLANS", {})

    return only


def test_the_tutorial_s_run_needs_only_its_own_kernels(tmp_path, ready):
    """``tabrl train`` of the tutorial's agent on the compiled engine compiles the Q-learning
    kernel, and the evaluation's only where it plays on the MDP; another method, its own
    kernel, or every method's where only that one is ready."""
    def needed(**given):
        config = RunConfig.resolve("FrozenLake-v1", {}, **given)
        prepared = prepare_run(config, tmp_path / f"run-{len(list(tmp_path.iterdir()))}")
        with prepared.lock:
            return kernels_for(prepared.config, prepared.engine.name, prepared.env,
                               prepared.agent)

    ready()
    assert needed() == [Q_LEARNING, PLAY, EXACT]
    assert needed(eval_on="env") == [Q_LEARNING, EXACT]
    assert needed(eval_episodes=0) == [Q_LEARNING, EXACT]
    assert needed(algo="sarsa") == [method_kernels("sarsa", "epsilon-greedy"), PLAY, EXACT]
    assert needed(engine="python") == [EXACT]
    ready(ENGINE)
    assert needed(algo="sarsa") == [ENGINE, PLAY, EXACT]


def test_a_sweep_needs_the_kernels_of_its_settings_and_fails_on_bad_input_first(ready):
    """``tabrl sweep`` compiles, and announces, what its jobs train with here (a Ray sweep's
    workers load their own) and the exact solver's where the MDP is known."""
    def needed(grid: dict, backend: str = "local", **given):
        return sweep_kernels(expand(RunConfig.resolve("FrozenLake-v1", {}, **given), grid),
                             backend)

    ready()
    assert needed({"episodes": [10, 20]}) == [Q_LEARNING, EXACT]
    assert needed({"algo": ["q-learning", "sarsa", "dyna-q"]}) == [
        Q_LEARNING, method_kernels("sarsa", "epsilon-greedy"),
        method_kernels("dyna-q", "epsilon-greedy"), EXACT]
    assert needed({"algo": ["sarsa"]}, backend="ray") == [EXACT]
    assert needed({"episodes": [10]}, engine="python") == [EXACT]
    with pytest.raises(UsageError, match="learning rate"):
        needed({"learning_rate": [0.1, -1.0]})
    every_method = {"algo": ["q-learning", "sarsa", "expected-sarsa", "n-step-sarsa",
                             "tree-backup"]}
    assert needed(every_method) == [ENGINE, EXACT]  # their own would take longer to compile
    ready(ENGINE, Q_LEARNING)
    assert needed({"algo": ["q-learning", "sarsa", "dyna-q"]}) == [Q_LEARNING, ENGINE, EXACT]


def test_a_compile_is_announced_before_it_starts_and_quiet_still_compiles():
    """A set that cannot be found in the cache (no numba dispatcher here) counts as cold; a set
    is prepared once per process."""
    events: list[str] = []
    cold, other = (KernelSet(f"the test's {what} kernels", object,
                             lambda: events.append("compiled"), 3.0) for what in ("first", "other"))
    prepare_kernels([cold], events.append, quiet=False)
    assert events[:2] == ["compiling the test's first kernels, first run only, about 3 s",
                          "compiled"]
    assert events[2].startswith("compiled in ") and len(events) == 3
    events.clear()
    prepare_kernels([other], lambda _: None, quiet=True)
    assert events == ["compiled"]
    prepare_kernels([other, cold], lambda _: None, quiet=True)
    assert events == ["compiled"]
