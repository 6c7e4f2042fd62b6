"""FrankaEnv: a gymnasium env that drives the robot server at a fixed rate (10 Hz by default).

Each step makes ONE HTTP round trip: the safety-boxed pose target goes out with the gripper
command and a `settle_s` that makes the server answer at the next control tick, so the state
that comes back is the next observation. The loop keeps a drift-free tick schedule, records the
achieved period of every step and flags overruns (`info["timing"]`). Its times are the robot's
clock: a sim server run faster than real time (`serl robot-server --time-scale N`) says so in
/health, and the loop then runs N times as fast in wall time, still at `hz` in robot time.

Observations (dict of Box): tcp_pose [x, y, z, qx, qy, qz, qw] (quaternion scalar-last),
tcp_vel [v, w], tcp_force, tcp_torque, gripper_pos (0 open .. 1 closed), and one uint8 image per
camera. Actions in [-1, 1]: [dx, dy, dz, droll, dpitch, dyaw] scaled by action_scale, then
gripper (>= 0.5 closes, <= -0.5 opens, between: no change) when the task uses the gripper.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from serl.robot import transforms as tf
from serl.robot.cameras import Camera, OpenCVSource, RealSenseSource, crop_and_resize
from serl.robot.client import RobotClient, ServerCameraSource
from serl.robot.errors import RobotFault
from serl.robot.impedance import PRECISION, ImpedanceParams
from serl.robot.safety import SafetyBox, clip_to_safety_box
from serl.robot.state import RobotState

GRIPPER_THRESHOLD = 0.5


@dataclass(frozen=True)
class CameraSpec:
    """Where a camera's frames come from and how to crop them (rows top:bottom, cols left:right)."""

    kind: Literal["server", "realsense", "opencv"] = "server"
    device: str = (
        ""  # server: camera name (default: the key); realsense: serial; opencv: index/path
    )
    crop: tuple[int, int, int, int] | None = None
    width: int = 640
    height: int = 480
    fps: int = 30


@dataclass(frozen=True)
class FrankaEnvConfig:
    """Everything a task sets (the original's per-task config, with explicit units).

    Poses are [x, y, z, roll, pitch, yaw] (m, rad, fixed axes) in the robot base frame.
    """

    server_url: str = "http://127.0.0.1:5000"
    token: str | None = None
    hz: float = 10.0
    max_episode_steps: int = 100
    action_scale: tuple[float, float, float] = (0.02, 0.1, 1.0)  # m, rad, gripper
    use_gripper: bool = True
    gripper_at_reset: float = 0.0  # closure commanded at reset (1: keep holding the part)
    target_pose: tuple[float, ...] = (0.5, 0.0, 0.2, np.pi, 0.0, 0.0)
    reward_threshold: tuple[float, ...] = (0.01, 0.01, 0.01, 0.2, 0.2, 0.2)
    reward: Literal["pose", "none"] = "pose"  # "none": a learned-reward wrapper scores it
    reset_pose: tuple[float, ...] = (0.5, 0.0, 0.3, np.pi, 0.0, 0.0)
    random_reset: bool = False
    random_xy_range: float = 0.0
    random_rz_range: float = 0.0
    safety_box: SafetyBox = field(
        default_factory=lambda: SafetyBox(
            (0.3, -0.2, 0.05), (0.7, 0.2, 0.4), (np.pi - 0.3, -0.3, -0.5), (np.pi + 0.3, 0.3, 0.5)
        )
    )
    joint_reset_period: int = 200  # episodes between joint resets (0: never)
    reset_duration_s: float = 1.5
    # robot seconds the arm then rests at the reset pose: a move ends once the arm is within
    # 3 mm, and without a rest an episode starts from wherever latency let it converge to
    reset_settle_s: float = 0.3
    compliance: ImpedanceParams = field(default_factory=ImpedanceParams)
    precision: ImpedanceParams = PRECISION
    cameras: dict[str, CameraSpec] = field(default_factory=dict)
    image_size: tuple[int, int] = (128, 128)
    http_timeout_s: float = 0.5
    camera_timeout_s: float = 1.0
    max_recovery_attempts: int = 2
    overrun_tolerance: float = 0.1  # a step is an overrun when its period exceeds (1 + tol) / hz

    def __post_init__(self) -> None:
        if not self.hz > 0 or self.max_episode_steps < 1:
            raise ValueError("hz must be > 0 and max_episode_steps >= 1")
        for name in ("target_pose", "reward_threshold", "reset_pose"):
            v = np.asarray(getattr(self, name), dtype=np.float64)
            if v.shape != (6,) or not np.all(np.isfinite(v)):
                raise ValueError(f"{name} must be 6 finite numbers, got {getattr(self, name)}")


def pose_reached(
    pos: np.ndarray, quat: np.ndarray, target: np.ndarray, threshold: np.ndarray
) -> bool:
    """Sparse success: every |xyz| and circular |rpy| difference below its threshold."""
    d_pos = np.abs(pos - target[:3])
    d_rpy = np.abs(tf.wrap_angle(tf.to_euler(quat) - target[3:]))
    return bool(np.all(d_pos < threshold[:3]) and np.all(d_rpy < threshold[3:]))


