"""VICE in `serl train`: goal examples from demos or a labelled store, a goal minibatch per
learner step, the classifier trained, logged and checkpointed in a short vision run."""

from __future__ import annotations

import numpy as np
import pytest
from train_helpers import TINY_VICE

from serl.agents import vice
from serl.cli import main
from serl.data import Episode, EpisodeStore, stack_frames
from serl.train.buffers import sample_goals, store_goal_examples
from serl.train.config import TrainConfig, recipe

VISION = "serl/PandaPickCubeVision-v0"
SMALL = {"image_size": 32}


def store_of(path, schema, episodes, attrs):
    with EpisodeStore.create(path, schema) as store:
        for episode, a in zip(episodes, attrs, strict=True):
            store.append(episode, a)
    return path


def frames_episode(front: np.ndarray) -> Episode:
    """An episode whose front camera shows `front` (frames numbered by their pixel value)."""
    n = len(front) - 1
    return Episode(
        {"front": front},
        np.zeros((n, 1), np.float32),
        np.zeros(n, np.float32),
        np.zeros(n, bool),
        np.zeros(n, bool),
    )


def test_vice_needs_goal_examples_and_a_vice_preset() -> None:
    with pytest.raises(ValueError, match="--goal-examples PATH"):
        TrainConfig(VISION, agent="vice")
    with pytest.raises(ValueError, match="VICE preset"):
        TrainConfig(VISION, agent="vice", preset="drq_small", num_demos=2)
    with pytest.raises(ValueError, match="only by agent 'vice'"):
        TrainConfig(VISION, agent="drq", goal_examples="goals")
    cfg = TrainConfig(VISION, agent="vice", goal_examples="goals")
    assert cfg.uses_vice and isinstance(cfg.agent_config, vice.VICEConfig)
    # the vision recipe's DrQ preset is not carried over to another agent
    assert recipe(VISION, agent="vice", run_dir="r").agent_config.agent == "vice"
    assert recipe(VISION, run_dir="r").preset == "drq_cached"


def test_serl_train_agent_vice_asks_for_goal_examples(tmp_path) -> None:
    with pytest.raises(ValueError, match="--goal-examples PATH"):
        main(["train", "Pendulum-v1", "--agent", "vice", "--run-dir", str(tmp_path / "run")])


def test_nested_overrides_change_fields_of_inner_configs() -> None:
    cfg = TrainConfig(VISION, agent="vice", num_demos=2, agent_overrides=TINY_VICE)
    agent = TrainConfig.from_json(cfg.to_json()).agent_config
    assert agent.encoder.bottleneck_dim == 8 and agent.encoder.backbone == "small"
    assert agent.classifier.hidden_dims == (8,) and agent.classifier.encoder.bottleneck_dim == 8
    assert agent.classifier.label_smoothing == 0.2  # untouched fields keep the preset's


def test_goal_stacks_space_frames_one_agent_step_apart() -> None:
    frames = np.arange(6)[:, None]
    assert stack_frames(frames, 1, 2) is frames
    np.testing.assert_array_equal(
        stack_frames(frames, 3, 2)[:, :, 0],
        [[0, 0, 0], [0, 0, 1], [0, 0, 2], [0, 1, 3], [0, 2, 4], [1, 3, 5]],
    )


def test_goal_examples_are_a_stores_positive_frames(tmp_path) -> None:
    from serl.data import Schema

    schema = Schema.create({"front": ((2, 2, 3), np.uint8)}, (1,))
    ep = frames_episode(
        np.arange(5, dtype=np.uint8)[:, None, None, None].repeat(2, 1).repeat(2, 2).repeat(3, 3)
    )
    path = store_of(tmp_path / "goals", schema, [ep, ep], [{"labels": [0, 0, 1, 1, 0]}, {}])
    goals = store_goal_examples(path, schema, ("front",), 1, 1)
    # the labelled episode's 1s, then every frame of the unlabelled one
    assert goals["front"][:, 0, 0, 0].tolist() == [2, 3, 0, 1, 2, 3, 4]
    stacked = store_goal_examples(path, schema, ("front",), 2, 1)
    assert stacked["front"].shape == (7, 2, 2, 2, 3)
    assert stacked["front"][:2, :, 0, 0, 0].tolist() == [[1, 2], [2, 3]]
    batch = sample_goals(goals, 16, np.random.default_rng(0))
    assert batch["front"].shape == (16, 2, 2, 3)

    empty = store_of(tmp_path / "none", schema, [ep], [{"labels": [0] * 5}])
    with pytest.raises(ValueError, match="no positive frames"):
        store_goal_examples(empty, schema, ("front",), 1, 1)
    other = Schema.create({"front": ((4, 4, 3), np.uint8)}, (1,))
    with pytest.raises(ValueError, match="per-frame cameras"):
        store_goal_examples(path, other, ("front",), 1, 1)
