"""The safety box: pure functions that turn a measured pose and a raw action into a safe target.

Every target the client sends passes through `clip_to_safety_box`:
  1. NaN/inf action entries become 0 (hold that axis), the rest are clipped to [-1, 1];
  2. the action moves the (box-projected) measured pose by at most `pos_scale` m per axis and
     `rot_scale` rad per roll/pitch/yaw component;
  3. the result is clipped into the box: xyz, and roll/pitch/yaw as *circular* intervals, so a
     roll range around +-pi (the gripper pointing down) needs no special case;
  4. an optional keep-out box (e.g. the wall between two bins) stops the motion where the
     straight segment from the reference would enter it.
Quaternions are [x, y, z, w] and leave normalised.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from serl.robot import transforms as tf


def _vec3(values: object, name: str) -> tuple[float, float, float]:
    arr = np.asarray(values, dtype=np.float64)
    if arr.shape != (3,) or not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be 3 finite numbers, got {values!r}")
    return (float(arr[0]), float(arr[1]), float(arr[2]))


@dataclass(frozen=True)
class SafetyBox:
    """Allowed TCP poses: xyz bounds (m) and circular roll/pitch/yaw intervals (rad, fixed axes).

    An rpy interval may extend past +-pi (e.g. roll in [pi - 0.1, pi + 0.1]); it is read on the
    circle. `keep_out` is an optional (low, high) xyz box inside which targets must not go.
    """

    xyz_low: tuple[float, float, float]
    xyz_high: tuple[float, float, float]
    rpy_low: tuple[float, float, float] = (-np.pi, -np.pi, -np.pi)
    rpy_high: tuple[float, float, float] = (np.pi, np.pi, np.pi)
    keep_out: tuple[tuple[float, float, float], tuple[float, float, float]] | None = field(
        default=None
    )

    def __post_init__(self) -> None:
        for name in ("xyz_low", "xyz_high", "rpy_low", "rpy_high"):
            object.__setattr__(self, name, _vec3(getattr(self, name), name))
        if any(lo > hi for lo, hi in zip(self.xyz_low, self.xyz_high, strict=True)):
            raise ValueError(f"xyz_low {self.xyz_low} must be <= xyz_high {self.xyz_high}")
        spans = np.subtract(self.rpy_high, self.rpy_low)
        if np.any(spans < 0) or np.any(spans > 2 * np.pi):
            raise ValueError(f"rpy intervals must span 0..2pi, got {self.rpy_low}..{self.rpy_high}")
        if self.keep_out is not None:
            low, high = (_vec3(v, "keep_out") for v in self.keep_out)
            object.__setattr__(self, "keep_out", (low, high))

    @classmethod
    def from_limits(cls, low: np.ndarray, high: np.ndarray, **kwargs: object) -> SafetyBox:
        """Box from 6-vectors [x, y, z, roll, pitch, yaw] like the original's ABS_POSE_LIMITs."""
        low, high = np.asarray(low, dtype=np.float64), np.asarray(high, dtype=np.float64)
        return cls(tuple(low[:3]), tuple(high[:3]), tuple(low[3:]), tuple(high[3:]), **kwargs)  # type: ignore[arg-type]

    @property
    def rpy_center(self) -> np.ndarray:
        """Middle of each rpy interval."""
        return (np.asarray(self.rpy_low) + np.asarray(self.rpy_high)) / 2.0

    @property
    def rpy_half_width(self) -> np.ndarray:
        """Half the width of each rpy interval."""
        return (np.asarray(self.rpy_high) - np.asarray(self.rpy_low)) / 2.0

    def contains(self, pos: np.ndarray, quat: np.ndarray, tol: float = 1e-6) -> bool:
        """Whether a pose lies in the box (and outside the keep-out box)."""
        pos = np.asarray(pos, dtype=np.float64)
        if np.any(pos < np.asarray(self.xyz_low) - tol) or np.any(
            pos > np.asarray(self.xyz_high) + tol
        ):
            return False
        offset = np.abs(tf.wrap_angle(tf.to_euler(quat) - self.rpy_center))
        return bool(np.all(offset <= self.rpy_half_width + tol))


class SafeTarget(NamedTuple):
    """A target pose inside the box and what the safety layer had to change to get there."""

    pos: np.ndarray
    quat: np.ndarray
    nonfinite: bool  # some action entries were NaN/inf and were held at 0
    clipped: bool  # the step limit, box or keep-out changed the proposed target


