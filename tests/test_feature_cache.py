"""Cached features: a frame's stored feature map is the frozen backbone applied to its pixels, the
actor's policy on pixels is the learner's head on cached features, and a resumed learner
rebuilds the very features it held."""

import dataclasses
import threading

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import serl  # noqa: F401  (registers the env ids)
from serl.agents import PRESETS, create, eval_actions
from serl.agents.common import batch_spec, encode
from serl.agents.sac import build_networks
from serl.data import Episode
from serl.distributed import Transitions
from serl.networks import BACKBONE_NAME, frame_features, make_backbone
from serl.train.actor_process import Actor
from serl.train.buffers import add_episode
from serl.train.config import TrainConfig
from serl.train.feature_cache import FeatureCache
from serl.train.learner_process import Learner
from serl.train.run_files import SENT_FEATURES, run_token

CACHED = PRESETS["drq_cached"]
TINY = dataclasses.replace(
    CACHED,
    hidden_dims=(16, 16),
    batch_size=4,
    encoder=dataclasses.replace(
        CACHED.encoder, bottleneck_dim=8, proprio_dim=4, num_spatial_features=2
    ),
)
SIZE = 32  # 32x32 frames: stride-16 feature maps of 2x2x96


@pytest.fixture(autouse=True)
def weight_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("SERL_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "weights"))


def frames(n, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, SIZE, SIZE, 3), dtype=np.uint8)


def test_a_cached_feature_is_the_backbone_applied_to_its_frame():
    cache = FeatureCache(TINY.encoder, ("front",))
    pixels = frames(6)  # not a multiple of the chunk: the last chunk is padded
    cached = cache.frames(pixels)
    assert cached.shape == (6, 2, 2, 96) and cached.dtype == jnp.bfloat16
    net = make_backbone("mobilenet_v2", 16)
    for i in range(6):  # one frame at a time, as the actor computes it
        alone = frame_features(
            lambda x: net.apply({"params": cache._params}, x),
            jnp.asarray(pixels[i : i + 1]),
            "mobilenet_v2",
        )
        np.testing.assert_allclose(
            np.asarray(alone[0], np.float32),
            np.asarray(cached[i], np.float32),
            rtol=1e-2,
            atol=1e-2,
        )
    stacks = pixels[np.minimum(np.arange(5)[:, None] + np.arange(2)[None], 5)]  # [5, 2, ...]
    np.testing.assert_array_equal(
        cache.stacks(stacks), cached[np.minimum(np.arange(5)[:, None] + np.arange(2)[None], 5)]
    )


def test_an_episode_keeps_its_other_keys_and_the_schema_says_what_buffers_hold():
    cache = FeatureCache(TINY.encoder, ("front",))
    ep = Episode(
        {"front": frames(4), "state": np.arange(8, dtype=np.float32).reshape(4, 2)},
        np.zeros((3, 2), np.float32),
        np.ones(3, np.float32),
        np.zeros(3, bool),
        np.array([False, False, True]),
    )
    out = cache.episode(ep)
    np.testing.assert_array_equal(out.observations["front"], cache.frames(ep.observations["front"]))
    assert out.observations["state"] is ep.observations["state"] and out.rewards is ep.rewards
    from serl.data import Schema

    schema = Schema.create({"front": ((SIZE, SIZE, 3), "uint8"), "state": ((2,), "float32")}, (2,))
    assert cache.schema(schema).obs_specs["front"].shape == (2, 2, 96)
    assert cache.schema(schema).obs_specs["front"].dtype == "bfloat16"


def test_the_actors_policy_on_pixels_is_the_head_on_cached_features():
    example = {"front": np.zeros((SIZE, SIZE, 3), np.uint8), "state": np.zeros(3, np.float32)}
    state = create(TINY, example, 2, seed=0)
    spec = state.spec
    assert set(state.frozen) == {BACKBONE_NAME}  # one backbone, shared, never optimised
    assert batch_spec(spec, TINY.encoder).observation[0] == ("front", (2, 2, 96), "bfloat16")
    cache = FeatureCache(TINY.encoder, ("front",))
    chex_equal = jax.tree.map(
        np.array_equal, jax.device_get(state.frozen[BACKBONE_NAME]), jax.device_get(cache._params)
    )
    assert all(jax.tree.leaves(chex_equal))  # the same weight file on both sides
    obs = {
        "front": frames(3, seed=1),
        "state": np.random.default_rng(2).standard_normal((3, 3)).astype(np.float32),
    }
    on_pixels = eval_actions(state, obs)
    nets = build_networks(TINY, spec)
    features = {
        "front": jnp.asarray(cache.frames(obs["front"])),
        "state": jnp.asarray(obs["state"]),
    }
    z = encode(nets.encoder, state.critic.params["encoder"], state.frozen, features, False, None)
    on_features = nets.actor.apply({"params": state.actor.params}, z, False).mode()
    np.testing.assert_allclose(on_pixels, np.clip(on_features, -1, 1), atol=1e-2)


