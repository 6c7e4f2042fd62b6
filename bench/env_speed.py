"""Env steps per second for the state and vision pick-cube tasks, random actions with resets."""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("MUJOCO_GL", "egl")

import gymnasium as gym
from common import write_result

import serl.envs  # noqa: F401

TARGETS = {"serl/PandaPickCube-v0": 1250.0, "serl/PandaPickCubeVision-v0": 150.0}
ORIGINAL = {"serl/PandaPickCube-v0": 615.0, "serl/PandaPickCubeVision-v0": 5.0}


def measure(env_id: str, steps: int, seed: int = 0) -> dict[str, float]:
    """Steps/s over `steps` random steps (resets included, as in a real actor loop)."""
    env = gym.make(env_id)
    env.action_space.seed(seed)
    actions = [env.action_space.sample() for _ in range(steps)]
    env.reset(seed=seed)  # the first reset opens the GL context: not part of the loop
    resets = 0
    start = time.perf_counter()
    for action in actions:
        _, _, terminated, truncated, _ = env.step(action)
        if terminated or truncated:
            env.reset()
            resets += 1
    elapsed = time.perf_counter() - start
    env.close()
    rate = steps / elapsed
    return {
        "steps": steps,
        "resets": resets,
        "seconds": round(elapsed, 3),
        "steps_per_s": round(rate, 1),
        "ms_per_step": round(1000 * elapsed / steps, 3),
        "target_steps_per_s": TARGETS[env_id],
        "meets_target": bool(rate >= TARGETS[env_id]),
        "original_steps_per_s": ORIGINAL[env_id],
        "speedup_vs_original": round(rate / ORIGINAL[env_id], 1),
    }


def main() -> None:
    """Measure both envs and write bench/results/env_speed.json."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--quick", action="store_true", help="200 steps, a smoke run")
    args = parser.parse_args()
    steps = 200 if args.quick else args.steps
    results = {env_id: measure(env_id, steps) for env_id in TARGETS}
    # the same 2000-step loop run twice more, to show the spread
    if not args.quick:
        for env_id in TARGETS:
            repeats = [measure(env_id, steps, seed)["steps_per_s"] for seed in (1, 2)]
            results[env_id]["repeats_steps_per_s"] = repeats
    write_result("env_speed", {"rendering": os.environ["MUJOCO_GL"], "envs": results})


if __name__ == "__main__":
    main()
