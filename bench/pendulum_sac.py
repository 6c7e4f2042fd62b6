"""Learning check: SAC with the `sac_state` preset on gymnasium's Pendulum-v1.

Pass: a deterministic evaluation (mean return over `--eval-episodes` episodes) reaches >= -250
within 15k env steps, for every seed. Loop: `--random-steps` uniform random actions, then one
learner step (8 critic minibatches of 256 + actor/temperature) per env step. Pendulum never
terminates; its 200-step time limit is a truncation, so every mask is 1 (bootstrap through it).
The tiny numpy ring buffer below is private to this check (the project's buffers live in
serl.data). Writes bench/results/pendulum_sac.json: return vs env steps per seed.

    .venv/bin/python bench/pendulum_sac.py [--seeds 0 1 2] [--env-steps 15000]
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import gymnasium as gym
import jax
import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from common import write_result

from serl.agents import PRESETS, create, eval_actions, sample_actions, update

THRESHOLD = -250.0
BUDGET = 15_000


def make_env() -> gym.Env:
    one = np.float32(1.0)
    return gym.wrappers.RescaleAction(gym.make("Pendulum-v1"), -one, one)


def evaluate(state, env: gym.Env, episodes: int, seed: int) -> float:
    returns = []
    for i in range(episodes):
        obs, _ = env.reset(seed=seed + i)
        done, total = False, 0.0
        while not done:
            obs, reward, terminated, truncated, _ = env.step(eval_actions(state, {"state": obs}))
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
    return float(np.mean(returns))


def run_seed(
    seed: int,
    env_steps: int = BUDGET,
    random_steps: int = 1000,
    eval_every: int = 1000,
    eval_episodes: int = 5,
    preset: str = "sac_state",
    evals_after_pass: int | None = None,
    log=print,
) -> dict[str, object]:
    """Train one seed; returns its learning curve and whether it passed."""
    config = PRESETS[preset]
    env, eval_env = make_env(), make_env()
    obs, _ = env.reset(seed=seed)
    env.action_space.seed(seed)
    state = create(config, {"state": obs}, env.action_space.shape[0], seed=seed)
    keys = np.asarray(jax.random.split(jax.random.PRNGKey(seed + 10_000), env_steps))
    rng = np.random.default_rng(seed)

    # Ring buffer, just big enough for the whole run.
    obs_buf = np.zeros((env_steps, obs.shape[0]), np.float32)
    next_buf = np.zeros_like(obs_buf)
    act_buf = np.zeros((env_steps, env.action_space.shape[0]), np.float32)
    rew_buf = np.zeros(env_steps, np.float32)
    mask_buf = np.zeros(env_steps, np.float32)

    curve, updates, t0 = [], 0, time.perf_counter()
    for t in range(env_steps):
        if t < random_steps:
            action = env.action_space.sample()
        else:
            action = sample_actions(state, {"state": obs}, keys[t])
        next_obs, reward, terminated, truncated, _ = env.step(action)
        obs_buf[t], act_buf[t], rew_buf[t] = obs, action, reward
        next_buf[t], mask_buf[t] = next_obs, 0.0 if terminated else 1.0
        obs = env.reset()[0] if terminated or truncated else next_obs

        if t + 1 >= random_steps:
            idx = rng.integers(0, t + 1, config.sample_size)
            batch = {
                "observations": {"state": obs_buf[idx]},
                "next_observations": {"state": next_buf[idx]},
                "actions": act_buf[idx],
                "rewards": rew_buf[idx],
                "masks": mask_buf[idx],
            }
            state, metrics = update(state, batch)
            updates += 1
        if (t + 1) % eval_every == 0:
            ret = evaluate(state, eval_env, eval_episodes, seed=10_000 * (seed + 1))
            row = {
                "env_step": t + 1,
                "mean_return": round(ret, 2),
                "wall_s": round(time.perf_counter() - t0, 1),
            }
            if updates:
                row["alpha"] = round(float(metrics["temperature/value"]), 5)
                row["critic_loss"] = round(float(metrics["critic/loss"]), 4)
            curve.append(row)
            log(f"seed {seed} {row}")
            if evals_after_pass is not None:  # stop once passed and seen to stay passed
                first = next(
                    (i for i, r in enumerate(curve) if r["mean_return"] >= THRESHOLD), None
                )
                if first is not None and len(curve) - 1 - first >= evals_after_pass:
                    break
    reached = [r["env_step"] for r in curve if r["mean_return"] >= THRESHOLD]
    return {
        "seed": seed,
        "passed": bool(reached and reached[0] <= BUDGET),
        "first_env_step_at_threshold": reached[0] if reached else None,
        "final_mean_return": curve[-1]["mean_return"],
        "best_mean_return": max(r["mean_return"] for r in curve),
        "learner_steps": updates,
        "learner_steps_per_wall_s": round(updates / (time.perf_counter() - t0), 2),
        "wall_s": round(time.perf_counter() - t0, 1),
        "curve": curve,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--env-steps", type=int, default=BUDGET)
    p.add_argument("--random-steps", type=int, default=1000)
    p.add_argument("--eval-every", type=int, default=1000)
    p.add_argument("--eval-episodes", type=int, default=5)
    p.add_argument("--jobs", type=int, default=1, help="seeds trained in parallel processes")
    p.add_argument(
        "--evals-after-pass",
        type=int,
        default=None,
        help="stop a seed this many evaluations after it first passes (default: full budget)",
    )
    p.add_argument("--out", default="pendulum_sac", help="name of the bench/results JSON")
    args = p.parse_args()
    steps = (args.env_steps, args.random_steps, args.eval_every, args.eval_episodes)
    steps = (*steps, "sac_state", args.evals_after_pass)
    if args.jobs > 1:
        ctx = multiprocessing.get_context("spawn")  # JAX does not survive fork
        with ProcessPoolExecutor(args.jobs, mp_context=ctx) as pool:
            runs = list(pool.map(run_seed, args.seeds, *[[v] * len(args.seeds) for v in steps]))
    else:
        runs = [run_seed(s, *steps) for s in args.seeds]
    passed = sum(r["passed"] for r in runs)
    write_result(
        args.out,
        {
            "bench": "SAC (sac_state preset) on gymnasium Pendulum-v1",
            "criterion": f"deterministic eval mean return >= {THRESHOLD} within {BUDGET} env steps",
            "protocol": {
                "random_steps": args.random_steps,
                "seeds_in_parallel": args.jobs,
                "evals_after_pass": args.evals_after_pass,
                "learner_steps_per_env_step": 1,
                "eval_every": args.eval_every,
                "eval_episodes": args.eval_episodes,
                "preset": "sac_state",
                "config": repr(PRESETS["sac_state"]),
            },
            "seeds_passed": f"{passed}/{len(runs)}",
            "passed": passed == len(runs),
            "runs": runs,
        },
    )


if __name__ == "__main__":
    main()
