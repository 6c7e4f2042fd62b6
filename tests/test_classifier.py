"""Success labelling and the reward classifier: sim labels follow info["success"], a person's
success/failure keys label frames, a classifier learns a visual success cue and is judged on
held-out episodes, and its checkpoint (config JSON + version) restores it exactly."""

import dataclasses
import json

import numpy as np
import pytest

from serl.agents import classifier as clf
from serl.agents.classifier import ClassifierConfig
from serl.data import Episode, EpisodeStore, Schema
from serl.robot.teleop import Keyboard, ScriptedSource
from serl.train.envs import make_env
from serl.train.recording import record_transitions
from serl.train.reward_model import (
    RewardClassifier,
    binary_metrics,
    choose_threshold,
    load_labelled,
    train_classifier,
)

SIZE = 32
TINY = ClassifierConfig(
    image_size=None,
    batch_size=16,
    hidden_dims=(16,),
    shift_pad=1,
    encoder=clf.EncoderConfig(
        backbone="small", pooling="mean", bottleneck_dim=16, proprio_dim=0, dropout_rate=0.0
    ),
)


def test_sim_labels_are_info_success_for_every_frame(tmp_path):
    kwargs = {"reward_type": "dense", "image_size": SIZE, "max_episode_steps": 90}
    summary = record_transitions(
        "serl/PandaPickCubeVision-v0", tmp_path / "lbl", episodes=3, seed=0, env_kwargs=kwargs
    )
    assert summary["episodes"] == 3 and summary["positives"] > 0
    with EpisodeStore.open(tmp_path / "lbl") as store:
        attrs = [store.attrs(i) for i in range(3)]
        lengths = [len(store[i]) for i in range(3)]
    assert [a["policy"] for a in attrs] == ["expert", "expert_then_random", "random"]
    for a, n in zip(attrs, lengths, strict=True):
        assert len(a["labels"]) == n + 1 and a["labels"][0] == 0  # reset frame: not a success
    assert sum(attrs[0]["labels"]) > 5  # the expert lifts and holds the cube
    assert sum(attrs[2]["labels"]) == 0  # random flailing never lifts it

    # Replaying the recorded actions gives the same success flags (labels are the sim's own).
    env = make_env("serl/PandaPickCubeVision-v0", **kwargs)
    with EpisodeStore.open(tmp_path / "lbl") as store:
        episode = store[0]
    env.reset(seed=attrs[0]["seed"])
    replayed = [0] + [int(env.step(a)[4]["success"]) for a in episode.actions]
    env.close()
    assert replayed == attrs[0]["labels"]


def test_a_person_labels_frames_with_the_success_and_failure_keys(tmp_path):
    none, enter, back = frozenset(), frozenset({"enter"}), frozenset({"backspace"})
    device = Keyboard(ScriptedSource([none, none, none, enter, none, back, none, none]))
    summary = record_transitions(
        "serl/PandaPickCube-v0",
        tmp_path / "lbl",
        episodes=1,
        env_kwargs={"max_episode_steps": 8},
        teleop=device,
        realtime=False,
    )
    assert summary["frames"] == 9 and summary["positives"] == 2
    with EpisodeStore.open(tmp_path / "lbl") as store:
        assert store.attrs(0)["labels"] == [0, 0, 0, 1, 1, 0, 0, 0, 0]
        assert store.attrs(0)["source"] == "keyboard"


def synthetic_store(path, seeds, rng):
    """Episodes whose frames show a bright square exactly when labelled successful."""
    schema = Schema.create({"cam": ((SIZE, SIZE, 3), np.uint8)}, (2,))
    with EpisodeStore.create(path, schema) as store:
        for seed in seeds:
            n = 12
            labels = (np.arange(n + 1) >= rng.integers(4, 10)).astype(int)
            frames = rng.integers(0, 90, (n + 1, SIZE, SIZE, 3), dtype=np.uint8)
            for t in np.flatnonzero(labels):
                y, x = rng.integers(2, SIZE - 8, 2)
                frames[t, y : y + 6, x : x + 6] = 250
            ep = Episode(
                {"cam": frames},
                np.zeros((n, 2), np.float32),
                np.zeros(n, np.float32),
                np.zeros(n, bool),
                np.zeros(n, bool),
            )
            store.append(ep, {"seed": int(seed), "labels": labels.tolist()})
    return path


