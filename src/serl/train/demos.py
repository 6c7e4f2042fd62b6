"""Demo stores as a run uses them: observation statistics, a summary, a replay to video,
LeRobotDataset export and import (recording them is `serl.train.recording`)."""

from __future__ import annotations

import dataclasses
import itertools
import json
from collections import Counter
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from serl.data import Episode, EpisodeStore, Schema
from serl.data.episode_store import built_beside
from serl.data.episodes import joined_fragments
from serl.data.lerobot import LeRobotReader, VideoSettings, write_lerobot
from serl.errors import ConfigError
from serl.train.config import TrainConfig
from serl.train.envs import env_schema, make_env
from serl.train.rollout import run_episode


def observation_norm(store_path: str | Path, min_std: float = 1e-2) -> tuple:
    """Per-key mean and std (floored at `min_std`) of a demo store's non-image observations:
    the agent's input standardisation, so a few millimetres of gripper-to-cube distance are a
    visible change to the networks rather than a rounding error on absolute positions."""
    with EpisodeStore.open(store_path) as store:
        episodes = list(store)
        return episodes_norm(episodes, store.schema.image_keys, min_std)


def episodes_norm(episodes: list[Episode], image_keys: Any, min_std: float = 1e-2) -> tuple:
    """`observation_norm` of episodes in memory (keys in `image_keys` are left out)."""
    parts: dict[str, list[np.ndarray]] = {}
    for episode in episodes:
        for key, value in episode.observations.items():
            if key not in image_keys:
                parts.setdefault(key, []).append(np.reshape(value, (len(value), -1)))
    norm = []
    for key in sorted(parts):
        x = np.concatenate(parts[key]).astype(np.float64)
        std = np.maximum(x.std(axis=0), min_std)
        norm.append((key, tuple(map(float, x.mean(axis=0))), tuple(map(float, std))))
    return tuple(norm)


def tile_obs_norm(norm: tuple, obs_horizon: int) -> tuple:
    """Per-frame standardisation constants repeated for every frame of a stack."""
    if obs_horizon == 1:
        return norm
    # every slot of a stack sees the same states, so the per-frame statistics apply to each
    return tuple((key, mean * obs_horizon, std * obs_horizon) for key, mean, std in norm)


def with_observation_norm(cfg: TrainConfig) -> TrainConfig:
    """`cfg` with the demos' observation statistics in its agent overrides, when it asks for
    them, has demos, and has none yet (a resumed run keeps the ones it started with); tiled
    for stacked observations (demo stores hold single frames)."""
    if not (cfg.normalize_observations and cfg.demos) or "obs_norm" in cfg.agent_overrides:
        return cfg
    norm = tile_obs_norm(observation_norm(cfg.demos), cfg.obs_horizon)
    return dataclasses.replace(cfg, agent_overrides={**cfg.agent_overrides, "obs_norm": norm})


def is_success(episode: Episode, attrs: dict[str, Any]) -> bool:
    """A stored episode's recorded success (else: whether it ended by termination)."""
    return bool(attrs.get("success", episode.terminated[-1]))


def summarize_demos(path: Path) -> dict[str, Any]:
    """What a demo store holds: schema, episode count and lengths, returns, success, sources."""
    with EpisodeStore.open(path) as store:
        lengths, returns, successes, experts, envs = [], [], [], Counter(), Counter()
        for index, episode in enumerate(store):
            attrs = store.attrs(index)
            lengths.append(len(episode))
            returns.append(float(episode.rewards.sum()))
            successes.append(is_success(episode, attrs))
            experts[str(attrs.get("expert", "unknown"))] += 1
            envs[str(attrs.get("env_id", "unknown"))] += 1
        schema = store.schema
    summary: dict[str, Any] = {
        "path": str(path),
        "episodes": len(lengths),
        "steps": int(sum(lengths)),
        "observations": {
            k: {"shape": list(s.shape), "dtype": s.dtype} for k, s in schema.observations
        },
        "action_shape": list(schema.action_shape),
        "experts": dict(experts),
        "env_ids": dict(envs),
    }
    if lengths:
        summary.update(
            length_min=int(min(lengths)),
            length_mean=float(np.mean(lengths)),
            length_max=int(max(lengths)),
            mean_return=float(np.mean(returns)),
            success_rate=float(np.mean(successes)),
        )
    return summary


