"""Observation history and open-loop action chunks (the original's ChunkingWrapper, fixed).

Observations become stacks of the last `obs_horizon` agent-step observations, [T, ...] per
key, padded with the reset observation at the start of an episode (as the replay buffers pad
their stacks). One agent step executes an action chunk of `act_exec_horizon` env actions
open-loop: the action is the chunk flattened to [K * A] (so agents keep a flat action
space), rewards are summed, and the chunk stops early when the episode ends. The history
advances once per agent step, so consecutive stacks are shifted by exactly one frame: the
frame-once replay buffer stores each of them once.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces


def stack_space(space: spaces.Box, horizon: int) -> spaces.Box:
    """A Box with a leading time axis of `horizon`."""
    low = np.broadcast_to(space.low, space.shape)
    high = np.broadcast_to(space.high, space.shape)
    return spaces.Box(
        np.repeat(low[None], horizon, axis=0),
        np.repeat(high[None], horizon, axis=0),
        dtype=space.dtype,
    )


class Chunking(gym.Wrapper):
    """Stacks of `obs_horizon` observations in, chunks of `act_exec_horizon` actions out.

    Works on dict-of-Box observations (every key is stacked). With obs_horizon 1 there is no
    time axis (the replay buffers' convention); with act_exec_horizon 1 actions are unchanged.
    `info["chunk_steps"]` holds how many env steps the chunk ran.
    """

    def __init__(self, env: gym.Env, obs_horizon: int = 1, act_exec_horizon: int = 1) -> None:
        super().__init__(env)
        if obs_horizon < 1 or act_exec_horizon < 1:
            raise ValueError("obs_horizon and act_exec_horizon must be >= 1")
        space = env.observation_space
        if not isinstance(space, spaces.Dict) or not all(
            isinstance(s, spaces.Box) for s in space.spaces.values()
        ):
            raise TypeError("Chunking needs dict-of-Box observations (wrap in DictObservation)")
        act = env.action_space
        if not isinstance(act, spaces.Box) or len(act.shape) != 1:
            raise TypeError("Chunking needs a flat Box action space")
        self.obs_horizon = obs_horizon
        self.act_exec_horizon = act_exec_horizon
        self._act_dim = act.shape[0]
        if obs_horizon > 1:
            self.observation_space = spaces.Dict(
                {k: stack_space(s, obs_horizon) for k, s in space.spaces.items()}
            )
        if act_exec_horizon > 1:
            self.action_space = spaces.Box(
                np.tile(act.low, act_exec_horizon),
                np.tile(act.high, act_exec_horizon),
                dtype=act.dtype,
            )
        self._history: deque[dict[str, np.ndarray]] = deque(maxlen=obs_horizon)

    def _stacked(self) -> dict[str, np.ndarray]:
        if self.obs_horizon == 1:
            return dict(self._history[-1])
        return {k: np.stack([f[k] for f in self._history]) for k in self._history[-1]}

    def reset(self, **kwargs: Any) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Reset; the history is the reset observation repeated."""
        obs, info = self.env.reset(**kwargs)
        frame = {k: np.array(v) for k, v in obs.items()}
        self._history.clear()
        self._history.extend([frame] * self.obs_horizon)
        return self._stacked(), info

    def step(self, action: Any) -> tuple[dict[str, np.ndarray], float, bool, bool, dict]:
        """Execute the chunk open-loop; one new frame joins the history."""
        chunk = np.reshape(np.asarray(action), (self.act_exec_horizon, self._act_dim))
        total, terminated, truncated, info, steps = 0.0, False, False, {}, 0
        obs: Any = None
        for a in chunk:
            obs, reward, terminated, truncated, info = self.env.step(a)
            total += float(reward)
            steps += 1
            if terminated or truncated:
                break
        self._history.append({k: np.array(v) for k, v in obs.items()})
        return self._stacked(), total, terminated, truncated, {**info, "chunk_steps": steps}
