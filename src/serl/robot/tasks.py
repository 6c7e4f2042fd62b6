"""The real-robot tasks as configs, parameterised as the original SERL sets them, plus a sim twin.

Real tasks (poses measured on the original's setup: re-measure TARGET poses on yours, see
examples/): peg insertion, PCB insertion, cable routing, bin relocation forward / backward.
`sim_peg_insertion` runs the same FrankaEnv against `serl robot-server --backend sim --scene peg`.
Poses are [x, y, z, roll, pitch, yaw] (m, rad, fixed axes), robot base frame.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from serl.dataclass_json import decode_fields
from serl.robot.env import CameraSpec, FrankaEnv, FrankaEnvConfig
from serl.robot.impedance import ImpedanceParams
from serl.robot.safety import SafetyBox

# The original's two wrist RealSense cameras, cropped to the central square of a 640x480 frame.
WRIST_CAMERAS = {
    "wrist_1": CameraSpec("realsense", "130322274175", crop=(0, 480, 80, 560)),
    "wrist_2": CameraSpec("realsense", "127122270572", crop=(0, 480, 80, 560)),
}


Pose6 = Sequence[float] | np.ndarray


def _target(given: Pose6 | None, default: Pose6) -> np.ndarray:
    target = np.asarray(default if given is None else given, dtype=np.float64)
    if target.shape != (6,) or not np.all(np.isfinite(target)):
        raise ValueError(f"target pose must be 6 finite numbers [x, y, z, r, p, y], got {given}")
    return target


def _box(target: np.ndarray, below: np.ndarray, above: np.ndarray, **kw: object) -> SafetyBox:
    return SafetyBox.from_limits(target - below, target + above, **kw)


def _compliance(
    clip: tuple[float, ...],
    clip_neg: tuple[float, ...],
    rot: tuple[float, ...],
    rot_neg: tuple[float, ...],
    **gains: float,
) -> ImpedanceParams:
    return ImpedanceParams(
        translational_clip=clip,
        translational_clip_neg=clip_neg,
        rotational_clip=rot,
        rotational_clip_neg=rot_neg,
        **gains,
    )


def peg_insertion(target: Pose6 | None = None) -> FrankaEnvConfig:
    """Insert a held peg into a hole: 6-D actions, gripper kept closed, sparse pose reward."""
    target = _target(
        target,
        [
            0.5906439143742067,
            0.07771711953459341,
            0.0937835826958042,
            3.1099675,
            0.0146619,
            -0.0078615,
        ],
    )
    xy, rz = 0.05, np.pi / 6
    return FrankaEnvConfig(
        target_pose=tuple(target),
        reset_pose=tuple(target + np.array([0, 0, 0.1, 0, 0, 0])),
        reward_threshold=(0.01, 0.01, 0.01, 0.2, 0.2, 0.2),
        action_scale=(0.02, 0.1, 1.0),
        use_gripper=False,
        gripper_at_reset=1.0,
        random_reset=True,
        random_xy_range=xy,
        random_rz_range=rz,
        safety_box=_box(
            target, np.array([xy, xy, 0.0, 0.01, 0.01, rz]), np.array([xy, xy, 0.1, 0.01, 0.01, rz])
        ),
        compliance=_compliance(
            (0.003, 0.003, 0.01), (0.003, 0.003, 0.01), (0.02,) * 3, (0.02,) * 3
        ),
        cameras=dict(WRIST_CAMERAS),
    )


def pcb_insertion(target: Pose6 | None = None) -> FrankaEnvConfig:
    """Insert a PCB's pins into a socket: tight thresholds, stiffer compliance."""
    target = _target(
        target,
        [
            0.5668657154487453,
            0.002050321710641817,
            0.05362772570641611,
            3.1279511,
            0.0176617,
            0.0212859,
        ],
    )
    xy, rz = 0.05, np.pi / 9
    return FrankaEnvConfig(
        target_pose=tuple(target),
        reset_pose=tuple(target + np.array([0, 0, 0.04, 0, 0, 0])),
        reward_threshold=(0.003, 0.003, 0.001, 0.1, 0.1, 0.1),
        action_scale=(0.02, 0.2, 1.0),
        use_gripper=False,
        gripper_at_reset=1.0,
        random_reset=True,
        random_xy_range=xy,
        random_rz_range=rz,
        safety_box=_box(
            target,
            np.array([xy, xy, 0.005, 0.05, 0.05, rz]),
            np.array([xy, xy, 0.05, 0.05, 0.05, rz]),
        ),
        compliance=_compliance(
            (0.0025, 0.0015, 0.002),
            (0.002, 0.002, 0.003),
            (0.025, 0.007, 0.01),
            (0.025, 0.007, 0.01),
            translational_stiffness=3000.0,
            translational_damping=180.0,
        ),
        cameras=dict(WRIST_CAMERAS),
    )


