"""PandaBinRelocation: carry the cube from one bin to the other (forward) and back (backward),
reset-free: a reset moves the arm home but leaves the cube where the last episode left it.

The task (forward or backward) is chosen per episode with `reset(options={"task": ...})`;
`info["success"]` is true while the cube rests inside that task's goal bin. The scene (the
cube) is only placed by the first reset and by `reset(options={"reset_scene": True})`;
`scene_resets` counts those, so a reset-free run can prove nobody reset it.
"""

from __future__ import annotations

from typing import Any, Literal

import mujoco
import numpy as np

from serl.envs.base import ASSETS, MujocoEnv
from serl.envs.pick_cube import ACTION_SCALE, BLOCK_HALF_SIZE, PandaPickCubeEnv

TASKS = ("forward", "backward")
# Bin centres (m, world frame) and the half-extent of the region that counts as "in the bin".
BIN_A = np.array([0.45, 0.13])
BIN_B = np.array([0.45, -0.13])
BIN_INNER_HALF = np.array([0.085, 0.075])
WALL_HEIGHT = 0.025
START_JITTER = 0.03  # metres of random placement around the start bin's centre
REST_SPEED = 0.05  # m/s: a cube slower than this has landed (not falling through the region)


def in_bin(block_pos: np.ndarray, centre: np.ndarray, speed: float = 0.0) -> bool:
    """The cube rests inside the bin at `centre`: within its walls, on its floor, (nearly) still."""
    inside = np.all(np.abs(block_pos[:2] - centre) <= BIN_INNER_HALF)
    return bool(inside and block_pos[2] < BLOCK_HALF_SIZE + 0.01 and speed < REST_SPEED)


class _BinScene(MujocoEnv):
    """Loads the bin scene where PandaPickCubeEnv asks for its own (it sits after it in the
    MRO), so the pick-cube arm, controller and observations are reused unchanged."""

    def __init__(self, xml_path: Any, control_dt: float, physics_dt: float) -> None:
        super().__init__(ASSETS / "bin_relocation.xml", control_dt, physics_dt)


