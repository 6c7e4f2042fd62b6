"""Rotation helpers in numpy. Quaternions are ALWAYS scalar-last [x, y, z, w] (scipy's order).

Euler angles are roll-pitch-yaw about the fixed base axes x, y, z (scipy's lowercase "xyz"):
R = Rz(yaw) @ Ry(pitch) @ Rx(roll). MuJoCo stores quaternions scalar-first; convert at that
boundary only, with `from_wxyz` / `to_wxyz`.
"""

from __future__ import annotations

import numpy as np

IDENTITY = np.array([0.0, 0.0, 0.0, 1.0])


def normalize(quat: np.ndarray) -> np.ndarray:
    """Unit quaternion with w >= 0 (one canonical sign, so equal rotations compare equal)."""
    q = np.asarray(quat, dtype=np.float64)
    norm = np.linalg.norm(q)
    if not np.isfinite(norm) or norm < 1e-12:
        raise ValueError(f"cannot normalise quaternion {q}")
    q = q / norm
    return -q if q[3] < 0.0 else q


def from_wxyz(quat_wxyz: np.ndarray) -> np.ndarray:
    """MuJoCo's scalar-first order to ours."""
    w, x, y, z = quat_wxyz
    return np.array([x, y, z, w], dtype=np.float64)


def to_wxyz(quat: np.ndarray) -> np.ndarray:
    """Ours to MuJoCo's scalar-first order."""
    x, y, z, w = quat
    return np.array([w, x, y, z], dtype=np.float64)


def multiply(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hamilton product a * b (apply b first, then a)."""
    ax, ay, az, aw = a
    bx, by, bz, bw = b
    return np.array(
        [
            aw * bx + ax * bw + ay * bz - az * by,
            aw * by - ax * bz + ay * bw + az * bx,
            aw * bz + ax * by - ay * bx + az * bw,
            aw * bw - ax * bx - ay * by - az * bz,
        ]
    )


def conjugate(quat: np.ndarray) -> np.ndarray:
    """Inverse rotation of a unit quaternion."""
    return np.array([-quat[0], -quat[1], -quat[2], quat[3]], dtype=np.float64)


def to_matrix(quat: np.ndarray) -> np.ndarray:
    """3x3 rotation matrix of a quaternion."""
    x, y, z, w = normalize(quat)
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )


def from_matrix(mat: np.ndarray) -> np.ndarray:
    """Quaternion of a 3x3 rotation matrix (Shepperd's method, stable for every rotation)."""
    m = np.asarray(mat, dtype=np.float64).reshape(3, 3)
    trace = m[0, 0] + m[1, 1] + m[2, 2]
    if trace > 0.0:
        s = 2.0 * np.sqrt(trace + 1.0)
        q = [(m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s, s / 4]
    elif m[0, 0] > m[1, 1] and m[0, 0] > m[2, 2]:
        s = 2.0 * np.sqrt(1.0 + m[0, 0] - m[1, 1] - m[2, 2])
        q = [s / 4, (m[0, 1] + m[1, 0]) / s, (m[0, 2] + m[2, 0]) / s, (m[2, 1] - m[1, 2]) / s]
    elif m[1, 1] > m[2, 2]:
        s = 2.0 * np.sqrt(1.0 + m[1, 1] - m[0, 0] - m[2, 2])
        q = [(m[0, 1] + m[1, 0]) / s, s / 4, (m[1, 2] + m[2, 1]) / s, (m[0, 2] - m[2, 0]) / s]
    else:
        s = 2.0 * np.sqrt(1.0 + m[2, 2] - m[0, 0] - m[1, 1])
        q = [(m[0, 2] + m[2, 0]) / s, (m[1, 2] + m[2, 1]) / s, s / 4, (m[1, 0] - m[0, 1]) / s]
    return normalize(np.array(q))


def from_euler(rpy: np.ndarray) -> np.ndarray:
    """Quaternion of fixed-axis roll, pitch, yaw (radians)."""
    r, p, y = 0.5 * np.asarray(rpy, dtype=np.float64)
    cr, sr, cp, sp, cy, sy = np.cos(r), np.sin(r), np.cos(p), np.sin(p), np.cos(y), np.sin(y)
    return normalize(
        np.array(
            [
                sr * cp * cy - cr * sp * sy,
                cr * sp * cy + sr * cp * sy,
                cr * cp * sy - sr * sp * cy,
                cr * cp * cy + sr * sp * sy,
            ]
        )
    )


def to_euler(quat: np.ndarray) -> np.ndarray:
    """Fixed-axis roll, pitch, yaw (radians) of a quaternion; roll and yaw in (-pi, pi]."""
    x, y, z, w = normalize(quat)
    roll = np.arctan2(2 * (w * x + y * z), 1 - 2 * (x * x + y * y))
    pitch = np.arcsin(np.clip(2 * (w * y - z * x), -1.0, 1.0))
    yaw = np.arctan2(2 * (w * z + x * y), 1 - 2 * (y * y + z * z))
    return np.array([roll, pitch, yaw])


def from_rotvec(rotvec: np.ndarray) -> np.ndarray:
    """Quaternion of an axis-angle vector (angle = norm, radians)."""
    v = np.asarray(rotvec, dtype=np.float64)
    angle = np.linalg.norm(v)
    if angle < 1e-12:
        return normalize(np.array([0.5 * v[0], 0.5 * v[1], 0.5 * v[2], 1.0]))
    axis = v / angle
    return normalize(np.concatenate([axis * np.sin(angle / 2), [np.cos(angle / 2)]]))


def to_rotvec(quat: np.ndarray) -> np.ndarray:
    """Axis-angle vector of a quaternion, angle in [0, pi]."""
    q = normalize(quat)
    sin_half = np.linalg.norm(q[:3])
    if sin_half < 1e-12:
        return 2.0 * q[:3]
    angle = 2.0 * np.arctan2(sin_half, q[3])
    return q[:3] / sin_half * angle


def angle_between(a: np.ndarray, b: np.ndarray) -> float:
    """Geodesic angle (radians, in [0, pi]) between two orientations."""
    dot = abs(float(np.dot(normalize(a), normalize(b))))
    return float(2.0 * np.arccos(min(1.0, dot)))


def slerp(a: np.ndarray, b: np.ndarray, t: float) -> np.ndarray:
    """Spherical interpolation from a (t=0) to b (t=1) the short way round."""
    a, b = normalize(a), normalize(b)
    if np.dot(a, b) < 0.0:
        b = -b
    delta = multiply(b, conjugate(a))
    return normalize(multiply(from_rotvec(to_rotvec(delta) * t), a))


def wrap_angle(angle: np.ndarray | float) -> np.ndarray:
    """Angles wrapped into [-pi, pi)."""
    return (np.asarray(angle, dtype=np.float64) + np.pi) % (2.0 * np.pi) - np.pi
