"""VICE: one update trains the classifier on goals vs the agent's own frames, relabels the
rewards with the updated classifier and trains DrQ on them; both come back updated."""

import jax
import numpy as np
import pytest
from agents_helpers import random_batch

from serl.agents import EncoderConfig, create, restore, sample_actions, save, vice
from serl.agents import classifier as clf
from serl.agents.classifier import ClassifierConfig
from serl.agents.persist import leaf_hashes

OBS = {"front": np.zeros((32, 32, 3), np.uint8), "state": np.zeros(3, np.float32)}
ENC = EncoderConfig(
    backbone="small",
    pooling="mean",
    bottleneck_dim=8,
    proprio_dim=8,
    dropout_rate=0.0,
    freeze_backbone=False,
)
CLF = ClassifierConfig(
    image_size=None,
    hidden_dims=(8,),
    label_smoothing=0.2,
    mixup_alpha=1.0,
    grad_penalty=10.0,
    encoder=EncoderConfig(
        backbone="small", pooling="mean", bottleneck_dim=8, proprio_dim=0, dropout_rate=0.0
    ),
)


def changed(a, b):
    return any(
        not np.array_equal(x, y)
        for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
    )


def test_update_changes_both_the_agent_and_the_classifier():
    cfg = vice.VICEConfig(
        encoder=ENC,
        classifier=CLF,
        reward="prob",
        hidden_dims=(16, 16),
        num_qs=2,
        num_min_qs=2,
        batch_size=4,
        critic_actor_ratio=1,
    )
    state = create(cfg, OBS, action_dim=2, seed=0)
    batch = random_batch(OBS, cfg.sample_size, seed=0)
    batch["goal_observations"] = {"front": np.full((4, 32, 32, 3), 220, np.uint8)}
    before = jax.device_get(state)
    state, metrics = vice.update(state, batch)
    after = jax.device_get(state)

    assert changed(before.agent.critic.params, after.agent.critic.params)
    assert changed(before.agent.actor.params, after.agent.actor.params)
    assert changed(before.classifier.params.params, after.classifier.params.params)
    assert int(after.agent.step) == 1 and int(after.classifier.step) == 1
    assert (
        np.isfinite(float(metrics["classifier/loss"]))
        and float(metrics["classifier/grad_penalty"]) > 0
    )
    assert int(after.agent.skipped) == 0

    # The rewards DrQ trained on are the *updated* classifier's verdict on next observations.
    expected = vice.classifier_rewards(cfg, after.classifier, batch["next_observations"])
    assert float(metrics["vice/reward_mean"]) == pytest.approx(float(np.mean(expected)), abs=1e-5)
    old = np.asarray(clf.logits(before.classifier, batch["next_observations"]))
    assert not np.allclose(
        old, np.asarray(clf.logits(after.classifier, batch["next_observations"]))
    )

    action = sample_actions(state, OBS, jax.random.PRNGKey(0))  # acts like any agent
    assert action.shape == (2,)


def test_unknown_reward_form_is_refused():
    with pytest.raises(ValueError, match="reward"):
        vice.VICEConfig(encoder=ENC, classifier=CLF, reward="dense")


def test_a_saved_vice_agent_restores_both_parts_exactly(tmp_path):
    cfg = vice.VICEConfig(encoder=ENC, classifier=CLF, hidden_dims=(8,), num_qs=2, num_min_qs=2)
    state = create(cfg, OBS, 2, seed=3)  # the agents' API dispatches on the config type
    assert isinstance(state, vice.VICEState)
    save(state, tmp_path / "agent")
    restored = restore(tmp_path / "agent")
    assert restored.config == cfg and restored.classifier.config == CLF
    assert leaf_hashes(restored) == leaf_hashes(state)


def test_negatives_are_the_agents_frames_not_demo_rows():
    demo = np.array([1, 0, 1, 0, 1, 0, 0, 1], np.float32)  # a mixed batch's demo marks
    batch = {"actions": np.zeros((8, 4), np.float32), "demo": demo}
    assert vice.agent_rows(batch, 4).tolist() == [1, 3, 5, 6]
    assert sorted(vice.agent_rows(batch, 6).tolist()[:4]) == [1, 3, 5, 6]  # then demo rows
    del batch["demo"]  # no demos: any rows are the agent's
    assert vice.agent_rows(batch, 3).tolist() == [0, 1, 2]
