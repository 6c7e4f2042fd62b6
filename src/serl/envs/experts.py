"""Scripted experts: closed-loop demonstrators (and simulated humans) for serl's sim tasks."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from serl.envs.bin_relocation import BinRelocationExpert, PandaBinRelocationEnv
from serl.envs.pick_cube import ACTION_SCALE, PandaPickCubeEnv

# The opspace controller tracks its target with this lag: target ~ tcp + TRACKING_LAG_S * tcp_vel.
TRACKING_LAG_S = 0.14
CLOSE_RATE = 0.35  # grip command change per step while closing (the command integrates)


class PickCubeExpert:
    """Approach above the cube, descend, close the gripper, lift; re-opens and retries on a miss.

    A function of the observation alone (TCP position and velocity, finger closure, cube
    position; the cube is read from the simulator when the observation has no `block_pos`, as in
    the vision task): no hidden phase or step counter, so a policy seeing the same observation
    can imitate it. `noise` is the std of Gaussian noise added to the xyz action; `phase` names
    the rule that chose the last action.
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

    def reset(self) -> None:
        """Start a new episode (the expert keeps no state between steps)."""
        self.phase = "approach"

    def __call__(self, obs: Any = None) -> np.ndarray:
        """Next action in [-1, 1]^4 for `obs` (the env's current state when `obs` is None)."""
        env = self.env
        if obs is None:
            obs = {
                "tcp_pos": env.tcp_pos,
                "tcp_vel": env.tcp_velocity,
                "gripper_pos": [env.gripper_pos],
            }
        tcp = np.asarray(obs["tcp_pos"], np.float64)
        vel = np.asarray(obs["tcp_vel"], np.float64)
        closure = float(np.asarray(obs["gripper_pos"]).reshape(-1)[0])
        block = np.asarray(obs["block_pos"], np.float64) if "block_pos" in obs else env.block_pos
        self.phase, goal, grip = pick_rule(tcp, closure, block)
        step = goal - (tcp + TRACKING_LAG_S * vel)  # from where the target is now
        norm = np.linalg.norm(step)
        if norm > self.max_speed:
            step *= self.max_speed / norm
        xyz = step / ACTION_SCALE + self.noise * self.rng.standard_normal(3)
        return np.clip(np.append(xyz, grip), -1.0, 1.0).astype(np.float32)


def pick_rule(tcp: np.ndarray, closure: float, block: np.ndarray) -> tuple[str, np.ndarray, float]:
    """(phase, TCP goal, grip action) of the pick-and-lift rules for one observation."""
    xy_err = float(np.linalg.norm((block - tcp)[:2]))
    hover = block + np.array([0.0, 0.0, 0.06])
    grasp = block - np.array([0.0, 0.0, 0.004])
    holding = 0.4 < closure < 0.85 and xy_err < 0.02 and abs(block[2] - tcp[2]) < 0.02
    if holding:  # fingers closed on the cube (closure ~0.5 for a 4 cm cube)
        return "lift", np.array([*block[:2], block[2] + 0.15]), 1.0
    if closure >= 0.85 or (closure > 0.05 and xy_err >= 0.02):  # closed on nothing: retry
        return "reopen", np.array([*tcp[:2], hover[2]]), -1.0
    if xy_err < 0.015 and np.linalg.norm(tcp - grasp) < 0.008:
        return "close", grasp, CLOSE_RATE
    # once down beside the cube, keep descending with a looser alignment tolerance
    if xy_err < (0.01 if tcp[2] > hover[2] - 0.01 else 0.018):
        return "descend", grasp, -1.0
    if tcp[2] < hover[2] - 0.02 and xy_err > 0.02:  # low and off to the side: rise first
        return "rise", np.array([*tcp[:2], hover[2]]), -1.0
    return "approach", hover, -1.0


def make_expert(env: gym.Env, **kwargs: Any) -> Any:
    """The scripted expert of a serl sim env (wrappers are looked through), or of a robot
    insertion task (the sim peg through the robot server)."""
    base = env.unwrapped
    if isinstance(base, PandaBinRelocationEnv):  # a pick-cube subclass: test it first
        return BinRelocationExpert(base, **kwargs)
    if isinstance(base, PandaPickCubeEnv):
        return PickCubeExpert(base, **kwargs)
    from serl.robot.env import FrankaEnv  # the robot client loads only for a robot task

    if isinstance(base, FrankaEnv):
        from serl.robot.expert import InsertionExpert

        return InsertionExpert(base, **kwargs)
    raise TypeError(f"no scripted expert for {type(base).__name__}")
