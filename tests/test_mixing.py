"""Demo/online mixing fractions."""

from __future__ import annotations

import numpy as np
import pytest

from serl.data import (
    Episode,
    FrameReplayBuffer,
    MixedSampler,
    ReplayBuffer,
    Schema,
    demo_rows,
)

SCHEMA = Schema.create({"cam": ((4, 4, 3), "uint8"), "state": ((2,), "float32")}, (1,))


def filled(buffer, source: float, episodes: int = 5):
    """Fill a buffer with episodes whose every field says where it came from."""
    for e in range(episodes):
        n = 6
        ids = source * 1000 + e * 10 + np.arange(n + 1)
        buffer.insert_episode(
            Episode(
                observations={
                    "cam": np.full((n + 1, 4, 4, 3), source, np.uint8)
                    + (np.arange(n + 1) % 50)[:, None, None, None].astype(np.uint8),
                    "state": np.stack([ids, np.full(n + 1, source)], 1).astype(np.float32),
                },
                actions=ids[:-1, None].astype(np.float32),
                rewards=np.full(n, source, np.float32),
                terminated=np.arange(n) == n - 1,
                truncated=np.zeros(n, bool),
            )
        )
    return buffer


@pytest.mark.parametrize("batch_size", [1, 2, 7, 64, 256, 257])
@pytest.mark.parametrize("fraction", [0.0, 0.1, 0.25, 0.5, 0.75, 1.0])
def test_demo_rows_count_is_the_configured_fraction(batch_size, fraction):
    mask = demo_rows(batch_size, fraction)
    assert mask.shape == (batch_size,)
    assert mask.sum() == int(np.floor(batch_size * fraction + 0.5))


def test_demo_rows_keep_the_fraction_in_every_minibatch():
    mask = demo_rows(256, 0.5)
    for minibatches in (2, 4, 8, 16):  # the learner's critic_actor_ratio splits
        counts = mask.reshape(minibatches, -1).sum(1)
        np.testing.assert_array_equal(counts, 128 // minibatches)
    counts = demo_rows(256, 0.25).reshape(8, -1).sum(1)
    np.testing.assert_array_equal(counts, 8)


@pytest.mark.parametrize("fraction", [0.5, 0.25, 0.9])
def test_mixed_batches_draw_the_configured_fraction_from_each_buffer(fraction):
    demo = filled(ReplayBuffer(SCHEMA, 100), source=1.0)
    online = filled(FrameReplayBuffer(SCHEMA, 100, jpeg_keys=("cam",)), source=2.0)
    sampler = MixedSampler(demo, online, demo_fraction=fraction)
    rng = np.random.default_rng(0)
    for batch_size in (16, 256):
        batch = sampler.sample(batch_size, rng)
        from_demo = batch["rewards"] == 1.0
        assert (from_demo | (batch["rewards"] == 2.0)).all()
        assert from_demo.sum() == round(batch_size * fraction)
        np.testing.assert_array_equal(from_demo, demo_rows(batch_size, fraction))
        # Rows stay whole: every field of a row comes from the same stored transition.
        ids = batch["actions"][:, 0]
        np.testing.assert_array_equal(batch["observations"]["state"][:, 0], ids)
        np.testing.assert_array_equal(batch["next_observations"]["state"][:, 0], ids + 1)
        np.testing.assert_array_equal(batch["observations"]["state"][:, 1], batch["rewards"])
        for key in ("masks", "dones"):
            assert batch[key].shape == (batch_size,) and batch[key].dtype == np.float32


def test_default_is_the_rlpd_half_and_half_and_extremes_skip_the_other_buffer():
    demo = filled(ReplayBuffer(SCHEMA, 50), source=1.0)
    empty = ReplayBuffer(SCHEMA, 50)
    batch = MixedSampler(demo, filled(ReplayBuffer(SCHEMA, 50), 2.0)).sample(
        256, np.random.default_rng(0)
    )
    assert (batch["rewards"] == 1.0).sum() == 128
    only_demo = MixedSampler(demo, empty, demo_fraction=1.0).sample(8, np.random.default_rng(0))
    assert (only_demo["rewards"] == 1.0).all()
    only_online = MixedSampler(empty, demo, demo_fraction=0.0).sample(8, np.random.default_rng(0))
    assert (only_online["rewards"] == 1.0).all()
    with pytest.raises(ValueError, match="demo_fraction"):
        MixedSampler(demo, demo, demo_fraction=1.5)


def test_mark_demos_flags_exactly_the_rows_drawn_from_the_demos():
    demo = filled(ReplayBuffer(SCHEMA, 100), source=1.0)
    online = filled(ReplayBuffer(SCHEMA, 100), source=2.0)
    plain = MixedSampler(demo, online, 0.5).sample(32, np.random.default_rng(0))
    assert "demo" not in plain  # opt-in: other consumers see the usual batch
    batch = MixedSampler(demo, online, 0.5, mark_demos=True).sample(32, np.random.default_rng(0))
    np.testing.assert_array_equal(batch["demo"], (batch["rewards"] == 1.0).astype(np.float32))
    assert batch["demo"].dtype == np.float32 and batch["demo"].sum() == 16