def gripper_command(value: float, current: float) -> float:
    """Binary gripper: >= 0.5 closes (1), <= -0.5 opens (0), otherwise keep the current command."""
    if not np.isfinite(value):
        return current
    if value >= GRIPPER_THRESHOLD:
        return 1.0
    if value <= -GRIPPER_THRESHOLD:
        return 0.0
    return current


def make_camera(
    name: str, spec: CameraSpec, config: FrankaEnvConfig, time_scale: float = 1.0
) -> Camera:
    """Build (not start) the camera a spec describes (`time_scale`: the server's clock rate)."""
    if spec.kind == "server":
        source = ServerCameraSource(
            config.server_url, spec.device or name, config.token, timeout=config.camera_timeout_s
        )
    elif spec.kind == "realsense":
        source = RealSenseSource(spec.device, spec.width, spec.height, spec.fps)
    elif spec.kind == "opencv":
        device: int | str = int(spec.device) if spec.device.isdigit() else spec.device
        source = OpenCVSource(device, spec.width, spec.height, spec.fps)
    else:
        raise ValueError(f"unknown camera kind {spec.kind!r}")
    # Fresh enough: within two control periods (robot time, so wall time shrinks with the scale).
    return Camera(source, name, max_age_s=max(0.25, 2.0 / config.hz) / time_scale)


