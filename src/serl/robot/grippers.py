"""Grippers behind one interface: Franka Hand (pylibfranka), Robotiq 2F-85 (Modbus RTU), sim.

A command is a closure in [0, 1] (0 open .. 1 closed) and never blocks the caller: hardware
calls (which take ~0.5 s on both real grippers) run in a worker thread that always executes the
newest command and drops superseded ones.
"""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from typing import Protocol

from serl.robot.errors import HardwareUnavailable, RobotError
from serl.robot.state import GripperState


class Gripper(ABC):
    """Common gripper interface used by every backend."""

    @abstractmethod
    def command(self, closure: float) -> None:
        """Move towards `closure` (0 open .. 1 closed) without blocking."""

    @abstractmethod
    def read(self) -> GripperState:
        """The latest gripper reading."""

    def homing(self) -> None:  # noqa: B027  (grippers without a homing routine do nothing)
        """Calibrate / activate the gripper (blocking)."""

    def close(self) -> None:  # noqa: B027
        """Release the device."""


class _LatestCommandWorker:
    """Runs `execute(closure)` in a thread, always for the newest closure requested."""

    def __init__(self, execute, poll, period_s: float = 0.05) -> None:
        self._execute, self._poll, self._period = execute, poll, period_s
        self._cond = threading.Condition()
        self._pending: float | None = None
        self._stop = False
        self.state = GripperState()
        self.last_error: Exception | None = None
        self._thread = threading.Thread(target=self._run, name="gripper", daemon=True)
        self._thread.start()

    def submit(self, closure: float) -> None:
        with self._cond:
            self._pending = closure
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(
                    lambda: self._stop or self._pending is not None, timeout=self._period
                )
                if self._stop:
                    return
                closure, self._pending = self._pending, None
            try:
                if closure is not None:
                    self._execute(closure)
                self.state = self._poll()
            except Exception as e:
                self.last_error = e

    def stop(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify()
        self._thread.join(timeout=2.0)


class FrankaHand(Gripper):
    """The Franka Hand through pylibfranka's Gripper (move to open, grasp to close)."""

    def __init__(self, host: str, speed: float = 0.1, force: float = 40.0) -> None:
        try:
            import pylibfranka
        except ImportError as e:
            raise HardwareUnavailable("the Franka Hand needs `pip install serl[robot]`") from e
        self._gripper = pylibfranka.Gripper(host)
        self.max_width = float(self._gripper.read_once().max_width)
        self.speed, self.force = speed, force
        self._worker = _LatestCommandWorker(self._execute, self._poll)

    def _execute(self, closure: float) -> None:
        width = self.max_width * (1.0 - closure)
        if closure >= 0.5:
            # grasp() succeeds with an object anywhere between 0 and the requested width.
            self._gripper.grasp(width, self.speed, self.force, width, self.max_width)
        else:
            self._gripper.move(width, self.speed)

    def _poll(self) -> GripperState:
        s = self._gripper.read_once()
        closure = 1.0 - float(s.width) / self.max_width
        return GripperState(min(1.0, max(0.0, closure)), float(s.width), bool(s.is_grasped))

    def command(self, closure: float) -> None:
        """Queue a move (open side) or grasp (closed side)."""
        self._worker.submit(closure)

    def read(self) -> GripperState:
        """Latest polled state."""
        return self._worker.state

    def homing(self) -> None:
        """Calibrate the finger width."""
        self._gripper.homing()

    def close(self) -> None:
        """Stop the worker and the fingers."""
        self._worker.stop()
        self._gripper.stop()


class ModbusClient(Protocol):
    """The part of pymodbus's ModbusSerialClient the Robotiq driver uses."""

    def connect(self) -> bool: ...
    def write_registers(self, address: int, values: list[int], **kwargs: int) -> object: ...
    def read_input_registers(self, address: int, count: int, **kwargs: int) -> object: ...
    def close(self) -> None: ...


ROBOTIQ_OUTPUT = 0x03E8  # first command register
ROBOTIQ_INPUT = 0x07D0  # first status register
ROBOTIQ_WIDTH = 0.085  # stroke of the 2F-85 (m)


def robotiq_command_registers(
    activate: bool, go: bool, position: int, speed: int, force: int
) -> list[int]:
    """Three 16-bit output registers: [ACTION_REQUEST|0, 0|POSITION, SPEED|FORCE] (bytes 0..5)."""
    for name, v in (("position", position), ("speed", speed), ("force", force)):
        if not 0 <= v <= 255:
            raise ValueError(f"{name} must be in 0..255, got {v}")
    action = (1 if activate else 0) | (0x08 if go else 0)
    return [action << 8, position, (speed << 8) | force]


def parse_robotiq_status(registers: list[int]) -> dict[str, int]:
    """Decode the three status registers into gACT, gGTO, gSTA, gOBJ, fault, position, current."""
    if len(registers) < 3:
        raise ValueError(f"need 3 status registers, got {registers}")
    status, fault_echo, pos_current = registers[0] >> 8, registers[1], registers[2]
    return {
        "gACT": status & 0x01,
        "gGTO": (status >> 3) & 0x01,
        "gSTA": (status >> 4) & 0x03,
        "gOBJ": (status >> 6) & 0x03,
        "fault": fault_echo >> 8,
        "position_request": fault_echo & 0xFF,
        "position": pos_current >> 8,
        "current": pos_current & 0xFF,
    }


class Robotiq2F85(Gripper):
    """Robotiq 2F-85 over Modbus RTU (pymodbus), device id 9, 115200 baud by default."""

    def __init__(
        self,
        port: str = "/dev/ttyUSB0",
        device_id: int = 9,
        speed: int = 255,
        force: int = 150,
        client: ModbusClient | None = None,
    ) -> None:
        if client is None:
            try:
                from pymodbus.client import ModbusSerialClient
            except ImportError as e:
                raise HardwareUnavailable(
                    "the Robotiq gripper needs `pip install serl[robot]`"
                ) from e
            client = ModbusSerialClient(
                port=port, baudrate=115200, stopbits=1, bytesize=8, parity="N", timeout=0.2
            )
        if not client.connect():
            raise RobotError(f"cannot open the Robotiq gripper on {port}")
        self._client, self._id = client, device_id
        self.speed, self.force = speed, force
        self.homing()
        self._worker = _LatestCommandWorker(self._execute, self._poll)

    def _write(self, registers: list[int]) -> None:
        reply = self._client.write_registers(ROBOTIQ_OUTPUT, registers, device_id=self._id)
        if getattr(reply, "isError", lambda: False)():
            raise RobotError(f"Robotiq write failed: {reply}")

    def _status(self) -> dict[str, int]:
        reply = self._client.read_input_registers(ROBOTIQ_INPUT, count=3, device_id=self._id)
        if getattr(reply, "isError", lambda: False)():
            raise RobotError(f"Robotiq read failed: {reply}")
        return parse_robotiq_status(list(reply.registers))  # type: ignore[attr-defined]

    def homing(self, timeout_s: float = 5.0) -> None:
        """Reset then activate; wait (bounded) until the gripper reports activation complete."""
        self._write(robotiq_command_registers(False, False, 0, 0, 0))
        self._write(robotiq_command_registers(True, False, 0, 0, 0))
        deadline = time.monotonic() + timeout_s
        while self._status()["gSTA"] != 3:
            if time.monotonic() > deadline:
                raise RobotError("Robotiq activation did not complete")
            time.sleep(0.05)

    def _execute(self, closure: float) -> None:
        position = round(255 * min(1.0, max(0.0, closure)))
        self._write(robotiq_command_registers(True, True, position, self.speed, self.force))

    def _poll(self) -> GripperState:
        s = self._status()
        closure = s["position"] / 255.0
        # gOBJ 1/2: fingers stopped on an object while opening/closing.
        return GripperState(closure, ROBOTIQ_WIDTH * (1.0 - closure), s["gOBJ"] in (1, 2))

    def command(self, closure: float) -> None:
        """Queue a position request."""
        self._worker.submit(closure)

    def read(self) -> GripperState:
        """Latest polled state."""
        return self._worker.state

    def close(self) -> None:
        """Stop the worker and close the serial port."""
        self._worker.stop()
        self._client.close()
