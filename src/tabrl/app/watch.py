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

from tabrl.app.export import observation_key
from tabrl.app.runs import Run
from tabrl.envs import make_env, with_step_cap
from tabrl.errors import RunFolderError, UsageError
from tabrl.exact.mdp import TabularMDP
from tabrl.exact.readers import known_mdp
from tabrl.fileio import atomic_write_bytes

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
    record: Callable[[np.ndarray], None] | None = None,
) -> Episode:
    """One greedy episode; every step is shown in the terminal, or its frame given to ``record``.

    With the environment's ``mdp`` (see :func:`state_mdp`), a deterministic loop stops it.
    """
    episode = Episode()
    text = env.render_mode == "ansi"
    loops = LoopDetector(mdp) if mdp is not None else None
    obs, _ = env.reset(seed=reset_seed)

    def draw(line: str) -> None:
        if record is not None:
            record(np.asarray(env.render()))
        elif text:
            show(str(env.render()).strip("\n") + "\n" + line)
        else:
            show(line)
        if delay and record is None:
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
    fps = int(env.metadata.get("render_fps") or DEFAULT_FPS)
    played = []
    with Recorder(gif, video, fps) as recorder:
        for i in range(episodes):
            episode = play_episode(env, policy, find, seed if i == 0 else None, show, delay, mdp,
                                   recorder.add if recording else None)
            steps = "1 step" if episode.length == 1 else f"{episode.length} steps"
            show(f"episode {i + 1}: return {episode.total:+g} in {steps}; {episode.ending}")
            played.append(episode)
    env.close()
    for path in (gif, video):
        if path is not None:
            show(f"saved {path} ({recorder.n_frames} frames)")
    return played


class Recorder:
    """Frames to a GIF and/or an MP4, each file appearing whole or not at all.

    The MP4 is streamed to ffmpeg as frames come; the GIF's frames are held as palette images
    (a third of their RGB size: Pillow writes a GIF at once) and written when the play ends.
    ffmpeg writes to a path, so both go to a temporary file in the target's folder, then are
    renamed (:func:`~tabrl.fileio.atomic_write_bytes` cannot serve ffmpeg).
    """

    def __init__(self, gif: Path | None, video: Path | None, fps: int) -> None:
        self.gif, self.video, self.fps = gif, video, fps
        self.n_frames = 0
        self.images: list[Any] = []
        self.writer: Any = None

    def __enter__(self) -> Recorder:
        if self.video is not None:
            self.writer = video_writer().get_writer(temporary(self.video), fps=self.fps,
                                                    macro_block_size=2)
        return self

    def add(self, frame: np.ndarray) -> None:
        from PIL import Image

        self.n_frames += 1
        if self.writer is not None:
            self.writer.append_data(frame)
        if self.gif is not None:
            self.images.append(Image.fromarray(frame).convert("P", palette=Image.ADAPTIVE))

    def __exit__(self, kind: type | None, *_: object) -> None:
        try:
            if self.writer is not None:
                self.writer.close()
            if kind is None and self.n_frames:
                self.save()
        except OSError as error:
            raise RunFolderError(f"cannot write the recording ({error.strerror}): choose "
                                 "another file") from None
        finally:
            if self.video is not None:
                temporary(self.video).unlink(missing_ok=True)

    def save(self) -> None:
        """Rename the finished MP4 into place, and write the GIF (looping) atomically."""
        if self.video is not None:
            os.replace(temporary(self.video), self.video)
        if self.gif is not None:
            buffer = io.BytesIO()
            first, *rest = self.images
            first.save(buffer, format="GIF", save_all=True, append_images=rest,
                       duration=round(1000 / self.fps), loop=0)
            atomic_write_bytes(self.gif, buffer.getvalue())


def temporary(path: Path) -> Path:
    """The temporary name a file is written under before it is renamed into place."""
    return path.with_name(f".{path.stem}.tmp-{os.getpid()}{path.suffix}")