class FrankaEnv(gym.Env):
    """A Franka task over the robot server's HTTP API (real arm or sim backend alike)."""

    # one_robot: its episodes drive one arm, so nothing else may step it meanwhile (a trainer
    # evaluates between its episodes, not beside them) and an episode must not pause midway
    metadata: ClassVar[dict[str, Any]] = {"render_modes": [], "one_robot": True}

    def __init__(
        self,
        config: FrankaEnvConfig | None = None,
        client: RobotClient | None = None,
        cameras: dict[str, Camera] | None = None,
    ) -> None:
        self.config = config = config or FrankaEnvConfig()
        self.client = client or RobotClient(
            config.server_url, config.token, timeout=config.http_timeout_s
        )
        self._owns_client = client is None
        # Robot seconds per wall second: 1 for a real arm, N for a sim server at --time-scale N.
        self.time_scale = float(self.client.health().get("time_scale", 1.0))
        if cameras is None:
            cameras = {
                n: make_camera(n, s, config, self.time_scale) for n, s in config.cameras.items()
            }
            for cam in cameras.values():
                cam.start()
        self.cameras = cameras
        self._box = config.safety_box
        self._target = np.asarray(config.target_pose, dtype=np.float64)
        self._threshold = np.asarray(config.reward_threshold, dtype=np.float64)

        self.action_space = spaces.Box(
            -1.0, 1.0, shape=(7 if config.use_gripper else 6,), dtype=np.float32
        )
        obs = {
            "tcp_pose": spaces.Box(-np.inf, np.inf, shape=(7,), dtype=np.float32),
            "tcp_vel": spaces.Box(-np.inf, np.inf, shape=(6,), dtype=np.float32),
            "tcp_force": spaces.Box(-np.inf, np.inf, shape=(3,), dtype=np.float32),
            "tcp_torque": spaces.Box(-np.inf, np.inf, shape=(3,), dtype=np.float32),
            "gripper_pos": spaces.Box(0.0, 1.0, shape=(1,), dtype=np.float32),
        }
        for name in self.cameras:
            obs[name] = spaces.Box(0, 255, shape=(*config.image_size, 3), dtype=np.uint8)
        self.observation_space = spaces.Dict(obs)

        self._state: RobotState | None = None
        self._grip = float(config.gripper_at_reset)
        self._steps = 0
        self._episodes = 0
        self._tick = self._clock()
        self._last_obs_t = self._tick
        self._latency = 0.002  # running estimate of one command round trip (s)
        self.timings: deque[dict[str, float]] = deque(maxlen=10_000)

    # -- gymnasium API -------------------------------------------------------------------------
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict]:
        """Recover if faulted, (periodically) joint-reset, move to the (randomised) reset pose."""
        super().reset(seed=seed)
        options = options or {}
        cfg = self.config
        self._recover_if_faulted()
        self.client.set_params(**cfg.precision.to_dict())
        self._episodes += 1
        periodic = cfg.joint_reset_period > 0 and self._episodes % cfg.joint_reset_period == 0
        if options.get("joint_reset", False) or periodic:
            self.client.joint_reset()
        self._grip = float(cfg.gripper_at_reset)
        self.client.gripper("move", self._grip)
        pos, quat = self.reset_pose()
        self.client.move(pos, quat, cfg.reset_duration_s)
        self.client.set_params(**cfg.compliance.to_dict())
        # rest under the episode's gains (their equilibrium differs from the move's by ~0.5 mm)
        self._state = self.client.command(pos, quat, settle_s=cfg.reset_settle_s)
        self._steps = 0
        self._tick = self._last_obs_t = self._clock()
        return self._observation(self._state), {"success": False, "robot_time_s": self._state.time}

    def reset_pose(self) -> tuple[np.ndarray, np.ndarray]:
        """The configured reset pose, randomised in xy and yaw from the env's own RNG."""
        cfg = self.config
        pose = np.asarray(cfg.reset_pose, dtype=np.float64).copy()
        if cfg.random_reset:
            pose[:2] += self.np_random.uniform(-cfg.random_xy_range, cfg.random_xy_range, 2)
            pose[5] += self.np_random.uniform(-cfg.random_rz_range, cfg.random_rz_range)
        return pose[:3], tf.from_euler(pose[3:])

    def step(self, action: np.ndarray) -> tuple[dict[str, np.ndarray], float, bool, bool, dict]:
        """Safety-box the action, send it, and get the next tick's state in the same call."""
        if self._state is None:
            raise RuntimeError("call reset() before step()")
        cfg = self.config
        action = np.asarray(action, dtype=np.float64).reshape(-1)
        if action.shape != self.action_space.shape:
            raise ValueError(
                f"action must have shape {self.action_space.shape}, got {action.shape}"
            )
        safe = clip_to_safety_box(
            self._state.position,
            self._state.quaternion,
            action[:6],
            self._box,
            cfg.action_scale[0],
            cfg.action_scale[1],
        )
        grip = None
        if cfg.use_gripper:
            new = gripper_command(float(action[6]) * cfg.action_scale[2], self._grip)
            grip, self._grip = (new if new != self._grip else None), new

        period = 1.0 / cfg.hz
        sent = self._clock()
        deadline = self._tick + period
        # never more than a period: a sim catching up on a busy machine runs its clock ahead of
        # ours for a moment, and the round trip (so the estimate) can then read negative
        settle = min(period, max(0.0, deadline - sent - max(self._latency, 0.0)))
        try:
            self._state = self.client.command(safe.pos, safe.quat, grip, settle_s=settle)
        except RobotFault as e:
            # A fault ends the episode (not as a failure of the policy); reset() recovers.
            self._steps += 1
            info = {"success": False, "fault": str(e), "robot_time_s": self._state.time}
            return self._observation(self._state), 0.0, False, True, info
        received = self._clock()
        round_trip = received - sent - settle
        self._latency = 0.9 * self._latency + 0.1 * round_trip
        achieved = received - self._last_obs_t
        overrun = achieved > period * (1.0 + cfg.overrun_tolerance)
        # Drift-free schedule; after an overrun start a new schedule instead of rushing.
        self._tick = received if overrun else deadline
        self._last_obs_t = received
        timing = {
            "period_s": achieved,
            "round_trip_s": round_trip,
            "settle_s": settle,
            "overrun": overrun,
        }
        self.timings.append(timing)

        self._steps += 1
        obs = self._observation(self._state)
        success = cfg.reward == "pose" and pose_reached(
            self._state.position, self._state.quaternion, self._target, self._threshold
        )
        truncated = self._steps >= cfg.max_episode_steps and not success
        info = {
            "success": success,
            "robot_time_s": self._state.time,  # the robot's clock as this step's state was read
            "timing": timing,
            "safety_clipped": safe.clipped,
            "nonfinite_action": safe.nonfinite,
        }
        return obs, float(success), success, truncated, info

    def close(self) -> None:
        """Hold the arm, stop the cameras, close the session."""
        for cam in self.cameras.values():
            cam.close()
        try:
            self.client.hold()
        except Exception:
            pass
        if self._owns_client:
            self.client.close()
        super().close()

    # -- internals ----------------------------------------------------------------------------
    def _clock(self) -> float:
        """The loop's time (s): the wall clock run at the server's time scale."""
        return time.monotonic() * self.time_scale

    def _recover_if_faulted(self) -> None:
        state = self.client.state()
        attempts = 0
        while state.faults:
            if attempts >= self.config.max_recovery_attempts:
                raise RobotFault(
                    f"robot still faulted after {attempts} recoveries: {', '.join(state.faults)}"
                )
            self.client.recover()  # RecoveryExhausted propagates: a person must look
            attempts += 1
            state = self.client.state()

    def _observation(self, s: RobotState) -> dict[str, np.ndarray]:
        obs = {
            "tcp_pose": s.pose.astype(np.float32),
            "tcp_vel": s.velocity.astype(np.float32),
            "tcp_force": s.wrench[:3].astype(np.float32),
            "tcp_torque": s.wrench[3:].astype(np.float32),
            "gripper_pos": np.array([s.gripper.closure], dtype=np.float32),
        }
        for name, cam in self.cameras.items():
            spec = self.config.cameras.get(name, CameraSpec())
            frame = cam.read(timeout=self.config.camera_timeout_s)
            obs[name] = crop_and_resize(frame.image, spec.crop, self.config.image_size)
        return obs
