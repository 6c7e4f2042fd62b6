"""Cartesian impedance control with reference limiting, shared by the sim and libfranka backends.

The law is the one the original ran in franka_ros at 1 kHz:
  F = K * clip(e) - D * v,  tau = J^T F + nullspace posture term (+ gravity/Coriolis compensation)
where e is the pose error (reference minus measured, orientation as a world-frame rotation
vector) clipped per axis. Clipping the error ("reference limiting") bounds the force the arm can
build up towards a distant target: a jump in the reference becomes a bounded, steady motion.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace

import numpy as np

from serl.robot import transforms as tf

# Bounds on every gain a client may set: wide enough for every task of the original, narrow
# enough that no accepted value destabilises the 1 kHz loop.
PARAM_BOUNDS: dict[str, tuple[float, float]] = {
    "translational_stiffness": (0.0, 5000.0),
    "translational_damping": (0.0, 300.0),
    "rotational_stiffness": (0.0, 400.0),
    "rotational_damping": (0.0, 40.0),
    "nullspace_stiffness": (0.0, 20.0),
    "translational_clip": (0.0, 0.1),
    "rotational_clip": (0.0, 0.5),
}


@dataclass(frozen=True)
class ImpedanceParams:
    """Gains (N/m, Ns/m, Nm/rad, Nms/rad) and per-axis error clips (m, rad) of the controller.

    `*_clip` bounds the error towards +x/+y/+z (motion in the positive direction), `*_clip_neg`
    towards -x/-y/-z, as the original's translational_clip_x / translational_clip_neg_x.
    """

    translational_stiffness: float = 2000.0
    translational_damping: float = 89.0
    rotational_stiffness: float = 150.0
    rotational_damping: float = 7.0
    nullspace_stiffness: float = 0.2
    translational_clip: tuple[float, float, float] = (0.01, 0.01, 0.01)
    translational_clip_neg: tuple[float, float, float] = (0.01, 0.01, 0.01)
    rotational_clip: tuple[float, float, float] = (0.05, 0.05, 0.05)
    rotational_clip_neg: tuple[float, float, float] = (0.05, 0.05, 0.05)

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            bound_key = f.name.removesuffix("_neg")
            lo, hi = PARAM_BOUNDS[bound_key]
            arr = np.atleast_1d(np.asarray(value, dtype=np.float64))
            if not np.all(np.isfinite(arr)) or np.any(arr < lo) or np.any(arr > hi):
                raise ValueError(f"{f.name} must be finite and within [{lo}, {hi}], got {value}")
            if isinstance(value, list | tuple | np.ndarray):
                if arr.shape != (3,):
                    raise ValueError(f"{f.name} must have 3 entries, got {value}")
                object.__setattr__(self, f.name, tuple(float(v) for v in arr))

    def updated(self, **changes: object) -> ImpedanceParams:
        """A copy with some fields changed (validated)."""
        return replace(self, **changes)  # type: ignore[arg-type]

    def to_dict(self) -> dict[str, object]:
        """JSON-friendly form."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


# The original's precision mode for resets: stiffer and with a wider error clip.
PRECISION = ImpedanceParams(
    translational_stiffness=3000.0,
    translational_damping=89.0,
    rotational_stiffness=300.0,
    rotational_damping=9.0,
    translational_clip=(0.01, 0.01, 0.01),
    translational_clip_neg=(0.01, 0.01, 0.01),
    rotational_clip=(0.05, 0.05, 0.05),
    rotational_clip_neg=(0.05, 0.05, 0.05),
)


def pose_error(
    pos: np.ndarray, quat: np.ndarray, ref_pos: np.ndarray, ref_quat: np.ndarray
) -> np.ndarray:
    """6-D error [reference - measured position, world rotation vector measured->reference]."""
    rot = tf.multiply(ref_quat, tf.conjugate(quat))
    return np.concatenate([np.asarray(ref_pos) - np.asarray(pos), tf.to_rotvec(rot)])


def limit_error(error: np.ndarray, params: ImpedanceParams) -> np.ndarray:
    """Reference limiting: clip each axis of the error to [-clip_neg, clip]."""
    low = -np.concatenate([params.translational_clip_neg, params.rotational_clip_neg])
    high = np.concatenate([params.translational_clip, params.rotational_clip])
    return np.clip(error, low, high)


def impedance_torques(
    jacobian: np.ndarray,
    twist: np.ndarray,
    error: np.ndarray,
    q: np.ndarray,
    dq: np.ndarray,
    q_nullspace: np.ndarray,
    params: ImpedanceParams,
) -> np.ndarray:
    """Joint torques of the impedance law (without gravity/Coriolis, which the caller adds).

    `jacobian` is the 6x7 world-frame [linear; angular] Jacobian of the TCP, `twist` its
    [linear; angular] velocity and `error` the already limited 6-D pose error.
    """
    k = np.concatenate(
        [np.full(3, params.translational_stiffness), np.full(3, params.rotational_stiffness)]
    )
    d = np.concatenate(
        [np.full(3, params.translational_damping), np.full(3, params.rotational_damping)]
    )
    wrench = k * error - d * twist
    tau_task = jacobian.T @ wrench
    # Posture term projected into the nullspace of J^T (pseudo-inverse via a damped 6x6 solve),
    # so it keeps the elbow near its home pose without disturbing the TCP.
    kn = params.nullspace_stiffness
    tau_posture = kn * (q_nullspace - q) - 2.0 * np.sqrt(kn) * dq
    jjt = jacobian @ jacobian.T + 1e-6 * np.eye(6)
    jt_pinv = np.linalg.solve(jjt, jacobian)  # (J^T)^+ = (J J^T)^-1 J
    projector = np.eye(len(q)) - jacobian.T @ jt_pinv
    return tau_task + projector @ tau_posture


def min_jerk(s: float) -> float:
    """Minimum-jerk time scaling of progress s in [0, 1] (zero velocity at both ends)."""
    s = min(1.0, max(0.0, s))
    return s**3 * (10.0 - 15.0 * s + 6.0 * s**2)


@dataclass(frozen=True)
class Segment:
    """A timed straight-line, slerped move of the reference pose."""

    start_pos: np.ndarray
    start_quat: np.ndarray
    end_pos: np.ndarray
    end_quat: np.ndarray
    t0: float
    duration: float

    def at(self, t: float) -> tuple[np.ndarray, np.ndarray]:
        """Reference pose at time t (clamped to the segment's ends)."""
        s = min_jerk((t - self.t0) / self.duration) if self.duration > 0 else 1.0
        pos = self.start_pos + s * (self.end_pos - self.start_pos)
        return pos, tf.slerp(self.start_quat, self.end_quat, s)

    def done(self, t: float) -> bool:
        """Whether the segment has reached its end pose."""
        return t >= self.t0 + self.duration
