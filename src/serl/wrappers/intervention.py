"""Human interventions: a person (or a simulated one) overrides the policy's actions.

`InterventionWrapper` asks its intervener every step for an action; when it gives one, that
action is executed instead of the policy's and reported in `info["intervene_action"]`, so the
stored transition holds what was executed. `info["intervened"]` is set on every step.

Interveners: `serl.robot.teleop.DeviceIntervener` (a person at a teleop device, with the
original's threshold-and-hold rule) and `serl.envs.SimulatedHuman`. Their events end the
episode: success (terminated, `info["success"]`), failure, re-record and stop (truncated),
each named in `info["label"]`. An intervener whose input disappears mid-episode (it raises a
ConnectionError, as `DeviceDisconnected` is) stops the episode safely: the arm is held still
(`safe_action`), the episode is truncated with `info["teleop_error"]`, and the next `reset()`
raises that error again.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

import gymnasium as gym
import numpy as np

log = logging.getLogger(__name__)

# Episode-ending events, first wins (the values of serl.robot.teleop.Event).
SUCCESS, FAILURE, RERECORD, STOP = "success", "failure", "rerecord", "stop"
_ENDING = (SUCCESS, FAILURE, RERECORD, STOP)


class Intervener(Protocol):
    """Who may override the policy: a device-holding person or a simulated human."""

    def reset(self) -> None:
        """A new episode starts."""
        ...

    def __call__(self, obs: Any, policy_action: np.ndarray) -> np.ndarray | None:
        """The action to execute instead of `policy_action`, or None to let the policy act."""
        ...

    def events(self) -> frozenset[str]:
        """Events signalled at the last call ("success", "failure", "rerecord", "stop", ...)."""
        ...


def control_period(env: gym.Env) -> float:
    """Seconds per env step: the env's `control_dt` or `dt`, else 1 / render_fps."""
    base = env.unwrapped
    for name in ("control_dt", "dt"):
        value = getattr(base, name, None)
        if isinstance(value, int | float) and value > 0:
            return float(value)
    fps = (getattr(base, "metadata", None) or {}).get("render_fps")
    if fps:
        return 1.0 / float(fps)
    raise ValueError(f"{type(base).__name__}: no control period (control_dt, dt or render_fps)")


class InterventionWrapper(gym.Wrapper):
    """Executes the intervener's action when it gives one; reports it in the info dict."""

    def __init__(
        self, env: gym.Env, intervener: Intervener, safe_action: np.ndarray | None = None
    ) -> None:
        super().__init__(env)
        self.intervener = intervener
        shape = env.action_space.shape
        self.safe_action = (
            np.zeros(shape, np.float32) if safe_action is None else np.asarray(safe_action)
        )
        self._obs: Any = None
        self.device_error: ConnectionError | None = None
        self.stop_requested = False
        self.episode_steps = 0
        self.episode_interventions = 0

    def reset(self, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
        """Reset env and intervener; refuses to go on once the device is gone."""
        if self.device_error is not None:
            raise self.device_error
        self.intervener.reset()
        self._obs, info = self.env.reset(**kwargs)
        self.episode_steps = self.episode_interventions = 0
        return self._obs, {**info, "intervened": False}

    def step(self, action: np.ndarray) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        """Step with the person's action if they are in control, else with the policy's."""
        try:
            human = self.intervener(self._obs, np.asarray(action))
            events = self.intervener.events()
        except ConnectionError as e:  # the device is gone: never act on stale input
            return self._stop_safely(e)
        executed = action if human is None else human
        obs, reward, terminated, truncated, info = self.env.step(executed)
        self._obs = obs
        info = {**info, "intervened": human is not None}
        if human is not None:
            info["intervene_action"] = np.asarray(human, np.float32)
        self.episode_steps += 1
        self.episode_interventions += human is not None
        ending = [e for e in _ENDING if e in events]
        if ending:
            label = ending[0]
            info["label"] = label
            if label == SUCCESS:
                terminated, info["success"] = True, True
            else:
                truncated = True
                info["success"] = bool(info.get("success", False)) and label != FAILURE
            self.stop_requested |= STOP in events
        return obs, reward, terminated, truncated, info

    def _stop_safely(self, error: ConnectionError) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        message = f"teleop device lost mid-episode, episode stopped: {error}"
        log.error(message)
        self.device_error = type(error)(message)
        obs, reward, terminated, _, info = self.env.step(self.safe_action)
        self._obs = obs
        self.episode_steps += 1
        info = {
            **info,
            "intervened": False,
            "teleop_error": message,
            "intervene_action": np.asarray(self.safe_action, np.float32),
        }
        return obs, reward, terminated, True, info
