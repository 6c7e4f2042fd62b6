"""Reset-free forward/backward training: episodes alternate on one scene that nobody resets,
each starts where the other ended, and each policy's data lands in its own buffer only."""

import csv
import itertools
import json

import numpy as np
import pytest

from serl.agents import classifier as clf
from serl.envs.bin_relocation import BIN_A, BIN_B, BinRelocationExpert, PandaBinRelocationEnv
from serl.train.config import TrainConfig
from serl.train.forward_backward import ForwardBackwardConfig, ForwardBackwardTrainer

TINY_SAC = {
    "hidden_dims": [16, 16],
    "num_qs": 2,
    "num_min_qs": 2,
    "batch_size": 8,
    "critic_actor_ratio": 1,
}


def test_twenty_episodes_alternate_without_a_scene_reset(tmp_path):
    train = TrainConfig(
        env_id="serl/PandaBinRelocation-v0",
        agent="sac",
        agent_overrides=TINY_SAC,
        env_kwargs={"max_episode_steps": 6},
        env_steps=10_000,
        random_steps=4,
        training_starts=4,
        updates_per_env_step=0.5,
        run_dir=str(tmp_path / "run"),
        replay_capacity=1_000,
    )
    cfg = ForwardBackwardConfig(train)
    assert ForwardBackwardConfig.load(cfg.save().parent) == cfg  # its file round-trips
    actions = {"forward": [], "backward": []}
    trainer = ForwardBackwardTrainer(
        cfg, on_transition=lambda d, t: actions[d].append(t["actions"])
    )
    try:
        episodes = trainer.run(episodes=20)
        assert trainer.scene_resets == 1  # placed once, at the very first reset
        rows = list(csv.DictReader((tmp_path / "run" / "episodes.csv").open()))
        samples = {
            d: trainer.buffers[d].online.sample(256, np.random.default_rng(0)) for d in actions
        }
    finally:
        trainer.close()

    assert [e["direction"] for e in episodes] == ["forward", "backward"] * 10
    assert len(rows) == 20
    for prev, cur in itertools.pairwise(episodes):
        # no reset of the scene: the cube starts exactly where the previous episode left it
        assert cur["start_block"] == prev["end_block"]
    for d, other in (("forward", "backward"), ("backward", "forward")):
        steps = sum(e["steps"] for e in episodes if e["direction"] == d)
        assert len(trainer.buffers[d].online) == steps == len(actions[d]) == trainer.steps[d]
        mine = {a.tobytes() for a in actions[d]}
        theirs = {a.tobytes() for a in actions[other]}
        sampled = {a.tobytes() for a in samples[d]["actions"]}
        assert sampled <= mine and not sampled & theirs
        assert trainer.updates[d] > 0  # both agents trained, each from its own buffer
    # A backward episode that starts with the cube already in its goal bin (the random forward
    # policy failed) ends after one step: the scene is where forward left it, as it should be.
    assert all(e["steps"] >= 1 for e in episodes)


def test_bin_relocation_expert_carries_the_cube_there_and_back():
    env = PandaBinRelocationEnv()
    expert = BinRelocationExpert(env, seed=0)
    try:
        for i, (task, goal) in enumerate((("forward", BIN_B), ("backward", BIN_A))):
            obs, info = env.reset(seed=0 if i == 0 else None, options={"task": task})
            assert not info["success"]
            expert.reset()
            for _ in range(200):
                obs, reward, terminated, _, info = env.step(expert(obs))
                if terminated:
                    break
            assert terminated and info["success"] and reward == 1.0
            assert np.all(np.abs(env.block_pos[:2] - goal) < 0.08)
        assert env.scene_resets == 1
        env.reset(options={"reset_scene": True, "task": "forward"})
        assert env.scene_resets == 2 and np.all(np.abs(env.block_pos[:2] - BIN_A) < 0.04)
    finally:
        env.close()


def test_unknown_task_is_refused():
    env = PandaBinRelocationEnv()
    with pytest.raises(ValueError, match="task"):
        env.reset(options={"task": "sideways"})
    env.close()