def cable_routing(target: Pose6 | None = None) -> FrankaEnvConfig:
    """Route a held cable into a clip; success comes from a learned reward classifier."""
    target = _target(
        target,
        [
            0.460639895728905,
            -0.02439473272513422,
            0.026321125814908725,
            3.1331234,
            0.0182487,
            1.5824805,
        ],
    )
    xy, rz = 0.1, np.pi / 6
    return FrankaEnvConfig(
        target_pose=tuple(target),
        reset_pose=tuple(target + np.array([0, 0, 0.1, 0, 0, 0])),
        reward_threshold=(0.01, 0.01, 0.01, 0.2, 0.2, 0.2),
        reward="none",
        action_scale=(0.05, 0.3, 1.0),
        use_gripper=False,
        gripper_at_reset=1.0,
        random_reset=True,
        random_xy_range=xy,
        random_rz_range=rz,
        safety_box=_box(
            target,
            np.array([xy, xy, 0.001, 0.01, 0.01, rz]),
            np.array([xy, xy, 0.1, 0.01, 0.01, rz]),
        ),
        cameras=dict(WRIST_CAMERAS),
    )


def _bin_relocation(direction: int, target: Pose6 | None) -> FrankaEnvConfig:
    target = _target(target, [0.485, 0.025, 0.047555915476419935, 3.1331234, 0.0182487, 1.5824805])
    rz = np.pi / 6
    # Forward starts over the +y bin and carries the object to the -y bin; backward reverses it.
    reset = target + np.array([0, 0.1 * direction, 0.1, 0, 0, 0])
    # The wall between the bins: the inner box the original keeps the gripper out of.
    keep_out = (
        tuple(target[:3] - np.array([0.07, 0.03, 0.001])),
        tuple(target[:3] + np.array([0.07, 0.03, 0.04])),
    )
    return FrankaEnvConfig(
        target_pose=tuple(target),
        reset_pose=tuple(reset),
        reward_threshold=(0.0,) * 6,
        reward="none",
        action_scale=(0.05, 0.1, 1.0),
        use_gripper=True,
        gripper_at_reset=0.0,
        random_reset=False,
        safety_box=_box(
            target,
            np.array([0.07, 0.15, 0.001, 0.01, 0.01, rz]),
            np.array([0.07, 0.15, 0.1, 0.01, 0.01, rz]),
            keep_out=keep_out,
        ),
        compliance=_compliance(
            (0.006, 0.006, 0.005), (0.006, 0.006, 0.005), (0.05, 0.05, 0.02), (0.05, 0.05, 0.02)
        ),
        cameras={
            "wrist_1": CameraSpec("realsense", "130322274175", crop=(0, 480, 80, 560)),
            "front": CameraSpec("realsense", "128422272758"),
        },
    )


def bin_relocation_forward(target: Pose6 | None = None) -> FrankaEnvConfig:
    """Pick an object from one bin and place it in the other (learned reward, reset-free pair)."""
    return _bin_relocation(+1, target)


