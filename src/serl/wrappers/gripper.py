"""Gripper-toggle penalty (HIL-SERL): discourage a policy from chattering the gripper."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np


class GripperPenalty(gym.Wrapper):
    """Subtract `penalty` from the reward on each step that switches the gripper open <-> closed.

    The gripper is the action's last entry: above `threshold` commands closed, below
    `-threshold` open, in between keeps the state. The state at reset is read from the
    observation key `gripper_key` (closed above 0.5) when present, else assumed open. The
    executed action counts (a human's, under `InterventionWrapper`, when wrapped inside it).
    `info["grasp_penalty"]` holds the penalty of each step (0 or -penalty).
    """

    def __init__(
        self,
        env: gym.Env,
        penalty: float = 0.02,
        threshold: float = 0.5,
        gripper_key: str | None = "gripper_pos",
    ) -> None:
        super().__init__(env)
        if penalty < 0:
            raise ValueError(f"penalty is a magnitude (>= 0), got {penalty}")
        self.penalty = float(penalty)
        self.threshold = float(threshold)
        self.gripper_key = gripper_key
        self.closed = False

    def reset(self, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
        """Reset and read the gripper's starting state."""
        obs, info = self.env.reset(**kwargs)
        self.closed = False
        if self.gripper_key is not None and isinstance(obs, dict) and self.gripper_key in obs:
            self.closed = bool(np.asarray(obs[self.gripper_key]).reshape(-1)[0] > 0.5)
        return obs, info

    def step(self, action: np.ndarray) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        """Step, then charge the penalty if the gripper command switched state."""
        grip = float(np.asarray(action).reshape(-1)[-1])
        wanted = True if grip > self.threshold else False if grip < -self.threshold else self.closed
        toggled = wanted != self.closed
        self.closed = wanted
        obs, reward, terminated, truncated, info = self.env.step(action)
        penalty = -self.penalty if toggled else 0.0
        info = {**info, "grasp_penalty": penalty}
        return obs, float(reward) + penalty, terminated, truncated, info
