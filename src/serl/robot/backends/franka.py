"""The `franka` backend: a real Franka arm through pylibfranka (libfranka's official bindings).

A dedicated thread runs libfranka's 1 kHz torque-control loop (`start_torque_control`, then
`readOnce` / `writeOnce`) with the same Cartesian impedance law and reference limiting as the
sim backend (serl.robot.impedance). libfranka compensates gravity itself; we add Coriolis from
its model. The loop never blocks on anything but the robot: the reference, parameters and
latest state are exchanged through locks held for microseconds.

Faults: a libfranka ControlException (reflex, limit violation, communication) ends the torque
loop and is recorded as a fault; commands are refused until `recover()` runs libfranka's
`automatic_error_recovery()` and restarts the loop. Nothing clears errors silently.

Setup (see README "Real robot"): real-time kernel, FCI enabled in Desk, brakes open, the robot
in "Execution" mode, `pip install serl[robot]`. Then:
    serl robot-server --backend franka --robot-ip 172.16.0.2 --gripper franka
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import numpy as np

from serl.robot import transforms as tf
from serl.robot.backends.base import Backend, Reference
from serl.robot.errors import HardwareUnavailable, RobotError
from serl.robot.grippers import FrankaHand, Gripper, Robotiq2F85
from serl.robot.impedance import impedance_torques, limit_error, pose_error
from serl.robot.state import GripperState, RobotState

log = logging.getLogger(__name__)

# Franka Research 3 / Panda joint limits (rad), from the datasheet.
JOINT_LIMITS = np.array(
    [
        [-2.8973, 2.8973],
        [-1.7628, 1.7628],
        [-2.8973, 2.8973],
        [-3.0718, -0.0698],
        [-2.8973, 2.8973],
        [-0.0175, 3.7525],
        [-2.8973, 2.8973],
    ]
)
HOME_Q = np.array([0.0, -0.785, 0.0, -2.35, 0.0, 1.57, np.pi / 4])
TORQUE_RATE_LIMIT = 1.0  # Nm per 1 ms tick: libfranka rejects faster torque changes


def _import_pylibfranka() -> Any:
    try:
        import pylibfranka
    except ImportError as e:
        raise HardwareUnavailable(
            "the franka backend needs pylibfranka: `pip install serl[robot]` on the robot PC"
        ) from e
    return pylibfranka


class _NoGripper(Gripper):
    """For arms without a gripper: commands are ignored, the reading is constant."""

    def command(self, closure: float) -> None:
        """Ignore."""

    def read(self) -> GripperState:
        """Constant open reading."""
        return GripperState(0.0, 0.0, False)


def pose_from_o_t_ee(o_t_ee: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Position and [x, y, z, w] quaternion of libfranka's column-major 4x4 O_T_EE."""
    m = np.asarray(o_t_ee, dtype=np.float64).reshape(4, 4).T
    return m[:3, 3].copy(), tf.from_matrix(m[:3, :3])


