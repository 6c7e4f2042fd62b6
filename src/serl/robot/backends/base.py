"""What every arm backend provides, and the reference (target or timed move) they all track."""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod

import numpy as np

from serl.robot import transforms as tf
from serl.robot.cameras import FrameStore
from serl.robot.grippers import Gripper
from serl.robot.impedance import ImpedanceParams, Segment
from serl.robot.state import RobotState


class Reference:
    """Thread-safe controller reference: a fixed pose or a timed min-jerk segment towards one."""

    def __init__(self, pos: np.ndarray, quat: np.ndarray) -> None:
        self._lock = threading.Lock()
        self._segment = Segment(pos.copy(), quat.copy(), pos.copy(), quat.copy(), 0.0, 0.0)

    def set(self, pos: np.ndarray, quat: np.ndarray) -> None:
        """Jump the reference (the controller's error clip turns the jump into a bounded motion)."""
        with self._lock:
            self._segment = Segment(pos.copy(), quat.copy(), pos.copy(), quat.copy(), 0.0, 0.0)

    def move(
        self,
        start_pos: np.ndarray,
        start_quat: np.ndarray,
        pos: np.ndarray,
        quat: np.ndarray,
        t0: float,
        duration: float,
    ) -> None:
        """Interpolate from the start pose to the target over `duration` s from time t0."""
        with self._lock:
            self._segment = Segment(
                start_pos.copy(), start_quat.copy(), pos.copy(), quat.copy(), t0, duration
            )

    def at(self, t: float) -> tuple[np.ndarray, np.ndarray]:
        """The reference pose at time t."""
        with self._lock:
            segment = self._segment
        return segment.at(t)

    def end(self) -> tuple[np.ndarray, np.ndarray]:
        """Where the reference ends up."""
        with self._lock:
            return self._segment.end_pos.copy(), self._segment.end_quat.copy()

    def moving(self, t: float) -> bool:
        """Whether a timed move is still under way at time t."""
        with self._lock:
            return not self._segment.done(t)


class Backend(ABC):
    """An arm (real or simulated) driven by a Cartesian impedance controller in its own thread.

    The server validates every input before it reaches a backend; backends trust their inputs.
    Times are the robot's clock (`now()`), which runs `time_scale` times as fast as the wall
    clock: 1 for a real arm; a simulation may run faster (or fall behind when overloaded).
    """

    name = "backend"
    time_scale = 1.0
    gripper: Gripper
    cameras: dict[str, FrameStore]
    home_q: np.ndarray
    joint_limits: np.ndarray  # (7, 2) lower, upper (rad)

    def __init__(self) -> None:
        self._params = ImpedanceParams()
        self._params_lock = threading.Lock()

    # -- lifecycle ---------------------------------------------------------------------------
    @abstractmethod
    def start(self) -> None:
        """Connect and start the control thread (holding the current pose)."""

    @abstractmethod
    def close(self) -> None:
        """Stop the control thread and release the hardware."""

    # -- state and commands --------------------------------------------------------------------
    def now(self) -> float:
        """The robot's clock (s): what timed moves, watchdogs and settle times count."""
        return time.monotonic()

    @abstractmethod
    def state(self) -> RobotState:
        """A consistent snapshot of arm and gripper (faults included)."""

    @property
    @abstractmethod
    def reference(self) -> Reference:
        """The reference the controller tracks."""

    def set_target(self, pos: np.ndarray, quat: np.ndarray) -> None:
        """Track a new target pose from now on."""
        self.reference.set(np.asarray(pos, dtype=np.float64), tf.normalize(quat))

    def move(self, pos: np.ndarray, quat: np.ndarray, duration: float) -> float:
        """Start a min-jerk move from the measured pose; returns when (robot clock) it ends."""
        s = self.state()
        t0 = self.now()
        self.reference.move(
            s.position,
            s.quaternion,
            np.asarray(pos, dtype=np.float64),
            tf.normalize(quat),
            t0,
            duration,
        )
        return t0 + duration

    def hold(self) -> None:
        """Stop where the arm is: the reference becomes the measured pose."""
        s = self.state()
        self.reference.set(s.position, s.quaternion)

    @abstractmethod
    def joint_reset(self, q: np.ndarray) -> None:
        """Move the joints to `q` (blocking), then hold the resulting pose."""

    # -- controller parameters -------------------------------------------------------------------
    @property
    def params(self) -> ImpedanceParams:
        """Current impedance parameters."""
        with self._params_lock:
            return self._params

    def set_params(self, params: ImpedanceParams) -> None:
        """Replace the impedance parameters (already validated by ImpedanceParams)."""
        with self._params_lock:
            self._params = params

    # -- faults ----------------------------------------------------------------------------------
    def faults(self) -> tuple[str, ...]:
        """Active faults (empty when the robot accepts commands)."""
        return self.state().faults

    @abstractmethod
    def recover(self) -> bool:
        """Try to clear the robot's errors; True if it is fault-free afterwards."""

    def inject_fault(self, kind: str) -> None:
        """Put the robot into a fault state for drills (sim only)."""
        raise NotImplementedError(f"{self.name} cannot inject faults")
