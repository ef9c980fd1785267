"""``tabrl enjoy``: the greedy policy played in the terminal, recorded as GIF and MP4."""

from __future__ import annotations

import re
import sys

import pytest
from PIL import Image

from tabrl.app.runs import RunConfig
from tabrl.app.workflow import prepare_run, train_run


def trained(path, env_id, kwargs, episodes, **settings):
    config = RunConfig.resolve(env_id, kwargs, episodes=episodes, eval_episodes=0,
                               engine="python", **settings)
    train_run(prepare_run(config, path), say=lambda _: None)
    return path


@pytest.fixture(scope="module")
def lake(tmp_path_factory):
    """The 4x4 lake without slipping, learned well: the greedy path takes 6 steps to the goal."""
    return trained(tmp_path_factory.mktemp("lake") / "run", "FrozenLake-v1",
                   {"is_slippery": False}, 2000, learning_rate=0.5)


def test_enjoy_draws_the_board_actions_and_return_in_the_terminal(tabrl_cli, lake):
    result = tabrl_cli("enjoy", lake, "--episodes", "2", "--delay", "0")
    assert result.code == 0, result.stderr
    text = result.stdout
    assert text.count("HFFG") == 2 * 7  # the board at the start and after each of 6 steps
    assert "step 1: 0 -> action " in text
    assert re.search(r"step 6: \d+ -> action 2 \(right\), reward \+1, return \+1", text)
    assert text.count("episode 1: return +1 in 6 steps; the episode is over") == 1
    assert "episode 2: return +1 in 6 steps" in text


def test_enjoy_records_a_gif_of_every_frame(tabrl_cli, lake, tmp_path):
    gif = tmp_path / "play.gif"
    result = tabrl_cli("enjoy", lake, "--episodes", "2", "--gif", gif)
    assert result.code == 0, result.stderr
    with Image.open(gif) as image:
        assert (image.n_frames, image.size) == (2 * 7, (256, 256))
    assert "HFFG" not in result.stdout and f"saved {gif} (14 frames)" in result.stdout


def test_enjoy_records_cartpole_through_its_bins(tabrl_cli, tmp_path):
    run = trained(tmp_path / "run", "CartPole-v1", {}, 20)
    gif = tmp_path / "cartpole.gif"
    result = tabrl_cli("enjoy", run, "--gif", gif, "--seed", "3")
    assert result.code == 0, result.stderr
    steps = int(re.search(r"in (\d+) steps?", result.stdout).group(1))
    assert f"({steps + 1} frames)" in result.stdout
    with Image.open(gif) as image:
        # Pillow merges a frame identical to the one before into it (their durations add up):
        # the play lasts 20 ms (CartPole's 50 frames per second) per frame all the same.
        durations = []
        for i in range(image.n_frames):
            image.seek(i)
            durations.append(image.info["duration"])
        assert image.size == (600, 400) and 1 < image.n_frames <= steps + 1
        assert sum(durations) == 20 * (steps + 1)


def test_enjoy_records_an_mp4(tabrl_cli, lake, tmp_path):
    imageio = pytest.importorskip("imageio.v2")
    video = tmp_path / "play.mp4"
    result = tabrl_cli("enjoy", lake, "--video", video)
    assert result.code == 0, result.stderr
    with imageio.get_reader(video) as reader:
        assert reader.count_frames() == 7
        assert reader.get_data(0).shape == (256, 256, 3)


def test_without_a_video_writer_one_line_says_what_to_install(tabrl_cli, lake, tmp_path,
                                                               monkeypatch):
    monkeypatch.setitem(sys.modules, "imageio", None)  # as if tabrl[video] were not installed
    result = tabrl_cli("enjoy", lake, "--video", tmp_path / "play.mp4")
    assert result.code == 2 and "pip install 'tabrl[video]'" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not list(tmp_path.iterdir())


def test_a_looping_policy_is_stopped_with_a_note(tabrl_cli, tmp_path):
    # One episode of learning leaves the start's values at zero: the greedy action is 0 (left),
    # which bumps into the wall and stays in state 0 forever on the lake without slipping.
    run = trained(tmp_path / "run", "FrozenLake-v1", {"is_slippery": False}, 1)
    result = tabrl_cli("enjoy", run, "--delay", "0")
    assert result.code == 0, result.stderr
    assert ("episode 1: return +0 in 1 step; stopped: the greedy policy loops (state 0 again"
            in result.stdout)


@pytest.mark.parametrize("args, fragment", [
    (["--episodes", "0"], "--episodes must be positive"),
    (["--delay", "-1"], "--delay must be >= 0"),
    (["--gif", "play.png"], "does not end in .gif"),
    (["--video", "play.avi"], "does not end in .mp4"),
    (["--gif", "no/such/folder/play.gif"], "does not exist"),
])
def test_bad_enjoy_options_are_one_line_errors(tabrl_cli, lake, args, fragment):
    result = tabrl_cli("enjoy", lake, *args)
    assert result.code == 2 and fragment in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