def replay_video(
    path: Path, out: Path, env_id: str | None = None, episodes: int | None = None, fps: int = 25
) -> dict[str, Any]:
    """Write an mp4 of a store's first `episodes` episodes (all by default).

    Camera observations are shown as stored; state-only episodes are re-simulated from their
    recorded seed and actions (rendered offscreen), and the largest deviation of the replayed
    observations from the stored ones is reported (0 for a faithful replay).
    """
    from serl.train.reports import write_video

    with EpisodeStore.open(path) as store:
        items = list(itertools.islice(store.items(), episodes))
        image_keys = store.schema.image_keys
    if not items:
        raise ConfigError(f"{path}: no episodes to replay")
    frames: list[np.ndarray] = []
    deviations: list[float] = []
    for episode, attrs in items:
        if image_keys:
            frames += [
                np.concatenate([episode.observations[k][t] for k in image_keys], axis=1)
                for t in range(len(episode) + 1)
            ]
            continue
        ep_env = env_id or attrs.get("env_id")
        if ep_env is None or "seed" not in attrs:
            raise ConfigError(
                f"{path}: episodes without images need an env id and a recorded "
                "seed to be re-simulated (pass --env-id)"
            )
        shown, deviation = _resimulate(ep_env, episode, int(attrs["seed"]))
        frames += shown
        deviations.append(deviation)
    write_video(frames, out, fps=fps)
    result: dict[str, Any] = {"video": str(out), "episodes": len(items), "frames": len(frames)}
    if deviations:
        result["max_obs_deviation"] = float(max(deviations))
    return result


def _resimulate(env_id: str, episode: Episode, seed: int) -> tuple[list[np.ndarray], float]:
    env = gym.wrappers.RenderCollection(make_env(env_id, render_mode="rgb_array"))
    actions = iter(episode.actions)
    try:
        run = run_episode(env, lambda obs: next(actions, None), seed)
        frames = env.render()
    finally:
        env.close()
    return frames, max(_obs_deviation(obs, episode, t) for t, obs in enumerate(run.frames))


def _obs_deviation(obs: dict[str, np.ndarray], episode: Episode, t: int) -> float:
    return max(
        float(np.max(np.abs(np.asarray(obs[k], np.float64) - v[t])))
        for k, v in episode.observations.items()
    )


def export_lerobot(
    store_path: Path,
    out: Path,
    fps: int = 10,
    task: str | None = None,
    video: VideoSettings | None = None,
) -> dict[str, Any]:
    """An episode store (demos, or a run's replay: its pieces joined back into episodes) as a
    LeRobotDataset; the task defaults to the episodes' env id."""
    with EpisodeStore.open(store_path) as store:
        if task is None:
            task = _env_id_of(store, store_path) or store_path.name
        items = (  # without the replay log's batch bookkeeping, which means nothing elsewhere
            ({k: v for k, v in attrs.items() if k not in ("seq", "part", "parts")}, episode)
            for episode, attrs in joined_fragments(store.items())
        )
        triples = ((episode, attrs, is_success(episode, attrs)) for attrs, episode in items)
        return write_lerobot(out, store.schema, triples, fps, task, video or VideoSettings())


def _env_id_of(store: EpisodeStore, path: Path) -> str | None:
    """The env a store's episodes came from: their attrs (demos), else the run's config."""
    if len(store) and "env_id" in store.attrs(0):
        return str(store.attrs(0)["env_id"])
    config = Path(path).parent / "config.json"  # RUN_DIR/replay
    return json.loads(config.read_text()).get("env_id") if config.exists() else None


def import_lerobot(
    src: Path, out: Path, env_id: str | None = None, env_kwargs: dict | None = None
) -> dict[str, Any]:
    """A LeRobotDataset as a new episode store `out` (written whole or not at all); with
    `env_id`, its features must be that env's observations and actions."""
    dataset = LeRobotReader(src)
    if env_id is not None:
        env = make_env(env_id, **(env_kwargs or {}))
        try:
            check_features(dataset.schema, env_schema(env), env_id)
        finally:
            env.close()
    steps = episodes = 0
    with built_beside(out) as tmp, EpisodeStore.create(tmp, dataset.schema) as store:
        for episode, attrs in dataset.episodes():
            store.append(episode, {**attrs, **({"env_id": env_id} if env_id else {})})
            steps, episodes = steps + len(episode), episodes + 1
    summary = {"out": str(out), "episodes": episodes, "steps": steps, "fps": dataset.fps}
    return summary | {"features_dropped": dataset.dropped}


def check_features(have: Schema, want: Schema, env_id: str) -> None:
    """A ConfigError listing every observation or action that differs from the env's."""
    problems = []
    mine, env = have.obs_specs, want.obs_specs
    for key in sorted(env.keys() | mine.keys()):
        if key not in mine:
            problems.append(f"no observation {key!r} (the env's is {env[key].shape})")
        elif key not in env:
            problems.append(f"observation {key!r} is not one of the env's")
        elif mine[key].shape != env[key].shape:
            problems.append(f"observation {key!r} is {mine[key].shape}, the env's {env[key].shape}")
    if have.action_shape != want.action_shape:
        problems.append(f"action is {have.action_shape}, the env's {want.action_shape}")
    if problems:
        raise ConfigError(f"the dataset does not fit {env_id}: " + "; ".join(problems))
