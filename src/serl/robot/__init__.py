"""Real-robot infrastructure: robot server, FrankaEnv client, cameras, teleop devices.

Client side (numpy + httpx): FrankaEnv, RobotClient, the safety box, cameras, task configs.
Server side (`serl robot-server`): serl.robot.server with backends in serl.robot.backends.
Quaternions are scalar-last [x, y, z, w] throughout.
"""

from serl.robot.client import RobotClient, ServerCameraSource
from serl.robot.env import CameraSpec, FrankaEnv, FrankaEnvConfig
from serl.robot.errors import (
    CameraTimeout,
    HardwareUnavailable,
    RecoveryExhausted,
    RobotAuthError,
    RobotConnectionError,
    RobotError,
    RobotFault,
    RobotRejected,
    RobotServerError,
    RobotTimeout,
)
from serl.robot.safety import SafetyBox, clip_to_safety_box
from serl.robot.state import GripperState, RobotState
from serl.robot.tasks import TASKS, make_franka_env, task_config

__all__ = [
    "TASKS",
    "CameraSpec",
    "CameraTimeout",
    "FrankaEnv",
    "FrankaEnvConfig",
    "GripperState",
    "HardwareUnavailable",
    "RecoveryExhausted",
    "RobotAuthError",
    "RobotClient",
    "RobotConnectionError",
    "RobotError",
    "RobotFault",
    "RobotRejected",
    "RobotServerError",
    "RobotState",
    "RobotTimeout",
    "SafetyBox",
    "ServerCameraSource",
    "clip_to_safety_box",
    "make_franka_env",
    "task_config",
]
