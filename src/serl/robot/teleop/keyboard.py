"""Keyboard (through pynput): keys held move the arm; keys pressed signal events."""

from __future__ import annotations

import threading
from collections.abc import Mapping
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

KeyboardReading = frozenset[str]
"""The names of the keys held down: characters ("w") or pynput key names ("up", "enter")."""

# (twist index, sign) per key
MOTION_KEYS: Mapping[str, tuple[int, float]] = MappingProxyType(
    {
        "w": (0, 1.0),
        "s": (0, -1.0),  # x: forward / back
        "a": (1, 1.0),
        "d": (1, -1.0),  # y: left / right
        "up": (2, 1.0),
        "down": (2, -1.0),  # z: up / down
        "j": (3, 1.0),
        "l": (3, -1.0),  # roll
        "i": (4, 1.0),
        "k": (4, -1.0),  # pitch
        "q": (5, 1.0),
        "e": (5, -1.0),  # yaw
    }
)
EVENT_KEYS: Mapping[str, str] = MappingProxyType(
    {
        "enter": Event.SUCCESS,
        "backspace": Event.FAILURE,
        "n": Event.RERECORD,
        "t": "toggle",
        "esc": Event.STOP,
    }
)
CLOSE_KEY, OPEN_KEY = "c", "o"


class Keyboard(TeleopDevice[KeyboardReading]):
    """w/s a/d up/down move x/y/z, j/l i/k q/e rotate; c closes, o opens the gripper; Enter
    success, Backspace failure, n re-record, t take over / release, Esc stop."""

    name: ClassVar[str] = "keyboard"

    def __init__(self, source: InputSource[KeyboardReading] | None = None) -> None:
        super().__init__(source if source is not None else PynputSource())

    def map_reading(self, raw: KeyboardReading) -> tuple[np.ndarray, int, frozenset[str]]:
        """Sum the held motion keys (opposite keys cancel); gripper and events by key."""
        twist = np.zeros(6)
        for key in raw:
            if key in MOTION_KEYS:
                index, sign = MOTION_KEYS[key]
                twist[index] += sign
        close, open_ = CLOSE_KEY in raw, OPEN_KEY in raw
        gripper = GRIP_STAY if close == open_ else GRIP_CLOSE if close else GRIP_OPEN
        held = frozenset(str(name) for key, name in EVENT_KEYS.items() if key in raw)
        return twist, gripper, held


class PynputSource:
    """A pynput listener thread keeps the set of held keys; a dead listener is a lost device."""

    def __init__(self) -> None:
        lib: Any = require("pynput.keyboard", "keyboard")
        self._held: set[str] = set()
        self._lock = threading.Lock()
        try:
            self._listener = lib.Listener(on_press=self._press, on_release=self._release)
            self._listener.start()
            self._listener.wait()
        except Exception as e:  # e.g. no X display for the listener to attach to
            raise DeviceUnavailable(f"keyboard: cannot listen to the keyboard: {e}") from e

    @staticmethod
    def _name(key: Any) -> str | None:
        char = getattr(key, "char", None)
        if char:
            return char.lower()
        name = getattr(key, "name", None)
        return name.lower() if name else None

    def _press(self, key: Any) -> None:
        name = self._name(key)
        if name:
            with self._lock:
                self._held.add(name)

    def _release(self, key: Any) -> None:
        name = self._name(key)
        if name:
            with self._lock:
                self._held.discard(name)

    def read(self) -> KeyboardReading:
        """The keys held right now."""
        if not self._listener.running:
            raise DeviceDisconnected("the keyboard listener stopped (display gone?)")
        with self._lock:
            return frozenset(self._held)

    def close(self) -> None:
        """Stop the listener thread."""
        self._listener.stop()
