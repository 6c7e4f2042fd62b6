"""The `sim` backend: the MuJoCo Panda under the same impedance law as the real arm, in real time
or a fixed multiple of it.

Physics runs in its own thread at the model's 1 kHz timestep, paced to the wall clock times
`time_scale`; the simulation time is the robot's clock (`now()`), so watchdogs, timed moves,
settle times and client control rates count robot seconds and behave as on hardware at any
scale. Cameras are rendered in a second thread (which owns the GL context) into latest-frame
stores, at their frame rate in robot time.
Sim-only shortcuts, stated where they happen: joint resets teleport the joints, and
`inject_fault` puts the robot into a fault for drills.
"""

from __future__ import annotations

import atexit
import logging
import threading
import time

import mujoco
import numpy as np

from serl.envs.base import ASSETS
from serl.envs.controllers import orientation_error
from serl.envs.pick_cube import FINGER_OPEN, HOME_QPOS
from serl.robot import transforms as tf
from serl.robot.backends.base import Backend, Reference
from serl.robot.cameras import FrameStore
from serl.robot.grippers import Gripper
from serl.robot.impedance import impedance_torques, limit_error
from serl.robot.state import GripperState, RobotState

log = logging.getLogger(__name__)

SCENES = {"empty": "robot_scene.xml", "peg": "peg_insert.xml"}
FAULT_KINDS = ("cartesian_reflex", "joint_limit", "communication_lost", "persistent")
MAX_LAG_S = 0.1  # robot seconds behind its pace: the robot clock falls back instead of racing


class SimGripper(Gripper):
    """The Panda's simulated fingers: one position actuator on the mean finger opening."""

    def __init__(self, backend: SimBackend) -> None:
        self._backend = backend
        self.closure_cmd = 0.0

    def command(self, closure: float) -> None:
        """Set the finger target (applied by the physics thread)."""
        self.closure_cmd = float(np.clip(closure, 0.0, 1.0))

    def read(self) -> GripperState:
        """Measured closure and width."""
        return self._backend.state().gripper


