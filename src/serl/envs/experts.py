"""Scripted experts: closed-loop demonstrators (and simulated humans) for serl's sim tasks."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from serl.envs.pick_cube import ACTION_SCALE, PandaPickCubeEnv


class PickCubeExpert:
    """Approach above the cube, descend, close the gripper, lift; re-tries if the cube slips.

    It reads the simulator's privileged state (cube, TCP, target), so it serves the state and
    the vision task alike. `noise` is the std of Gaussian noise added to the xyz action.
    """

    def __init__(
        self,
        env: PandaPickCubeEnv,
        noise: float = 0.05,
        max_speed: float = 0.035,
        seed: int | None = None,
    ) -> None:
        self.env = env
        self.noise = noise
        self.max_speed = max_speed  # metres the target may move per control step
        self.rng = np.random.default_rng(seed)
        self.phase = "approach"
        self._closing_steps = 0

    def reset(self) -> None:
        """Start a new episode."""
        self.phase = "approach"
        self._closing_steps = 0

    def __call__(self, obs: Any = None) -> np.ndarray:
        """Next action in [-1, 1]^4 for the env's current state (`obs` is not needed)."""
        env = self.env
        block, tcp = env.block_pos, env.tcp_pos
        hover = block + np.array([0.0, 0.0, 0.06])
        grasp_point = block - np.array([0.0, 0.0, 0.004])
        lifted = block[2] - env.block_start_height > 0.01

        if self.phase == "lift" and not lifted and tcp[2] - block[2] > 0.05:
            self.phase = "approach"  # the cube slipped out: open and go again
            self._closing_steps = 0
        if self.phase == "approach" and np.linalg.norm((tcp - hover)[:2]) < 0.01:
            self.phase = "descend"
        if self.phase == "descend" and np.linalg.norm(tcp - grasp_point) < 0.008:
            self.phase = "close"
        if self.phase == "close":
            self._closing_steps += 1
            if self._closing_steps >= 6:
                self.phase = "lift"

        if self.phase == "approach":
            goal, grip = hover, -1.0
        elif self.phase == "descend":
            goal, grip = grasp_point, -1.0
        elif self.phase == "close":
            goal, grip = grasp_point, 1.0
        else:
            goal, grip = tcp + np.array([0.0, 0.0, 0.1]), 1.0
            goal[:2] = env.target_pos[:2]

        step = goal - env.target_pos
        norm = np.linalg.norm(step)
        if norm > self.max_speed:
            step *= self.max_speed / norm
        xyz = step / ACTION_SCALE + self.noise * self.rng.standard_normal(3)
        return np.clip(np.append(xyz, grip), -1.0, 1.0).astype(np.float32)


def make_expert(env: gym.Env, **kwargs: Any) -> PickCubeExpert:
    """The scripted expert of a serl sim env (wrappers are looked through)."""
    base = env.unwrapped
    if isinstance(base, PandaPickCubeEnv):
        return PickCubeExpert(base, **kwargs)
    raise TypeError(f"no scripted expert for {type(base).__name__}")
