"""`serl eval`: rebuild a run's newest policy from its checkpoint and evaluate it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from gymnasium.error import DependencyNotInstalled

from serl.agents.policy import eval_actions
from serl.errors import PathNotFound, ProcessFailed
from serl.train.config import TrainConfig
from serl.train.envs import chunk_env, make_env
from serl.train.reports import write_video
from serl.train.rollout import evaluate, render_episodes
from serl.train.run_checkpoints import latest_checkpoint, load_checkpoint

EVAL_SEED = 20_000_000  # seeds no actor trains or evaluates on


def evaluate_run(
    run_dir: Path, episodes: int = 20, video: Path | None = None, video_episodes: int = 3
) -> dict[str, Any]:
    """Success rate and mean return of the run's latest checkpoint; optionally an mp4."""
    cfg = TrainConfig.load(run_dir)
    checkpoint = latest_checkpoint(run_dir)
    if checkpoint is None:
        raise PathNotFound(f"{run_dir}: no complete checkpoint to evaluate yet")
    agent, meta = load_checkpoint(checkpoint)

    def act(obs: dict[str, np.ndarray]) -> np.ndarray:
        return eval_actions(agent, obs)

    env = run_env(cfg)
    result = evaluate(env, act, episodes, seed=EVAL_SEED)
    env.close()
    if video is not None:
        write_video(_video_frames(cfg, act, video_episodes), video)
    return {
        **result,
        "episodes": episodes,
        "checkpoint": checkpoint.name,
        "updates": meta["updates"],
        "env_steps": meta["env_steps"],
    }


def run_env(cfg: TrainConfig, **kwargs: Any) -> Any:
    """The env a run's policy acts in (chunked like its training env)."""
    env = make_env(cfg.env_id, **{**cfg.env_kwargs, **kwargs})
    return chunk_env(env, cfg.obs_horizon, cfg.act_exec_horizon)


def _video_frames(cfg: TrainConfig, act: Any, episodes: int) -> list[np.ndarray]:
    try:
        env = run_env(cfg, render_mode="rgb_array")
    except Exception as e:  # e.g. an env without an rgb_array render mode
        raise ProcessFailed(f"{cfg.env_id} cannot render video frames: {e}") from e
    try:
        return render_episodes(env, act, episodes, seed=EVAL_SEED)
    except DependencyNotInstalled as e:  # classic control draws with pygame, an extra
        raise ProcessFailed(f"{cfg.env_id} cannot render video frames: {e}") from e
    finally:
        env.close()
