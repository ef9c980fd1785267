"""Hyperparameter tuning with Optuna, as rl_zoo3 does it, valued by the exact greedy value.

A trial samples settings from the method's search space (``hyperparams/search.yml``) with TPE,
trains them with a few seeds, and is worth the mean greedy value over those seeds: exact where the
MDP is known (no evaluation noise), else by Monte Carlo. Its intermediate values are the seeds'
greedy learning curves (:mod:`tabrl.curve`), point after point (step ``seed index x points +
point``, so that every trial is compared at the same share of the same seed's training), and
after each seed the median pruner stops a trial whose curve stays below the others'. The study
lives in a database (SQLite in the tuning folder by default), so running the same command again
continues it, and several machines can share one study through any database URL Optuna accepts.
"""

from __future__ import annotations

import io
import math
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from tabrl.app.runs import ALGO_PARAMS, RunConfig, file_name, writable_dir
from tabrl.app.sweep import check_configs, run_job
from tabrl.app.tensorboard import BoardTarget
from tabrl.errors import UsageError
from tabrl.fileio import atomic_write_bytes

BEST, STUDY_DB = "best.yml", "study.db"
HISTORY_PICTURE, IMPORTANCE_PICTURE = "history.png", "importance.png"
#: ``report(trial, best value so far)`` after every trial (an ``optuna.trial.FrozenTrial``)
TrialReport = Callable[[Any, float | None], None]


class JobFailedError(RuntimeError):
    """A trial's training failed: Optuna records the trial as failed and goes on."""


@dataclass
class Tuning:
    """A finished tuning: the study, its best settings (as ``best.yml`` has them), its folder."""

    study: Any  #: optuna.Study
    best: dict[str, Any]
    path: Path
    pictures: list[Path]
    notes: list[str]


def search_space(algo: str) -> dict[str, dict[str, Any]]:
    """The shipped search space of ``algo``: the common settings, then the method's own."""
    table = yaml.safe_load(resources.files("tabrl.hyperparams").joinpath("search.yml")
                           .read_text())
    if algo not in table:
        raise UsageError(f"no search space for {algo!r}: add one to hyperparams/search.yml")
    return {**table["common"], **(table[algo] or {})}


def sample_config(trial: Any, base: RunConfig, space: dict[str, dict[str, Any]]) -> RunConfig:
    """The settings a trial samples, applied to the shipped ones (as ``--grid`` applies them)."""
    settings: dict[str, Any] = {}
    for name, spec in space.items():
        wanted = spec.get("if", {})
        if any(base.algo_params.get(key, "epsilon-greedy") != value
               for key, value in wanted.items()):
            continue
        settings[name] = suggest(trial, name, spec, getattr(base, name, None))
    return apply_settings(base, settings)


def suggest(trial: Any, name: str, spec: dict[str, Any], shipped: Any) -> Any:
    """One setting from its spec: choices, an integer or a float range (relative to the shipped
    value if asked)."""
    if "choices" in spec:
        return trial.suggest_categorical(name, spec["choices"])
    low, high = spec["low"], spec["high"]
    if spec.get("relative"):
        low, high = low * shipped, high * shipped
    if spec.get("int"):
        return trial.suggest_int(name, max(1, round(low)), max(1, round(high)),
                                 log=spec.get("log", False))
    return trial.suggest_float(name, low, high, log=spec.get("log", False))


def apply_settings(base: RunConfig, settings: dict[str, Any]) -> RunConfig:
    """Sampled settings on a config: agent keywords into ``algo_params``, the decay fraction into
    ``epsilon_decay_episodes``, a sampled temperature in place of the shipped schedule."""
    from tabrl.app.runs import merged_algo_params

    settings = dict(settings)
    episodes = settings.get("episodes", base.episodes)
    fraction = settings.pop("epsilon_decay_fraction", None)
    if fraction is not None:
        settings["epsilon_decay_episodes"] = max(1, round(fraction * episodes))
    own = {name: settings.pop(name) for name in list(settings) if name in ALGO_PARAMS}
    return replace(base, **settings, algo_params=merged_algo_params(base.algo_params, own))


