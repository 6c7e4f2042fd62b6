"""Networks: shapes and finiteness of every module, ensembles, policy heads, pretrained loading."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from serl.agents.augment import random_shift, shift_observations
from serl.networks import (
    MLP,
    Ensemble,
    GaussianPolicy,
    ImageEncoder,
    ObservationEncoder,
    ResNet10,
    SmallCNN,
    SpatialLearnedEmbeddings,
    SpatialSoftmax,
    StateActionValue,
    Temperature,
    critic_ensemble,
    flatten_observation,
    image_encoder_factory,
    load_params_npz,
    load_pretrained,
    merge_time_into_channels,
    save_params_npz,
    subsample_ensemble,
)

KEY = jax.random.PRNGKey(0)


def finite(x):
    return bool(jnp.all(jnp.isfinite(x)))


@pytest.mark.parametrize("layer_norm", [False, True])
@pytest.mark.parametrize("activation", ["tanh", "relu", "swish", "gelu", "elu"])
def test_mlp_shapes(layer_norm, activation):
    mlp = MLP((16, 8), activation=activation, use_layer_norm=layer_norm)
    x = jnp.ones((5, 3))
    params = mlp.init(KEY, x)
    y = mlp.apply(params, x)
    assert y.shape == (5, 8) and finite(y)
    assert ("LayerNorm_0" in params["params"]) == layer_norm


def test_mlp_dropout_only_in_training():
    mlp = MLP((64, 64), dropout_rate=0.5, activate_final=True)
    x = jnp.ones((4, 3))
    params = mlp.init(KEY, x)
    eval_a, eval_b = mlp.apply(params, x), mlp.apply(params, x)
    np.testing.assert_array_equal(eval_a, eval_b)
    train = mlp.apply(params, x, True, rngs={"dropout": KEY})
    assert not np.allclose(train, eval_a)


def test_unknown_activation_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown activation"):
        MLP((4,), activation="sigmoidish").init(KEY, jnp.ones((1, 2)))


def test_critic_ensemble_members_are_independent():
    ens = critic_ensemble(5, hidden_dims=(16, 16))
    f, a = jnp.ones((7, 4)), jnp.zeros((7, 2))
    params = ens.init(KEY, f, a, False)
    q = ens.apply(params, f, a, False)
    assert q.shape == (5, 7) and finite(q)
    assert len(np.unique(np.asarray(q[:, 0]))) == 5  # different initialisations
    kernel = params["params"]["members"]["MLP_0"]["Dense_0"]["kernel"]
    assert kernel.shape == (5, 6, 16)


def test_subsample_ensemble_matches_full_ensemble_rows():
    full = critic_ensemble(6, hidden_dims=(8,))
    sub = critic_ensemble(2, hidden_dims=(8,))
    f, a = jax.random.normal(KEY, (3, 4)), jnp.ones((3, 1))
    params = full.init(KEY, f, a, False)["params"]
    idx = jnp.array([4, 1])
    q_full = full.apply({"params": params}, f, a, False)
    q_sub = sub.apply({"params": subsample_ensemble(params, idx)}, f, a, False)
    np.testing.assert_allclose(q_sub, q_full[idx], rtol=1e-6)


def test_ensemble_dropout_masks_differ_per_member():
    member = functools.partial(MLP, (32,), dropout_rate=0.5, activate_final=True)
    ens = Ensemble(member, num=2)
    x = jnp.ones((1, 4))
    params = ens.init(KEY, x)
    # Give both members the same weights: any difference comes from the dropout masks.
    same = jax.tree.map(lambda p: jnp.stack([p[0], p[0]]), params)
    y = ens.apply(same, x, True, rngs={"dropout": KEY})
    assert not np.allclose(y[0], y[1])


def test_state_action_value_shape():
    q = StateActionValue((8, 8))
    params = q.init(KEY, jnp.ones((3, 4)), jnp.ones((3, 2)))
    assert q.apply(params, jnp.ones((3, 4)), jnp.ones((3, 2))).shape == (3,)


def test_tanh_policy_samples_inside_box_with_finite_log_probs():
    pi = GaussianPolicy(action_dim=3, hidden_dims=(16, 16))
    f = jax.random.normal(KEY, (64, 5))
    params = pi.init(KEY, f)
    dist = pi.apply(params, f)
    a, logp = dist.sample_and_log_prob(seed=KEY)
    assert a.shape == (64, 3) and logp.shape == (64,)
    assert bool(jnp.all(jnp.abs(a) <= 1)) and finite(logp)
    np.testing.assert_allclose(dist.mode(), jnp.tanh(dist.distribution.mode()), rtol=1e-6)
    inside = np.asarray(jnp.all(jnp.abs(a) < 0.999, axis=-1))  # atanh is ill-posed at +-1
    np.testing.assert_allclose(dist.log_prob(a)[inside], logp[inside], rtol=1e-3, atol=1e-3)


def test_policy_std_is_clipped():
    pi = GaussianPolicy(action_dim=2, hidden_dims=(4,), std_min=0.1, std_max=0.2)
    f = 100 * jax.random.normal(KEY, (32, 3))
    dist = pi.apply(pi.init(KEY, f), f)
    std = dist.stddev()
    assert float(std.min()) >= 0.1 - 1e-6 and float(std.max()) <= 0.2 + 1e-6


def test_gaussian_policy_unsquashed_log_prob_of_box_edges_is_finite():
    pi = GaussianPolicy(action_dim=2, hidden_dims=(8,), tanh_squash=False)
    f = jnp.ones((4, 3))
    dist = pi.apply(pi.init(KEY, f), f)
    assert finite(dist.log_prob(jnp.ones((4, 2))))  # demo actions at exactly +-1 are fine


def test_temperature_value_and_lagrangian_sign():
    t = Temperature(0.01)
    params = t.init(KEY)
    np.testing.assert_allclose(t.apply(params), 0.01, rtol=1e-5)
    grad = jax.grad(lambda p: t.apply(p, jnp.asarray(-3.0), -1.0))(params)
    # entropy below target: descending the Lagrangian must raise alpha (gradient negative)
    assert float(grad["params"]["raw"]) < 0


def test_small_cnn_and_resnet10_feature_maps():
    x = jnp.ones((2, 64, 64, 3))
    small = SmallCNN()
    assert small.apply(small.init(KEY, x), x).shape == (2, 3, 3, 256)
    resnet = ResNet10()
    params = resnet.init(KEY, x)
    y = resnet.apply(params, x)
    assert y.shape == (2, 2, 2, 512) and finite(y)
    names = set(params["params"])
    assert names == {"stem_conv", "stem_norm"} | {f"stage{i}_block0" for i in range(4)}


@pytest.mark.parametrize(
    ("pool", "dim"), [(SpatialLearnedEmbeddings(4), 6 * 4), (SpatialSoftmax(), 12)]
)
def test_pooling_shapes(pool, dim):
    x = jax.random.normal(KEY, (3, 5, 7, 6))
    y = pool.apply(pool.init(KEY, x), x)
    assert y.shape == (3, dim) and finite(y)


def test_spatial_softmax_finds_the_peak():
    x = jnp.full((1, 5, 5, 1), -10.0).at[0, 4, 0, 0].set(10.0)  # bottom-left
    pool = SpatialSoftmax()
    ex, ey = pool.apply(pool.init(KEY, x), x)[0]
    assert ex < -0.99 and ey > 0.99


@pytest.mark.parametrize("backbone", ["small", "resnet10"])
@pytest.mark.parametrize("pooling", ["spatial_learned_embeddings", "spatial_softmax", "mean"])
def test_image_encoder_kinds(backbone, pooling):
    enc = ImageEncoder(backbone=backbone, pooling=pooling, bottleneck_dim=16)
    x = jnp.asarray(np.random.default_rng(0).integers(0, 256, (2, 32, 32, 6), dtype=np.uint8))
    params = enc.init(KEY, x)
    y = enc.apply(params, x, True, rngs={"dropout": KEY})
    assert y.shape == (2, 16) and finite(y)
    assert "backbone" in params["params"]


def test_frozen_image_encoder_gives_no_backbone_gradient():
    enc = ImageEncoder(backbone="small", pooling="mean", freeze_backbone=True, dropout_rate=0.0)
    x = jnp.ones((2, 32, 32, 3), jnp.uint8)
    params = enc.init(KEY, x)
    grads = jax.grad(lambda p: jnp.sum(enc.apply(p, x)))(params)
    assert all(float(jnp.abs(g).max()) == 0 for g in jax.tree.leaves(grads["params"]["backbone"]))
    assert float(jnp.abs(grads["params"]["Dense_0"]["kernel"]).max()) > 0


def test_too_small_images_are_a_clear_error():
    enc = ImageEncoder(backbone="small", pooling="mean")
    with pytest.raises(ValueError, match="too small"):
        enc.init(KEY, jnp.zeros((1, 16, 16, 3), jnp.uint8))


def test_merge_time_into_channels_orders_frames_then_channels():
    x = jnp.arange(2 * 3 * 4 * 5 * 2).reshape(2, 3, 4, 5, 2)  # B, T, H, W, C
    y = merge_time_into_channels(x)
    assert y.shape == (2, 4, 5, 6)
    np.testing.assert_array_equal(y[1, 2, 3], x[1, :, 2, 3].reshape(-1))
    assert merge_time_into_channels(y) is y


def test_observation_encoder_stacked_frames_and_proprio():
    enc = ObservationEncoder(
        image_keys=("front", "wrist"),
        proprio_keys=("a", "b"),
        image_encoder=image_encoder_factory("small", "mean", bottleneck_dim=8, dropout_rate=0.0),
        proprio_dim=4,
    )
    obs = {
        "front": jnp.zeros((3, 32, 32, 3), jnp.uint8),
        "wrist": jnp.zeros((3, 2, 32, 32, 3), jnp.uint8),
        "a": jnp.ones((3, 2)),
        "b": jnp.ones((3, 2, 2)),
    }
    params = enc.init(KEY, obs)
    assert enc.apply(params, obs).shape == (3, 8 + 8 + 4)
    # the stacked camera's first conv sees 2 frames x 3 channels
    assert params["params"]["image_wrist"]["backbone"]["conv0"]["kernel"].shape[2] == 6


def test_flatten_observation_sorted_key_order():
    obs = {"b": jnp.full((2, 1), 2.0), "a": jnp.full((2, 2, 1), 1.0)}
    np.testing.assert_array_equal(flatten_observation(obs, ("a", "b"))[0], [1.0, 1.0, 2.0])


def test_pretrained_npz_roundtrip_and_load(tmp_path):
    resnet = ResNet10()
    x = jnp.ones((1, 32, 32, 3))
    source = resnet.init(jax.random.PRNGKey(1), x)["params"]
    target = resnet.init(jax.random.PRNGKey(2), x)["params"]
    path = tmp_path / "resnet10.npz"
    save_params_npz(path, source)
    with np.load(path) as f:
        assert "stem_conv/kernel" in f.files and f["stem_conv/kernel"].shape == (7, 7, 3, 64)
    loaded = load_pretrained(target, load_params_npz(path))
    for a, b in zip(jax.tree.leaves(loaded), jax.tree.leaves(source), strict=True):
        np.testing.assert_array_equal(a, b)
    assert jax.tree.structure(loaded) == jax.tree.structure(target)


def test_pretrained_mismatch_is_an_error(tmp_path):
    params = {"stem_conv": {"kernel": np.ones((7, 7, 3, 64))}, "x": {"bias": np.ones(2)}}
    path = tmp_path / "w.npz"
    save_params_npz(path, {"stem_conv": {"kernel": np.ones((7, 7, 3, 64))}})
    with pytest.raises(ValueError, match="missing"):
        load_pretrained(params, load_params_npz(path))
    save_params_npz(
        path, {"stem_conv": {"kernel": np.ones((5, 5, 3, 64))}, "x": {"bias": np.ones(2)}}
    )
    with pytest.raises(ValueError, match="does not fit"):
        load_pretrained(params, load_params_npz(path))


def test_pretrained_stem_tiles_over_stacked_frames(tmp_path):
    kernel = np.random.default_rng(0).standard_normal((7, 7, 3, 64)).astype(np.float32)
    path = tmp_path / "w.npz"
    save_params_npz(path, {"stem_conv": {"kernel": kernel}})
    out = load_pretrained({"stem_conv": {"kernel": np.zeros((7, 7, 6, 64))}}, load_params_npz(path))
    np.testing.assert_allclose(out["stem_conv"]["kernel"][:, :, 3:], kernel / 2)


def test_pretrained_file_with_pickled_objects_is_refused(tmp_path):
    path = tmp_path / "evil.npz"
    np.savez(path, **{"stem_conv/kernel": np.array([{"a": 1}], dtype=object)})
    with pytest.raises(ValueError):
        load_params_npz(path)


def test_random_shift_stays_within_pad_and_keeps_stacks_aligned():
    rng = np.random.default_rng(0)
    img = jnp.asarray(rng.integers(0, 256, (8, 12, 12, 3), dtype=np.uint8))
    out = random_shift(img, KEY, pad=2)
    assert out.shape == img.shape and out.dtype == img.dtype
    padded = np.pad(np.asarray(img), ((0, 0), (2, 2), (2, 2), (0, 0)), mode="edge")
    for i in range(8):  # each output is some crop of its padded input
        hits = [
            (dy, dx)
            for dy in range(5)
            for dx in range(5)
            if np.array_equal(padded[i, dy : dy + 12, dx : dx + 12], out[i])
        ]
        assert hits
    stack = jnp.stack([img, img], axis=1)  # [B, T, H, W, C]: one shift for both frames
    shifted = random_shift(stack, KEY, pad=2)
    np.testing.assert_array_equal(shifted[:, 0], shifted[:, 1])
    np.testing.assert_array_equal(random_shift(img, KEY, pad=0), img)


def test_shift_observations_augments_obs_and_next_obs_independently():
    img = jnp.asarray(np.random.default_rng(0).integers(0, 256, (16, 12, 12, 3), dtype=np.uint8))
    batch = {
        "observations": {"cam": img, "p": jnp.ones((16, 2))},
        "next_observations": {"cam": img, "p": jnp.ones((16, 2))},
    }
    out = shift_observations(batch, KEY, ("cam",), pad=4)
    assert not np.array_equal(out["observations"]["cam"], out["next_observations"]["cam"])
    assert out["observations"]["p"] is batch["observations"]["p"]