def camera_transitions(n, features=True):
    """A pushed batch as an actor of a cached-feature run sends it: pixels and their features."""
    env = gym.make("serl/PandaPickCubeVision-v0", image_size=SIZE)
    obs, _ = env.reset(seed=0)
    rows = {
        "observations": [],
        "next_observations": [],
        "actions": [],
        "rewards": [],
        "terminated": [],
        "truncated": [],
    }
    rng = np.random.default_rng(0)
    for _ in range(n):
        action = rng.uniform(-1, 1, 4).astype(np.float32)
        nxt, reward, terminated, truncated, _ = env.step(action)
        for key, value in (
            ("observations", obs),
            ("next_observations", nxt),
            ("actions", action),
            ("rewards", reward),
            ("terminated", terminated),
            ("truncated", truncated),
        ):
            rows[key].append(value)
        obs = nxt
    env.close()
    data = {
        k: (
            {kk: np.stack([o[kk] for o in v]) for kk in v[0]}
            if isinstance(v[0], dict)
            else np.asarray(v)
        )
        for k, v in rows.items()
    }
    data["rewards"] = data["rewards"].astype(np.float32)
    data["intervened"] = np.zeros(n, bool)
    if features:
        cache = FeatureCache(TINY.encoder, ("front", "wrist"))
        data[SENT_FEATURES] = {
            part: {k: np.stack([cache.observation(o)[k] for o in rows[part]]) for k in cache.keys}
            for part in ("observations", "next_observations")
        }
    return Transitions("actor-0", 1, data, np.ones(n, np.int64))


def held_features(learner):
    n = len(learner.buffers.online) + 1
    return {k: np.array(learner.buffers.online._frames[k][:n]) for k in ("front", "wrist")}


def vision_config(tmp_path, **kw):
    return TrainConfig(
        env_id="serl/PandaPickCubeVision-v0",
        agent="drq",
        preset="drq_cached",
        run_dir=str(tmp_path / "run"),
        env_kwargs={"image_size": SIZE},
        agent_overrides={"hidden_dims": [16, 16], "batch_size": 4},
        normalize_observations=False,
        **kw,
    )


@pytest.mark.timeout(300)
def test_a_resumed_learner_rebuilds_identical_features_from_the_stored_pixels(tmp_path):
    cfg = vision_config(tmp_path)
    learner = Learner(cfg)
    try:
        learner._ingest(camera_transitions(9))  # the actor's features: the buffers hold them
        first = held_features(learner)
        assert first["front"].shape == (10, 2, 2, 96) and len(learner.buffers.online) == 9
        learner.checkpoint()
    finally:
        learner.server.close()
        learner.replay.close()
    again = Learner(cfg, resume=True)
    try:
        assert len(again.buffers.online) == 9
        for key, value in held_features(again).items():
            np.testing.assert_array_equal(value, first[key])
        stored = next(iter(again.replay.store)).observations["front"]
        assert stored.dtype == np.uint8 and stored.shape == (10, SIZE, SIZE, 3)  # pixels on disk
    finally:
        again.server.close()
        again.replay.close()


@pytest.mark.timeout(300)
def test_the_learner_holds_the_features_an_actor_sent_and_refuses_bad_ones_before_storing(tmp_path):
    learner = Learner(vision_config(tmp_path))
    try:
        good = camera_transitions(6)
        sent = good.data[SENT_FEATURES]

        def replaced(part, maps):
            return {**good.data, SENT_FEATURES: {**sent, part: maps}}

        front, wrist = sent["observations"]["front"], sent["next_observations"]["wrist"]
        bad_batches = {
            "missing": {k: v for k, v in good.data.items() if k != SENT_FEATURES},
            "non-finite": replaced(
                "observations", {**sent["observations"], "front": np.full_like(front, np.nan)}
            ),
            "float32": replaced(
                "next_observations",
                {**sent["next_observations"], "wrist": wrist.astype(np.float32)},
            ),
            r"missing keys \['wrist'\]": replaced("observations", {"front": front}),
        }
        for reason, data in bad_batches.items():
            with pytest.raises(ValueError, match=reason):
                learner._ingest(Transitions("actor-0", 1, data, good.param_versions))
            # nothing kept
            assert len(learner.replay.store) == 0 and len(learner.buffers.online) == 0
        # what the buffers hold is what the actor sent (not recomputed): mark one map
        marked = np.array(front)
        marked[0] = 1.0
        learner._ingest(
            Transitions(
                "actor-0",
                1,
                replaced("observations", {**sent["observations"], "front": marked}),
                good.param_versions,
            )
        )
        held = held_features(learner)
        np.testing.assert_array_equal(held["front"][0], marked[0])
        np.testing.assert_array_equal(held["front"][1:], sent["next_observations"]["front"])
        assert len(learner.replay.store) == 1 and len(learner.buffers.online) == 6
    finally:
        learner.server.close()
        learner.replay.close()