def bin_relocation_backward(target: Pose6 | None = None) -> FrankaEnvConfig:
    """The reverse of bin_relocation_forward: together they reset each other."""
    return _bin_relocation(-1, target)


# The sim twin's hole (src/serl/envs/assets/peg_insert.xml): a fully inserted peg puts the TCP
# at z = 0.04 over (0.55, 0), gripper pointing down.
SIM_PEG_TARGET = np.array([0.55, 0.0, 0.04, np.pi, 0.0, 0.0])


def sim_peg_insertion(target: Pose6 | None = None) -> FrankaEnvConfig:
    """Peg insertion against the sim backend's peg scene, with its rendered cameras."""
    target = _target(target, SIM_PEG_TARGET)
    xy, rz = 0.03, np.pi / 12
    return FrankaEnvConfig(
        target_pose=tuple(target),
        reset_pose=tuple(target + np.array([0, 0, 0.08, 0, 0, 0])),
        reward_threshold=(0.005, 0.005, 0.01, 0.2, 0.2, 0.2),
        action_scale=(0.02, 0.1, 1.0),
        use_gripper=False,
        gripper_at_reset=1.0,
        random_reset=True,
        random_xy_range=xy,
        random_rz_range=rz,
        safety_box=_box(
            target, np.array([xy, xy, 0.0, 0.05, 0.05, rz]), np.array([xy, xy, 0.1, 0.05, 0.05, rz])
        ),
        reset_duration_s=1.5,
        cameras={"front": CameraSpec("server"), "wrist": CameraSpec("server")},
    )


TASKS = {
    "peg_insertion": peg_insertion,
    "pcb_insertion": pcb_insertion,
    "cable_routing": cable_routing,
    "bin_relocation_forward": bin_relocation_forward,
    "bin_relocation_backward": bin_relocation_backward,
    "sim_peg_insertion": sim_peg_insertion,
}


def task_config(name: str, **overrides: object) -> FrankaEnvConfig:
    """A task's config with fields overridden (e.g. server_url, token, cameras).

    A `target_pose` override rebuilds what the task derives from it (reset pose, safety box),
    so a lab only measures its own target pose.
    """
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; one of {sorted(TASKS)}")
    target = overrides.pop("target_pose", None)
    return replace(TASKS[name](target), **overrides)  # type: ignore[arg-type]


def load_overrides(path: str | os.PathLike[str]) -> dict[str, object]:
    """Task-config overrides from a JSON file (plain data only: nothing is executed or unpickled).

    Keys are FrankaEnvConfig fields; `cameras` maps names to CameraSpec fields, `safety_box` to
    SafetyBox fields, `compliance` / `precision` to ImpedanceParams fields.
    """
    raw = json.loads(Path(path).read_text())
    return decode_fields(FrankaEnvConfig, raw, str(path))


def make_franka_env(task: str = "sim_peg_insertion", **overrides: object) -> FrankaEnv:
    """A FrankaEnv for a named task (the gymnasium entry point of the serl/Franka* ids).

    $SERL_ROBOT_CONFIG names a JSON file of overrides (your measured poses, camera serials);
    $SERL_ROBOT_URL and $SERL_ROBOT_TOKEN set the server address and token over the file's, so
    `serl record-demos` / `serl train serl/FrankaPegInsert-v0` need no extra flags.
    """
    # the variables name this session's server, so they win over the file (arguments win over both)
    session = {
        field: os.environ[var]
        for field, var in (("server_url", "SERL_ROBOT_URL"), ("token", "SERL_ROBOT_TOKEN"))
        if var in os.environ
    }
    path = os.environ.get("SERL_ROBOT_CONFIG")
    saved = load_overrides(path) if path else {}
    return FrankaEnv(task_config(task, **{**saved, **session, **overrides}))
