"""Observation wrappers that give every env the dict-of-arrays observations serl's agents expect."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces


class DictObservation(gym.ObservationWrapper):
    """Present a Box-observation env as {"state": obs}; dict-of-Box envs pass through unchanged."""

    def __init__(self, env: gym.Env, key: str = "state") -> None:
        super().__init__(env)
        space = env.observation_space
        if isinstance(space, spaces.Dict):
            for name, sub in space.spaces.items():
                if not isinstance(sub, spaces.Box):
                    raise TypeError(f"observation {name!r} is {type(sub).__name__}, not a Box")
            self._key = None
            self.observation_space = space
        elif isinstance(space, spaces.Box):
            self._key = key
            self.observation_space = spaces.Dict({key: space})
        else:
            raise TypeError(
                f"serl trains on Box or dict-of-Box observations, got {type(space).__name__}"
            )

    def observation(self, observation: Any) -> dict[str, np.ndarray]:
        """Wrap a bare array under the state key."""
        if self._key is None:
            return observation
        return {self._key: observation}
