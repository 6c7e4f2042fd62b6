"""SAC: losses and update mechanics (scan UTD, temperature, Polyak targets, masks, NaN skipping),
acting, publishing and presets."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from agents_helpers import ACTION_DIM, PIXEL_OBS, STATE_OBS, random_batch, tiny_sac

from serl.agents import (
    PRESETS,
    ActorState,
    actor_from_params,
    actor_params,
    create,
    eval_actions,
    frozen_params,
    get_preset,
    sample_actions,
    update,
)
from serl.agents import sac as sac_mod
from serl.agents.common import polyak


def host(tree):
    """A host copy (update donates the state it is given)."""
    return jax.device_get(tree)


def assert_trees_close(a, b, rtol=1e-5, atol=1e-6):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=rtol, atol=atol)


def assert_trees_equal(a, b):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def learning_parts(state):
    """Everything an update may change except RNG and counters."""
    return (state.actor, state.critic, state.target_critic, state.temp, state.frozen)


def minibatches(batch, ratio):
    n = batch["rewards"].shape[0] // ratio
    return [jax.tree.map(lambda x, i=i: x[i * n : (i + 1) * n], batch) for i in range(ratio)]


@pytest.fixture(scope="module")
def cfg():
    return tiny_sac()


def test_update_shapes_metrics_and_finiteness(cfg):
    state = create(cfg, STATE_OBS, ACTION_DIM, seed=0)
    assert state.critic.params["q"]["members"]["MLP_0"]["Dense_0"]["kernel"].shape == (
        4,
        5 + 4 + 2,
        32,
    )
    assert state.critic.params["encoder"] == {} and state.frozen == {}
    for i in range(3):
        state, metrics = update(state, random_batch(STATE_OBS, cfg.sample_size, seed=i))
    assert int(state.step) == 3 and int(state.skipped) == 0
    for name in (
        "critic/loss",
        "critic/q",
        "actor/loss",
        "actor/entropy",
        "temperature/value",
        "temperature/loss",
        "critic/skipped",
        "nonfinite/skipped_total",
    ):
        assert np.isfinite(float(metrics[name])), name
    assert all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree.leaves(state))


def test_update_does_not_recompile(cfg):
    state = create(cfg, STATE_OBS, ACTION_DIM, seed=1)
    state, _ = update(state, random_batch(STATE_OBS, cfg.sample_size, seed=0))
    size = sac_mod.update._cache_size()
    for i in range(3):
        state, _ = update(state, random_batch(STATE_OBS, cfg.sample_size, seed=i + 1))
    assert sac_mod.update._cache_size() == size


def test_scan_utd_equals_sequential_updates(cfg):
    batch = random_batch(STATE_OBS, cfg.sample_size, seed=3)
    start = host(create(cfg, STATE_OBS, ACTION_DIM, seed=2))
    scanned, _ = update(jax.device_put(start), batch)
    seq = jax.device_put(start)
    for mb in minibatches(batch, cfg.critic_actor_ratio):
        seq, _ = sac_mod.update_critic(seq, mb)
    seq, _ = sac_mod.update_actor_temperature(seq, mb)
    assert_trees_close(learning_parts(scanned), learning_parts(seq))
    np.testing.assert_array_equal(scanned.rng, seq.rng)
    assert int(scanned.step) == int(seq.step) == 1


def test_actor_full_batch_option_uses_whole_batch(cfg):
    full_cfg = dataclasses.replace(cfg, actor_full_batch=True)
    batch = random_batch(STATE_OBS, cfg.sample_size, seed=4)
    start = host(create(full_cfg, STATE_OBS, ACTION_DIM, seed=2))
    scanned, _ = update(jax.device_put(start), batch)
    seq = jax.device_put(start)
    for mb in minibatches(batch, cfg.critic_actor_ratio):
        seq, _ = sac_mod.update_critic(seq, mb)
    seq, _ = sac_mod.update_actor_temperature(seq, batch)
    assert_trees_close(learning_parts(scanned), learning_parts(seq))


@pytest.mark.parametrize(("target_entropy", "direction"), [(50.0, 1), (-50.0, -1)])
def test_temperature_moves_toward_target_entropy(cfg, target_entropy, direction):
    c = dataclasses.replace(cfg, target_entropy=target_entropy, temp_lr=1e-2)
    state = create(c, STATE_OBS, ACTION_DIM, seed=0)
    batch = random_batch(STATE_OBS, cfg.batch_size, seed=0)
    alphas = []
    for _ in range(5):
        state, metrics = sac_mod.update_actor_temperature(state, batch)
        alphas.append(float(metrics["temperature/value"]))
    # entropy far below (above) the target: alpha must rise (fall) at every step
    assert np.all(np.sign(np.diff(alphas)) == direction), alphas
    assert (float(metrics["actor/entropy"]) < target_entropy) == (direction == 1)


def test_q_filtered_bc_pulls_the_policy_mode_toward_stored_actions(cfg):
    batch = random_batch(STATE_OBS, cfg.batch_size, seed=0)
    batch["actions"] = np.full_like(batch["actions"], 0.5)
    plain = create(cfg, STATE_OBS, ACTION_DIM, seed=0)
    _, m = sac_mod.update_actor_temperature(plain, batch)
    assert float(m["actor/bc_loss"]) == 0.0  # off by default
    state = create(dataclasses.replace(cfg, bc_weight=10.0), STATE_OBS, ACTION_DIM, seed=0)
    losses = []
    for _ in range(30):
        state, m = sac_mod.update_actor_temperature(state, batch)
        losses.append(float(m["actor/bc_loss"]))
    # the critic is fixed here, so the filter keeps the rows it rates above the policy's action
    assert np.isfinite(losses).all() and losses[-1] < 0.5 * losses[0], losses


def test_bc_q_filter_lets_the_critic_veto_demo_rows(cfg):
    n = cfg.batch_size
    batch = random_batch(STATE_OBS, n, seed=0)
    batch["demo"] = (np.arange(n) < 3 * n // 4).astype(np.float32)  # 3/4 of the rows are demos

    def cloned(q_filter):
        c = dataclasses.replace(cfg, bc_weight=1.0, bc_q_filter=q_filter)
        _, m = sac_mod.update_actor_temperature(create(c, STATE_OBS, ACTION_DIM, seed=0), batch)
        return float(m["actor/bc_cloned"])

    assert cloned(False) == 0.75  # every demo row
    assert 0.0 < cloned(True) < 0.75  # the ones the (random) critic rates above the policy's


def test_target_params_move_by_exactly_tau(cfg):
    state = create(cfg, STATE_OBS, ACTION_DIM, seed=0)
    state, _ = update(state, random_batch(STATE_OBS, cfg.sample_size, seed=0))  # target != online
    before = host(state)
    after, _ = sac_mod.update_critic(state, random_batch(STATE_OBS, cfg.batch_size, seed=1))
    expected = polyak(before.target_critic, host(after.critic.params), cfg.tau)
    assert_trees_close(after.target_critic, expected, rtol=1e-6, atol=1e-7)
    moved = jax.tree.leaves(
        jax.tree.map(lambda a, b: np.abs(a - b).max(), after.target_critic, before.target_critic)
    )
    assert max(moved) > 0


def test_masks_stop_bootstrapping_only_at_termination(cfg):
    state = create(dataclasses.replace(cfg, backup_entropy=True), STATE_OBS, ACTION_DIM, seed=0)
    batch = random_batch(STATE_OBS, cfg.batch_size, seed=0)
    terminal = dict(batch, masks=np.zeros(cfg.batch_size, np.float32))
    _, m = sac_mod.update_critic(state, terminal)
    # terminated: the target is the reward alone (no value, no entropy bonus of s')
    np.testing.assert_allclose(float(m["critic/target_q"]), batch["rewards"].mean(), rtol=1e-5)
    running = dict(batch, masks=np.ones(cfg.batch_size, np.float32))
    _, m = sac_mod.update_critic(state, running)
    assert abs(float(m["critic/target_q"]) - batch["rewards"].mean()) > 1e-4


def test_non_finite_batch_leaves_state_unchanged_and_counts(cfg):
    state = create(cfg, STATE_OBS, ACTION_DIM, seed=0)
    state, _ = update(state, random_batch(STATE_OBS, cfg.sample_size, seed=0))
    before = host(state)
    bad = random_batch(STATE_OBS, cfg.sample_size, seed=1)
    bad["observations"]["state"][:] = np.nan
    after, metrics = update(state, bad)
    assert_trees_equal(learning_parts(after), learning_parts(before))
    # every critic minibatch, the actor and the temperature step were skipped
    assert int(after.skipped) == int(before.skipped) + cfg.critic_actor_ratio + 2
    assert int(metrics["nonfinite/skipped_total"]) == int(after.skipped)
    assert int(metrics["critic/skipped"]) == cfg.critic_actor_ratio


def test_one_bad_minibatch_skips_only_that_critic_step(cfg):
    state = create(cfg, STATE_OBS, ACTION_DIM, seed=0)
    before = host(state)
    batch = random_batch(STATE_OBS, cfg.sample_size, seed=1)
    batch["rewards"][0] = np.inf  # first minibatch only
    after, metrics = update(state, batch)
    assert int(metrics["critic/skipped"]) == 1 and int(after.skipped) == 1
    assert not np.array_equal(
        after.critic.params["q"]["members"]["Dense_0"]["kernel"],
        before.critic.params["q"]["members"]["Dense_0"]["kernel"],
    )


def test_sample_and_eval_actions_single_and_batched(cfg):
    state = create(cfg, STATE_OBS, ACTION_DIM, seed=0)
    single = sample_actions(state, STATE_OBS, jax.random.PRNGKey(0))
    assert single.shape == (ACTION_DIM,) and np.all(np.abs(single) <= 1)
    obs = random_batch(STATE_OBS, 5, seed=0)["observations"]
    batched = sample_actions(state, obs, jax.random.PRNGKey(0))
    assert batched.shape == (5, ACTION_DIM)
    np.testing.assert_array_equal(eval_actions(state, obs), eval_actions(state, obs))
    other = sample_actions(state, obs, jax.random.PRNGKey(1))
    assert not np.allclose(batched, other)
    as_f64 = {k: v.astype(np.float64) for k, v in obs.items()}  # cast to the spec's float32
    np.testing.assert_array_equal(eval_actions(state, as_f64), eval_actions(state, obs))
    with pytest.raises(ValueError, match="dtype"):
        eval_actions(state, {k: v.astype(np.complex64) for k, v in obs.items()})
    with pytest.raises(KeyError, match="aux"):
        eval_actions(state, {"state": np.zeros(5, np.float32)})
    with pytest.raises(ValueError, match="shape"):
        eval_actions(state, {"state": np.zeros(4, np.float32), "aux": np.zeros((2, 2))})


def test_actor_params_are_only_what_the_actor_needs():
    cfg = tiny_sac()
    state = create(cfg, STATE_OBS, ACTION_DIM, seed=0)
    params = actor_params(state)
    assert set(params) == {"encoder", "actor"}
    assert all(isinstance(x, np.ndarray) for x in jax.tree.leaves(params))
    n_actor = sum(x.size for x in jax.tree.leaves(params))
    n_state = sum(np.size(x) for x in jax.tree.leaves(state))
    assert n_actor < n_state / 5
    actor = actor_from_params(cfg, state.spec, params, frozen_params(state))
    assert isinstance(actor, ActorState)
    obs = random_batch(STATE_OBS, 3, seed=0)["observations"]
    np.testing.assert_array_equal(eval_actions(actor, obs), eval_actions(state, obs))


@pytest.mark.filterwarnings("ignore:the image backbone is frozen")
def test_pixel_sac_without_augmentation_runs():
    from agents_helpers import tiny_drq

    drq = tiny_drq()
    cfg = tiny_sac(encoder=drq.encoder, batch_size=4, critic_actor_ratio=2, num_qs=2)
    state = create(cfg, PIXEL_OBS, ACTION_DIM, seed=0)
    state, metrics = update(state, random_batch(PIXEL_OBS, cfg.sample_size, seed=0))
    assert np.isfinite(float(metrics["critic/loss"]))


def test_presets_are_named_and_sane():
    assert {"sac_state", "drq", "drq_small", "rlpd", "bc"} <= set(PRESETS)
    s = get_preset("sac_state")
    assert (s.num_qs, s.num_min_qs, s.critic_actor_ratio, s.batch_size) == (10, 2, 8, 256)
    assert (s.discount, s.tau, s.init_temperature, s.activation) == (0.99, 0.005, 0.01, "tanh")
    assert s.critic_layer_norm and not s.backup_entropy and s.std_max == 5.0
    d = get_preset("drq")
    assert (d.discount, d.critic_actor_ratio, d.shift_pad) == (0.96, 4, 4)
    assert d.encoder.backbone == "resnet10" and d.encoder.freeze_backbone
    assert d.encoder.pooling == "spatial_learned_embeddings" and d.encoder.num_spatial_features == 8
    r = get_preset("rlpd")
    assert (r.num_qs, r.num_min_qs, r.critic_layer_norm) == (10, 2, True)
    with pytest.raises(KeyError, match="unknown agent preset"):
        get_preset("nope")


def test_sac_state_preset_builds_for_a_state_env():
    state = create(PRESETS["sac_state"], STATE_OBS, 4, seed=0)
    assert state.spec.action_dim == 4
    np.testing.assert_allclose(float(state.temp.params["raw"]), np.log(np.expm1(0.01)), rtol=1e-5)


def test_bad_config_and_batch_are_clear_errors(cfg):
    with pytest.raises(ValueError, match="num_min_qs"):
        tiny_sac(num_min_qs=5)
    state = create(cfg, STATE_OBS, ACTION_DIM, seed=0)
    batch = random_batch(STATE_OBS, cfg.sample_size, seed=0)
    del batch["masks"]
    with pytest.raises(KeyError, match="masks"):
        update(state, batch)
    odd = random_batch(STATE_OBS, cfg.sample_size + 1, seed=0)
    with pytest.raises(ValueError, match="critic_actor_ratio"):
        update(state, odd)
