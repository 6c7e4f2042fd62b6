"""Pure parts of the real-robot stack: rotations, the safety box (property-tested), impedance
parameters, gripper and reward rules, image crops, and the Robotiq register protocol."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial.transform import Rotation

from serl.robot import transforms as tf
from serl.robot.cameras import crop_and_resize
from serl.robot.env import gripper_command, pose_reached
from serl.robot.grippers import Robotiq2F85, parse_robotiq_status, robotiq_command_registers
from serl.robot.impedance import ImpedanceParams, limit_error, min_jerk
from serl.robot.safety import SafetyBox, clip_to_safety_box, sanitize_action, segment_entry
from serl.robot.tasks import TASKS, load_overrides, task_config

# The peg task's box: roll straddles +-pi, which is where naive clipping goes wrong.
PEG_BOX = TASKS["peg_insertion"]().safety_box
POS_SCALE, ROT_SCALE = 0.02, 0.1

any_float = st.floats(allow_nan=True, allow_infinity=True, width=64)
unit_float = st.floats(-1.0, 1.0)


@st.composite
def quaternions(draw: st.DrawFn) -> np.ndarray:
    v = np.array([draw(st.floats(-1, 1)) for _ in range(4)])
    if np.linalg.norm(v) < 1e-3:
        v = np.array([1.0, 0.0, 0.0, 0.0])
    return v / np.linalg.norm(v)


@st.composite
def positions(draw: st.DrawFn, spread: float = 0.5) -> np.ndarray:
    center = np.array([0.59, 0.08, 0.1])
    return center + np.array([draw(st.floats(-spread, spread)) for _ in range(3)])


def test_rotations_match_scipy_and_use_scalar_last_order() -> None:
    rng = np.random.default_rng(0)
    for _ in range(50):
        rpy = rng.uniform([-np.pi, -1.4, -np.pi], [np.pi, 1.4, np.pi])
        ours = tf.from_euler(rpy)
        ref = Rotation.from_euler("xyz", rpy).as_quat()  # scipy: [x, y, z, w]
        assert abs(abs(np.dot(ours, ref)) - 1.0) < 1e-9
        np.testing.assert_allclose(
            tf.to_euler(ours), Rotation.from_quat(ref).as_euler("xyz"), atol=1e-9
        )
        np.testing.assert_allclose(
            tf.to_matrix(ours), Rotation.from_quat(ref).as_matrix(), atol=1e-9
        )
        assert tf.angle_between(tf.from_matrix(tf.to_matrix(ours)), ours) < 1e-6
        rotvec = Rotation.from_quat(ref).as_rotvec()
        assert tf.angle_between(tf.from_rotvec(rotvec), ours) < 1e-6
    # roll = pi is the gripper pointing down: [1, 0, 0, 0] in [x, y, z, w]
    np.testing.assert_allclose(np.abs(tf.from_euler([np.pi, 0, 0])), [1, 0, 0, 0], atol=1e-12)
    np.testing.assert_allclose(
        tf.to_wxyz(tf.from_wxyz(np.array([0.1, 0.2, 0.3, 0.9]))), [0.1, 0.2, 0.3, 0.9]
    )


@settings(max_examples=300, deadline=None)
@given(pos=positions(), quat=quaternions(), action=st.lists(any_float, min_size=6, max_size=6))
def test_target_is_always_inside_the_box_and_normalised(pos, quat, action) -> None:
    target = clip_to_safety_box(pos, quat, np.array(action), PEG_BOX, POS_SCALE, ROT_SCALE)
    assert np.all(np.isfinite(target.pos)) and np.all(np.isfinite(target.quat))
    assert abs(np.linalg.norm(target.quat) - 1.0) < 1e-9
    assert PEG_BOX.contains(target.pos, target.quat, tol=1e-7)


@settings(max_examples=300, deadline=None)
@given(
    pos=positions(spread=0.03),
    quat=quaternions(),
    action=st.lists(any_float, min_size=6, max_size=6),
)
def test_each_step_stays_within_its_limit_from_the_boxed_reference(pos, quat, action) -> None:
    ref_target = clip_to_safety_box(pos, quat, np.zeros(6), PEG_BOX, POS_SCALE, ROT_SCALE)
    target = clip_to_safety_box(pos, quat, np.array(action), PEG_BOX, POS_SCALE, ROT_SCALE)
    assert np.all(np.abs(target.pos - ref_target.pos) <= POS_SCALE + 1e-9)
    d_rpy = tf.wrap_angle(tf.to_euler(target.quat) - tf.to_euler(ref_target.quat))
    assert np.all(np.abs(d_rpy) <= ROT_SCALE + 1e-7)


@settings(max_examples=100, deadline=None)
@given(action=st.lists(any_float, min_size=6, max_size=6))
def test_nan_and_inf_hold_their_axis_and_huge_values_saturate(action) -> None:
    clean, nonfinite = sanitize_action(np.array(action))
    assert nonfinite == (not np.all(np.isfinite(action)))
    assert np.all(np.abs(clean) <= 1.0)
    for raw, c in zip(action, clean, strict=True):
        if not np.isfinite(raw):
            assert c == 0.0
        else:
            assert c == np.clip(raw, -1.0, 1.0)


def test_all_nan_action_holds_the_pose_inside_the_box() -> None:
    pos = np.array([0.59, 0.08, 0.12])
    quat = tf.from_euler([3.11, 0.0147, 0.1])  # inside the peg box (roll 3.1 +- 0.01)
    target = clip_to_safety_box(pos, quat, np.full(6, np.nan), PEG_BOX, POS_SCALE, ROT_SCALE)
    assert target.nonfinite
    np.testing.assert_allclose(target.pos, pos, atol=1e-12)
    assert tf.angle_between(target.quat, quat) < 1e-9


def test_roll_wraps_at_pi_instead_of_flipping_the_gripper() -> None:
    # Roll -3.13 is 0.0116 rad from +pi: inside a [pi - 0.02, pi + 0.02] box as it is.
    box = SafetyBox((0, 0, 0), (1, 1, 1), (np.pi - 0.02, -0.1, -0.1), (np.pi + 0.02, 0.1, 0.1))
    quat = tf.from_euler([-3.13, 0.0, 0.0])
    target = clip_to_safety_box(np.full(3, 0.5), quat, np.zeros(6), box, 0.01, 0.1)
    assert tf.angle_between(target.quat, quat) < 1e-9
    # Rolling further past pi is clipped at the box edge, on the near side of the circle.
    far = clip_to_safety_box(
        np.full(3, 0.5), tf.from_euler([-3.0, 0, 0]), np.zeros(6), box, 0.01, 0.1
    )
    assert abs(tf.wrap_angle(tf.to_euler(far.quat)[0] - (-(np.pi - 0.02)))) < 1e-9


def test_keep_out_box_stops_the_motion_at_its_wall() -> None:
    box = SafetyBox((0, 0, 0), (1, 1, 1), keep_out=((0.4, 0.4, 0.0), (0.6, 0.6, 0.2)))
    entry = segment_entry(
        np.array([0.3, 0.5, 0.1]),
        np.array([0.5, 0.5, 0.1]),
        np.array([0.4, 0.4, 0.0]),
        np.array([0.6, 0.6, 0.2]),
    )
    np.testing.assert_allclose(entry, [0.4, 0.5, 0.1])
    target = clip_to_safety_box(
        np.array([0.39, 0.5, 0.1]), tf.IDENTITY, np.array([1.0, 0, 0, 0, 0, 0]), box, 0.05, 0.1
    )
    np.testing.assert_allclose(target.pos, [0.4, 0.5, 0.1], atol=1e-12)
    assert target.clipped


def test_box_rejects_inverted_or_non_finite_limits() -> None:
    with pytest.raises(ValueError, match="xyz_low"):
        SafetyBox((1, 0, 0), (0, 1, 1))
    with pytest.raises(ValueError, match="finite"):
        SafetyBox((0, 0, np.nan), (1, 1, 1))


def test_impedance_params_validate_ranges_and_limit_errors_per_axis() -> None:
    with pytest.raises(ValueError, match="translational_stiffness"):
        ImpedanceParams(translational_stiffness=1e6)
    with pytest.raises(ValueError, match="rotational_clip"):
        ImpedanceParams(rotational_clip=(0.1, np.nan, 0.1))
    p = ImpedanceParams(
        translational_clip=(0.01, 0.02, 0.03), translational_clip_neg=(0.001, 0.002, 0.003)
    )
    err = limit_error(np.array([1.0, -1.0, 1.0, 1.0, -1.0, 0.0]), p)
    np.testing.assert_allclose(err, [0.01, -0.002, 0.03, 0.05, -0.05, 0.0])
    assert min_jerk(0.0) == 0.0 and min_jerk(1.0) == 1.0 and abs(min_jerk(0.5) - 0.5) < 1e-12


def test_binary_gripper_and_pose_reward_rules() -> None:
    assert gripper_command(0.9, 0.0) == 1.0
    assert gripper_command(-0.7, 1.0) == 0.0
    assert gripper_command(0.2, 1.0) == 1.0  # dead band keeps the last command
    assert gripper_command(float("nan"), 0.0) == 0.0
    target = np.array([0.5, 0.0, 0.1, np.pi, 0.0, 0.0])
    threshold = np.array([0.01, 0.01, 0.01, 0.2, 0.2, 0.2])
    # roll -3.1 is 0.04 rad from +pi: reached (the original needed abs() for this)
    assert pose_reached(np.array([0.505, 0.0, 0.1]), tf.from_euler([-3.1, 0, 0]), target, threshold)
    assert not pose_reached(
        np.array([0.52, 0.0, 0.1]), tf.from_euler([np.pi, 0, 0]), target, threshold
    )


def test_crop_and_resize_averages_blocks_and_keeps_dtype() -> None:
    image = np.zeros((480, 640, 3), dtype=np.uint8)
    image[:, 320:] = 200
    out = crop_and_resize(image, (0, 480, 80, 560), (128, 128))
    assert out.shape == (128, 128, 3) and out.dtype == np.uint8
    assert out[0, 0, 0] == 0 and out[0, -1, 0] == 200
    assert out[0, 64, 0] == 200  # columns 80..560: the bright half starts in the middle
    small = crop_and_resize(np.full((10, 10, 3), 7, np.uint8), None, (20, 20))
    assert small.shape == (20, 20, 3) and np.all(small == 7)
    with pytest.raises(ValueError, match="empty"):
        crop_and_resize(image, (10, 10, 0, 5), (8, 8))


class FakeModbus:
    """Stands in for pymodbus's serial client: a register file and a 2F-85's status replies."""

    class Reply:
        def __init__(self, registers: list[int]) -> None:
            self.registers = registers

        def isError(self) -> bool:
            return False

    def __init__(self) -> None:
        self.writes: list[list[int]] = []

    def connect(self) -> bool:
        return True

    def write_registers(self, address: int, values: list[int], **kwargs: int) -> Reply:
        assert address == 0x03E8 and kwargs["device_id"] == 9
        self.writes.append(list(values))
        return self.Reply([])

    def read_input_registers(self, address: int, count: int, **kwargs: int) -> Reply:
        assert address == 0x07D0 and count == 3
        last = self.writes[-1]
        action, position = last[0] >> 8, last[1] & 0xFF
        status = (action & 0x01) | (action & 0x08) | (0x30 if action & 0x01 else 0)
        return self.Reply([status << 8, position, position << 8])

    def close(self) -> None:
        pass


def test_robotiq_registers_round_trip_and_driver_activates_then_moves() -> None:
    regs = robotiq_command_registers(True, True, 200, 255, 150)
    assert regs == [0x0900, 200, (255 << 8) | 150]
    status = parse_robotiq_status([0xF900, 0x00C8, 0xC832])
    assert status["gACT"] == 1 and status["gGTO"] == 1 and status["gSTA"] == 3
    assert status["gOBJ"] == 3 and status["position"] == 0xC8 and status["current"] == 0x32
    with pytest.raises(ValueError, match="position"):
        robotiq_command_registers(True, True, 300, 0, 0)

    bus = FakeModbus()
    gripper = Robotiq2F85(client=bus)
    assert bus.writes[:2] == [[0, 0, 0], [0x0100, 0, 0]]  # reset, then activate
    gripper.command(1.0)
    deadline = time.monotonic() + 2.0
    while gripper.read().closure < 1.0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert bus.writes[-1][1] == 255 and gripper.read().closure == 1.0
    gripper.close()


@pytest.mark.parametrize("name", sorted(TASKS))
def test_every_task_has_its_target_and_reset_pose_inside_its_box(name: str) -> None:
    cfg = TASKS[name]()
    for pose in (cfg.target_pose, cfg.reset_pose):
        assert cfg.safety_box.contains(np.asarray(pose[:3]), tf.from_euler(pose[3:]), tol=1e-6)
    assert cfg.action_scale[0] <= 0.05  # at most 5 cm per 100 ms step on every task


def test_json_overrides_rebuild_the_task_around_a_measured_target(tmp_path) -> None:
    path = tmp_path / "peg.json"
    path.write_text(
        json.dumps(
            {
                "server_url": "http://robot-pc:5000",
                "target_pose": [0.6, 0.0, 0.1, 3.14, 0.0, 0.0],
                "cameras": {
                    "wrist_1": {"kind": "realsense", "device": "123", "crop": [0, 480, 80, 560]}
                },
            }
        )
    )
    cfg = task_config("peg_insertion", **load_overrides(path))
    assert cfg.server_url == "http://robot-pc:5000"
    assert cfg.reset_pose[:3] == pytest.approx((0.6, 0.0, 0.2))
    assert cfg.safety_box.xyz_low == pytest.approx((0.55, -0.05, 0.1))
    assert cfg.cameras["wrist_1"].crop == (0, 480, 80, 560)
    path.write_text(json.dumps({"not_a_field": 1}))
    with pytest.raises(ValueError, match=r"unknown fields \['not_a_field'\]"):
        load_overrides(path)


EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
EXAMPLE_TASKS = {
    "sim_peg_insertion": ["sim_peg_insertion"],
    "peg_insertion": ["peg_insertion"],
    "pcb_insertion": ["pcb_insertion"],
    "cable_routing": ["cable_routing"],
    "bin_relocation": ["bin_relocation_forward", "bin_relocation_backward"],
}


@pytest.mark.parametrize("folder", sorted(EXAMPLE_TASKS))
def test_every_example_config_builds_its_tasks(folder: str) -> None:
    assert (EXAMPLES / folder / "README.md").exists()
    overrides = load_overrides(EXAMPLES / folder / "config.json")
    for task in EXAMPLE_TASKS[folder]:
        cfg = task_config(task, **overrides)
        assert cfg.safety_box.contains(
            np.asarray(cfg.reset_pose[:3]), tf.from_euler(cfg.reset_pose[3:])
        )
