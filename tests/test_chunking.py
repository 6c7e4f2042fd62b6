"""Chunking wrapper: observation stacks padded like the buffers pad them, open-loop action
chunks, and chunked transitions that round-trip exactly through the frame-once buffer (and
through episodes) into a DrQ update."""

import dataclasses

import jax
import numpy as np
import pytest

from serl.agents import SACConfig, create, sample_actions, update
from serl.data import EpisodeBuilder, FrameReplayBuffer
from serl.train.envs import env_schema, make_env
from serl.wrappers import Chunking

T, K = 3, 2  # obs_horizon, act_exec_horizon


def rollout(env, episodes, seed):
    """Transitions (as the wrapper produced them) of random-action episodes."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(episodes):
        obs, _ = env.reset(seed=seed + i)
        done = False
        while not done:
            action = rng.uniform(-1, 1, env.action_space.shape).astype(np.float32)
            nxt, reward, term, trunc, _ = env.step(action)
            out.append(
                {
                    "observations": obs,
                    "actions": action,
                    "rewards": np.float32(reward),
                    "terminated": term,
                    "truncated": trunc,
                    "next_observations": nxt,
                }
            )
            obs, done = nxt, term or trunc
    return out


def frame_schema(base, env):
    """Per-frame observations (each frame stored once), the wrapper's flat chunk action."""
    return dataclasses.replace(env_schema(base), action_shape=env.action_space.shape)


def assert_round_trip(buffer, transitions):
    by_action = {t["actions"].tobytes(): t for t in transitions}
    assert len(by_action) == len(transitions)
    batch = buffer.sample(200, np.random.default_rng(1))
    seen = set()
    for i in range(200):
        key = batch["actions"][i].tobytes()
        t = by_action[key]  # every sample is one of the inserted transitions...
        seen.add(key)
        for name in ("observations", "next_observations"):
            for k, v in t[name].items():
                np.testing.assert_array_equal(batch[name][k][i], v)  # ...exactly, frame by frame
        assert batch["rewards"][i] == t["rewards"]
        assert batch["masks"][i] == (0.0 if t["terminated"] else 1.0)
    assert len(seen) > len(transitions) // 2


@pytest.fixture(scope="module")
def chunked():
    base = make_env("serl/PandaPickCubeVision-v0", image_size=32, max_episode_steps=9)
    env = Chunking(base, obs_horizon=T, act_exec_horizon=K)
    yield base, env, rollout(env, episodes=3, seed=0)
    env.close()


def test_stacks_pad_with_the_reset_frame_and_shift_by_one_agent_step(chunked):
    _, env, transitions = chunked
    assert env.action_space.shape == (K * 4,)
    assert env.observation_space["front"].shape == (T, 32, 32, 3)
    first = transitions[0]["observations"]
    for v in first.values():
        assert v.shape[0] == T and all(np.array_equal(v[0], v[j]) for j in range(T))
    for t in transitions:
        for k in t["observations"]:
            np.testing.assert_array_equal(t["next_observations"][k][:-1], t["observations"][k][1:])


def test_action_chunks_run_open_loop_and_stop_at_the_episode_end():
    env = Chunking(make_env("serl/PandaPickCube-v0", max_episode_steps=5), act_exec_horizon=K)
    env.reset(seed=0)
    steps = []
    done = False
    while not done:
        _, _, term, trunc, info = env.step(np.zeros(K * 4, np.float32))
        steps.append(info["chunk_steps"])
        done = term or trunc
    assert steps == [2, 2, 1]  # 5 env steps: the last chunk is cut by the time limit
    assert "block_pos" in env.observation_space.spaces
    assert env.observation_space["block_pos"].shape == (3,)  # horizon 1: no time axis
    env.close()


def test_chunked_transitions_round_trip_through_the_frame_once_buffer(chunked):
    base, env, transitions = chunked
    schema = frame_schema(base, env)
    buffer = FrameReplayBuffer(schema, capacity=200, obs_horizon=T)
    for t in transitions:
        buffer.insert(**t)
    assert len(buffer) == len(transitions)
    assert_round_trip(buffer, transitions)

    # The same data as episodes of single frames (what the episode store keeps) rebuilds the
    # same stacks: the wrapper pads episode starts exactly as the buffer does.
    builder, episodes = EpisodeBuilder(), []
    for t in transitions:
        episodes += builder.add(
            {k: v[-1] for k, v in t["observations"].items()},
            t["actions"],
            t["rewards"],
            t["terminated"],
            t["truncated"],
            {k: v[-1] for k, v in t["next_observations"].items()},
        )
    assert len(episodes) == 3
    from_episodes = FrameReplayBuffer(schema, capacity=200, obs_horizon=T)
    for ep in episodes:
        from_episodes.insert_episode(ep)
    assert_round_trip(from_episodes, transitions)


def test_an_agent_trains_and_acts_on_stacked_chunked_observations():
    base = make_env("serl/PandaPickCube-v0", max_episode_steps=8)
    env = Chunking(base, obs_horizon=T, act_exec_horizon=K)
    transitions = rollout(env, episodes=2, seed=0)
    buffer = FrameReplayBuffer(frame_schema(base, env), capacity=100, obs_horizon=T)
    for t in transitions:
        buffer.insert(**t)
    cfg = SACConfig(
        hidden_dims=(16, 16), num_qs=2, num_min_qs=2, batch_size=4, critic_actor_ratio=1
    )
    obs = transitions[0]["observations"]
    assert obs["tcp_pos"].shape == (T, 3)
    state = create(cfg, obs, K * 4, seed=0)
    state, metrics = update(state, buffer.sample(cfg.sample_size, np.random.default_rng(0)))
    assert np.isfinite(float(metrics["critic/loss"])) and int(state.skipped) == 0
    action = sample_actions(state, obs, jax.random.PRNGKey(0))
    assert action.shape == (K * 4,)
    env.reset(seed=0)
    env.step(action)  # the chunk the policy chose is executable
    env.close()
