"""Learned rewards: a success classifier's probability becomes the reward and ends the episode.

The classifier enters as a plain callable `obs -> p(success)` (the wrappers know nothing
about learning; `serl.train.reward_model.RewardClassifier` makes one from a saved classifier).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import gymnasium as gym
import numpy as np

SuccessFn = Callable[[Mapping[str, Any]], float]


def gripper_closed(obs: Any, key: str, threshold: float) -> bool:
    """Whether `obs[key]` (0 open .. 1 closed; newest frame of a stack) exceeds `threshold`."""
    if not isinstance(obs, Mapping) or key not in obs:
        raise KeyError(f"the gripper requirement reads observation key {key!r}, which is absent")
    return bool(np.asarray(obs[key]).reshape(-1)[-1] > threshold)


class LearnedReward(gym.Wrapper):
    """Reward 1 and episode end when p(success | obs) > `threshold`, else reward 0.

    With `gripper_key` set, success also needs the gripper closed (HIL-SERL: p > 0.7 and the
    gripper holding something). The env's own reward is replaced; its termination still
    ends the episode. `info` gains "success_prob" and "learned_success"; "success" is kept
    when the env reports one (a simulator's truth, for evaluation) and set to the learned one
    otherwise (a real robot).
    """

    def __init__(
        self,
        env: gym.Env,
        success_fn: SuccessFn,
        threshold: float = 0.5,
        gripper_key: str | None = None,
        gripper_threshold: float = 0.5,
        terminate: bool = True,
    ) -> None:
        super().__init__(env)
        if not 0.0 <= threshold < 1.0:
            raise ValueError(f"threshold must lie in [0, 1), got {threshold}")
        self.success_fn = success_fn
        self.threshold = float(threshold)
        self.gripper_key = gripper_key
        self.gripper_threshold = float(gripper_threshold)
        self.terminate = terminate

    def learned_success(self, obs: Any) -> tuple[bool, float]:
        """(success, probability) of one observation."""
        prob = float(self.success_fn(obs))
        if not np.isfinite(prob):
            raise ValueError(f"the success classifier returned {prob}")
        success = prob > self.threshold
        if success and self.gripper_key is not None:
            success = gripper_closed(obs, self.gripper_key, self.gripper_threshold)
        return success, prob

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        """Step, then reward (and end) by the classifier's verdict on the new observation."""
        obs, _, terminated, truncated, info = self.env.step(action)
        success, prob = self.learned_success(obs)
        info = {**info, "success_prob": prob, "learned_success": success}
        info.setdefault("success", success)
        return (
            obs,
            float(success),
            bool(terminated or (success and self.terminate)),
            truncated,
            info,
        )


class MultiStageLearnedReward(gym.Wrapper):
    """Several classifiers, one per stage, each earning reward 1 once, in order.

    Stage k is checked only after stages 0..k-1 succeeded; the episode ends when the last one
    succeeds. `info` gains "stage" (stages done), "stage_probs" (probabilities of the stages
    checked this step, others NaN) and "learned_success" (all stages done).
    """

    def __init__(
        self,
        env: gym.Env,
        success_fns: Sequence[SuccessFn],
        thresholds: float | Sequence[float] = 0.5,
        terminate: bool = True,
    ) -> None:
        super().__init__(env)
        if not success_fns:
            raise ValueError("give at least one stage classifier")
        self.success_fns = list(success_fns)
        n = len(self.success_fns)
        self.thresholds = [float(thresholds)] * n if np.isscalar(thresholds) else list(thresholds)
        if len(self.thresholds) != n:
            raise ValueError(f"{len(self.thresholds)} thresholds for {n} stages")
        self.terminate = terminate
        self.stage = 0

    def reset(self, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
        """Reset the env and start again from stage 0."""
        self.stage = 0
        obs, info = self.env.reset(**kwargs)
        return obs, {**info, "stage": 0}

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        """Step; every stage that now succeeds in order pays 1."""
        obs, _, terminated, truncated, info = self.env.step(action)
        probs = [float("nan")] * len(self.success_fns)
        reward = 0.0
        while self.stage < len(self.success_fns):
            p = float(self.success_fns[self.stage](obs))
            probs[self.stage] = p
            if p <= self.thresholds[self.stage]:
                break
            reward += 1.0
            self.stage += 1
        done = self.stage == len(self.success_fns)
        info = {**info, "stage": self.stage, "stage_probs": probs, "learned_success": done}
        info.setdefault("success", done)
        return obs, reward, bool(terminated or (done and self.terminate)), truncated, info
