"""Replay buffers, demo mixing and the on-disk episode store."""

from serl.data.episode_store import EpisodeStore, load_episodes
from serl.data.episodes import EpisodeBuilder, load_pickle_demos, step_runs
from serl.data.frames import FrameReplayBuffer, JpegCodec
from serl.data.mixing import MixedSampler, Sampler, demo_rows
from serl.data.replay import Buffer, ReplayBuffer
from serl.data.schema import ArraySpec, Batch, Episode, Schema, stack_frames

__all__ = [
    "ArraySpec",
    "Batch",
    "Buffer",
    "Episode",
    "EpisodeBuilder",
    "EpisodeStore",
    "FrameReplayBuffer",
    "JpegCodec",
    "MixedSampler",
    "ReplayBuffer",
    "Sampler",
    "Schema",
    "demo_rows",
    "load_episodes",
    "load_pickle_demos",
    "stack_frames",
    "step_runs",
]
