"""Build any registered gymnasium env the way serl's agents and buffers expect it."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.wrappers import RescaleAction

import serl.envs  # noqa: F401  (registers the serl/ ids)
from serl.data import Schema
from serl.wrappers.observations import DictObservation


def make_env(env_id: str, **kwargs: Any) -> gym.Env:
    """`gym.make` plus actions rescaled to [-1, 1] and dict-of-Box observations."""
    try:
        env = gym.make(env_id, **kwargs)
    except gym.error.Error as e:
        raise ValueError(f"cannot make env {env_id!r}: {e}") from e
    if not isinstance(env.action_space, spaces.Box):
        raise TypeError(
            f"{env_id}: serl trains on Box action spaces, got {type(env.action_space).__name__}"
        )
    low, high = env.action_space.low, env.action_space.high
    if not (np.all(np.isfinite(low)) and np.all(np.isfinite(high))):
        raise ValueError(f"{env_id}: the action space must be bounded, got [{low}, {high}]")
    if not (np.allclose(low, -1.0) and np.allclose(high, 1.0)):
        # the policy's tanh squashing lives in [-1, 1]
        env = RescaleAction(env, -1.0, 1.0)
    return DictObservation(env)


def env_schema(env: gym.Env) -> Schema:
    """The replay schema of an env made by `make_env` (float observations stored as float32)."""
    obs_space = env.observation_space
    observations = {
        key: (space.shape, np.float32 if np.dtype(space.dtype).kind == "f" else space.dtype)
        for key, space in obs_space.spaces.items()
    }
    return Schema.create(observations, env.action_space.shape)
