"""Teleop devices (SpaceMouse, gamepad, keyboard) behind one interface, and scripted input."""

from __future__ import annotations

from typing import Any

from serl.robot.teleop.base import (
    DISCONNECT,
    GRIP_CLOSE,
    GRIP_OPEN,
    GRIP_STAY,
    DeviceDisconnected,
    DeviceError,
    DeviceUnavailable,
    Event,
    InputSource,
    ScriptedSource,
    TeleopCommand,
    TeleopDevice,
    command_to_action,
)
from serl.robot.teleop.gamepad import Gamepad, GamepadLayout, GamepadReading
from serl.robot.teleop.intervener import DeviceIntervener, hold_steps
from serl.robot.teleop.keyboard import Keyboard, KeyboardReading
from serl.robot.teleop.spacemouse import SpaceMouse, SpaceMouseReading

DEVICES: dict[str, type[TeleopDevice[Any]]] = {
    "spacemouse": SpaceMouse,
    "gamepad": Gamepad,
    "keyboard": Keyboard,
}


def make_device(name: str, **kwargs: Any) -> TeleopDevice[Any]:
    """Open a device by name (kwargs go to its class, e.g. `source=` for a scripted one)."""
    try:
        cls = DEVICES[name]
    except KeyError:
        raise ValueError(f"unknown teleop device {name!r}; choose from {sorted(DEVICES)}") from None
    return cls(**kwargs)


__all__ = [
    "DEVICES",
    "DISCONNECT",
    "GRIP_CLOSE",
    "GRIP_OPEN",
    "GRIP_STAY",
    "DeviceDisconnected",
    "DeviceError",
    "DeviceIntervener",
    "DeviceUnavailable",
    "Event",
    "Gamepad",
    "GamepadLayout",
    "GamepadReading",
    "InputSource",
    "Keyboard",
    "KeyboardReading",
    "ScriptedSource",
    "SpaceMouse",
    "SpaceMouseReading",
    "TeleopCommand",
    "TeleopDevice",
    "command_to_action",
    "hold_steps",
    "make_device",
]