def test_each_direction_is_rewarded_by_its_own_classifier(tmp_path):
    cfg_cls = clf.ClassifierConfig(
        image_size=None,
        hidden_dims=(8,),
        encoder=clf.EncoderConfig(
            backbone="small", pooling="mean", bottleneck_dim=8, proprio_dim=0, dropout_rate=0.0
        ),
    )
    example = {k: np.zeros((32, 32, 3), np.uint8) for k in ("front", "wrist")}
    state = clf.create(cfg_cls, example)
    # forward's classifier always fires (threshold 0); backward's never does (above any p)
    clf.save(state, tmp_path / "fwd", threshold=0.0)
    clf.save(state, tmp_path / "bwd", threshold=0.999999)
    train = TrainConfig(
        env_id="serl/PandaBinRelocationVision-v0",
        agent="sac",  # a state agent flattens the frames: cheap, and enough to route data
        agent_overrides=TINY_SAC,
        env_kwargs={"max_episode_steps": 5, "image_size": 32},
        random_steps=100,
        training_starts=100,
        run_dir=str(tmp_path / "run"),
        replay_capacity=200,
    )
    cfg = ForwardBackwardConfig(
        train, forward_classifier=str(tmp_path / "fwd"), backward_classifier=str(tmp_path / "bwd")
    )
    trainer = ForwardBackwardTrainer(cfg)
    try:
        episodes = trainer.run(episodes=4)
    finally:
        trainer.close()
    forward = [e for e in episodes if e["direction"] == "forward"]
    backward = [e for e in episodes if e["direction"] == "backward"]
    # forward: its classifier ends each episode at once with reward 1, though the cube never
    # left bin A (the sim's truth, kept in info["success"], says no)
    assert all(e["steps"] == 1 and e["return"] == 1 and e["learned_success"] for e in forward)
    assert not any(e["success"] for e in forward)
    # backward: the cube already lies in its goal bin, so the sim ends the episode; its own
    # classifier, not the sim, sets the reward: 0
    assert all(e["steps"] == 1 and e["return"] == 0 and e["success"] for e in backward)
    assert not any(e["learned_success"] for e in backward)
    assert trainer.scene_resets == 1


def test_a_resumed_run_holds_every_finished_episode_once_and_its_checkpointed_agents(tmp_path):
    from serl.agents.persist import leaf_hashes
    from serl.cli import main
    from serl.train.run_checkpoints import latest_checkpoint, load_checkpoint

    run = tmp_path / "run"
    flags = [
        "serl/PandaBinRelocation-v0",
        "--agent",
        "sac",
        "--agent-overrides",
        json.dumps(TINY_SAC),
        "--env-kwargs",
        '{"max_episode_steps": 6}',
        "--random-steps",
        "2",
        "--training-starts",
        "2",
        "--updates-per-env-step",
        "1",
        "--checkpoint-every",
        "4",
        "--replay-capacity",
        "1000",
        "--run-dir",
        str(run),
    ]
    main(["train-fb", *flags, "--env-steps", "30"])
    with pytest.raises(FileExistsError, match="--resume"):  # never over a finished run
        main(["train-fb", *flags, "--env-steps", "30"])
    # a resumed run that crashes: what it did after each direction's newest checkpoint is
    # lost but its finished episodes, which the next resume holds, each once
    trainer = ForwardBackwardTrainer(ForwardBackwardConfig.load(run), resume=True)
    try:
        trainer.run(episodes=3)
    finally:
        trainer.close()  # no save: the crash
    rows = list(csv.DictReader((run / "episodes.csv").open()))
    trainer = ForwardBackwardTrainer(ForwardBackwardConfig.load(run), resume=True)
    try:
        assert trainer.episode_count == len(rows)
        for d in ("forward", "backward"):
            mine = [int(r["steps"]) for r in rows if r["direction"] == d]
            assert trainer.steps[d] == len(trainer.buffers[d].online) == sum(mine)
            agent, meta = load_checkpoint(latest_checkpoint(run / d))
            assert leaf_hashes(trainer.agents[d]) == leaf_hashes(agent)
            assert trainer.updates[d] == meta["updates"] > 0
    finally:
        trainer.close()
    main(["train-fb", *flags, "--env-steps", "70", "--resume"])
    rows = list(csv.DictReader((run / "episodes.csv").open()))
    assert [int(r["episode"]) for r in rows] == list(range(len(rows)))
    assert [r["direction"] for r in rows] == [
        ("forward", "backward")[i % 2] for i in range(len(rows))
    ]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["episodes"] == len(rows)
    steps = summary["forward"]["env_steps"] + summary["backward"]["env_steps"]
    assert steps == sum(int(r["steps"]) for r in rows) >= 70
