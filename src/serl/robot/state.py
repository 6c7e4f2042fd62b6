"""The robot's state as one record: what one HTTP call returns, as numpy arrays on the client."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class GripperState:
    """Gripper reading: closure 0 (open) .. 1 (closed), finger width (m), object held."""

    closure: float = 0.0
    width: float = 0.08
    grasped: bool = False


@dataclass(frozen=True)
class RobotState:
    """One consistent snapshot of arm and gripper. Frames: robot base; quaternion [x, y, z, w]."""

    position: np.ndarray  # TCP position (m)
    quaternion: np.ndarray  # TCP orientation, unit, [x, y, z, w]
    velocity: np.ndarray  # TCP twist [vx, vy, vz, wx, wy, wz] (m/s, rad/s)
    wrench: np.ndarray  # external wrench at the TCP [fx, fy, fz, tx, ty, tz] (N, Nm)
    q: np.ndarray  # joint angles (rad)
    dq: np.ndarray  # joint velocities (rad/s)
    gripper: GripperState = field(default_factory=GripperState)
    faults: tuple[str, ...] = ()
    watchdog_tripped: bool = False
    mode: str = "idle"
    time: float = 0.0  # server clock (s)
    seq: int = 0  # increases with every state the server produces

    @property
    def pose(self) -> np.ndarray:
        """[x, y, z, qx, qy, qz, qw]."""
        return np.concatenate([self.position, self.quaternion])

    def to_json(self) -> dict[str, object]:
        """JSON-friendly dict (the server's response body)."""
        return {
            "position": self.position.tolist(),
            "quaternion": self.quaternion.tolist(),
            "velocity": self.velocity.tolist(),
            "wrench": self.wrench.tolist(),
            "q": self.q.tolist(),
            "dq": self.dq.tolist(),
            "gripper": {
                "closure": self.gripper.closure,
                "width": self.gripper.width,
                "grasped": self.gripper.grasped,
            },
            "faults": list(self.faults),
            "watchdog_tripped": self.watchdog_tripped,
            "mode": self.mode,
            "time": self.time,
            "seq": self.seq,
        }

    @classmethod
    def from_json(cls, body: dict[str, object]) -> RobotState:
        """Parse and check a server response; raises ValueError on anything malformed."""
        shapes = {"position": 3, "quaternion": 4, "velocity": 6, "wrench": 6, "q": 7, "dq": 7}
        arrays = {}
        for key, n in shapes.items():
            arr = np.asarray(body[key], dtype=np.float64)
            if arr.shape != (n,) or not np.all(np.isfinite(arr)):
                raise ValueError(
                    f"state field {key!r} must be {n} finite numbers, got {body[key]!r}"
                )
            arrays[key] = arr
        g = body["gripper"]
        if not isinstance(g, dict):
            raise ValueError(f"state field 'gripper' must be an object, got {g!r}")
        return cls(
            **arrays,
            gripper=GripperState(float(g["closure"]), float(g["width"]), bool(g["grasped"])),
            faults=tuple(str(f) for f in body.get("faults", ())),  # type: ignore[union-attr]
            watchdog_tripped=bool(body.get("watchdog_tripped", False)),
            mode=str(body.get("mode", "idle")),
            time=float(body.get("time", 0.0)),  # type: ignore[arg-type]
            seq=int(body.get("seq", 0)),  # type: ignore[call-overload]
        )