class SimBackend(Backend):
    """MuJoCo Panda backend; `scene` picks the objects around it ("empty" or "peg")."""

    name = "sim"

    def __init__(
        self,
        scene: str = "empty",
        cameras: tuple[str, ...] = ("front", "wrist"),
        camera_size: tuple[int, int] = (128, 128),
        camera_fps: float = 15.0,
        max_contact_force: float = 150.0,
        time_scale: float = 1.0,
    ) -> None:
        super().__init__()
        if scene not in SCENES:
            raise ValueError(f"scene must be one of {sorted(SCENES)}, got {scene!r}")
        if not (np.isfinite(time_scale) and time_scale > 0):
            raise ValueError(f"time_scale must be a positive number, got {time_scale}")
        self.time_scale = float(time_scale)
        self.scene = scene
        self.model = mujoco.MjModel.from_xml_path(str(ASSETS / SCENES[scene]))
        self.data = mujoco.MjData(self.model)
        model = self.model
        for name in cameras:
            if mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_CAMERA, name) < 0:
                raise ValueError(f"scene {scene!r} has no camera {name!r}")
        self.home_q = HOME_QPOS.copy()
        self.joint_limits = np.array([model.joint(f"joint{i}").range for i in range(1, 8)])
        self._arm = slice(model.joint("joint1").dofadr[0], model.joint("joint1").dofadr[0] + 7)
        self._fingers = [model.joint(n).qposadr[0] for n in ("finger_left", "finger_right")]
        self._pinch = model.site("pinch").id
        self._gripper_act = model.actuator("gripper").id
        self._torque_limits = model.actuator_ctrlrange[:7].copy()
        hand = model.body("hand").id
        ee = {hand, model.body("left_finger").id, model.body("right_finger").id}
        self._peg = model.body("peg").id if scene == "peg" else None
        if self._peg is not None:
            ee.add(self._peg)
        self._ee_bodies = frozenset(ee)
        self.max_contact_force = max_contact_force

        self.gripper = SimGripper(self)
        self.cameras = {name: FrameStore() for name in cameras}
        self._camera_size = camera_size
        self._camera_period = 1.0 / camera_fps
        self._lock = threading.RLock()  # guards self.data
        self._faults: list[str] = []
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.lag_events = 0
        self._reset_sim(self.home_q)
        pos, quat = self._measured_pose()
        self._reference = Reference(pos, quat)

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        """Start the physics thread and, if cameras are configured, the render thread."""
        self._stop.clear()
        self._threads = [
            threading.Thread(target=self._physics_loop, name="sim-physics", daemon=True)
        ]
        if self.cameras:
            self._threads.append(
                threading.Thread(target=self._render_loop, name="sim-render", daemon=True)
            )
        for t in self._threads:
            t.start()
        # Stop the GL-owning render thread before interpreter teardown, even on error paths.
        atexit.register(self.close)

    def close(self) -> None:
        """Stop both threads."""
        self._stop.set()
        for t in self._threads:
            t.join(timeout=5.0)
        self._threads = []
        atexit.unregister(self.close)

    # -- state --------------------------------------------------------------------------------
    @property
    def reference(self) -> Reference:
        """The pose the impedance controller tracks."""
        return self._reference

    def now(self) -> float:
        """The simulation time (s): the robot's clock."""
        return float(self.data.time)

    def _measured_pose(self) -> tuple[np.ndarray, np.ndarray]:
        pos = self.data.site_xpos[self._pinch].copy()
        return pos, tf.from_matrix(self.data.site_xmat[self._pinch])

    def state(self) -> RobotState:
        """Snapshot of the simulated arm, taken under the physics lock."""
        model, data = self.model, self.data
        with self._lock:
            pos, quat = self._measured_pose()
            vel = np.zeros(6)
            mujoco.mj_objectVelocity(model, data, mujoco.mjtObj.mjOBJ_SITE, self._pinch, vel, 0)
            wrench = self._external_wrench(pos)
            q, dq = data.qpos[self._arm].copy(), data.qvel[self._arm].copy()
            opening = float(np.mean(data.qpos[self._fingers]))
            faults = tuple(self._faults)
            t = data.time
        closure = float(np.clip(1.0 - opening / FINGER_OPEN, 0.0, 1.0))
        # Fingers stopped short of closing on a commanded close: something is between them.
        grasped = self.gripper.closure_cmd > 0.5 and closure < 0.9
        mode = "fault" if faults else ("moving" if self._reference.moving(t) else "tracking")
        return RobotState(
            position=pos,
            quaternion=quat,
            velocity=np.concatenate([vel[3:], vel[:3]]),  # MuJoCo gives [angular, linear]
            wrench=wrench,
            q=q,
            dq=dq,
            gripper=GripperState(closure, 2.0 * opening, grasped),
            faults=faults,
            mode=mode,
            time=t,
        )

    def _external_wrench(self, tcp: np.ndarray) -> np.ndarray:
        """Contact wrench on the hand, fingers and held peg, about the TCP (world frame)."""
        model, data = self.model, self.data
        force, torque = np.zeros(3), np.zeros(3)
        f6 = np.zeros(6)
        for i in range(data.ncon):
            c = data.contact[i]
            b1, b2 = model.geom_bodyid[c.geom1], model.geom_bodyid[c.geom2]
            in1, in2 = b1 in self._ee_bodies, b2 in self._ee_bodies
            if in1 == in2:
                continue
            mujoco.mj_contactForce(model, data, i, f6)
            # Contact-frame force acts on geom2 (the frame's normal points from geom1 to geom2).
            f_world = c.frame.reshape(3, 3).T @ f6[:3]
            if in1:
                f_world = -f_world
            force += f_world
            torque += np.cross(c.pos - tcp, f_world)
        return np.concatenate([force, torque])

    # -- commands -----------------------------------------------------------------------------
    def joint_reset(self, q: np.ndarray) -> None:
        """Sim shortcut: teleport the joints to q at rest, then hold the resulting pose."""
        with self._lock:
            self._reset_sim(np.asarray(q, dtype=np.float64), keep_time=True)
            pos, quat = self._measured_pose()
            self._reference.set(pos, quat)

    def _reset_sim(self, q: np.ndarray, keep_time: bool = False) -> None:
        model, data = self.model, self.data
        t = data.time
        mujoco.mj_resetData(model, data)
        data.time = t if keep_time else 0.0
        data.qpos[self._arm] = q
        data.qpos[self._fingers] = FINGER_OPEN * (1.0 - self.gripper.closure_cmd)
        mujoco.mj_forward(model, data)
        if self._peg is not None:
            # Start the held peg exactly at its grasp pose so the weld begins unstretched.
            adr = model.jnt_qposadr[model.body_jntadr[self._peg]]
            hand = model.body("hand").id
            offset = np.array([0.0, 0.0, 0.1134])
            data.qpos[adr : adr + 3] = data.xpos[hand] + data.xmat[hand].reshape(3, 3) @ offset
            data.qpos[adr + 3 : adr + 7] = data.xquat[hand]
            mujoco.mj_forward(model, data)

    def faults(self) -> tuple[str, ...]:
        """Active faults, without building a full state."""
        with self._lock:
            return tuple(self._faults)

    def recover(self) -> bool:
        """Clear faults, except the drill's 'persistent' one, which never clears."""
        with self._lock:
            self._faults = [f for f in self._faults if f == "persistent"]
            pos, quat = self._measured_pose()
            self._reference.set(pos, quat)
            return not self._faults

    def inject_fault(self, kind: str) -> None:
        """Drill: enter a fault as if the robot had raised it."""
        if kind not in FAULT_KINDS:
            raise ValueError(f"fault kind must be one of {FAULT_KINDS}, got {kind!r}")
        self._fault(kind)

    def _fault(self, kind: str) -> None:
        with self._lock:
            if kind not in self._faults:
                self._faults.append(kind)
            # Like the real arm's reflex: stop where it is.
            pos, quat = self._measured_pose()
            self._reference.set(pos, quat)

    # -- threads ------------------------------------------------------------------------------
    def _physics_loop(self) -> None:
        dt = self.model.opt.timestep
        wall_per_step = dt / self.time_scale
        batch = 10 * int(np.ceil(self.time_scale))  # steps between waits: ~10 ms of wall time
        wall0 = time.monotonic()
        steps = 0
        while not self._stop.is_set():
            due = int((time.monotonic() - wall0) / wall_per_step) - steps
            if due * dt > MAX_LAG_S:
                # Overloaded machine: the robot clock falls behind rather than racing later.
                self.lag_events += 1
                wall0 += (due - 1) * wall_per_step
                due = 1
            for _ in range(min(due, batch)):
                with self._lock:
                    self._control_step(check=steps % 10 == 0)
                steps += 1
            next_due = wall0 + (steps + 1) * wall_per_step
            self._stop.wait(max(0.0, next_due - time.monotonic()))

    def _control_step(self, check: bool) -> None:
        model, data = self.model, self.data
        params = self.params
        ref_pos, ref_quat = self._reference.at(data.time)
        jac = np.empty((6, model.nv))
        mujoco.mj_jacSite(model, data, jac[:3], jac[3:], self._pinch)
        jac = jac[:, self._arm]
        q, dq = data.qpos[self._arm], data.qvel[self._arm]
        error = np.concatenate(
            [
                ref_pos - data.site_xpos[self._pinch],
                orientation_error(tf.to_wxyz(ref_quat), data.site_xmat[self._pinch]),
            ]
        )
        tau = impedance_torques(
            jac, jac @ dq, limit_error(error, params), q, dq, self.home_q, params
        )
        tau += data.qfrc_bias[self._arm]  # gravity and Coriolis, as libfranka compensates them
        data.ctrl[:7] = np.clip(tau, self._torque_limits[:, 0], self._torque_limits[:, 1])
        data.ctrl[self._gripper_act] = FINGER_OPEN * (1.0 - self.gripper.closure_cmd)
        mujoco.mj_step(model, data)
        if check:
            self._check_health()

    def _check_health(self) -> None:
        if not (np.all(np.isfinite(self.data.qpos)) and np.all(np.isfinite(self.data.qvel))):
            log.error("simulation diverged; resetting the arm to home")
            self._reset_sim(self.home_q, keep_time=True)
            self._fault("simulation_diverged")
            return
        if self._faults:
            return
        wrench = self._external_wrench(self.data.site_xpos[self._pinch])
        if np.linalg.norm(wrench[:3]) > self.max_contact_force:
            self._fault("cartesian_reflex")

    def _render_loop(self) -> None:
        h, w = self._camera_size
        renderer = mujoco.Renderer(self.model, height=h, width=w)
        scratch = mujoco.MjData(self.model)
        period = self._camera_period / self.time_scale  # wall seconds between frames
        try:
            while not self._stop.is_set():
                start = time.monotonic()
                with self._lock:
                    scratch.qpos[:] = self.data.qpos
                    scratch.time = self.data.time
                mujoco.mj_forward(self.model, scratch)
                for name, store in self.cameras.items():
                    renderer.update_scene(scratch, camera=name)
                    store.publish(renderer.render().copy(), stamp=start)
                self._stop.wait(max(0.0, period - (time.monotonic() - start)))
        finally:
            renderer.close()
