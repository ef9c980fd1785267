"""Watching a trained agent play: ``tabrl enjoy RUN``.

The run's agent plays its greedy policy (ties to the lowest action, the policy tabrl evaluates)
on a fresh environment made from the run's settings. Text environments are drawn in the terminal
(``render_mode="ansi"``) step by step with the action, the reward and the return so far; with a
GIF or a video to record, every frame is rendered as an ``rgb_array`` instead (FrozenLake, Taxi,
CliffWalking, Blackjack, and CartPole or MountainCar through their bins).

A greedy policy may loop forever: each episode stops at the environment's time limit, or after
:data:`WATCH_STEP_CAP` steps where it has none, and on a known MDP a state visited again while
every move since its first visit was deterministic stops the episode at once (it would repeat).
"""

from __future__ import annotations

import io
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from tabrl.envs import make_env, with_step_cap
from tabrl.errors import RunFolderError, UsageError
from tabrl.export import observation_key
from tabrl.fileio import atomic_write_bytes
from tabrl.mdp import TabularMDP, known_mdp
from tabrl.runs import Run

#: Steps after which an episode of an environment without a time limit stops when watched.
WATCH_STEP_CAP = 1_000
#: Frames per second of a recording whose environment does not say (``metadata["render_fps"]``).
DEFAULT_FPS = 4

#: Action names of the environments Gymnasium ships, by the class of the environment.
ACTION_NAMES = {
    "FrozenLakeEnv": ("left", "down", "right", "up"),
    "TaxiEnv": ("south", "north", "east", "west", "pickup", "dropoff"),
    "CliffWalkingEnv": ("up", "right", "down", "left"),
    "BlackjackEnv": ("stick", "hit"),
    "CartPoleEnv": ("push left", "push right"),
    "MountainCarEnv": ("accelerate left", "don't accelerate", "accelerate right"),
}

Show = Callable[[str], None]


@dataclass
class Episode:
    """How one watched episode went."""

    total: float = 0.0  #: the return
    length: int = 0
    ending: str = ""  #: why it stopped, in words
    frames: list[np.ndarray] = field(default_factory=list)  #: rgb frames when recording


@dataclass
class LoopDetector:
    """Spots a deterministic loop: a state seen again with only deterministic moves since.

    Works where the observation is the MDP's state (toy-text environments with ``P``).
    """

    mdp: TabularMDP
    last_visit: dict[int, int] = field(default_factory=dict)
    last_random_step: int = -1

    def loops(self, step: int, state: int, action: int) -> bool:
        """Note that ``action`` is taken in ``state`` at ``step``; True if this repeats a loop."""
        last = self.last_visit.get(state)
        self.last_visit[state] = step
        repeats = last is not None and self.last_random_step < last
        outcomes = self.mdp.outcomes(state, action)
        if outcomes.stop - outcomes.start > 1:
            self.last_random_step = step
        return repeats


def state_mdp(env: gym.Env) -> TabularMDP | None:
    """The environment's MDP where its observation is the MDP's state (else loops go unseen)."""
    mdp = known_mdp(env)
    if mdp is None or not np.array_equal(mdp.row_of_state, np.arange(mdp.n_states)):
        return None
    return mdp


def watch_env(run: Run, render_mode: str | None) -> gym.Env:
    """The run's environment (bins included) rendering in ``render_mode``, with a step cap."""
    config = run.config
    if render_mode == "rgb_array":  # pygame draws the frames; it needs no display (headless)
        os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
    env = make_env(config.env_id, config.env_kwargs, config.bins, config.obs_bounds,
                   render_mode=render_mode)
    return with_step_cap(env, WATCH_STEP_CAP)


def render_mode_for(run: Run, recording: bool) -> str | None:
    """``rgb_array`` to record, else ``ansi`` where the environment draws text, else none."""
    probe = make_env(run.config.env_id, run.config.env_kwargs, run.config.bins,
                     run.config.obs_bounds)
    modes = probe.metadata.get("render_modes", [])
    probe.close()
    if recording:
        if "rgb_array" not in modes:
            raise UsageError(f"{run.config.env_id} cannot draw frames (its render modes: "
                             f"{', '.join(modes) or 'none'}): leave out --gif and --video")
        return "rgb_array"
    return "ansi" if "ansi" in modes else None


def check_outputs(gif: Path | None, video: Path | None) -> None:
    """Bad recording targets are refused before anything is played."""
    if gif is not None and gif.suffix.lower() != ".gif":
        raise UsageError(f"--gif {gif} does not end in .gif: name the file e.g. play.gif")
    if video is not None:
        if video.suffix.lower() != ".mp4":
            raise UsageError(f"--video {video} does not end in .mp4: name the file e.g. play.mp4")
        video_writer()
    for path in (gif, video):
        if path is not None and not path.parent.is_dir():
            raise UsageError(f"the folder of {path} does not exist: create it or choose another")


def video_writer() -> Any:
    """The ``imageio`` module with an ffmpeg writer, or a one-line error saying what to install."""
    try:
        import imageio.v2 as imageio
        import imageio_ffmpeg  # noqa: F401 - the ffmpeg binary imageio writes MP4 with
    except ImportError:
        raise UsageError("--video needs a video writer: pip install 'tabrl[video]' "
                         "(imageio and imageio-ffmpeg)") from None
    return imageio


