"""Image augmentation for the pixel agents: DrQ's random shift (pad, then crop back at random)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp


def random_shift(images: jax.Array, key: jax.Array, pad: int = 4) -> jax.Array:
    """Shift each image of a batch by up to `pad` pixels in x and y (edge padding, crop back).

    `images`: [B, H, W, C] or [B, T, H, W, C]; a frame stack gets one shift for all its frames.
    """
    if pad <= 0:
        return images
    b = images.shape[0]
    spatial = images.ndim - 3  # index of H
    widths = [(0, 0)] * images.ndim
    widths[spatial] = widths[spatial + 1] = (pad, pad)
    padded = jnp.pad(images, widths, mode="edge")
    offsets = jax.random.randint(key, (b, 2), 0, 2 * pad + 1)

    def crop(img: jax.Array, off: jax.Array) -> jax.Array:
        start = [0] * img.ndim
        start[spatial - 1] = off[0]
        start[spatial] = off[1]
        return jax.lax.dynamic_slice(img, start, images.shape[1:])

    return jax.vmap(crop)(padded, offsets)


def shift_observations(
    batch: dict[str, Any], key: jax.Array, image_keys: Sequence[str], pad: int
) -> dict[str, Any]:
    """Random-shift every camera of `observations` and `next_observations`, independently."""
    if pad <= 0 or not image_keys:
        return batch
    out = dict(batch)
    for name, k in zip(("observations", "next_observations"), jax.random.split(key), strict=True):
        if name not in batch:
            continue
        obs = dict(batch[name])
        for cam, ck in zip(image_keys, jax.random.split(k, len(image_keys)), strict=True):
            obs[cam] = random_shift(obs[cam], ck, pad)
        out[name] = obs
    return out
