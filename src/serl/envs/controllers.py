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
    """
    jac_full = np.empty((6, model.nv))
    mujoco.mj_jacSite(model, data, jac_full[:3], jac_full[3:], site_id)
    jac = jac_full[:, dofs]
    mass_full = np.empty((model.nv, model.nv))
    mujoco.mj_fullM(model, data, mass_full)
    mass = mass_full[dofs, dofs]
    mass_inv = np.linalg.inv(mass)

    # Task-space inertia; the pseudo-inverse keeps it finite near singular poses.
    lambda_inv = jac @ mass_inv @ jac.T
    if abs(np.linalg.det(lambda_inv)) >= 1e-2:
        task_inertia = np.linalg.inv(lambda_inv)
    else:
        task_inertia = np.linalg.pinv(lambda_inv, rcond=1e-2)

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
    tau = jac.T @ (task_inertia @ accel)

    # Posture control projected into the task's nullspace, (I - J^T Jbar^T), so it never
    # fights the task.
    kd_null = 2.0 * np.sqrt(gains.nullspace_kp)
    posture_torque = mass @ (gains.nullspace_kp * (posture - data.qpos[dofs]) - kd_null * dq)
    jac_bar = mass_inv @ jac.T @ task_inertia
    tau += posture_torque - jac.T @ (jac_bar.T @ posture_torque)

    return tau + data.qfrc_bias[dofs]
