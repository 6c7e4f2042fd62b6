"""3Dconnexion SpaceMouse: 6-DoF puck for the twist, side buttons for the gripper and events."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, ClassVar

import numpy as np

from serl.robot.teleop.base import (
    GRIP_CLOSE,
    GRIP_OPEN,
    GRIP_STAY,
    DeviceDisconnected,
    DeviceUnavailable,
    Event,
    InputSource,
    TeleopDevice,
    require,
)


@dataclass(frozen=True)
class SpaceMouseReading:
    """Raw state: translations and rotations in [-1, 1], button states (0/1) in device order."""

    x: float = 0.0
    y: float = 0.0
    z: float = 0.0
    roll: float = 0.0
    pitch: float = 0.0
    yaw: float = 0.0
    buttons: tuple[int, ...] = (0, 0)


# Buttons past the two side buttons exist on the larger models (SpaceMouse Pro, Enterprise).
DEFAULT_EVENT_BUTTONS: Mapping[int, str] = MappingProxyType(
    {2: Event.SUCCESS, 3: Event.FAILURE, 4: Event.RERECORD, 5: "toggle", 6: Event.STOP}
)


class SpaceMouse(TeleopDevice[SpaceMouseReading]):
    """The original SERL's device: left button closes the gripper, right button opens it.

    Axes map as the original did it, so pushing the puck away from you moves the arm along +x
    of the robot base: twist = (-y, x, z, -roll, -pitch, -yaw).
    """

    name: ClassVar[str] = "spacemouse"

    def __init__(
        self,
        source: InputSource[SpaceMouseReading] | None = None,
        event_buttons: Mapping[int, str] = DEFAULT_EVENT_BUTTONS,
    ) -> None:
        super().__init__(source if source is not None else PySpaceMouseSource())
        self.event_buttons = dict(event_buttons)

    def map_reading(self, raw: SpaceMouseReading) -> tuple[np.ndarray, int, frozenset[str]]:
        """Twist from the puck; buttons 0/1 close/open; higher buttons are events."""
        twist = np.array([-raw.y, raw.x, raw.z, -raw.roll, -raw.pitch, -raw.yaw])

        def pressed(i: int) -> bool:
            return i < len(raw.buttons) and bool(raw.buttons[i])

        gripper = GRIP_CLOSE if pressed(0) else GRIP_OPEN if pressed(1) else GRIP_STAY
        held = frozenset(str(name) for i, name in self.event_buttons.items() if pressed(i))
        return twist, gripper, held


class PySpaceMouseSource:
    """Reads the first connected SpaceMouse through pyspacemouse (raw HID, no vendor driver)."""

    def __init__(self) -> None:
        self._lib: Any = require("pyspacemouse", "spacemouse")
        try:
            handle = self._lib.open()
        except Exception as e:  # the library raises whatever its HID backend raises
            raise DeviceUnavailable(f"spacemouse: cannot open the device: {e}") from e
        if not handle:
            raise DeviceUnavailable(
                "spacemouse: no SpaceMouse found (is it plugged in, and may this user read "
                "/dev/hidraw*?)"
            )
        # Newer releases return a device object with its own read(); older ones a flag.
        self._device = handle if hasattr(handle, "read") else self._lib

    def read(self) -> SpaceMouseReading:
        """The latest state; a failing HID read means the device went away."""
        try:
            state = self._device.read()
        except Exception as e:
            raise DeviceDisconnected(f"HID read failed ({e}); was the SpaceMouse unplugged?") from e
        if state is None:
            raise DeviceDisconnected("the SpaceMouse returned no state; was it unplugged?")
        return SpaceMouseReading(
            x=float(state.x),
            y=float(state.y),
            z=float(state.z),
            roll=float(state.roll),
            pitch=float(state.pitch),
            yaw=float(state.yaw),
            buttons=tuple(int(b) for b in state.buttons),
        )

    def close(self) -> None:
        """Close the HID handle."""
        try:
            self._device.close()
        except Exception:  # closing a device that vanished must not mask the original error
            pass