def best_settings(config: RunConfig, base: RunConfig) -> dict[str, Any]:
    """The settings of ``config`` that differ from the shipped ``base``, as a hyperparameter file
    has them (``tabrl train --hyperparams`` reads them back)."""
    tuned, shipped = asdict(config), asdict(base)
    best = {name: value for name, value in tuned.items()
            if name not in ("algo_params", "env_id", "env_kwargs", "algo", "seed")
            and value != shipped[name]}
    if config.algo_params != base.algo_params:
        best["algo_params"] = config.algo_params
    return best


def objective(base: RunConfig, space: dict[str, dict[str, Any]], seeds: list[int],
              tensorboard: Path | None = None):
    """The value of a trial: the mean greedy value over ``seeds``; each seed's learning curve is
    reported, or its value where it has none (each seed logged to TensorBoard as the run
    ``trial-<number>/seed-<seed>``, if asked)."""
    import optuna

    def value(trial: optuna.Trial) -> float:
        config = sample_config(trial, base, space)
        check_configs([config])  # a bad sample is a usage error, not a failed trial
        total, points = 0.0, config.curve_points or 1
        for done, seed in enumerate(seeds, start=1):
            board = None if tensorboard is None else BoardTarget(
                tensorboard / f"trial-{trial.number}" / f"seed-{seed}",
                {"trial": trial.number, **trial.params})
            result = run_job(asdict(config), 0, seed, board)
            if result.failed:
                raise JobFailedError(result.error)
            total += result.value
            curve = result.curve_values or (result.value,)
            for point, point_value in enumerate(curve):
                if math.isfinite(point_value):  # a policy that never ends has nothing to compare
                    trial.report(point_value, step=(done - 1) * points + point)
            if done < len(seeds) and trial.should_prune():
                raise optuna.TrialPruned()
        return total / len(seeds)

    return value


def default_tune_dir(env_id: str, algo: str, root: Path = Path("runs")) -> Path:
    """``runs/<env>-<algo>-tune``: one fixed name, so that the same command continues its study."""
    return root / f"{file_name(env_id)}-{algo}-tune"