@pytest.mark.timeout(300)
@pytest.mark.parametrize("obs_horizon", [1, 2])
def test_an_actor_sends_the_features_it_acted_on_and_they_are_its_frames_features(
    tmp_path, obs_horizon
):
    cfg = vision_config(
        tmp_path,
        env_steps=30,
        random_steps=0,
        training_starts=30,
        eval_every=10_000,
        eval_episodes=1,
        checkpoint_every=10_000,
        obs_horizon=obs_horizon,
    )
    learner = Learner(cfg)
    ingested = []
    ingest = learner._ingest
    learner._ingest = lambda batch: (ingested.append(batch), ingest(batch))[1]
    learner.features.episode = None  # the learner must not run the backbone on what actors send
    loop = threading.Thread(target=learner.run_loop)
    loop.start()
    actor = Actor(cfg, learner.server.address, run_token(cfg.path), index=0)
    try:
        actor.run()
    finally:
        assert actor.close(flush_timeout=60)
        loop.join(60)
    assert not loop.is_alive() and len(learner.buffers.online) == 30
    assert all(SENT_FEATURES in b.data for b in ingested)
    # bit for bit what the learner computes from the stored pixels (demos, resume), stacks too
    del learner.features.episode  # the backbone allowed again, as on resume
    rebuilt = learner.buffers.make()
    for episode, _ in learner.replay.store.items():
        add_episode(rebuilt, learner.buffers.featurize(episode))
    n = rebuilt._filled
    assert n == learner.buffers.online._filled > 30
    held = {k: np.array(learner.buffers.online._frames[k][:n]) for k in ("front", "wrist")}
    for key, maps in held.items():
        np.testing.assert_array_equal(maps, rebuilt._frames[key][:n])
    if obs_horizon == 1:  # and the backbone applied to each stored frame
        cache = FeatureCache(TINY.encoder, ("front", "wrist"))
        for key, maps in held.items():
            frames = np.concatenate([e.observations[key] for e, _ in learner.replay.store.items()])
            np.testing.assert_array_equal(maps, cache.frames(frames))


def test_cached_views_are_the_features_of_fixed_shifts_of_the_frame():
    from serl.train.feature_cache import shift_frames

    encoder = dataclasses.replace(TINY.encoder, cached_views=3, view_shift_pad=4)
    cache, plain = FeatureCache(encoder, ("front",)), FeatureCache(TINY.encoder, ("front",))
    assert cache.view_keys == ("front",) and plain.view_keys == ()
    assert len(set(cache.offsets)) == 3 and cache.offsets[0] == (0, 0)
    assert all(max(abs(dy), abs(dx)) <= 4 for dy, dx in cache.offsets)
    pixels = frames(5, seed=3)
    views = cache.frames(pixels)
    assert views.shape == (5, 3, 2, 2, 96)
    np.testing.assert_array_equal(views[:, 0], plain.frames(pixels))
    for k, (dy, dx) in enumerate(cache.offsets):
        np.testing.assert_array_equal(views[:, k], plain.frames(shift_frames(pixels, dy, dx)))
    shifted = shift_frames(pixels, 2, -1)
    np.testing.assert_array_equal(shifted[:, 2:, :-1], pixels[:, :-2, 1:])
    from serl.data import Schema

    schema = Schema.create({"front": ((SIZE, SIZE, 3), "uint8")}, (2,))
    assert cache.schema(schema).obs_specs["front"].shape == (3, 2, 2, 96)
    with pytest.raises(ValueError, match="distinct views"):
        FeatureCache(dataclasses.replace(encoder, cached_views=20, view_shift_pad=1), ("front",))
