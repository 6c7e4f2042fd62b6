"""DrQ on the vision pick-cube with a learned reward vs with the true reward (success vs steps).

Both arms train the same DrQ (the pick-cube recipe's demo settings: BC of the demo rows,
discount 0.97, standardised proprio) from the same scripted demos, side by side in two
processes (no gRPC), and are evaluated the same way: deterministic episodes on the sparse sim,
success = the simulator's truth. The learned arm never sees the truth while training: its env
is the dense variant (which never ends an episode) under `LearnedReward`, driven by a classifier
trained on `info["success"]`-labelled frames; its demos are relabelled by the classifier too.

    .venv/bin/python bench/learned_reward.py --quick   # CPU: 32x32 frames, 10k steps (~25 min)
    .venv/bin/python bench/learned_reward.py           # the full configuration (a GPU's worth)

Writes bench/results/learned_reward.json (and learned_reward.png).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import multiprocessing
import shutil
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import jax
import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

from common import RESULTS, write_result

from serl.agents import api as agents
from serl.agents import classifier as clf
from serl.agents.policy import eval_actions, sample_actions
from serl.data import Episode, FrameReplayBuffer, MixedSampler
from serl.envs import make_expert
from serl.train.demos import episodes_norm
from serl.train.envs import env_schema, make_env
from serl.train.recording import record_transitions
from serl.train.reports import plot_learning_curves
from serl.train.reward_model import RewardClassifier, train_classifier
from serl.train.rollout import evaluate, run_episode
from serl.wrappers import LearnedReward

ENV_ID = "serl/PandaPickCubeVision-v0"
HELD_OUT_SEED = 100_000
DEMO_SEED = 50_000
EVAL_SEED = 10_000_000


@dataclasses.dataclass(frozen=True)
class Setup:
    """One bench configuration."""

    image_size: int
    label_episodes: int
    classifier_steps: int
    demos: int
    env_steps: int
    eval_every: int
    eval_episodes: int
    batch_size: int
    critic_actor_ratio: int
    num_qs: int
    updates_per_env_step: float
    training_starts: int


QUICK = Setup(32, 45, 600, 20, 10_000, 1_000, 10, 64, 2, 2, 1.0, 500)
FULL = Setup(128, 120, 3_000, 20, 30_000, 2_000, 20, 256, 2, 2, 1.0, 500)


def relabel(episode: Episode, state: clf.ClassifierState, threshold: float) -> Episode:
    """A demo as the learned arm sees it: reward 1 and the end at the classifier's first
    success (the sim's reward and termination dropped); never firing: truncated, all 0."""
    cams = {k: episode.observations[k][1:] for k in state.spec.keys}
    fired = np.flatnonzero(clf.predict(state, cams) > threshold)
    n = int(fired[0]) + 1 if len(fired) else len(episode)
    rewards = np.zeros(n, np.float32)
    terminated, truncated = np.zeros(n, bool), np.zeros(n, bool)
    if len(fired):
        rewards[-1], terminated[-1] = 1.0, True
    else:
        truncated[-1] = True
    obs = {k: v[: n + 1] for k, v in episode.observations.items()}
    return Episode(obs, episode.actions[:n], rewards, terminated, truncated)


def record_demos(setup: Setup) -> list[Episode]:
    """Successful scripted demos on the sparse sim at the bench's image size."""
    env = make_env(ENV_ID, image_size=setup.image_size)
    expert = make_expert(env, noise=0.05, seed=DEMO_SEED)
    demos, seed = [], DEMO_SEED
    while len(demos) < setup.demos:
        expert.reset()
        run = run_episode(env, expert, seed)
        seed += 1
        if run.success:
            demos.append(run.episode())
    env.close()
    return demos


def train_arm(
    arm: str, setup: Setup, demos: list[Episode], classifier: Path | None, seed: int
) -> dict[str, Any]:
    """Train DrQ for `setup.env_steps`; evaluate on the sim's truth every `eval_every`."""
    reward = None if classifier is None else RewardClassifier(classifier)
    if reward is None:
        env = make_env(ENV_ID, image_size=setup.image_size)
    else:
        base = make_env(ENV_ID, image_size=setup.image_size, reward_type="dense")
        env = LearnedReward(base, reward, threshold=reward.threshold)
    eval_env = make_env(ENV_ID, image_size=setup.image_size)
    schema = env_schema(env)
    online = FrameReplayBuffer(schema, setup.env_steps + 1_000)
    demo_buffer = FrameReplayBuffer(schema, sum(len(d) + 1 for d in demos) + 10)
    for episode in demos:
        demo_buffer.insert_episode(
            episode if reward is None else relabel(episode, reward.state, reward.threshold)
        )
    sampler = MixedSampler(demo_buffer, online, 0.5, mark_demos=True)
    # the pick-cube recipe's demo settings (sac_demo) on DrQ: BC of the demo rows, discount
    # 0.97, proprio standardised with the demos' statistics
    config = dataclasses.replace(
        agents.get_preset("drq_small"),
        batch_size=setup.batch_size,
        critic_actor_ratio=setup.critic_actor_ratio,
        num_qs=setup.num_qs,
        discount=0.97,
        bc_weight=1.0,
        obs_norm=episodes_norm(demos, schema.image_keys),
    )
    obs, _ = env.reset(seed=seed)
    agent = agents.create(config, obs, 4, seed)
    rng, key = np.random.default_rng(seed), jax.random.PRNGKey(seed)
    rows, updates = [], 0
    # training episodes in which the classifier / the simulator saw success (learned arm:
    # how often the learned reward agreed with the truth)
    counts = {"episodes": 0, "learned_success": 0, "true_success": 0, "both": 0}
    learned_hit = true_hit = False
    start = time.monotonic()
    for step in range(1, setup.env_steps + 1):
        key, k = jax.random.split(key)
        action = sample_actions(agent, obs, k)
        nxt, r, terminated, truncated, info = env.step(action)
        online.insert(obs, action, r, terminated, truncated, nxt)
        learned_hit |= bool(info.get("learned_success", False))
        true_hit |= bool(info.get("success", False))
        obs = nxt
        if terminated or truncated:
            counts["episodes"] += 1
            counts["learned_success"] += learned_hit
            counts["true_success"] += true_hit
            counts["both"] += learned_hit and true_hit
            learned_hit = true_hit = False
            obs, _ = env.reset()
        allowed = int(setup.updates_per_env_step * (step - setup.training_starts))
        while updates < allowed:
            agent, _ = agents.update(agent, sampler.sample(config.sample_size, rng))
            updates += 1
        if step % setup.eval_every == 0:
            result = evaluate(
                eval_env, functools.partial(eval_actions, agent), setup.eval_episodes, EVAL_SEED
            )
            rows.append({"env_step": step, "wall_s": round(time.monotonic() - start, 1), **result})
            print(f"{arm}: {rows[-1]}", flush=True)
    env.close()
    eval_env.close()
    return {"evaluations": rows, "updates": updates, "training_episodes": counts}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="the small CPU configuration")
    p.add_argument("--env-steps", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--work", type=Path, default=Path("runs/bench_learned_reward"))
    args = p.parse_args()
    setup = QUICK if args.quick else FULL
    if args.env_steps is not None:
        setup = dataclasses.replace(setup, env_steps=args.env_steps)
    if args.work.exists():
        shutil.rmtree(args.work)
    kwargs = {"reward_type": "dense", "image_size": setup.image_size}
    start = time.monotonic()
    train = record_transitions(
        ENV_ID, args.work / "labels", setup.label_episodes, seed=0, env_kwargs=kwargs
    )
    held = record_transitions(
        ENV_ID,
        args.work / "held_out",
        max(setup.label_episodes // 3, 3),
        seed=HELD_OUT_SEED,
        env_kwargs=kwargs,
    )
    config = clf.ClassifierConfig(image_size=min(setup.image_size, 64))
    report = train_classifier(
        [train["path"]],
        args.work / "classifier",
        eval_stores=[held["path"]],
        config=config,
        steps=setup.classifier_steps,
    )
    classifier_s = time.monotonic() - start
    print(f"classifier: held-out {report['held_out']}", flush=True)
    demos = record_demos(setup)
    # the two arms train side by side, one process each
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(2, mp_context=spawn) as pool:
        jobs = {
            "true_reward": pool.submit(train_arm, "true_reward", setup, demos, None, args.seed),
            "learned_reward": pool.submit(
                train_arm, "learned_reward", setup, demos, args.work / "classifier", args.seed
            ),
        }
        arms = {name: job.result() for name, job in jobs.items()}
    plot_learning_curves(
        {name: arm["evaluations"] for name, arm in arms.items()}, RESULTS / "learned_reward.png"
    )
    write_result(
        "learned_reward",
        {
            "command": " ".join(["bench/learned_reward.py", *sys.argv[1:]]),
            "env_id": ENV_ID,
            "configuration": "quick (CPU)" if args.quick else "full",
            "setup": dataclasses.asdict(setup),
            "seed": args.seed,
            "classifier": {
                "held_out_accuracy": report["held_out"]["accuracy"],
                "held_out_balanced_accuracy": report["held_out"]["balanced_accuracy"],
                "precision": report["held_out"]["precision"],
                "recall": report["held_out"]["recall"],
                "threshold": report["threshold"],
                "train_frames": train["frames"],
                "seconds": round(classifier_s, 1),
            },
            "arms": arms,
            "final_success": {
                k: a["evaluations"][-1]["success_rate"] if a["evaluations"] else None
                for k, a in arms.items()
            },
        },
    )


if __name__ == "__main__":
    main()
