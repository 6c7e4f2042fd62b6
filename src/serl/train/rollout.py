"""The one env loop: every episode serl runs (training actors, evaluation, video, demo and
labelled recording, forward/backward) is stepped by `run_episode`."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np

from serl.data import Episode
from serl.wrappers import control_period

# obs -> action, or None to end the episode before the env does (a person's stop, a run's end)
Policy = Callable[[Any], Any]


@dataclass(frozen=True)
class Step:
    """One env step as a hook sees it."""

    obs: Any
    action: np.ndarray
    reward: float
    terminated: bool
    truncated: bool
    next_obs: Any
    info: dict[str, Any]


@dataclass
class Rollout:
    """An episode as it ran: `infos` holds reset's info then each step's; `frames` (reset's
    observation then each step's) and `actions` only when kept."""

    frames: list[Any] = field(default_factory=list)
    actions: list[np.ndarray] = field(default_factory=list)
    rewards: list[float] = field(default_factory=list)
    terminated: list[bool] = field(default_factory=list)
    truncated: list[bool] = field(default_factory=list)
    infos: list[dict[str, Any]] = field(default_factory=list)
    stopped: bool = False  # ended by the policy or a hook, not by the env

    def __len__(self) -> int:
        return len(self.rewards)

    @property
    def total_reward(self) -> float:
        return float(sum(self.rewards))

    @property
    def success(self) -> bool:
        """The last info's success flag."""
        return bool(self.infos[-1].get("success", False))

    def episode(self) -> Episode:
        """The kept steps as an Episode (needs at least one step)."""
        return Episode(
            observations={k: np.stack([f[k] for f in self.frames]) for k in self.frames[0]},
            actions=np.stack(self.actions).astype(np.float32),
            rewards=np.asarray(self.rewards, np.float32),
            terminated=np.asarray(self.terminated, bool),
            truncated=np.asarray(self.truncated, bool),
        )


def run_episode(
    env: gym.Env,
    policy: Policy,
    seed: int | None = None,
    options: dict[str, Any] | None = None,
    on_step: Callable[[Step], bool | None] | None = None,
    realtime: bool = False,
    keep: bool = True,
) -> Rollout:
    """Reset `env` and step it with `policy` until the env ends the episode, the policy returns
    None or `on_step` returns True. `realtime` paces steps at the env's control period (a person
    drives at the robot's speed); `keep=False` holds no observations (training, evaluation)."""
    obs, info = env.reset(seed=seed, options=options)
    run = Rollout(infos=[info])
    if keep:
        run.frames.append(obs)
    period = control_period(env) if realtime else 0.0
    tick = time.monotonic()
    while True:
        action = policy(obs)
        if action is None:
            run.stopped = True
            return run
        action = np.asarray(action, np.float32)
        next_obs, reward, terminated, truncated, info = env.step(action)
        run.rewards.append(float(reward))
        run.terminated.append(bool(terminated))
        run.truncated.append(bool(truncated))
        run.infos.append(info)
        if keep:
            run.frames.append(next_obs)
            run.actions.append(action)
        step = Step(obs, action, float(reward), bool(terminated), bool(truncated), next_obs, info)
        stop = on_step(step) if on_step is not None else False
        obs = next_obs
        if terminated or truncated:
            return run
        if stop:
            run.stopped = True
            return run
        if period:
            tick += period
            time.sleep(max(0.0, tick - time.monotonic()))


def evaluate(env: gym.Env, act: Policy, episodes: int, seed: int) -> dict[str, float]:
    """Deterministic evaluation episodes (episode i from seed + i): success rate, mean return."""
    runs = [run_episode(env, act, seed=seed + i, keep=False) for i in range(episodes)]
    return {
        "success_rate": float(np.mean([run.success for run in runs])),
        "mean_return": float(np.mean([run.total_reward for run in runs])),
        "episodes": float(episodes),
    }


def render_episodes(env: gym.Env, act: Policy, episodes: int, seed: int) -> list[np.ndarray]:
    """The rendered frames of `episodes` episodes (episode i from seed + i), reset frames
    included; `env` must have been made with render_mode="rgb_array"."""
    collecting = gym.wrappers.RenderCollection(env)
    frames: list[np.ndarray] = []
    for i in range(episodes):
        run_episode(collecting, act, seed=seed + i, keep=False)
        frames += collecting.render()
    return frames
