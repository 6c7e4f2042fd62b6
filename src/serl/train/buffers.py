"""A run's in-memory buffers, as the learner samples them: online steps, demos (joined by every
step a person intervened on, HIL-SERL), the mixed sampler, VICE's goal examples."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from serl.data import (
    Episode,
    EpisodeStore,
    FrameReplayBuffer,
    MixedSampler,
    ReplayBuffer,
    Schema,
    stack_frames,
    step_runs,
)
from serl.data.replay import Buffer
from serl.errors import ConfigError
from serl.train.config import TrainConfig
from serl.train.demos import is_success
from serl.train.envs import chunk_episode
from serl.train.feature_cache import FeatureCache


def make_buffer(schema: Schema, cfg: TrainConfig, view_keys: tuple[str, ...] = ()) -> Buffer:
    """Frame-once buffer (optionally JPEG) for camera frames or their cached feature maps, a
    ring buffer otherwise; `schema` is per frame, the buffer stacks `cfg.obs_horizon` of them.
    `view_keys` hold several cached views per frame, of which a sample takes one."""
    if any(len(s.shape) >= 3 for _, s in schema.observations):
        jpeg = schema.image_keys if cfg.jpeg_quality else ()
        return FrameReplayBuffer(
            schema,
            cfg.replay_capacity,
            cfg.obs_horizon,
            jpeg_keys=jpeg,
            jpeg_quality=cfg.jpeg_quality or 90,
            view_keys=view_keys,
        )
    return ReplayBuffer(schema, cfg.replay_capacity, cfg.obs_horizon)


def add_episode(buffer: Buffer, episode: Episode) -> None:
    """Insert an episode in the run's layout (frames are stacks when the buffer stacks)."""
    if buffer.obs_horizon == 1:
        buffer.insert_episode(episode)
    else:  # consecutive stacks share frames: the frame-once buffer stores each one once
        buffer.insert_many(**episode.transitions())


class RunBuffers:
    """The online buffer and the demo buffer of a run, and the sampler that mixes them.

    `schema` is what the buffers hold per frame (cached features in place of cameras when
    `features` is given); episodes come in as the env makes them (pixels) unless their buffered
    form is passed along (an actor sent its features).
    """

    def __init__(self, cfg: TrainConfig, schema: Schema, features: FeatureCache | None) -> None:
        self.cfg, self.schema, self.features = cfg, schema, features
        self.online = self.make()
        self.demos: Buffer | None = None
        self.demo_goals: list[dict[str, np.ndarray]] = []  # successful demos' final frames
        self.intervention_steps = 0
        self.sampler: Any = self.online

    def make(self) -> Buffer:
        """An empty buffer of the run's layout."""
        views = self.features.view_keys if self.features is not None else ()
        return make_buffer(self.schema, self.cfg, views)

    def featurize(self, episode: Episode) -> Episode:
        """The episode as the buffers hold it: cameras as cached features, if the agent's are."""
        return episode if self.features is None else self.features.episode(episode)

    def load_demos(self, path: str | Path, raw_schema: Schema) -> None:
        """The demo store's episodes (one env step each: `raw_schema`) into the demo buffer."""
        cfg, demos = self.cfg, self.make()
        with EpisodeStore.open(path) as store:
            if store.schema != raw_schema:
                raise ConfigError(f"{path}: demo schema differs from {cfg.env_id}'s")
            for stored, attrs in store.items():
                episode = chunk_episode(stored, cfg.obs_horizon, cfg.act_exec_horizon)
                add_episode(demos, self.featurize(episode))
                if is_success(episode, attrs):
                    self.demo_goals.append({k: v[-1] for k, v in episode.observations.items()})
        self._set_demos(demos)

    def insert(self, fragment: Episode, intervened: Any, buffered: Episode | None = None) -> None:
        """Online buffer always; the intervened steps also to the demo buffer (HIL-SERL).
        `buffered`: the fragment as the buffers hold it, when the actor sent its features."""
        fragment = self.featurize(fragment) if buffered is None else buffered
        add_episode(self.online, fragment)
        if len(intervened) == 0:
            return
        if self.demos is None:  # a run without demos: the first intervention starts one
            self._set_demos(self.make())
        assert self.demos is not None
        for run in step_runs(fragment, intervened):
            add_episode(self.demos, run)
        self.intervention_steps += len(intervened)

    def _set_demos(self, demos: Buffer) -> None:
        self.demos = demos
        self.sampler = MixedSampler(demos, self.online, self.cfg.demo_fraction, mark_demos=True)


def store_goal_examples(
    path: str | Path, schema: Schema, keys: tuple[str, ...], obs_horizon: int, stride: int
) -> dict[str, np.ndarray]:
    """The positive frames of a per-frame episode store, stacked like the run's observations:
    where an episode has `labels` (record-transitions) its 1s, otherwise all of its frames."""
    specs = schema.obs_specs
    parts: dict[str, list[np.ndarray]] = {k: [] for k in keys}
    with EpisodeStore.open(path) as store:
        theirs = store.schema.obs_specs
        bad = [k for k in keys if theirs.get(k) != specs[k]]
        if bad:
            raise ConfigError(
                f"{path}: goal examples need per-frame cameras {[(k, specs[k]) for k in bad]} "
                f"(the env's), found {[(k, theirs.get(k)) for k in bad]}"
            )
        for i, (episode, attrs) in enumerate(store.items()):
            labels = np.asarray(attrs.get("labels", np.ones(len(episode) + 1)), np.int64)
            if len(labels) != len(episode) + 1:
                raise ConfigError(
                    f"{path}: episode {i} has {len(labels)} labels for {len(episode) + 1} frames"
                )
            for k in keys:
                stacks = stack_frames(episode.observations[k], obs_horizon, stride)
                parts[k].append(stacks[labels == 1])
    if not sum(len(v) for v in parts[keys[0]]):
        raise ConfigError(f"{path}: no positive frames to use as goal examples")
    return {k: np.concatenate(v) for k, v in parts.items()}


def sample_goals(
    goals: dict[str, np.ndarray], n: int, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """`n` goal examples drawn uniformly with replacement (a fixed shape for the jitted step)."""
    idx = rng.integers(0, len(next(iter(goals.values()))), size=n)
    return {k: v[idx] for k, v in goals.items()}