def sanitize_action(action: np.ndarray) -> tuple[np.ndarray, bool]:
    """NaN/inf entries -> 0 (hold still on that axis), the rest clipped to [-1, 1]."""
    a = np.asarray(action, dtype=np.float64)
    finite = np.isfinite(a)
    return np.where(finite, np.clip(np.where(finite, a, 0.0), -1.0, 1.0), 0.0), not finite.all()


def clip_rpy(rpy: np.ndarray, box: SafetyBox) -> np.ndarray:
    """Clip each angle into its circular interval (the result may lie outside (-pi, pi])."""
    center, half = box.rpy_center, box.rpy_half_width
    return center + np.clip(tf.wrap_angle(np.asarray(rpy) - center), -half, half)


def clip_pose(pos: np.ndarray, quat: np.ndarray, box: SafetyBox) -> tuple[np.ndarray, np.ndarray]:
    """The nearest pose (per coordinate) inside the box; keep-out is not applied here."""
    pos = np.clip(np.asarray(pos, dtype=np.float64), box.xyz_low, box.xyz_high)
    return pos, tf.from_euler(clip_rpy(tf.to_euler(quat), box))


def segment_entry(
    start: np.ndarray, end: np.ndarray, low: np.ndarray, high: np.ndarray
) -> np.ndarray | None:
    """First point where the segment start->end enters the box [low, high], or None (slab test)."""
    t_min, t_max = 0.0, 1.0
    delta = end - start
    for i in range(3):
        if abs(delta[i]) < 1e-12:
            if start[i] < low[i] or start[i] > high[i]:
                return None
            continue
        t1, t2 = sorted(((low[i] - start[i]) / delta[i], (high[i] - start[i]) / delta[i]))
        t_min, t_max = max(t_min, t1), min(t_max, t2)
        if t_min > t_max:
            return None
    return start + t_min * delta


def clip_to_safety_box(
    pos: np.ndarray,
    quat: np.ndarray,
    action: np.ndarray,
    box: SafetyBox,
    pos_scale: float,
    rot_scale: float,
) -> SafeTarget:
    """Target pose for a raw 6-D action [dx, dy, dz, droll, dpitch, dyaw] from the measured pose.

    The rotation part acts in the base frame about the TCP, like the original's
    `Rotation.from_euler("xyz", a * scale) * current`.
    """
    pos = np.asarray(pos, dtype=np.float64)
    if pos.shape != (3,) or not np.all(np.isfinite(pos)) or not np.all(np.isfinite(quat)):
        raise ValueError(f"measured pose must be finite, got {pos}, {quat}")
    a, nonfinite = sanitize_action(np.asarray(action, dtype=np.float64).reshape(6))
    # The reference is the measured pose projected into the box: a robot pushed outside the box
    # is brought back, not sent further out.
    ref_pos, ref_quat = clip_pose(pos, quat, box)
    ref_rpy = clip_rpy(tf.to_euler(ref_quat), box)

    proposed_pos = ref_pos + pos_scale * a[:3]
    proposed_quat = tf.multiply(tf.from_euler(rot_scale * a[3:]), ref_quat)

    # Step limit, then box: both intervals contain the reference, so the result lies in both.
    step_pos = np.clip(proposed_pos, ref_pos - pos_scale, ref_pos + pos_scale)
    new_pos = np.clip(step_pos, box.xyz_low, box.xyz_high)
    d_rpy = tf.wrap_angle(tf.to_euler(proposed_quat) - ref_rpy)
    step_rpy = ref_rpy + np.clip(d_rpy, -rot_scale, rot_scale)
    new_rpy = clip_rpy(step_rpy, box)

    if box.keep_out is not None:
        entry = segment_entry(ref_pos, new_pos, np.asarray(box.keep_out[0]), box.keep_out[1])
        if entry is not None:
            new_pos = entry

    clipped = not (
        np.allclose(new_pos, proposed_pos, atol=1e-9)
        and np.allclose(tf.wrap_angle(new_rpy - ref_rpy), d_rpy, atol=1e-9)
    )
    return SafeTarget(new_pos, tf.from_euler(new_rpy), nonfinite, clipped)
