"""BC: the NLL falls on a fixed dataset, the mode approaches the demonstrated actions."""

import jax
import numpy as np
from agents_helpers import PIXEL_OBS, STATE_OBS, random_batch, tiny_bc

from serl.agents import EncoderConfig, create, eval_actions, sample_actions, update


def test_bc_drives_its_loss_down_on_a_fixed_dataset():
    cfg = tiny_bc()
    state = create(cfg, STATE_OBS, 2, seed=0)
    rng = np.random.default_rng(0)
    obs = random_batch(STATE_OBS, 64, seed=0)["observations"]
    w = rng.standard_normal((5, 2))
    actions = np.tanh(obs["state"] @ w).astype(np.float32)  # a learnable expert
    batch = {"observations": obs, "actions": actions}
    history = []
    for _ in range(300):
        state, metrics = update(state, batch)
        history.append((float(metrics["bc/nll"]), float(metrics["bc/mse"])))
    (nll0, mse0), (nll1, mse1) = history[0], history[-1]
    assert nll1 < nll0 - 2.0 and mse1 < 0.1 * mse0, (history[0], history[-1])
    pred = eval_actions(state, obs)
    assert np.mean(np.sum((pred - actions) ** 2, axis=-1)) < 0.1 * mse0
    sampled = sample_actions(state, obs, jax.random.PRNGKey(0))
    assert np.all(np.abs(sampled) <= 1)


def test_bc_on_images_with_augmentation():
    enc = EncoderConfig(
        backbone="small",
        pooling="mean",
        bottleneck_dim=8,
        proprio_dim=4,
        dropout_rate=0.0,
        freeze_backbone=False,
    )
    cfg = tiny_bc(encoder=enc, shift_pad=4, batch_size=4)
    state = create(cfg, PIXEL_OBS, 2, seed=0)
    b = random_batch(PIXEL_OBS, 4, seed=0)
    state, metrics = update(state, {"observations": b["observations"], "actions": b["actions"]})
    assert np.isfinite(float(metrics["bc/nll"])) and int(state.step) == 1
    assert eval_actions(state, PIXEL_OBS).shape == (2,)


def test_bc_skips_non_finite_batches():
    state = create(tiny_bc(), STATE_OBS, 2, seed=0)
    b = random_batch(STATE_OBS, 16, seed=0)
    before = jax.device_get(state.policy)
    b["actions"][0, 0] = np.nan
    state, metrics = update(state, {"observations": b["observations"], "actions": b["actions"]})
    assert int(state.skipped) == 1 and int(metrics["bc/skipped"]) == 1
    for x, y in zip(jax.tree.leaves(state.policy), jax.tree.leaves(before), strict=True):
        np.testing.assert_array_equal(x, y)
