"""Wrappers that adapt any gymnasium env to serl's observation contract."""

import gymnasium as gym
import numpy as np
import pytest

import serl  # noqa: F401
from serl.wrappers.observations import DictObservation


def test_box_env_gets_a_state_key() -> None:
    env = DictObservation(gym.make("Pendulum-v1"))
    obs, _ = env.reset(seed=0)
    assert set(obs) == {"state"}
    assert obs["state"].shape == (3,)
    assert env.observation_space.contains(obs)


def test_dict_env_passes_through() -> None:
    inner = gym.make("serl/PandaPickCube-v0")
    env = DictObservation(inner)
    obs, _ = env.reset(seed=0)
    assert env.observation_space == inner.observation_space
    assert set(obs) == {"block_pos", "tcp_pos", "tcp_vel", "gripper_pos"}
    np.testing.assert_array_equal(obs["block_pos"], inner.unwrapped.block_pos.astype(np.float32))


def test_discrete_observations_are_refused() -> None:
    with pytest.raises(TypeError, match="Box"):
        DictObservation(gym.make("FrozenLake-v1"))
