"""RelativeFrame: actions in the end-effector frame, proprio relative to the reset pose."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from serl.robot import transforms as tf
from serl.wrappers import RelativeFrame


class PoseEnv(gym.Env):
    """Applies base-frame position deltas to a TCP pose held at a fixed orientation."""

    def __init__(self, quat: np.ndarray) -> None:
        self.quat = quat
        self.pos = np.zeros(3)
        self.actions: list[np.ndarray] = []
        self.action_space = spaces.Box(-1, 1, (7,), np.float32)
        self.observation_space = spaces.Dict(
            {
                "tcp_pose": spaces.Box(-np.inf, np.inf, (7,), np.float32),
                "tcp_vel": spaces.Box(-np.inf, np.inf, (6,), np.float32),
            }
        )

    def _obs(self, vel: np.ndarray) -> dict[str, np.ndarray]:
        return {
            "tcp_pose": np.concatenate([self.pos, self.quat]).astype(np.float32),
            "tcp_vel": vel.astype(np.float32),
        }

    def reset(self, **kwargs: Any) -> tuple[dict[str, np.ndarray], dict]:
        self.pos = np.array([0.5, 0.1, 0.2])
        return self._obs(np.zeros(6)), {}

    def step(self, action: np.ndarray) -> tuple[dict[str, np.ndarray], float, bool, bool, dict]:
        self.actions.append(np.asarray(action))
        self.pos = self.pos + 0.01 * np.asarray(action[:3])
        info = {"intervene_action": np.asarray(action)}
        return self._obs(np.concatenate([action[:3], action[3:6]])), 0.0, False, False, info


def test_end_effector_actions_map_through_the_tcp_rotation() -> None:
    down = tf.from_euler([np.pi, 0.0, np.pi / 2])  # pointing down, yawed 90 degrees
    env = RelativeFrame(PoseEnv(down))
    obs, _ = env.reset()
    np.testing.assert_allclose(obs["tcp_pose"], [0, 0, 0, 0, 0, 0, 1], atol=1e-6)
    action = np.array([0.0, 0.0, 1.0, 0.0, 0.0, 0.3, 0.7], dtype=np.float32)
    obs, _, _, _, info = env.step(action)
    base = env.unwrapped.actions[-1]
    # the gripper's +z points down in the world; the gripper entry passes through unchanged
    np.testing.assert_allclose(base[:3], [0, 0, -1], atol=1e-6)
    np.testing.assert_allclose(base[3:6], [0, 0, -0.3], atol=1e-6)
    assert base[6] == np.float32(0.7)
    # proprio comes back in the episode frame: 1 cm along the gripper's own z
    np.testing.assert_allclose(obs["tcp_pose"][:3], [0, 0, 0.01], atol=1e-6)
    np.testing.assert_allclose(obs["tcp_vel"], action[:6], atol=1e-6)
    # the executed (base-frame) intervention is reported in the policy's frame
    np.testing.assert_allclose(info["intervene_action"], action, atol=1e-6)


def test_round_trip_of_the_action_mapping() -> None:
    env = RelativeFrame(PoseEnv(tf.from_euler([0.3, -0.2, 1.0])))
    env.reset()
    a = np.random.default_rng(0).uniform(-1, 1, 7).astype(np.float32)
    np.testing.assert_allclose(env.to_end_effector(env.to_base(a)), a, atol=1e-6)