class FrankaBackend(Backend):
    """A Franka arm (FR3 or Panda) over FCI; `gripper` is "franka", "robotiq" or "none"."""

    name = "franka"

    def __init__(
        self,
        robot_ip: str = "172.16.0.2",
        gripper: str = "franka",
        robotiq_port: str = "/dev/ttyUSB0",
        collision_force: float = 40.0,
    ) -> None:
        super().__init__()
        self._franka = _import_pylibfranka()
        self.robot_ip = robot_ip
        self.home_q = HOME_Q.copy()
        self.joint_limits = JOINT_LIMITS.copy()
        self.cameras = {}
        self._robot = self._franka.Robot(robot_ip)
        # Reflex thresholds (N / Nm): contacts above these stop the arm and raise a fault.
        torque = [20.0, 20.0, 18.0, 18.0, 16.0, 14.0, 12.0]
        force = [collision_force] * 3 + [collision_force / 2] * 3
        self._robot.set_collision_behavior(torque, torque, force, force)
        self._model = self._robot.load_model()
        if gripper == "franka":
            self.gripper: Gripper = FrankaHand(robot_ip)
        elif gripper == "robotiq":
            self.gripper = Robotiq2F85(robotiq_port)
        elif gripper == "none":
            self.gripper = _NoGripper()
        else:
            raise ValueError(f"gripper must be franka, robotiq or none, got {gripper!r}")
        first = self._robot.read_once()
        pos, quat = pose_from_o_t_ee(first.O_T_EE)
        self._reference = Reference(pos, quat)
        self._state_lock = threading.Lock()
        self._latest = first
        self._faults: list[str] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._joint_goal: np.ndarray | None = None

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        """Start the 1 kHz torque loop, holding the current pose."""
        self.hold_from_robot()
        self._stop.clear()
        self._thread = threading.Thread(target=self._control_loop, name="franka-1khz", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop the loop and the robot."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
        self._robot.stop()
        self.gripper.close()

    def hold_from_robot(self) -> None:
        """Reference := the pose the robot reports now."""
        pos, quat = pose_from_o_t_ee(self._robot.read_once().O_T_EE)
        self._reference.set(pos, quat)

    # -- the 1 kHz loop ---------------------------------------------------------------------------
    def _control_loop(self) -> None:
        fr = self._franka
        try:
            control = self._robot.start_torque_control()
            last_tau = np.zeros(7)
            while not self._stop.is_set():
                state, _period = control.readOnce()
                with self._state_lock:
                    self._latest = state
                tau = self._torques(state)
                # Rate-limit the torque so a reference or gain change never jerks the arm.
                tau = last_tau + np.clip(tau - last_tau, -TORQUE_RATE_LIMIT, TORQUE_RATE_LIMIT)
                last_tau = tau
                control.writeOnce(fr.Torques(tau.tolist()))
            finished = fr.Torques([0.0] * 7)
            finished.motion_finished = True
            control.writeOnce(finished)
        except Exception as e:
            log.error("franka control loop stopped: %s", e)
            with self._state_lock:
                self._faults.append(type(e).__name__ + ": " + str(e)[:200])

    def _torques(self, state: Any) -> np.ndarray:
        q, dq = np.asarray(state.q), np.asarray(state.dq)
        pos, quat = pose_from_o_t_ee(state.O_T_EE)
        jac = np.asarray(self._model.zero_jacobian(self._franka.Frame.kEndEffector, state))
        jac = jac.reshape(7, 6).T  # libfranka returns it column-major
        ref_pos, ref_quat = self._reference.at(self.now())
        error = limit_error(pose_error(pos, quat, ref_pos, ref_quat), self.params)
        tau = impedance_torques(jac, jac @ dq, error, q, dq, self.home_q, self.params)
        return tau + np.asarray(self._model.coriolis(state))

    # -- Backend API ------------------------------------------------------------------------------
    @property
    def reference(self) -> Reference:
        """The pose the 1 kHz loop tracks."""
        return self._reference

    def state(self) -> RobotState:
        """Latest state from the 1 kHz loop (or a fresh read when the loop is not running)."""
        with self._state_lock:
            s = self._latest
            faults = tuple(self._faults)
        if self._thread is None or not self._thread.is_alive():
            s = self._robot.read_once()
        pos, quat = pose_from_o_t_ee(s.O_T_EE)
        jac = np.asarray(self._model.zero_jacobian(self._franka.Frame.kEndEffector, s))
        twist = jac.reshape(7, 6).T @ np.asarray(s.dq)
        return RobotState(
            position=pos,
            quaternion=quat,
            velocity=twist,
            wrench=np.asarray(s.O_F_ext_hat_K, dtype=np.float64),
            q=np.asarray(s.q, dtype=np.float64),
            dq=np.asarray(s.dq, dtype=np.float64),
            gripper=self.gripper.read(),
            faults=faults,
            mode="fault"
            if faults
            else ("moving" if self._reference.moving(self.now()) else "tracking"),
            time=self.now(),
        )

    def faults(self) -> tuple[str, ...]:
        """Faults recorded by the control loop."""
        with self._state_lock:
            return tuple(self._faults)

    def joint_reset(self, q: np.ndarray) -> None:
        """Stop the impedance loop, run a joint-space move to q, restart the loop there."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
        try:
            self._joint_move(np.asarray(q, dtype=np.float64))
        finally:
            if not self.faults():
                self.start()

    def _joint_move(self, goal: np.ndarray, speed: float = 0.3) -> None:
        """Min-jerk joint position motion (rad/s peak ~ speed) through libfranka."""
        fr = self._franka
        start = np.asarray(self._robot.read_once().q)
        duration = max(1.0, float(np.max(np.abs(goal - start))) / speed * 1.875)
        control = self._robot.start_joint_position_control(fr.ControllerMode.kJointImpedance)
        t = 0.0
        while True:
            _state, period = control.readOnce()
            t += period.to_sec()
            s = min(1.0, t / duration)
            blend = s**3 * (10.0 - 15.0 * s + 6.0 * s**2)
            command = fr.JointPositions((start + blend * (goal - start)).tolist())
            if s >= 1.0:
                command.motion_finished = True
                control.writeOnce(command)
                return
            control.writeOnce(command)

    def recover(self) -> bool:
        """libfranka's automatic error recovery, then restart the torque loop."""
        try:
            self._robot.automatic_error_recovery()
        except Exception as e:
            log.error("franka recovery failed: %s", e)
            return False
        with self._state_lock:
            self._faults.clear()
        if self._thread is None or not self._thread.is_alive():
            self.start()
        return True

    def inject_fault(self, kind: str) -> None:
        """Never on a real robot."""
        raise RobotError("fault injection exists only in the sim backend")