class PandaBinRelocationEnv(PandaPickCubeEnv, _BinScene):
    """Move the cube bin A (+y) -> bin B (-y) (forward) or B -> A (backward), reset-free."""

    def __init__(self, task: Literal["forward", "backward"] = "forward", **kwargs: Any) -> None:
        if task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got {task!r}")
        if kwargs.get("reward_type", "sparse") != "sparse":
            raise ValueError("bin relocation has a sparse reward only")
        super().__init__(**kwargs)
        self.task = task
        self.scene_resets = 0
        self._scene_ready = False

    @property
    def start_bin(self) -> np.ndarray:
        """Centre of the bin the current task starts from."""
        return BIN_A if self.task == "forward" else BIN_B

    @property
    def goal_bin(self) -> np.ndarray:
        """Centre of the bin the current task must bring the cube to."""
        return BIN_B if self.task == "forward" else BIN_A

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Arm home, gripper open; the cube stays put unless the scene is (first) reset.

        options: "task" ("forward" / "backward") for this and later episodes,
        "reset_scene" (bool) to place the cube in the task's start bin.
        """
        options = dict(options or {})
        task = options.get("task", self.task)
        if task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got {task!r}")
        self.task = task
        kept = None
        if self._scene_ready and not options.get("reset_scene", False):
            b = self._block_qpos
            kept = self.data.qpos[b : b + 7].copy()
        super().reset(seed=seed)
        b = self._block_qpos
        if kept is None:
            xy = self.start_bin + self.np_random.uniform(-START_JITTER, START_JITTER, 2)
            kept = np.array([*xy, BLOCK_HALF_SIZE, 1.0, 0.0, 0.0, 0.0])
            self.scene_resets += 1
            self._scene_ready = True
        self.data.qpos[b : b + 7] = kept
        dof = self.model.joint("block").dofadr[0]
        self.data.qvel[dof : dof + 6] = 0.0
        mujoco.mj_forward(self.model, self.data)
        mujoco.mj_step1(self.model, self.data)
        # The lift reference of the pick-cube parent: the table height of a resting cube.
        self._block_z0 = BLOCK_HALF_SIZE
        return self._observation(), self._info()

    def step(
        self, action: np.ndarray
    ) -> tuple[dict[str, np.ndarray], float, bool, bool, dict[str, Any]]:
        """Move as the pick-cube task does; succeed when the cube rests in the goal bin."""
        obs, _, _, truncated, _ = super().step(action)
        info = self._info()
        return obs, float(info["success"]), info["success"], truncated, info

    @property
    def block_speed(self) -> float:
        """Linear speed of the cube (m/s)."""
        dof = self.model.joint("block").dofadr[0]
        return float(np.linalg.norm(self.data.qvel[dof : dof + 3]))

    def _info(self) -> dict[str, Any]:
        block, speed = self.block_pos, self.block_speed
        return {
            "success": in_bin(block, self.goal_bin, speed),
            "task": self.task,
            "block_pos": block,
            "in_bin_a": in_bin(block, BIN_A, speed),
            "in_bin_b": in_bin(block, BIN_B, speed),
        }


class BinRelocationExpert:
    """Scripted pick-and-place into the current task's goal bin (reads privileged state)."""

    CARRY_Z = 0.14  # TCP height while carrying, well above the walls

    def __init__(
        self,
        env: PandaBinRelocationEnv,
        noise: float = 0.02,
        max_speed: float = 0.05,
        seed: int | None = None,
    ) -> None:
        self.env = env
        self.noise = noise
        self.max_speed = max_speed
        self.rng = np.random.default_rng(seed)
        self.phase = "approach"
        self._count = 0

    def reset(self) -> None:
        """Start a new episode."""
        self.phase = "approach"
        self._count = 0

    def _next_phase(self, tcp: np.ndarray, block: np.ndarray, goal: np.ndarray) -> None:
        holding = block[2] > BLOCK_HALF_SIZE + 0.01
        if self.phase in ("carry", "lower") and not holding:
            self.phase = "approach"  # dropped it on the way: pick it up again
        if self.phase == "approach" and np.linalg.norm((tcp - block)[:2]) < 0.01:
            self.phase = "descend"
        elif self.phase == "descend" and np.linalg.norm(tcp - block) < 0.01:
            self.phase, self._count = "close", 0
        elif self.phase == "close":
            self._count += 1
            if self._count >= 6:
                self.phase = "lift"
        elif self.phase == "lift" and tcp[2] > self.CARRY_Z - 0.02:
            self.phase = "carry" if holding else "approach"
        elif self.phase == "carry" and np.linalg.norm(tcp[:2] - goal) < 0.015:
            self.phase = "lower"
        elif self.phase == "lower" and tcp[2] < 0.07:
            self.phase, self._count = "release", 0
        elif self.phase == "release":
            self._count += 1

    def __call__(self, obs: Any = None) -> np.ndarray:
        """Next action in [-1, 1]^4."""
        env = self.env
        block, tcp, goal = env.block_pos, env.tcp_pos, env.goal_bin
        self._next_phase(tcp, block, goal)
        grip = -1.0
        if self.phase == "approach":
            target = np.array([*block[:2], max(block[2] + 0.06, self.CARRY_Z)])
        elif self.phase == "descend":
            target = block - np.array([0.0, 0.0, 0.004])
        elif self.phase in ("close", "lift"):
            target = np.array([*block[:2], self.CARRY_Z]) if self.phase == "lift" else block
            grip = 1.0
        elif self.phase in ("carry", "lower"):
            z = self.CARRY_Z if self.phase == "carry" else 0.06
            target, grip = np.array([*goal, z]), 1.0
        else:
            target = np.array([*goal, self.CARRY_Z]) if self._count > 4 else tcp
        step = target - env.target_pos
        norm = np.linalg.norm(step)
        if norm > self.max_speed:
            step *= self.max_speed / norm
        xyz = step / ACTION_SCALE + self.noise * self.rng.standard_normal(3)
        return np.clip(np.append(xyz, grip), -1.0, 1.0).astype(np.float32)
