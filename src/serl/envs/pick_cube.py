"""PandaPickCube: lift a 4 cm cube with the simulated Franka Panda, from state or cameras."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import mujoco
import numpy as np
from gymnasium import spaces

from serl.envs.base import ASSETS, MujocoEnv
from serl.envs.controllers import OpspaceGains, opspace_torques

HOME_QPOS = np.array([0.0, -0.785, 0.0, -2.35, 0.0, 1.57, np.pi / 4])
# Bounds of the commanded TCP target (m) and of the cube's spawn area on the table.
TARGET_LOW = np.array([0.2, -0.3, 0.0])
TARGET_HIGH = np.array([0.6, 0.3, 0.5])
BLOCK_XY_LOW = np.array([0.25, -0.25])
BLOCK_XY_HIGH = np.array([0.55, 0.25])
BLOCK_HALF_SIZE = 0.02
ACTION_SCALE = 0.1  # metres the target moves per unit action and control step
FINGER_OPEN = 0.04  # mean finger travel (m) when fully open
SUCCESS_LIFT = 0.1  # metres above the cube's start height that count as lifted
DENSE_LIFT = 0.2  # lift height at which the dense reward's lift term saturates
POINTING_DOWN = np.array([0.0, 1.0, 0.0, 0.0])  # wxyz: the gripper's z axis along -world z

PROPRIO_KEYS = ("tcp_pos", "tcp_vel", "gripper_pos")
CAMERAS = ("front", "wrist")


def dense_reward(block_pos: np.ndarray, tcp_pos: np.ndarray, block_z0: float) -> float:
    """The original's shaped reward in [0, 1]: closeness to the cube plus how high it is lifted."""
    closeness = np.exp(-20.0 * np.linalg.norm(block_pos - tcp_pos))
    lift = np.clip((block_pos[2] - block_z0) / DENSE_LIFT, 0.0, 1.0)
    return float(0.3 * closeness + 0.7 * lift)


