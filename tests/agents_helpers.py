"""Helpers shared by the agent tests and their subprocess child (tiny configs, batches, hashes)."""

from __future__ import annotations

import json
import sys
from typing import Any

import numpy as np

from serl.agents import BCConfig, DrQConfig, EncoderConfig, SACConfig
from serl.agents.persist import leaf_hashes

STATE_OBS = {"state": np.zeros(5, np.float32), "aux": np.zeros((2, 2), np.float32)}
PIXEL_OBS = {
    "front": np.zeros((32, 32, 3), np.uint8),
    "wrist": np.zeros((2, 32, 32, 3), np.uint8),  # a stack of 2 frames
    "state": np.zeros(3, np.float32),
}
ACTION_DIM = 2


def tiny_sac(**kw: Any) -> SACConfig:
    """A small, quick-to-compile SAC config."""
    base = dict(hidden_dims=(32, 32), num_qs=4, num_min_qs=2, batch_size=8, critic_actor_ratio=3)
    return SACConfig(**{**base, **kw})


def tiny_drq(**kw: Any) -> DrQConfig:
    """A small DrQ config (for 32x32 cameras)."""
    enc = kw.pop(
        "encoder",
        EncoderConfig(
            backbone="small",
            pooling="mean",
            bottleneck_dim=16,
            proprio_dim=8,
            dropout_rate=0.0,
            freeze_backbone=True,
        ),
    )
    base = dict(hidden_dims=(32, 32), num_qs=2, num_min_qs=2, batch_size=4, critic_actor_ratio=2)
    return DrQConfig(encoder=enc, **{**base, **kw})


def tiny_bc(**kw: Any) -> BCConfig:
    """A small BC config."""
    return BCConfig(**{"hidden_dims": (32, 32), "batch_size": 16, **kw})


def random_obs(example: dict[str, np.ndarray], n: int, rng: np.random.Generator) -> dict:
    """A batch of n random observations shaped like `example`."""
    out = {}
    for k, v in example.items():
        if v.dtype == np.uint8:
            out[k] = rng.integers(0, 256, (n, *v.shape), dtype=np.uint8)
        else:
            out[k] = rng.standard_normal((n, *v.shape)).astype(v.dtype)
    return out


def random_batch(example: dict, n: int, seed: int, action_dim: int = ACTION_DIM) -> dict:
    """A deterministic random training batch of n transitions."""
    rng = np.random.default_rng(seed)
    return {
        "observations": random_obs(example, n, rng),
        "next_observations": random_obs(example, n, rng),
        "actions": rng.uniform(-1, 1, (n, action_dim)).astype(np.float32),
        "rewards": rng.standard_normal(n).astype(np.float32),
        "masks": (rng.uniform(size=n) > 0.1).astype(np.float32),
    }


def main(argv: list[str]) -> None:
    """Child process: restore each checkpoint, hash it, take one update, hash again."""
    from serl.agents import restore, update

    out = {}
    for spec in argv:
        directory, example_name, seed = spec.split(",")
        state = restore(directory)
        hashes = leaf_hashes(state)
        example = PIXEL_OBS if example_name == "pixel" else STATE_OBS
        batch = random_batch(example, state.config.sample_size, int(seed), state.spec.action_dim)
        state, metrics = update(state, batch)
        out[directory] = {
            "restored": hashes,
            "next": leaf_hashes(state),
            "metrics": leaf_hashes(metrics),
        }
    print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv[1:])
