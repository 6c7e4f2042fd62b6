"""Gamepad (Xbox-style, through pygame/SDL): sticks for the twist, bumpers for the gripper."""

from __future__ import annotations

import os
from dataclasses import dataclass
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
    deadzone,
    require,
)


@dataclass(frozen=True)
class GamepadReading:
    """Raw state: axes in [-1, 1] (sticks' y points down), buttons 0/1, the d-pad hat (x, y)."""

    axes: tuple[float, ...] = (0.0,) * 6
    buttons: tuple[int, ...] = (0,) * 11
    hat: tuple[int, int] = (0, 0)


@dataclass(frozen=True)
class GamepadLayout:
    """Indices of an Xbox-style pad under SDL on Linux (other pads: pass another layout)."""

    left_x: int = 0
    left_y: int = 1
    right_x: int = 3
    right_y: int = 4
    close: int = 5  # right bumper
    open: int = 4  # left bumper
    success: int = 0  # A
    failure: int = 1  # B
    rerecord: int = 2  # X
    toggle: int = 3  # Y: take over / release
    stop: int = 7  # Start


class Gamepad(TeleopDevice[GamepadReading]):
    """Left stick: x forward/back and y left/right; right stick: z up/down and yaw; d-pad:
    roll and pitch. Right bumper closes the gripper, left bumper opens it; A success, B
    failure, X re-record, Y take over / release, Start stop."""

    name: ClassVar[str] = "gamepad"

    def __init__(
        self,
        source: InputSource[GamepadReading] | None = None,
        layout: GamepadLayout = GamepadLayout(),
        stick_deadzone: float = 0.1,
    ) -> None:
        super().__init__(source if source is not None else PygameSource())
        self.layout = layout
        self.stick_deadzone = stick_deadzone

    def map_reading(self, raw: GamepadReading) -> tuple[np.ndarray, int, frozenset[str]]:
        """Twist from sticks and d-pad, gripper from the bumpers, events from the face buttons."""
        lay, zone = self.layout, self.stick_deadzone

        def axis(i: int) -> float:
            return deadzone(raw.axes[i], zone) if i < len(raw.axes) else 0.0

        def button(i: int) -> bool:
            return i < len(raw.buttons) and bool(raw.buttons[i])

        # Sticks report y down-positive: pushing a stick forward is negative.
        twist = np.array(
            [
                -axis(lay.left_y),
                -axis(lay.left_x),
                -axis(lay.right_y),
                float(raw.hat[0]),
                float(raw.hat[1]),
                -axis(lay.right_x),
            ]
        )
        gripper = GRIP_CLOSE if button(lay.close) else GRIP_OPEN if button(lay.open) else GRIP_STAY
        names = {
            lay.success: Event.SUCCESS,
            lay.failure: Event.FAILURE,
            lay.rerecord: Event.RERECORD,
            lay.toggle: "toggle",
            lay.stop: Event.STOP,
        }
        held = frozenset(str(name) for i, name in names.items() if button(i))
        return twist, gripper, held


class PygameSource:
    """The first joystick pygame finds; a JOYDEVICEREMOVED event means it was unplugged."""

    def __init__(self, index: int = 0) -> None:
        # SDL needs its video subsystem for the event queue; the dummy driver opens no window.
        os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
        self._pg: Any = require("pygame", "gamepad")
        pg = self._pg
        pg.display.init()
        pg.joystick.init()
        if pg.joystick.get_count() <= index:
            found = pg.joystick.get_count()
            raise DeviceUnavailable(f"gamepad: no joystick {index} (found {found})")
        self._stick = pg.joystick.Joystick(index)
        self._stick.init()
        self._id = self._stick.get_instance_id()

    def read(self) -> GamepadReading:
        """Pump SDL's events, then sample axes, buttons and the first hat."""
        pg, stick = self._pg, self._stick
        for event in pg.event.get(pg.JOYDEVICEREMOVED):
            if getattr(event, "instance_id", None) == self._id:
                raise DeviceDisconnected("the gamepad was unplugged")
        pg.event.pump()
        try:
            axes = tuple(float(stick.get_axis(i)) for i in range(stick.get_numaxes()))
            buttons = tuple(int(stick.get_button(i)) for i in range(stick.get_numbuttons()))
            hat = tuple(stick.get_hat(0)) if stick.get_numhats() else (0, 0)
        except pg.error as e:
            raise DeviceDisconnected(f"the gamepad stopped answering ({e})") from e
        return GamepadReading(axes=axes, buttons=buttons, hat=(int(hat[0]), int(hat[1])))

    def close(self) -> None:
        """Release the joystick."""
        self._stick.quit()
