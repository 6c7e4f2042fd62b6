"""Typed errors of the robot client and server: callers catch what they can handle, nothing else."""

from __future__ import annotations

from serl.errors import UserError


class RobotError(Exception):
    """Base class of every robot-side error."""


class RobotTimeout(RobotError):
    """The server did not answer within the request's deadline (stalled server or network)."""


class RobotConnectionError(RobotError, UserError):
    """The server cannot be reached (not running, wrong address, connection dropped)."""


class RobotAuthError(RobotError, UserError):
    """The server refused the request's token (HTTP 401)."""


class RobotRejected(RobotError):
    """The server rejected a request as invalid: non-finite, outside the workspace, bad shape."""


class RobotFault(RobotError):
    """The robot is in a fault state; commands are refused until an explicit recovery."""


class RecoveryExhausted(RobotFault):
    """Error recovery was refused: too many recent recoveries, a person must check the robot."""


class RobotServerError(RobotError):
    """The server failed internally (HTTP 5xx) or answered something that is not its API."""


class CameraTimeout(RobotError):
    """No fresh camera frame arrived within the read timeout."""


class HardwareUnavailable(RobotError, UserError):
    """A hardware driver's Python package (pylibfranka, pyrealsense2, pymodbus, cv2) is missing."""
