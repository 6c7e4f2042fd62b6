"""The scripted expert of the insertion tasks (the sim peg): align over the hole, then descend.

It acts on FrankaEnv's observation alone (the TCP pose) and the task's target pose, as a person
with a SpaceMouse would: no hidden phase or step counter, so a policy that sees the same
observation can imitate it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from serl.robot import transforms as tf
from serl.robot.env import FrankaEnv

ENTRY_HEIGHT = 0.035  # TCP height over the target where the peg's tip is just above the hole
XY_TOLERANCE = 0.0015  # m: centred enough to go down (the sim hole leaves 1 mm each side)
YAW_TOLERANCE = 0.03  # rad: a square peg enters a square hole up to ~0.09 rad of yaw
STEP_FRACTION = 0.7  # of the remaining error closed per step (the arm lags its target)


class InsertionExpert:
    """Centre the held part over the target and square its yaw, then push it down; back up to
    the entry height to re-centre when it is off by more than the hole allows.

    `noise` is the std of Gaussian noise on the translation actions (in action units).
    """

    def __init__(self, env: FrankaEnv, noise: float = 0.05, seed: int | None = None) -> None:
        cfg = env.config
        if cfg.use_gripper or cfg.reward != "pose":
            raise TypeError("the insertion expert drives pose-reward tasks that hold their part")
        self.target = np.asarray(cfg.target_pose, dtype=np.float64)
        self.pos_scale, self.rot_scale = cfg.action_scale[0], cfg.action_scale[1]
        self.noise = noise
        self.rng = np.random.default_rng(seed)
        self.phase = "align"

    def reset(self) -> None:
        """Start a new episode (the expert keeps no state between steps)."""
        self.phase = "align"

    def __call__(self, obs: dict[str, Any]) -> np.ndarray:
        """Next action in [-1, 1]^6 for a FrankaEnv observation."""
        pose = np.asarray(obs["tcp_pose"], dtype=np.float64)
        rpy_error = tf.wrap_angle(self.target[3:] - tf.to_euler(pose[3:]))
        self.phase, goal = insertion_rule(pose[:3], float(rpy_error[2]), self.target)
        xyz = STEP_FRACTION * (goal - pose[:3]) / self.pos_scale
        xyz += self.noise * self.rng.standard_normal(3)
        rot = STEP_FRACTION * rpy_error / self.rot_scale
        return np.clip(np.concatenate([xyz, rot]), -1.0, 1.0).astype(np.float32)


def insertion_rule(tcp: np.ndarray, yaw_error: float, target: np.ndarray) -> tuple[str, np.ndarray]:
    """(phase, TCP goal) for one TCP position and yaw error: to the hole's entry, or into it."""
    off = float(np.linalg.norm(tcp[:2] - target[:2]))
    entry = target[2] + ENTRY_HEIGHT
    inside = tcp[2] < entry - 0.002  # the tip is below the hole's rim
    square = abs(yaw_error) < YAW_TOLERANCE
    if (off < XY_TOLERANCE and square) or (inside and off < 2 * XY_TOLERANCE):
        return "insert", np.array([*target[:2], target[2] - 0.01])  # press past the bottom
    if inside:  # stuck on the rim off-centre: back out before moving sideways
        return "back_out", np.array([*tcp[:2], entry + 0.005])
    return "align", np.array([*target[:2], entry])