class PandaPickCubeEnv(MujocoEnv):
    """Pick up the cube: actions move the TCP target by 0.1*[dx, dy, dz] m and change the grip."""

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["rgb_array"], "render_fps": 50}

    def __init__(
        self,
        image_obs: bool = False,
        reward_type: Literal["dense", "sparse"] = "sparse",
        image_size: int | tuple[int, int] = 128,
        render_mode: Literal["rgb_array"] | None = None,
        render_size: int = 256,
        control_dt: float = 0.02,
        physics_dt: float = 0.002,
    ) -> None:
        if reward_type not in ("dense", "sparse"):
            raise ValueError(f"reward_type must be 'dense' or 'sparse', got {reward_type!r}")
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        super().__init__(ASSETS / "pick_cube.xml", control_dt, physics_dt)
        self.image_obs = image_obs
        self.reward_type = reward_type
        self.image_hw = (image_size, image_size) if isinstance(image_size, int) else image_size
        self.render_mode = render_mode
        self.render_size = render_size

        model = self.model
        arm_dofs = [model.joint(f"joint{i}").dofadr[0] for i in range(1, 8)]
        arm_qpos = [model.joint(f"joint{i}").qposadr[0] for i in range(1, 8)]
        if arm_dofs != arm_qpos or arm_dofs != list(range(arm_dofs[0], arm_dofs[0] + 7)):
            raise ValueError("the arm's joints must be the model's first contiguous hinge block")
        self._arm = slice(arm_dofs[0], arm_dofs[0] + 7)
        self._finger_qpos = np.array(
            [model.joint(n).qposadr[0] for n in ("finger_left", "finger_right")]
        )
        self._block_qpos = model.joint("block").qposadr[0]
        self._pinch = model.site("pinch").id
        self._block = model.body("block").id
        self._gripper_act = model.actuator("gripper").id
        self._torque_limits = model.actuator_ctrlrange[:7].copy()
        self._gains = OpspaceGains()
        self._target_pos = np.zeros(3)
        self._grip_cmd = 0.0
        self._block_z0 = BLOCK_HALF_SIZE

        self.action_space = spaces.Box(-1.0, 1.0, shape=(4,), dtype=np.float32)
        obs_spaces: dict[str, spaces.Space] = {
            "tcp_pos": spaces.Box(-np.inf, np.inf, shape=(3,), dtype=np.float32),
            "tcp_vel": spaces.Box(-np.inf, np.inf, shape=(3,), dtype=np.float32),
            "gripper_pos": spaces.Box(0.0, 1.0, shape=(1,), dtype=np.float32),
        }
        if image_obs:
            for cam in CAMERAS:
                obs_spaces[cam] = spaces.Box(0, 255, shape=(*self.image_hw, 3), dtype=np.uint8)
        else:
            obs_spaces["block_pos"] = spaces.Box(-np.inf, np.inf, shape=(3,), dtype=np.float32)
        self.observation_space = spaces.Dict(obs_spaces)

    # -- privileged state (for scripted experts, rewards and tests) --------------------------
    @property
    def tcp_pos(self) -> np.ndarray:
        """Position of the pinch point between the fingers (m, world frame)."""
        return self.data.site_xpos[self._pinch].copy()

    @property
    def tcp_velocity(self) -> np.ndarray:
        """Linear velocity of the pinch point (m/s, world frame)."""
        return self._tcp_velocity()

    @property
    def block_pos(self) -> np.ndarray:
        """Position of the cube's centre (m, world frame)."""
        return self.data.qpos[self._block_qpos : self._block_qpos + 3].copy()

    @property
    def target_pos(self) -> np.ndarray:
        """The commanded TCP target that actions move."""
        return self._target_pos.copy()

    @property
    def gripper_pos(self) -> float:
        """Measured finger closure: 0 fully open .. 1 fully closed."""
        opening = self.data.qpos[self._finger_qpos].mean()
        return float(np.clip(1.0 - opening / FINGER_OPEN, 0.0, 1.0))

    @property
    def block_start_height(self) -> float:
        """Height of the cube's centre at reset, the reference for lift and success."""
        return self._block_z0

    # -- gymnasium API ------------------------------------------------------------------------
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Arm at home with the gripper open; the cube at a random spot drawn from the env's RNG."""
        super().reset(seed=seed)
        mujoco.mj_resetData(self.model, self.data)
        self.data.qpos[self._arm] = HOME_QPOS
        self.data.qpos[self._finger_qpos] = FINGER_OPEN
        block_xy = self.np_random.uniform(BLOCK_XY_LOW, BLOCK_XY_HIGH)
        b = self._block_qpos
        self.data.qpos[b : b + 3] = (*block_xy, BLOCK_HALF_SIZE)
        self.data.qpos[b + 3 : b + 7] = (1.0, 0.0, 0.0, 0.0)
        mujoco.mj_forward(self.model, self.data)
        self._block_z0 = BLOCK_HALF_SIZE
        self._target_pos = self.tcp_pos
        self._grip_cmd = 0.0
        self.data.ctrl[self._gripper_act] = FINGER_OPEN
        self.data.mocap_pos[0] = self._target_pos
        # State is kept "step1-fresh": kinematics and velocities match qpos/qvel between steps.
        mujoco.mj_step1(self.model, self.data)
        return self._observation(), {"success": False}

    def step(
        self, action: np.ndarray
    ) -> tuple[dict[str, np.ndarray], float, bool, bool, dict[str, Any]]:
        """Move the target, update the grip command and simulate one control period."""
        action = np.asarray(action, dtype=np.float64)
        if action.shape != (4,):
            raise ValueError(f"action must have shape (4,), got {action.shape}")
        if not np.all(np.isfinite(action)):
            raise ValueError(f"action must be finite, got {action}")
        action = np.clip(action, -1.0, 1.0)
        self._target_pos = np.clip(
            self._target_pos + ACTION_SCALE * action[:3], TARGET_LOW, TARGET_HIGH
        )
        self._grip_cmd = float(np.clip(self._grip_cmd + action[3], 0.0, 1.0))
        self.data.ctrl[self._gripper_act] = FINGER_OPEN * (1.0 - self._grip_cmd)
        self.data.mocap_pos[0] = self._target_pos
        self._simulate()

        block_pos = self.block_pos
        success = bool(block_pos[2] - self._block_z0 >= SUCCESS_LIFT)
        if self.reward_type == "dense":
            reward, terminated = dense_reward(block_pos, self.tcp_pos, self._block_z0), False
        else:
            reward, terminated = float(success), success
        return self._observation(), reward, terminated, False, {"success": success}

    def render(self) -> np.ndarray | None:
        """Front and wrist views side by side, for videos."""
        if self.render_mode != "rgb_array":
            return None
        size = self.render_size
        return np.concatenate([self.render_camera(c, size, size) for c in CAMERAS], axis=1)

    # -- internals ----------------------------------------------------------------------------
    def _simulate(self) -> None:
        model, data = self.model, self.data
        for _ in range(self.n_substeps):
            tau = opspace_torques(
                model,
                data,
                self._pinch,
                self._arm,
                self._target_pos,
                POINTING_DOWN,
                HOME_QPOS,
                self._gains,
            )
            data.ctrl[:7] = np.clip(tau, self._torque_limits[:, 0], self._torque_limits[:, 1])
            mujoco.mj_step2(model, data)
            mujoco.mj_step1(model, data)

    def _tcp_velocity(self) -> np.ndarray:
        vel = np.zeros(6)
        mujoco.mj_objectVelocity(
            self.model, self.data, mujoco.mjtObj.mjOBJ_SITE, self._pinch, vel, 0
        )
        return vel[3:]

    def _observation(self) -> dict[str, np.ndarray]:
        obs = {
            "tcp_pos": self.tcp_pos.astype(np.float32),
            "tcp_vel": self._tcp_velocity().astype(np.float32),
            "gripper_pos": np.array([self.gripper_pos], dtype=np.float32),
        }
        if self.image_obs:
            for cam in CAMERAS:
                obs[cam] = self.render_camera(cam, *self.image_hw)
        else:
            obs["block_pos"] = self.block_pos.astype(np.float32)
        return obs
