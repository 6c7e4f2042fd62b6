"""Operational-space control of a site: task-space PD via the task inertia, nullspace posture."""

from __future__ import annotations

from dataclasses import dataclass

import mujoco
import numpy as np


@dataclass(frozen=True)
class OpspaceGains:
    """Gains of the operational-space controller (the original's defaults)."""

    pos_kp: float = 200.0
    ori_kp: float = 200.0
    damping_ratio: float = 1.0
    nullspace_kp: float = 0.5
    max_pos_accel: float | None = None
    max_ori_accel: float | None = None


def orientation_error(target_quat: np.ndarray, current_xmat: np.ndarray) -> np.ndarray:
    """Axis-angle vector (world frame) that rotates the current orientation onto the target."""
    current = np.empty(4)
    mujoco.mju_mat2Quat(current, current_xmat.reshape(9))
    conj = np.empty(4)
    mujoco.mju_negQuat(conj, current)
    diff = np.empty(4)
    mujoco.mju_mulQuat(diff, target_quat, conj)
    if diff[0] < 0.0:  # take the short way round
        diff = -diff
    err = np.empty(3)
    mujoco.mju_quat2Vel(err, diff, 1.0)
    return err


def _clip_norm(x: np.ndarray, limit: float | None) -> np.ndarray:
    if limit is None:
        return x
    norm = np.linalg.norm(x)
    return x * (limit / norm) if norm > limit else x


def opspace_torques(
    model: mujoco.MjModel,
    data: mujoco.MjData,
    site_id: int,
    dofs: slice,
    target_pos: np.ndarray,
    target_quat: np.ndarray,
    posture: np.ndarray,
    gains: OpspaceGains = OpspaceGains(),
) -> np.ndarray:
    """Joint torques driving `site_id` to the target pose, gravity- and Coriolis-compensated.

    `dofs` is the contiguous block of the arm's hinge joints (same indices in qpos and qvel).
    The control law: task inertia L = (J M^-1 J^T)^-1 (a pseudo-inverse near singular poses),
    task torque J^T L a for the PD acceleration a, and the posture torque M y projected into
    the task's nullspace, (I - J^T L J M^-1) M y = M y - J^T L J y. Written as one solve,
    tau = J^T L (a - J y) + M y + bias: this runs 10 times per env step, and small-matrix
    calls are most of an env step's cost.
    """
    jac_full = np.empty((6, model.nv))
    mujoco.mj_jacSite(model, data, jac_full[:3], jac_full[3:], site_id)
    jac = np.ascontiguousarray(jac_full[:, dofs])
    mass_full = np.empty((model.nv, model.nv))
    mujoco.mj_fullM(model, data, mass_full)
    mass = mass_full[dofs, dofs]

    chol = np.array(mass)  # M = C C^T (symmetric positive definite)
    mujoco.mju_cholFactor(chol, 0.0)
    jac_minv = np.empty_like(jac)  # J M^-1, row by row (M is symmetric)
    for row, out in zip(jac, jac_minv, strict=True):
        mujoco.mju_cholSolve(out, chol, row)
    lambda_inv = jac_minv @ jac.T

    dq = data.qvel[dofs]
    twist = jac @ dq
    kd_pos = 2.0 * gains.damping_ratio * np.sqrt(gains.pos_kp)
    kd_ori = 2.0 * gains.damping_ratio * np.sqrt(gains.ori_kp)
    pos_err = target_pos - data.site_xpos[site_id]
    ori_err = orientation_error(target_quat, data.site_xmat[site_id])
    accel = np.concatenate(
        [
            _clip_norm(gains.pos_kp * pos_err - kd_pos * twist[:3], gains.max_pos_accel),
            _clip_norm(gains.ori_kp * ori_err - kd_ori * twist[3:], gains.max_ori_accel),
        ]
    )
    kd_null = 2.0 * np.sqrt(gains.nullspace_kp)
    posture_accel = gains.nullspace_kp * (posture - data.qpos[dofs]) - kd_null * dq
    task = _task_inertia_times(lambda_inv, accel - jac @ posture_accel)
    return jac.T @ task + mass @ posture_accel + data.qfrc_bias[dofs]


def _task_inertia_times(lambda_inv: np.ndarray, x: np.ndarray) -> np.ndarray:
    """(lambda_inv)^-1 x, or its pseudo-inverse (rcond 1e-2) where |det| < 1e-2."""
    chol = np.array(lambda_inv)
    if mujoco.mju_cholFactor(chol, 0.0) == len(x):
        det = float(np.prod(np.diagonal(chol))) ** 2
        if det >= 1e-2:
            out = np.empty_like(x)
            mujoco.mju_cholSolve(out, chol, x)
            return out
    return np.linalg.pinv(lambda_inv, rcond=1e-2) @ x
