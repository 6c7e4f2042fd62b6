"""Record demonstrations with a scripted expert into an episode store."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from serl.data import Episode, EpisodeStore
from serl.envs import make_expert
from serl.train.envs import env_schema, make_env


def rollout_episode(env: Any, policy: Any, seed: int) -> tuple[Episode, bool]:
    """Run one episode with `policy(obs) -> action`; return it and whether it succeeded."""
    obs, info = env.reset(seed=seed)
    frames, actions, rewards, terminated, truncated = [obs], [], [], [], []
    done = False
    while not done:
        action = np.asarray(policy(obs), dtype=np.float32)
        obs, reward, term, trunc, info = env.step(action)
        frames.append(obs)
        actions.append(action)
        rewards.append(reward)
        terminated.append(term)
        truncated.append(trunc)
        done = term or trunc
    episode = Episode(
        observations={k: np.stack([f[k] for f in frames]) for k in frames[0]},
        actions=np.stack(actions),
        rewards=np.asarray(rewards, np.float32),
        terminated=np.asarray(terminated, bool),
        truncated=np.asarray(truncated, bool),
    )
    return episode, bool(info.get("success", False))


def record_demos(
    env_id: str,
    episodes: int,
    out: Path,
    expert: str = "scripted",
    seed: int = 0,
    successful_only: bool = True,
    noise: float = 0.05,
    max_attempts_factor: int = 3,
) -> Path:
    """Record `episodes` demos (successful ones only, by default) into a new episode store."""
    if expert != "scripted":
        raise NotImplementedError(
            f"--expert {expert}: teleop devices (spacemouse, gamepad, keyboard) come with the "
            "human-in-the-loop work; use --expert scripted"
        )
    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    env = make_env(env_id)
    policy = make_expert(env, noise=noise, seed=seed)
    store = EpisodeStore.create(out, env_schema(env))
    kept = attempts = 0
    with store, tqdm(total=episodes, desc=f"demos {env_id}", unit="ep") as bar:
        while kept < episodes:
            if attempts >= max_attempts_factor * episodes:
                raise RuntimeError(
                    f"only {kept} of {attempts} expert episodes succeeded; kept {kept} in {out}"
                )
            policy.reset()
            episode, success = rollout_episode(env, policy, seed=seed + attempts)
            attempts += 1
            if success or not successful_only:
                store.append(episode)
                kept += 1
                bar.update(1)
    env.close()
    return out