def test_classifier_learns_a_success_cue_and_reports_on_held_out_seeds(tmp_path):
    rng = np.random.default_rng(0)
    train = synthetic_store(tmp_path / "train", range(16), rng)
    held = synthetic_store(tmp_path / "held", range(100, 106), rng)
    report = train_classifier(
        [train], tmp_path / "clf", eval_stores=[held], config=TINY, steps=80, log_every=40
    )
    assert report["held_out"]["accuracy"] >= 0.9
    assert report["data"]["held_out_seeds"] == list(range(100, 106))
    assert 0.05 <= report["threshold"] <= 0.95
    png = (tmp_path / "clf" / "calibration.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    saved = json.loads((tmp_path / "clf" / "report.json").read_text())
    assert set(saved["held_out"]) >= {"accuracy", "precision", "recall"}
    meta = json.loads((tmp_path / "clf" / "classifier.json").read_text())
    assert meta["version"] == clf.VERSION and meta["config"]["image_size"] is None

    # The checkpoint restores the same classifier; the callable reads one observation.
    data = load_labelled([held])
    reward = RewardClassifier(tmp_path / "clf")
    probs = [reward({"cam": data.frames["cam"][i]}) for i in range(5)]
    state, _ = clf.restore(tmp_path / "clf")
    np.testing.assert_allclose(probs, clf.predict(state, data.frames)[:5], rtol=1e-5)
    assert reward.threshold == report["threshold"]

    with pytest.raises(ValueError, match="reuse training seeds"):
        train_classifier([train], tmp_path / "bad", eval_stores=[train], config=TINY, steps=1)


def test_a_checkpoint_of_another_version_is_refused(tmp_path):
    state = clf.create(TINY, {"cam": np.zeros((SIZE, SIZE, 3), np.uint8)})
    clf.save(state, tmp_path / "c")
    meta = json.loads((tmp_path / "c" / "classifier.json").read_text())
    (tmp_path / "c" / "classifier.json").write_text(json.dumps({**meta, "version": 999}))
    with pytest.raises(ValueError, match="version 999"):
        clf.restore(tmp_path / "c")


def test_threshold_and_metrics():
    probs = np.array([0.1, 0.2, 0.6, 0.7, 0.9])
    labels = np.array([0, 0, 0, 1, 1])
    m = binary_metrics(probs, labels, 0.5)
    assert (m["true_positives"], m["false_positives"], m["true_negatives"]) == (2, 1, 2)
    assert m["precision"] == pytest.approx(2 / 3) and m["recall"] == 1.0
    t = choose_threshold(probs, labels)
    assert 0.6 <= t < 0.7 and binary_metrics(probs, labels, t)["accuracy"] == 1.0


CACHED = ClassifierConfig(
    image_size=None,
    batch_size=16,
    hidden_dims=(16,),
    encoder=clf.EncoderConfig(
        backbone="mobilenet_v2",
        feature_stride=16,
        freeze_backbone=True,
        cache_features=True,
        pretrained_path=None,  # random frozen features: enough to test the plumbing
        pooling="spatial_learned_embeddings",
        num_spatial_features=2,
        bottleneck_dim=8,
        proprio_dim=0,
        dropout_rate=0.0,
    ),
)


@pytest.fixture
def weight_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("SERL_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "weights"))


@pytest.mark.parametrize(("frame", "image_size"), [(SIZE, None), (2 * SIZE, SIZE)])
def test_a_cached_feature_classifier_on_pixels_is_its_head_on_the_backbones_features(
    frame, image_size, weight_cache
):
    import jax
    import jax.numpy as jnp

    from serl.networks import BACKBONE_NAME, FEATURE_DTYPE, frame_features, make_backbone
    from serl.train.feature_cache import FeatureCache

    encoder = dataclasses.replace(CACHED.encoder, pretrained_path="imagenet")
    config = dataclasses.replace(CACHED, encoder=encoder, image_size=image_size)
    pixels = np.random.default_rng(0).integers(0, 256, (5, frame, frame, 3), dtype=np.uint8)
    state = clf.create(config, {"cam": pixels[0]}, seed=1)
    assert set(state.frozen) == {BACKBONE_NAME} and BACKBONE_NAME not in state.params.params

    # The backbone on its own, with the ImageNet weights the feature cache loads too.
    cache = FeatureCache(encoder, ("cam",))
    for a, b in zip(
        jax.tree.leaves(cache._params), jax.tree.leaves(state.frozen[BACKBONE_NAME]), strict=True
    ):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    net = make_backbone("mobilenet_v2", 16)
    small = clf.downsample(jnp.asarray(pixels), image_size)
    feats = frame_features(lambda x: net.apply({"params": cache._params}, x), small, "mobilenet_v2")
    assert feats.shape == (5, 2, 2, 96) and feats.dtype == FEATURE_DTYPE
    np.testing.assert_allclose(
        np.asarray(clf.features(state, {"cam": pixels}, 4)["cam"], np.float32),
        np.asarray(feats, np.float32),
        rtol=2e-2,
        atol=2e-2,
    )

    on_pixels = np.asarray(clf.logits(state, {"cam": pixels}))
    on_features = np.asarray(clf.logits(state, {"cam": feats}))
    np.testing.assert_allclose(on_pixels, on_features, rtol=2e-2, atol=2e-2)
    assert np.ptp(on_pixels) > 0  # distinct frames, distinct logits: the head read them
    assert clf.probability(state, {"cam": pixels[0]}) == pytest.approx(
        float(jax.nn.sigmoid(on_features[0])), abs=1e-2
    )


def test_a_cached_feature_classifier_trains_on_features_computed_once_per_frame(
    tmp_path, monkeypatch
):
    from serl.networks import FEATURE_DTYPE
    from serl.train.reward_model import CHUNK

    rng = np.random.default_rng(0)
    train = synthetic_store(tmp_path / "train", range(8), rng)
    held = synthetic_store(tmp_path / "held", range(100, 103), rng)
    featurized, calls, batches, trained = [], [], [], []
    features, jitted, update = clf.features, clf._features, clf.update

    def count_features(state, observations, batch_size=256):
        featurized.append(len(observations["cam"]))
        return features(state, observations, batch_size)

    def count_calls(state, frames):
        calls.append(len(frames["cam"]))
        return jitted(state, frames)

    def check_update(state, batch):
        batches.append((batch["observations"]["cam"].shape, batch["observations"]["cam"].dtype))
        trained[:] = update(state, batch)
        return trained

    monkeypatch.setattr(clf, "features", count_features)
    monkeypatch.setattr(clf, "_features", count_calls)
    monkeypatch.setattr(clf, "update", check_update)
    steps = 30
    report = train_classifier(
        [train], tmp_path / "clf", eval_stores=[held], config=CACHED, steps=steps, log_every=10
    )
    frames = len(load_labelled([train])) + len(load_labelled([held]))
    assert sum(featurized) == frames < steps * CACHED.batch_size  # fit, val and held out, once
    assert len(calls) == sum(-(-n // CHUNK) for n in featurized)  # in chunks, nowhere else
    assert batches == [((CACHED.batch_size, 2, 2, 96), FEATURE_DTYPE)] * steps  # head only
    assert np.isfinite(report["history"][-1]["classifier/loss"])

    # Saved, it reads raw frames like any classifier: backbone, then head.
    state, meta = clf.restore(tmp_path / "clf")
    assert meta["config"]["encoder"]["cache_features"] is True
    data = load_labelled([held])
    reward = RewardClassifier(tmp_path / "clf")
    probs = clf.predict(state, data.frames)
    np.testing.assert_allclose(probs, clf.predict(trained[0], data.frames), rtol=1e-6)
    on_features = clf.predict(state, features(state, data.frames, CHUNK))
    np.testing.assert_allclose(probs, on_features, atol=1e-2)
    np.testing.assert_allclose(
        [reward({"cam": data.frames["cam"][i]}) for i in range(3)], probs[:3], rtol=1e-5
    )
    before = clf.create(CACHED, {"cam": data.frames["cam"][0]}, seed=0)
    assert not np.allclose(clf.predict(before, data.frames), probs)  # it did train


def test_cached_features_refuse_the_pixel_gradient_penalty():
    with pytest.raises(ValueError, match="grad_penalty"):
        dataclasses.replace(CACHED, grad_penalty=1.0)
