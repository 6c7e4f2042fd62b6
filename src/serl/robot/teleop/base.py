"""The teleop device interface: raw input sources, the command a device yields, and its events.

A device turns readings of a raw input source (a SpaceMouse's axes, a gamepad's sticks, the
keys held on a keyboard) into a `TeleopCommand`: an end-effector twist in [-1, 1]^6, a
gripper command (close / stay / open) and events (take over / release, success, failure,
re-record, stop). Real sources talk to hardware through optional libraries (`serl[teleop]`);
`ScriptedSource` replays recorded readings behind the same interface, for tests and CI.
"""

from __future__ import annotations

import abc
import enum
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import ClassVar, Generic, Protocol, TypeVar

import numpy as np

from serl.errors import UserError

R = TypeVar("R")
R_co = TypeVar("R_co", covariant=True)

GRIP_OPEN, GRIP_STAY, GRIP_CLOSE = -1, 0, 1


class Event(enum.StrEnum):
    """Something the person signalled (edge-triggered: reported once per button press)."""

    TAKE_OVER = "take_over"  # the person takes control until RELEASE, whatever the input
    RELEASE = "release"  # hand control back to the policy
    SUCCESS = "success"  # the episode succeeded: end it
    FAILURE = "failure"  # the episode failed: end it
    RERECORD = "rerecord"  # discard this episode and record it again
    STOP = "stop"  # end the session


class DeviceError(UserError, RuntimeError):
    """Base class of teleop device failures (their messages say what to check)."""


class DeviceUnavailable(DeviceError):
    """The device's library is not installed, or no such device is connected."""


class DeviceDisconnected(DeviceError, ConnectionError):
    """The device stopped answering (unplugged, out of range, listener died)."""


@dataclass(frozen=True)
class TeleopCommand:
    """One reading of a device: twist (x, y, z, roll, pitch, yaw) in [-1, 1], gripper, events."""

    twist: np.ndarray = field(default_factory=lambda: np.zeros(6))
    gripper: int = GRIP_STAY
    events: frozenset[Event] = frozenset()

    def magnitude(self) -> float:
        """Norm of the twist (what the intervention threshold is compared with)."""
        return float(np.linalg.norm(self.twist))


class InputSource(Protocol[R_co]):
    """Where a device's raw readings come from: hardware, or a script."""

    def read(self) -> R_co:
        """The current raw reading; raises DeviceDisconnected when the device is gone."""
        ...

    def close(self) -> None:
        """Release the hardware."""
        ...


DISCONNECT = object()
"""Put in a `ScriptedSource` script to simulate the device being unplugged at that read."""


class ScriptedSource(Generic[R]):
    """Replays a script of raw readings, one per `read()`; then repeats the last (or ends)."""

    def __init__(self, readings: Iterable[R | object], hold_last: bool = True) -> None:
        self._readings: Iterator[R | object] = iter(readings)
        self._last: R | object | None = None
        self._hold_last = hold_last
        self.reads = 0
        self.closed = False

    def read(self) -> R:
        """The next scripted reading (DeviceDisconnected at DISCONNECT or at the end)."""
        self.reads += 1
        try:
            item = next(self._readings)
        except StopIteration:
            if not self._hold_last or self._last is None:
                raise DeviceDisconnected("scripted input ended") from None
            item = self._last
        if item is DISCONNECT:
            self._hold_last = False
            self._readings = iter(())
            raise DeviceDisconnected("scripted device unplugged")
        self._last = item
        return item  # type: ignore[return-value]

    def close(self) -> None:
        """Mark the script closed."""
        self.closed = True


class TeleopDevice(abc.ABC, Generic[R]):
    """A device: reads its source and maps each reading to a `TeleopCommand`.

    Buttons that signal events fire on the press (edge), not while held; the take-over button
    toggles TAKE_OVER / RELEASE. `reset()` (at episode start) forgets held buttons and the
    toggle.
    """

    name: ClassVar[str]

    def __init__(self, source: InputSource[R]) -> None:
        self.source = source
        self._held: frozenset[str] = frozenset()
        self._taken_over = False

    def read(self) -> TeleopCommand:
        """Read the source once and map it; raises DeviceDisconnected when it is gone."""
        try:
            raw = self.source.read()
        except DeviceDisconnected as e:
            raise DeviceDisconnected(f"{self.name}: {e}") from e
        twist, gripper, pressed = self.map_reading(raw)
        new = pressed - self._held  # edge-triggered: only buttons pressed since the last read
        self._held = pressed
        events = set()
        for name in new:
            if name == "toggle":
                self._taken_over = not self._taken_over
                events.add(Event.TAKE_OVER if self._taken_over else Event.RELEASE)
            else:
                events.add(Event(name))
        twist = np.clip(np.nan_to_num(np.asarray(twist, np.float64)), -1.0, 1.0)
        return TeleopCommand(twist=twist, gripper=int(gripper), events=frozenset(events))

    @abc.abstractmethod
    def map_reading(self, raw: R) -> tuple[np.ndarray, int, frozenset[str]]:
        """(twist[6], gripper, names of the event buttons held: Event values or "toggle")."""

    def reset(self) -> None:
        """Forget held buttons and the take-over toggle (a new episode starts)."""
        self._held = frozenset()
        self._taken_over = False

    def close(self) -> None:
        """Release the hardware."""
        self.source.close()

    def __enter__(self) -> TeleopDevice[R]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def deadzone(value: float, zone: float) -> float:
    """0 inside +-zone, else rescaled so the output still spans [-1, 1] (sticks drift)."""
    if abs(value) <= zone:
        return 0.0
    return float(np.sign(value) * (abs(value) - zone) / (1.0 - zone))


def require(module: str, device: str) -> object:
    """Import a device library, or explain how to install it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise DeviceUnavailable(
            f"the {device} driver needs the Python package {module!r}: pip install 'serl[teleop]'"
        ) from e


def command_to_action(command: TeleopCommand, action_dim: int, scale: float = 1.0) -> np.ndarray:
    """An env action from a command: [xyz], [xyz, grip], [xyz, rpy] or [xyz, rpy, grip].

    `scale` shrinks the twist (a full deflection moves the sim target 0.1 m per step); the
    gripper entry is +1 close, -1 open, 0 stay.
    """
    twist = scale * command.twist
    layouts = {
        3: twist[:3],
        4: np.append(twist[:3], command.gripper),
        6: twist,
        7: np.append(twist, command.gripper),
    }
    if action_dim not in layouts:
        raise ValueError(f"no teleop layout for a {action_dim}-D action (3, 4, 6 or 7)")
    return np.clip(layouts[action_dim], -1.0, 1.0).astype(np.float32)
