"""The one env loop: how episodes end (env, policy, hook), what it keeps, evaluation, video."""

from __future__ import annotations

import numpy as np
import pytest

from serl.train.envs import make_env
from serl.train.rollout import Step, evaluate, render_episodes, run_episode

PICK = "serl/PandaPickCube-v0"


@pytest.fixture
def pendulum():
    env = make_env("Pendulum-v1", max_episode_steps=7)
    yield env
    env.close()


def test_episode_runs_until_the_env_ends_it_and_keeps_every_frame(pendulum) -> None:
    seen: list[Step] = []
    run = run_episode(pendulum, lambda obs: np.zeros(1), seed=3, on_step=seen.append)
    assert len(run) == len(seen) == 7 and not run.stopped
    assert run.truncated[-1] and not any(run.terminated)
    assert len(run.frames) == len(run.infos) == 8  # reset's and each step's
    for t, step in enumerate(seen):  # a hook sees what the episode keeps
        assert step.obs is run.frames[t] and step.next_obs is run.frames[t + 1]
        assert step.reward == run.rewards[t]
    episode = run.episode()
    np.testing.assert_array_equal(episode.observations["state"][0], run.frames[0]["state"])
    assert episode.actions.shape == (7, 1) and episode.actions.dtype == np.float32
    assert run.total_reward == pytest.approx(float(np.sum(run.rewards)))
    again = run_episode(pendulum, lambda obs: np.zeros(1), seed=3)  # seeded: the same episode
    np.testing.assert_array_equal(
        again.episode().observations["state"], episode.observations["state"]
    )


def test_the_policy_or_a_hook_ends_an_episode_early(pendulum) -> None:
    calls = iter([np.zeros(1), np.ones(1), None])
    run = run_episode(pendulum, lambda obs: next(calls), seed=0)
    assert run.stopped and len(run) == 2 and len(run.frames) == 3
    run = run_episode(pendulum, lambda obs: np.zeros(1), seed=0, on_step=lambda s: True)
    assert run.stopped and len(run) == 1


def test_an_episode_not_kept_holds_no_observations(pendulum) -> None:
    run = run_episode(pendulum, lambda obs: np.zeros(1), seed=0, keep=False)
    assert len(run) == 7 and run.frames == [] and run.actions == [] and len(run.infos) == 8


def test_evaluation_counts_successes_and_returns() -> None:
    env = make_env(PICK, max_episode_steps=5)
    try:
        result = evaluate(env, lambda obs: np.zeros(4), episodes=2, seed=0)
        runs = [run_episode(env, lambda obs: np.zeros(4), seed=i) for i in range(2)]
    finally:
        env.close()
    assert result == {
        "success_rate": 0.0,
        "mean_return": pytest.approx(np.mean([r.total_reward for r in runs])),
        "episodes": 2.0,
    }


def test_video_frames_are_the_reset_frame_and_one_per_step() -> None:
    env = make_env(PICK, max_episode_steps=3, render_mode="rgb_array", render_size=32)
    try:
        frames = render_episodes(env, lambda obs: np.zeros(4), episodes=2, seed=0)
    finally:
        env.close()
    assert len(frames) == 2 * (3 + 1)
    assert frames[0].shape[-1] == 3 and frames[0].dtype == np.uint8


def test_a_video_the_env_cannot_draw_is_one_clear_error(tmp_path) -> None:
    import importlib.util

    from serl.train.config import TrainConfig
    from serl.train.evaluation import _video_frames

    if importlib.util.find_spec("pygame") is not None:
        pytest.skip("pygame is installed: classic control can draw")
    cfg = TrainConfig("Pendulum-v1", run_dir=str(tmp_path / "run"))
    # (a RuntimeError: the end of `serl train` prints it as "no video: ..." and exits 0)
    with pytest.raises(RuntimeError, match=r"cannot render video frames: .*pygame"):
        _video_frames(cfg, lambda obs: np.zeros(1), episodes=1)
