"""Frozen-backbone features computed once per camera frame, for the learner's buffers.

With `EncoderConfig.cache_features` a stored frame's backbone output never changes, so it is
computed once per frame: by the actor, which runs the backbone to act anyway and sends each
frame's features with its transitions, and by the learner for the demos and a replay reloaded
on resume (the same weight file, function and call shape: bit-identical maps). The learner's
in-memory buffers hold feature maps (bfloat16) where the durable episode store keeps the
pixels (re-encodable, videos); the agent's trainable head learns on the stored features.
With `cached_views` K > 1 each frame is stored as K feature maps [K, h, w, c]: the frame's own
and those of K - 1 shifted copies (fixed offsets, so a resumed run rebuilds the same views);
the buffers hand each sample one of them at random (`view_keys`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from serl.agents.common import (
    EncoderConfig,
    feature_map_shape,
    map_in_chunks,
    pretrained_backbone,
)
from serl.data import Episode, Schema
from serl.errors import ConfigError
from serl.networks import FEATURE_DTYPE, frame_features, make_backbone


class FeatureCache:
    """Turns camera frames into the frozen backbone's feature maps, one camera count at a time."""

    def __init__(self, encoder: EncoderConfig, camera_keys: tuple[str, ...]) -> None:
        if not encoder.cache_features:
            raise ConfigError("FeatureCache needs an encoder with cache_features")
        if encoder.pretrained_path is None:
            raise ConfigError(
                "cached features come from a pretrained backbone: set encoder.pretrained_path "
                "(e.g. 'imagenet' for mobilenet_v2)"
            )
        self.encoder = encoder
        self.keys = tuple(camera_keys)
        module = make_backbone(encoder.backbone, encoder.feature_stride)
        # the file's weights replace every parameter: only their shapes are needed
        shapes = jax.eval_shape(module.init, jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 3)))
        self._params = jax.device_put(pretrained_backbone(encoder, shapes["params"]))

        def features(params: Any, frames: jax.Array) -> jax.Array:
            def apply(x: jax.Array) -> jax.Array:
                return module.apply({"params": params}, x)

            return frame_features(apply, frames, encoder.backbone)

        self._features = jax.jit(features)
        # view 0 is the frame itself; the others shift it by fixed offsets within the pad
        pad = encoder.view_shift_pad
        offsets = np.random.default_rng(0).integers(-pad, pad + 1, (4 * encoder.cached_views, 2))
        offsets = [tuple(o) for o in offsets if tuple(o) != (0, 0)]
        self.offsets = [(0, 0), *list(dict.fromkeys(offsets))[: encoder.cached_views - 1]]
        if len(self.offsets) < encoder.cached_views:
            raise ConfigError(
                f"cached_views={encoder.cached_views}: a shift pad of {pad} px "
                f"gives only {len(self.offsets)} distinct views"
            )

    @property
    def view_keys(self) -> tuple[str, ...]:
        """Keys whose stored frames hold several views (for `FrameReplayBuffer`)."""
        return self.keys if len(self.offsets) > 1 else ()

    @property
    def sent_by_actor(self) -> bool:
        """Whether actors send each frame's features (one view per frame, what they act on);
        K shifted views are the learner's to compute."""
        return not self.view_keys

    @classmethod
    def for_schema(cls, encoder: EncoderConfig | None, schema: Schema) -> FeatureCache | None:
        """The cache for a run whose agent caches features (None otherwise)."""
        if encoder is None or not encoder.cache_features:
            return None
        # the agent's rule (`AgentSpec.image_keys`): frames [H, W, C] or stacks [T, H, W, C]
        keys = encoder.image_keys or [k for k, s in schema.observations if len(s.shape) in (3, 4)]
        return cls(encoder, tuple(sorted(keys)))

    def schema(self, schema: Schema) -> Schema:
        """`schema` (per frame or stacked) with every camera replaced by its feature map."""
        specs = {}
        for key, spec in schema.observations:
            if key in self.keys:
                views = (len(self.offsets),) if self.view_keys else ()
                frame = feature_map_shape(self.encoder, spec.shape[-3:])
                shape = (*spec.shape[:-3], *views, *frame)
                specs[key] = (shape, np.dtype(FEATURE_DTYPE))
            else:
                specs[key] = (spec.shape, spec.dtype)
        return Schema.create(specs, schema.action_shape)

    def frames(self, frames: np.ndarray) -> np.ndarray:
        """uint8 frames [N, H, W, C] -> feature maps [N, h, w, c] (bfloat16), or [N, K, h, w, c]
        with K views."""
        if not self.view_keys:
            return self._backbone(frames)
        views = np.stack([shift_frames(frames, dy, dx) for dy, dx in self.offsets], axis=1)
        out = self._backbone(views.reshape(-1, *frames.shape[1:]))
        return out.reshape(len(frames), len(self.offsets), *out.shape[1:])

    def _backbone(self, frames: np.ndarray) -> np.ndarray:
        # one call per observation's cameras: the shape an actor calls it with, so the
        # learner's maps of the same frames (demos, resume) are bit-identical to the actor's
        return map_in_chunks(lambda x: self._features(self._params, x), frames, len(self.keys))

    def observation(self, obs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """One observation (an actor's) with its cameras' frames, or frame stacks, as feature
        maps: the cameras of one shape in one call, computed as stored frames are."""
        out = dict(obs)
        for shape in dict.fromkeys(np.shape(obs[k]) for k in self.keys):
            keys = [k for k in self.keys if np.shape(obs[k]) == shape]
            frames = np.stack([obs[k] for k in keys]).reshape(-1, *shape[-3:])
            maps = self.frames(frames)
            maps = maps.reshape(len(keys), *shape[:-3], *maps.shape[1:])
            out.update(zip(keys, maps, strict=True))
        return out

    def stacks(self, stacks: np.ndarray) -> np.ndarray:
        """Frame stacks [L, T, H, W, C] -> [L, T, h, w, c], each distinct frame computed once
        (consecutive stacks of an episode share T - 1 frames)."""
        L, T = stacks.shape[:2]
        if T > 1 and np.array_equal(stacks[1:, :-1], stacks[:-1, 1:]):
            unique = self.frames(np.concatenate([stacks[0], stacks[1:, -1]]))
            return unique[np.arange(L)[:, None] + np.arange(T)[None, :]]
        flat = self.frames(stacks.reshape(L * T, *stacks.shape[2:]))
        return flat.reshape(L, T, *flat.shape[1:])

    def episode(self, episode: Episode) -> Episode:
        """`episode` with its cameras' frames (or frame stacks) as feature maps."""
        observations = dict(episode.observations)
        for key in self.keys:
            frames = observations[key]
            observations[key] = self.frames(frames) if frames.ndim == 4 else self.stacks(frames)
        return Episode(
            observations, episode.actions, episode.rewards, episode.terminated, episode.truncated
        )


def shift_frames(frames: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """Frames [N, H, W, C] moved by (dy, dx) pixels, edges repeated (DrQ's shift, one offset)."""
    h, w = frames.shape[1:3]
    pad = max(abs(dy), abs(dx))
    if pad == 0:
        return frames
    padded = np.pad(frames, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="edge")
    return padded[:, pad - dy : pad - dy + h, pad - dx : pad - dx + w]