def action_name(env: gym.Env, action: int) -> str:
    names = ACTION_NAMES.get(type(env.unwrapped).__name__)
    return f"{action} ({names[action]})" if names and action < len(names) else str(action)


def play_episode(
    env: gym.Env, policy: np.ndarray, find: Callable[[Any], int | None], reset_seed: int | None,
    show: Show, delay: float, mdp: TabularMDP | None = None,
) -> Episode:
    """One greedy episode; in text mode every step is shown, in rgb mode every frame kept.

    With the environment's ``mdp`` (see :func:`state_mdp`), a deterministic loop stops it.
    """
    episode = Episode()
    text, recording = env.render_mode == "ansi", env.render_mode == "rgb_array"
    loops = LoopDetector(mdp) if mdp is not None else None
    obs, _ = env.reset(seed=reset_seed)

    def draw(line: str) -> None:
        if recording:
            episode.frames.append(np.asarray(env.render()))
        elif text:
            show(str(env.render()).strip("\n") + "\n" + line)
        else:
            show(line)
        if delay and not recording:
            time.sleep(delay)

    draw(f"start: observation {observation_key(obs)}")
    while True:
        row = find(obs)
        action = int(policy[row]) if row is not None else 0
        looping = loops is not None and loops.loops(episode.length, int(obs), action)
        if looping:
            episode.ending = (f"stopped: the greedy policy loops (state {obs} again, every move "
                              "since deterministic): it would go round until the step limit")
            break
        last = observation_key(obs)
        obs, reward, terminated, truncated, _ = env.step(action)
        episode.length += 1
        episode.total += float(reward)
        draw(f"step {episode.length}: {last} -> action {action_name(env, action)}, "
             f"reward {float(reward):+g}, return {episode.total:+g}")
        if terminated:
            episode.ending = "the episode is over"
            break
        if truncated:
            episode.ending = f"stopped at the step limit ({episode.length} steps)"
            break
    return episode


def enjoy(
    run: Run, episodes: int = 1, seed: int = 0, delay: float = 0.0, gif: Path | None = None,
    video: Path | None = None, show: Show = print,
) -> list[Episode]:
    """Play the run's greedy policy for ``episodes`` episodes; record a GIF and/or an MP4.

    The first episode resets the environment with ``seed`` (the later ones continue its random
    stream), so the same seed shows the same play.
    """
    if episodes <= 0:
        raise UsageError(f"--episodes must be positive, not {episodes}")
    if delay < 0:
        raise UsageError(f"--delay must be >= 0 seconds, not {delay}")
    check_outputs(gif, video)
    recording = gif is not None or video is not None
    env = watch_env(run, render_mode_for(run, recording))
    agent = run.load_agent(env)
    policy, find = agent.q_values.greedy_policy(), agent.q_values.encoder.find
    mdp = state_mdp(env)
    played = []
    for i in range(episodes):
        episode = play_episode(env, policy, find, seed if i == 0 else None, show, delay, mdp)
        steps = "1 step" if episode.length == 1 else f"{episode.length} steps"
        show(f"episode {i + 1}: return {episode.total:+g} in {steps}; "
             f"{episode.ending}")
        played.append(episode)
    fps = int(env.metadata.get("render_fps") or DEFAULT_FPS)
    env.close()
    frames = [frame for episode in played for frame in episode.frames]
    if gif is not None:
        save_gif(gif, frames, fps)
        show(f"saved {gif} ({len(frames)} frames)")
    if video is not None:
        save_video(video, frames, fps)
        show(f"saved {video} ({len(frames)} frames)")
    return played


def save_gif(path: Path, frames: list[np.ndarray], fps: int) -> Path:
    """An animated GIF of ``frames`` (looping), written atomically with Pillow."""
    from PIL import Image

    images = [Image.fromarray(frame) for frame in frames]
    buffer = io.BytesIO()
    images[0].save(buffer, format="GIF", save_all=True, append_images=images[1:],
                   duration=round(1000 / fps), loop=0)
    try:
        return atomic_write_bytes(path, buffer.getvalue())
    except OSError as error:
        raise RunFolderError(f"cannot write {path} ({error.strerror}): choose another file") \
            from None


def save_video(path: Path, frames: list[np.ndarray], fps: int) -> Path:
    """An MP4 of ``frames`` with imageio's ffmpeg writer, through a temporary file and a rename
    (ffmpeg writes to a path, so :func:`~tabrl.fileio.atomic_write_bytes` cannot serve)."""
    imageio = video_writer()
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}{path.suffix}")
    try:
        with imageio.get_writer(tmp, fps=fps, macro_block_size=2) as writer:
            for frame in frames:
                writer.append_data(frame)
        os.replace(tmp, path)
    except OSError as error:
        raise RunFolderError(f"cannot write {path} ({error.strerror}): choose another file") \
            from None
    finally:
        tmp.unlink(missing_ok=True)
    return path
