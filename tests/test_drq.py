"""DrQ: every encoder kind trains, the encoder learns through the critic only, a frozen backbone
never changes and has no optimizer state, pretrained weights load from a local file."""

import dataclasses

import jax
import numpy as np
import pytest
from agents_helpers import ACTION_DIM, PIXEL_OBS, random_batch, tiny_drq

from serl.agents import EncoderConfig, actor_params, create, frozen_params, sample_actions, update
from serl.agents import sac as sac_mod
from serl.networks import ResNet10, save_params_npz

# Most cases here freeze a randomly initialised backbone on purpose (no weight file needed).
pytestmark = pytest.mark.filterwarnings("ignore:the image backbone is frozen")


def host(tree):
    return jax.device_get(tree)


def trees_equal(a, b):
    return all(
        np.array_equal(np.asarray(x), np.asarray(y))
        for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
    )


@pytest.mark.parametrize(
    ("backbone", "pooling", "freeze"),
    [
        ("small", "spatial_learned_embeddings", False),
        ("small", "spatial_softmax", True),
        ("small", "mean", False),
        ("resnet10", "spatial_learned_embeddings", True),
        ("resnet10", "spatial_softmax", False),
        ("resnet10", "mean", True),
        ("mobilenet_v2", "spatial_projection", True),
    ],
)
def test_every_encoder_kind_runs_in_drq(backbone, pooling, freeze):
    enc = EncoderConfig(
        backbone=backbone,
        pooling=pooling,
        freeze_backbone=freeze,
        bottleneck_dim=16,
        proprio_dim=8,
        num_spatial_features=2,
    )
    cfg = tiny_drq(encoder=enc, critic_actor_ratio=1)
    state = create(cfg, PIXEL_OBS, ACTION_DIM, seed=0)
    assert set(state.critic.params["encoder"]) == {
        "image_front",
        "image_wrist",
        "proprio",
        "proprio_norm",
    }
    state, metrics = update(state, random_batch(PIXEL_OBS, cfg.sample_size, seed=0))
    for k in ("critic/loss", "actor/loss", "temperature/value"):
        assert np.isfinite(float(metrics[k])), k
    assert int(state.skipped) == 0
    actions = sample_actions(state, PIXEL_OBS, jax.random.PRNGKey(0))
    assert actions.shape == (ACTION_DIM,) and np.all(np.abs(actions) <= 1)
    assert bool(jax.tree.leaves(state.frozen)) == freeze


def test_encoder_trains_through_critic_only_and_frozen_backbone_never_changes():
    cfg = tiny_drq()  # small backbone, frozen
    state = create(cfg, PIXEL_OBS, ACTION_DIM, seed=0)
    before = host(state)
    # Frozen parameters: their own subtree, no optimizer state for them.
    assert "backbone" in before.frozen["image_front"]
    assert "backbone" not in before.critic.params["encoder"]["image_front"]
    opt_paths = [
        jax.tree_util.keystr(p)
        for p, _ in jax.tree_util.tree_flatten_with_path(before.critic.opt_state)[0]
    ]
    assert not any("backbone" in p for p in opt_paths)

    batch = random_batch(PIXEL_OBS, cfg.batch_size, seed=0)
    after_actor, _ = sac_mod.update_actor_temperature(jax.device_put(before), batch)
    assert trees_equal(after_actor.critic.params["encoder"], before.critic.params["encoder"])
    assert not trees_equal(after_actor.actor.params, before.actor.params)

    after_critic, _ = sac_mod.update_critic(jax.device_put(before), batch)
    assert not trees_equal(
        after_critic.critic.params["encoder"]["image_front"],
        before.critic.params["encoder"]["image_front"],
    )
    assert trees_equal(after_critic.frozen, before.frozen)
    assert trees_equal(after_critic.actor.params, before.actor.params)


def test_unfrozen_backbone_is_trained():
    enc = dataclasses.replace(tiny_drq().encoder, freeze_backbone=False)
    cfg = tiny_drq(encoder=enc)
    state = create(cfg, PIXEL_OBS, ACTION_DIM, seed=0)
    assert state.frozen == {}
    before = host(state.critic.params["encoder"]["image_front"]["backbone"])
    state, _ = sac_mod.update_critic(state, random_batch(PIXEL_OBS, cfg.batch_size, seed=0))
    assert not trees_equal(state.critic.params["encoder"]["image_front"]["backbone"], before)


