"""Relative frame: actions in the end-effector frame, proprio relative to the episode's start.

A policy that acts in the gripper's own frame does not care where on the table the task sits or
how the reset randomised the yaw, which is what makes the real tasks learn from ~20 demos.
The wrapped env must have the FrankaEnv keys `tcp_pose` ([x, y, z, qx, qy, qz, qw]) and
`tcp_vel` ([v, w]) and a 6-D (+ gripper) action [dx, dy, dz, droll, dpitch, dyaw].

Action mapping: an end-effector-frame delta (dp, dtheta) is rotated into the base frame,
(R dp, R dtheta). The original applied the full twist adjoint, whose skew(p) R term couples a
translation into the rotation; that coupling is wrong for a displacement applied at the TCP
(which is how FrankaEnv applies actions), so we use the rotation alone. The rpy increment of
one step is small, so it maps as a rotation vector (first-order exact).
Observation mapping: tcp_vel -> R^T v, R^T w; tcp_pose -> the pose relative to the reset pose
(T_reset^-1 T). An intervention reported in info["intervene_action"] (base frame) is mapped
back into the end-effector frame, so stored transitions hold what the policy would output.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from serl.robot import transforms as tf


class RelativeFrame(gym.Wrapper):
    """Express actions and proprio in the end-effector / reset frame (see module docstring)."""

    def __init__(self, env: gym.Env, relative_pose: bool = True) -> None:
        super().__init__(env)
        self.relative_pose = relative_pose
        self._rot = np.eye(3)  # base <- end effector, at the last observation
        self._reset_pos = np.zeros(3)
        self._reset_quat = tf.IDENTITY.copy()

    def reset(self, **kwargs: Any) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Reset and remember the reset pose as the frame of the episode."""
        obs, info = self.env.reset(**kwargs)
        pose = np.asarray(obs["tcp_pose"], dtype=np.float64)
        self._reset_pos, self._reset_quat = pose[:3].copy(), tf.normalize(pose[3:])
        self._rot = tf.to_matrix(pose[3:])
        return self._observation(obs), info

    def step(self, action: np.ndarray) -> tuple[dict[str, np.ndarray], float, bool, bool, dict]:
        """Map the EE-frame action to the base frame, step, map the observation back."""
        obs, reward, terminated, truncated, info = self.env.step(self.to_base(action))
        if "intervene_action" in info:
            info = {**info, "intervene_action": self.to_end_effector(info["intervene_action"])}
        self._rot = tf.to_matrix(np.asarray(obs["tcp_pose"], dtype=np.float64)[3:])
        return self._observation(obs), reward, terminated, truncated, info

    def to_base(self, action: np.ndarray) -> np.ndarray:
        """End-effector-frame action -> base-frame action (gripper untouched)."""
        a = np.array(action, dtype=np.float32, copy=True)
        a[:3] = self._rot @ a[:3]
        a[3:6] = self._rot @ a[3:6]
        return a

    def to_end_effector(self, action: np.ndarray) -> np.ndarray:
        """Base-frame action -> end-effector-frame action (inverse of to_base)."""
        a = np.array(action, dtype=np.float32, copy=True)
        a[:3] = self._rot.T @ a[:3]
        a[3:6] = self._rot.T @ a[3:6]
        return a

    def _observation(self, obs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        obs = dict(obs)
        vel = np.asarray(obs["tcp_vel"], dtype=np.float64)
        obs["tcp_vel"] = np.concatenate([self._rot.T @ vel[:3], self._rot.T @ vel[3:]]).astype(
            np.float32
        )
        if self.relative_pose:
            pose = np.asarray(obs["tcp_pose"], dtype=np.float64)
            r_inv = tf.to_matrix(self._reset_quat).T
            rel_pos = r_inv @ (pose[:3] - self._reset_pos)
            rel_quat = tf.normalize(tf.multiply(tf.conjugate(self._reset_quat), pose[3:]))
            obs["tcp_pose"] = np.concatenate([rel_pos, rel_quat]).astype(np.float32)
        return obs
