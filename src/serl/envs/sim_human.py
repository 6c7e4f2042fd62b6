"""A simulated human intervener: the scripted expert takes over when the policy stalls or strays.

It watches a task-progress measure of the sim's privileged state (for PandaPickCube: minus
the TCP's distance to the cube, or 1 + the lift once the cube is off the table). It takes
over when progress has not improved by `min_progress` over `stall_steps` policy steps (a
stall), or fell `stray_margin` below the best of the episode (a stray: moved away, dropped
the cube); after `reaction_steps` it drives the scripted expert, by default to the end of the
episode (success ends it), or for `takeover_steps` steps before handing back. Its randomness
(expert noise) comes from its own seed, so runs are reproducible headless: in CI and in
benchmarks. It fits `serl.wrappers.InterventionWrapper`.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np

from serl.envs.experts import PickCubeExpert, make_expert
from serl.envs.pick_cube import SUCCESS_LIFT, PandaPickCubeEnv

LIFTED = 0.01  # metres above the start height from which the cube counts as lifted


@dataclass(frozen=True)
class SimHumanRules:
    """When the simulated human steps in, for how long, and how noisy it is."""

    stall_steps: int = 20  # policy steps without `min_progress` of improvement: a stall
    min_progress: float = 0.01  # progress units (m)
    stray_margin: float = 0.08  # progress this far below the episode's best: a stray
    warmup_steps: int = 10  # steps at the start of an episode the policy is left alone
    reaction_steps: int = 0  # steps between noticing and taking over
    # Steps in control before handing back; None: see the task through, as a person correcting
    # a robot does. Short takeovers measurably slowed learning: they mostly showed the expert
    # re-opening after a missed grasp, and handed back before the close and lift.
    takeover_steps: int | None = None
    max_takeovers: int | None = None  # per episode; None: no limit
    noise: float = 0.05  # std of the expert's xyz action noise

    def __post_init__(self) -> None:
        if self.stall_steps < 1 or (self.takeover_steps is not None and self.takeover_steps < 1):
            raise ValueError("stall_steps and takeover_steps must be >= 1")
        if min(self.warmup_steps, self.reaction_steps, self.stray_margin, self.noise) < 0:
            raise ValueError("warmup_steps, reaction_steps, stray_margin and noise must be >= 0")


def pick_cube_progress(env: PandaPickCubeEnv) -> float:
    """Task progress: -distance(TCP, cube) before the lift, 1 + lift height after."""
    lift = env.block_pos[2] - env.block_start_height
    if lift > LIFTED:
        return 1.0 + float(lift)
    return -float(np.linalg.norm(env.tcp_pos - env.block_pos))


class SimulatedHuman:
    """Intervener built on the scripted expert (see the module docstring for its rules)."""

    def __init__(
        self, env: gym.Env, rules: SimHumanRules = SimHumanRules(), seed: int | None = None
    ) -> None:
        base = env.unwrapped
        if not isinstance(base, PandaPickCubeEnv):
            raise TypeError(f"no simulated human for {type(base).__name__}")
        self.env = base
        self.rules = rules
        self.expert: PickCubeExpert = make_expert(base, noise=rules.noise, seed=seed)
        self.takeovers = 0  # this episode
        self.total_takeovers = 0
        self.reason: str | None = None  # why it took over last ("stall" or "stray")
        self.reset()

    @property
    def in_control(self) -> bool:
        """Whether the simulated human drives right now."""
        return self._control_left > 0

    def reset(self) -> None:
        """A new episode: hand back, forget the progress history."""
        self._steps = 0
        self._control_left = 0
        self._pending: int | None = None  # steps until a noticed problem is acted on
        self._window: deque[float] = deque(maxlen=self.rules.stall_steps + 1)
        self._best = -np.inf
        self.takeovers = 0
        self.reason = None

    def __call__(self, obs: Any, policy_action: np.ndarray) -> np.ndarray | None:
        """The expert's action while in control, else None."""
        rules = self.rules
        progress = pick_cube_progress(self.env)
        self._best = max(self._best, progress)
        self._steps += 1
        if self._control_left > 0:
            self._control_left -= 1
            if self._control_left == 0:
                self._window.clear()  # judge the policy afresh after handing back
            return self.expert(obs)
        self._window.append(progress)
        if self._pending is None:
            reason = self._problem(progress)
            if reason is not None:
                self.reason, self._pending = reason, rules.reaction_steps
        if self._pending is not None:
            if self._pending > 0:
                self._pending -= 1
                return None
            self._pending = None
            return self._take_over(obs)
        return None

    def events(self) -> frozenset[str]:
        """A simulated human signals no events: the env's own success flag ends episodes."""
        return frozenset()

    def _problem(self, progress: float) -> str | None:
        rules, env = self.rules, self.env
        if self._steps <= rules.warmup_steps:
            return None
        if rules.max_takeovers is not None and self.takeovers >= rules.max_takeovers:
            return None
        if env.block_pos[2] - env.block_start_height >= SUCCESS_LIFT:
            return None  # solved: nothing to correct
        if progress < self._best - rules.stray_margin:
            return "stray"
        window = self._window
        if len(window) == window.maxlen and max(window) - window[0] < rules.min_progress:
            return "stall"
        return None

    def _take_over(self, obs: Any) -> np.ndarray:
        self.expert.reset()  # the expert reads the scene: with the cube in hand it lifts
        self.takeovers += 1
        self.total_takeovers += 1
        self._window.clear()
        steps = self.rules.takeover_steps
        self._control_left = np.inf if steps is None else steps - 1
        return self.expert(obs)