def tune(
    base: RunConfig, n_trials: int, *, seeds: int = 3, timeout: float | None = None,
    storage: str | None = None, study_name: str | None = None, out: Path | None = None,
    sampler_seed: int = 0, report: TrialReport | None = None, tensorboard: Path | None = None,
) -> Tuning:
    """Run ``n_trials`` more trials of the study (created, or continued from its storage), each
    seed of each trial logged to TensorBoard under ``tensorboard``, if given."""
    try:
        import optuna
    except ImportError:
        raise UsageError("tabrl tune needs Optuna: pip install 'tabrl[tune]'") from None

    if n_trials <= 0 or seeds <= 0:
        raise UsageError("--trials and --seeds must be positive")
    check_configs([base])
    space = search_space(base.algo)
    path = out or default_tune_dir(base.env_id, base.algo)
    if storage is None:  # the study's own file in the folder
        storage = f"sqlite:///{(writable_dir(path) / STUDY_DB).resolve()}"
    name = study_name or f"{base.env_id}-{base.algo}"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = open_study(storage, name, base)  # before any folder is made for a given storage
    writable_dir(path)
    # a continued study draws new points: the sampler's seed moves on with the trials done
    study.sampler = optuna.samplers.TPESampler(seed=sampler_seed + len(study.trials))

    def after_trial(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if report is not None:
            done = [t.value for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
            report(trial, max(done) if done else None)

    study.optimize(objective(base, space, list(range(seeds)), tensorboard), n_trials=n_trials,
                   timeout=timeout, catch=(JobFailedError,), callbacks=[after_trial])
    if not any(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials):
        raise UsageError(f"no trial of the study {name!r} finished: see the failed trials' "
                         "errors with --debug, or try more --trials")
    best_config = sample_config(optuna.trial.FixedTrial(study.best_params), base, space)
    best = best_settings(best_config, RunConfig.resolve(base.env_id, base.env_kwargs, base.algo))
    atomic_write_bytes(path / BEST, best_yaml(best, study, base, seeds))
    pictures, notes = draw_study(study, path, f"mean greedy value over {seeds} seeds")
    return Tuning(study, best, path, pictures, notes)


def open_study(storage: str, name: str, base: RunConfig):
    """Create the study, or load it if it exists for the same environment and method."""
    import optuna
    from sqlalchemy.exc import SQLAlchemyError

    try:
        study = optuna.create_study(storage=storage, study_name=name, direction="maximize",
                                    load_if_exists=True,
                                    pruner=optuna.pruners.MedianPruner(n_startup_trials=4))
    except (ValueError, ImportError, SQLAlchemyError, optuna.exceptions.OptunaError) as error:
        reason = str(error).partition("\n")[0]
        raise UsageError(f"cannot open the study storage {storage!r} ({reason}): give a database "
                         "URL Optuna accepts, e.g. sqlite:///study.db") from None
    target = {"env_id": base.env_id, "env_kwargs": base.env_kwargs, "algo": base.algo}
    saved = {key: study.user_attrs[key] for key in target if key in study.user_attrs}
    if saved and saved != target:
        raise UsageError(f"the study {name!r} in {storage} tunes {saved['algo']} on "
                         f"{saved['env_id']}: choose another --study or --out")
    for key, value in target.items():
        study.set_user_attr(key, value)
    return study


def best_yaml(best: dict[str, Any], study: Any, base: RunConfig, seeds: int) -> bytes:
    """``best.yml``: the best trial's settings, with a comment saying what they are worth."""
    trial = study.best_trial
    header = (f"# tabrl tune: best of {len(study.trials)} trials of {study.study_name!r}: "
              f"trial {trial.number}, mean greedy value {trial.value:.6g} over "
              f"{seed_range(seeds)}.\n"
              f"# tabrl train {base.env_id} --algo {base.algo}{env_kwargs_option(base)} "
              "--hyperparams best.yml trains with them.\n")
    text = io.StringIO()
    yaml.safe_dump(best, text, sort_keys=False)
    return (header + text.getvalue()).encode()


def seed_range(n: int) -> str:
    """``seed 0`` or ``seeds 0-2``: the seeds every trial trains."""
    return "seed 0" if n == 1 else f"seeds 0-{n - 1}"


def env_kwargs_option(config: RunConfig) -> str:
    """`` --env-kwargs k=v,...`` for a config made with keywords, else nothing."""
    pairs = ",".join(f"{key}={value}" for key, value in config.env_kwargs.items())
    return f" --env-kwargs {pairs}" if pairs else ""


def draw_study(study: Any, path: Path, target: str) -> tuple[list[Path], list[str]]:
    """Optuna's own history and importance pictures (importance needs two finished trials),
    the objective named by ``target``."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt
    from optuna.exceptions import ExperimentalWarning
    from optuna.importance import PedAnovaImportanceEvaluator
    from optuna.visualization import matplotlib as optuna_plots

    pictures, notes = [], []
    drawings = [(HISTORY_PICTURE, optuna_plots.plot_optimization_history,
                 {"target_name": target}),
                (IMPORTANCE_PICTURE, optuna_plots.plot_param_importances,
                 {"evaluator": PedAnovaImportanceEvaluator(), "target_name": target})]
    for file, draw, options in drawings:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ExperimentalWarning)
            try:
                axes = draw(study, **options)
            except (ValueError, RuntimeError) as error:
                notes.append(f"no {file}: {error}")
                continue
        figure = axes.figure
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=120, bbox_inches="tight")
        plt.close(figure)
        pictures.append(atomic_write_bytes(path / file, buffer.getvalue()))
    return pictures, notes