def test_augmentation_changes_the_update():
    cfg = tiny_drq()
    batch = random_batch(PIXEL_OBS, cfg.batch_size, seed=0)
    start = host(create(cfg, PIXEL_OBS, ACTION_DIM, seed=0))
    shifted, _ = sac_mod.update_critic(jax.device_put(start), batch)
    plain_cfg = dataclasses.replace(cfg, shift_pad=0)
    plain, _ = sac_mod.update_critic(jax.device_put(start.replace(config=plain_cfg)), batch)
    assert not trees_equal(shifted.critic.params, plain.critic.params)


def test_pretrained_backbone_loads_from_a_local_file(tmp_path):
    # A generated "pretrained" file stands in for converted ImageNet weights.
    weights = ResNet10().init(jax.random.PRNGKey(7), np.zeros((1, 32, 32, 3)))["params"]
    path = tmp_path / "resnet10_imagenet.npz"
    save_params_npz(path, weights)
    enc = EncoderConfig(
        backbone="resnet10",
        pooling="mean",
        bottleneck_dim=8,
        proprio_dim=4,
        freeze_backbone=True,
        pretrained_path=str(path),
    )
    cfg = tiny_drq(encoder=enc)
    state = create(cfg, PIXEL_OBS, ACTION_DIM, seed=0)
    front = state.frozen["image_front"]["backbone"]
    assert trees_equal(front, weights)
    # the 2-frame camera gets the stem tiled over frames (halved), the rest as is
    wrist = state.frozen["image_wrist"]["backbone"]
    np.testing.assert_allclose(
        wrist["stem_conv"]["kernel"][:, :, 3:], weights["stem_conv"]["kernel"] / 2, rtol=1e-6
    )
    assert trees_equal(wrist["stage3_block0"], weights["stage3_block0"])
    # the actor's publishable parameters exclude the frozen backbone; it travels apart, once
    params = actor_params(state)
    flat = [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_flatten_with_path(params)[0]]
    assert flat and not any("backbone" in p for p in flat)
    assert trees_equal(frozen_params(state), state.frozen)
    state, _ = update(state, random_batch(PIXEL_OBS, cfg.sample_size, seed=0))
    assert trees_equal(state.frozen["image_front"]["backbone"], weights)


def test_missing_image_keys_are_a_clear_error():
    with pytest.raises(ValueError, match="no observation key is an image"):
        create(tiny_drq(), {"state": np.zeros(3, np.float32)}, ACTION_DIM)


def test_frozen_backbone_without_weights_warns():
    with pytest.warns(UserWarning, match="no pretrained weights"):
        create(tiny_drq(), PIXEL_OBS, ACTION_DIM)


def test_encode_once_reads_no_target_encoder_and_gives_the_actor_the_critics_features():
    cfg = tiny_drq(critic_actor_ratio=1, shift_pad=0, encode_once=True)
    batch = random_batch(PIXEL_OBS, cfg.batch_size, seed=0)
    start = host(create(cfg, PIXEL_OBS, ACTION_DIM, seed=0))
    # the target encoder's parameters do not enter the update (DrQ-v2's schedule) ...
    scrambled = jax.tree.map(lambda x: x + 1.0, start.target_critic["encoder"])
    other = start.replace(target_critic={**start.target_critic, "encoder": scrambled})
    a, _ = update(jax.device_put(start), batch)
    b, _ = update(jax.device_put(other), batch)
    assert trees_equal(a.critic.params, b.critic.params)
    assert trees_equal(a.actor.params, b.actor.params)
    # ... which they do without encode_once
    full = dataclasses.replace(cfg, encode_once=False)
    c, _ = update(jax.device_put(start.replace(config=full)), batch)
    d, _ = update(jax.device_put(other.replace(config=full)), batch)
    assert not trees_equal(c.critic.params, d.critic.params)
    # the actor step trains on the features the critic step encoded, before its update (a big
    # critic step makes the encoder's features after it plainly different)
    big = dataclasses.replace(cfg, critic_lr=0.1)
    _, m = update(jax.device_put(start.replace(config=big)), batch)
    s = jax.device_put(start.replace(config=big))
    s, _, features = jax.jit(sac_mod._critic_step)(s, sac_mod.as_float_batch(batch))
    actor_step = jax.jit(sac_mod._actor_temperature_step)
    _, reused = actor_step(s, sac_mod.as_float_batch(batch), features)
    _, anew = actor_step(s, sac_mod.as_float_batch(batch))
    loss = float(m["actor/loss"])
    assert loss == pytest.approx(float(reused["actor/loss"]), rel=1e-5)
    assert loss != pytest.approx(float(anew["actor/loss"]), rel=1e-3)
