"""Recording scripted demonstrations into an episode store, and making envs for training."""

import gymnasium as gym
import numpy as np
import pytest

from serl.cli import main
from serl.data import EpisodeStore
from serl.train.envs import env_schema, make_env


def test_record_demos_writes_successful_episodes(tmp_path) -> None:
    out = tmp_path / "demos"
    main(["record-demos", "serl/PandaPickCube-v0", "--out", str(out), "--episodes", "3"])
    store = EpisodeStore.open(out)
    assert len(store) == 3
    for episode in store:
        assert episode.terminated[-1]  # sparse reward: success terminates
        assert episode.rewards[-1] == 1.0
        assert episode.observations["block_pos"].shape == (len(episode) + 1, 3)
        assert np.all(np.abs(episode.actions) <= 1.0)


def test_recorded_demos_replay_identically(tmp_path) -> None:
    out = tmp_path / "demos"
    main(["record-demos", "serl/PandaPickCube-v0", "--out", str(out), "--episodes", "1"])
    episode = EpisodeStore.open(out)[0]
    env = make_env("serl/PandaPickCube-v0")
    obs, _ = env.reset(seed=0)  # the first attempt uses the recording seed
    for t, action in enumerate(episode.actions):
        np.testing.assert_array_equal(obs["block_pos"], episode.observations["block_pos"][t])
        obs, *_ = env.step(action)


def test_teleop_devices_are_not_faked(tmp_path) -> None:
    with pytest.raises(NotImplementedError, match="scripted"):
        main(["record-demos", "serl/PandaPickCube-v0", "--out", str(tmp_path / "d"),
              "--expert", "spacemouse"])


def test_make_env_rescales_actions_and_wraps_observations() -> None:
    env = make_env("Pendulum-v1")
    assert np.allclose(env.action_space.low, -1) and np.allclose(env.action_space.high, 1)
    obs, _ = env.reset(seed=0)
    assert set(obs) == {"state"}
    schema = env_schema(env)
    assert schema.obs_specs["state"].shape == (3,)
    assert schema.action_shape == (1,)


def test_make_env_refuses_discrete_actions_and_unknown_ids() -> None:
    with pytest.raises(TypeError, match="Box action"):
        make_env("CartPole-v1")
    with pytest.raises(ValueError, match="cannot make env"):
        make_env("NoSuchEnv-v9")
    assert "serl/PandaPickCube-v0" in gym.registry
