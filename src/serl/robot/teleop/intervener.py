"""A person at a teleop device as an intervener (for `serl.wrappers.InterventionWrapper`).

The original SERL's semantics: the person is in control while the device's input exceeds
`threshold`, and for `hold_s` seconds after it (counted in env steps of `control_dt`, so it
is deterministic); the gripper buttons count as input, and while held without input the
person's (zero) action holds the arm still. A take-over button keeps control until release.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from serl.robot.teleop.base import GRIP_STAY, Event, TeleopDevice, command_to_action


def hold_steps(hold_s: float, control_dt: float) -> int:
    """Env steps an intervention lasts, counting the step of the last input (>= 1)."""
    if hold_s < 0 or control_dt <= 0:
        raise ValueError(f"hold_s must be >= 0 and control_dt > 0, got {hold_s}, {control_dt}")
    return max(1, round(hold_s / control_dt))


class DeviceIntervener:
    """A person at a teleop device: in control while moving it and `hold_s` seconds after."""

    def __init__(
        self,
        device: TeleopDevice[Any],
        action_dim: int,
        control_dt: float,
        threshold: float = 1e-3,
        hold_s: float = 0.5,
        scale: float = 1.0,
    ) -> None:
        self.device = device
        self.action_dim = action_dim
        self.threshold = threshold
        self.scale = scale
        self.hold = hold_steps(hold_s, control_dt)
        self._idle = self.hold  # env steps since the last input: not in control at the start
        self._forced = False
        self._events: frozenset[str] = frozenset()

    def reset(self) -> None:
        """Hand control back and forget buttons held in the last episode."""
        self.device.reset()
        self._idle = self.hold
        self._forced = False
        self._events = frozenset()

    def __call__(self, obs: Any, policy_action: np.ndarray) -> np.ndarray | None:
        """Read the device; the person's action while in control, else None."""
        command = self.device.read()
        self._events = command.events
        if Event.TAKE_OVER in command.events:
            self._forced = True
        if Event.RELEASE in command.events:
            self._forced, self._idle = False, self.hold
        moving = command.magnitude() > self.threshold or command.gripper != GRIP_STAY
        self._idle = 0 if moving else self._idle + 1
        if self._forced or self._idle < self.hold:
            return command_to_action(command, self.action_dim, self.scale)
        return None

    def events(self) -> frozenset[str]:
        """Events of the last reading."""
        return self._events
