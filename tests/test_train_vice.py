"""VICE in `serl train`: goal examples from demos or a labelled store, a goal minibatch per
learner step, the classifier trained, logged and checkpointed in a short vision run."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from train_helpers import SHORT_RUN, TINY_VICE

from serl.agents import vice
from serl.cli import main
from serl.data import Episode, EpisodeStore, stack_frames
from serl.envs import make_expert
from serl.train.buffers import sample_goals, store_goal_examples
from serl.train.config import TrainConfig, recipe
from serl.train.envs import env_schema, make_env
from serl.train.launcher import train
from serl.train.reports import read_eval_csv
from serl.train.rollout import run_episode
from serl.train.run_checkpoints import latest_checkpoint, load_checkpoint

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


def record_small_demos(path, episodes: int) -> str:
    env = make_env(VISION, **SMALL)
    expert = make_expert(env, noise=0.0, seed=0)
    kept, attrs = [], []
    for seed in range(episodes * 3):
        expert.reset()
        run = run_episode(env, expert, seed=seed)
        if run.success:
            kept.append(run.episode())
            attrs.append({"success": True})
        if len(kept) == episodes:
            break
    store_of(path, env_schema(env), kept, attrs)
    env.close()
    return str(path)


@pytest.mark.timeout(240)
def test_a_short_vice_vision_run_trains_logs_and_checkpoints_its_classifier(tmp_path) -> None:
    demos = record_small_demos(tmp_path / "demos", episodes=2)
    cfg = TrainConfig(
        env_id=VISION,
        agent="vice",
        demos=demos,
        run_dir=str(tmp_path / "run"),
        env_kwargs={**SMALL, "max_episode_steps": 10},
        obs_horizon=2,
        agent_overrides=TINY_VICE,
        checkpoint_every=5,
        log_every=5,
        **SHORT_RUN,
    )
    assert train(cfg, video=False) == 0
    rows = read_eval_csv(cfg.path / "eval.csv")
    assert [r["env_step"] for r in rows] == [40]

    state, meta = load_checkpoint(latest_checkpoint(cfg.path))
    assert isinstance(state, vice.VICEState)
    # the actor may not run more than pace_slack steps ahead: >= 5 updates for 40 env steps
    assert meta["updates"] >= 5 and int(state.classifier.step) == meta["updates"]
    fresh = vice.init_state(state.config, state.spec, cfg.seed)
    assert state.classifier.spec.example()["front"].shape == (1, 2, 32, 32, 3)  # stacks
    before = jax.tree.leaves(fresh.classifier.params.params)
    after = jax.tree.leaves(state.classifier.params.params)
    assert any(not np.array_equal(a, b) for a, b in zip(before, after, strict=True))
    events = b"".join(f.read_bytes() for f in (cfg.path / "tb").glob("events.out.tfevents.*"))
    for tag in (b"classifier/accuracy", b"classifier/loss", b"vice/reward_mean"):
        assert tag in events
