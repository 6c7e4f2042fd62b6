"""Chunking in `serl train`: demos converted exactly as the wrapper would deliver them, the
run's config and flags, and a short chunked Pendulum run end to end."""

from __future__ import annotations

import numpy as np
import pytest

from serl.cli import main
from serl.data import FrameReplayBuffer, ReplayBuffer
from serl.train.buffers import add_episode
from serl.train.config import TrainConfig, recipe
from serl.train.demos import tile_obs_norm
from serl.train.envs import (
    check_intervention_chunks,
    chunk_env,
    chunk_episode,
    env_schema,
    frame_schema,
    make_env,
)
from serl.train.rollout import run_episode

T, K = 3, 2


def raw_episode(env_id: str, steps: int, seed: int):
    env = make_env(env_id, max_episode_steps=steps)
    rng = np.random.default_rng(seed)
    episode = run_episode(env, lambda o: rng.uniform(-1, 1, env.action_space.shape), seed).episode()
    env.close()
    return episode


@pytest.mark.parametrize("steps", [7, 8])  # the last chunk cut short, or not
def test_a_converted_demo_is_what_the_chunked_env_delivers_for_its_actions(steps) -> None:
    raw = raw_episode("serl/PandaPickCube-v0", steps, seed=3)
    ep = chunk_episode(raw, T, K)
    assert len(ep) == -(-steps // K) and ep.actions.shape == (len(ep), K * 4)

    env = chunk_env(make_env("serl/PandaPickCube-v0", max_episode_steps=steps), T, K)
    obs, _ = env.reset(seed=3)
    for k, v in obs.items():
        np.testing.assert_array_equal(ep.observations[k][0], v)
    for t, action in enumerate(ep.actions):
        obs, reward, term, trunc, _ = env.step(action)
        for k, v in obs.items():
            np.testing.assert_array_equal(ep.observations[k][t + 1], v)
        assert ep.rewards[t] == pytest.approx(reward, abs=1e-5)
        assert (ep.terminated[t], ep.truncated[t]) == (term, trunc)
    env.close()
    assert term or trunc


def test_converted_demos_fill_the_frame_once_buffer_with_their_exact_stacks() -> None:
    raw = raw_episode("serl/PandaPickCube-v0", 9, seed=0)
    ep = chunk_episode(raw, T, K)
    env = chunk_env(make_env("serl/PandaPickCube-v0"), T, K)
    schema = frame_schema(env_schema(env), T)
    env.close()
    assert schema.obs_specs["tcp_pos"].shape == (3,) and schema.action_shape == (K * 4,)
    expected = ep.transitions()
    for buffer in (ReplayBuffer(schema, 50, T), FrameReplayBuffer(schema, 50, T)):
        add_episode(buffer, ep)
        assert len(buffer) == len(ep)
        batch = buffer.sample(64, np.random.default_rng(0))
        for i in range(64):
            (t,) = np.flatnonzero((expected["actions"] == batch["actions"][i]).all(axis=1))
            for name in ("observations", "next_observations"):
                for k, v in expected[name].items():
                    np.testing.assert_array_equal(batch[name][k][i], v[t])


def test_unchunked_runs_keep_their_envs_and_episodes_as_they_are() -> None:
    raw = raw_episode("Pendulum-v1", 5, seed=0)
    assert chunk_episode(raw, 1, 1) is raw
    env = make_env("Pendulum-v1")
    assert chunk_env(env, 1, 1) is env
    assert frame_schema(env_schema(env), 1) == env_schema(env)


def test_observation_statistics_repeat_per_stacked_frame() -> None:
    norm = (("state", (1.0, 2.0), (0.5, 0.25)),)
    assert tile_obs_norm(norm, 1) == norm
    assert tile_obs_norm(norm, 2) == (("state", (1.0, 2.0, 1.0, 2.0), (0.5, 0.25, 0.5, 0.25)),)


def test_horizons_are_flags_of_the_recipe_and_validated() -> None:
    cfg = recipe("Pendulum-v1", run_dir="r", obs_horizon=2, act_exec_horizon=3)
    assert (cfg.obs_horizon, cfg.act_exec_horizon) == (2, 3)
    assert TrainConfig.from_json(cfg.to_json()) == cfg
    for bad in ({"obs_horizon": 0}, {"act_exec_horizon": 0}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            TrainConfig("Pendulum-v1", **bad)
    with pytest.raises(ValueError, match="action chunks"):
        TrainConfig("serl/PandaPickCube-v0", preset="sac_gripper", act_exec_horizon=2)
    with pytest.raises(ValueError, match="act_exec_horizon 1"):
        check_intervention_chunks("sim", 2)
    check_intervention_chunks("sim", 1)  # stacks alone are fine: a person acts per env step


def test_serl_train_passes_the_horizon_flags_into_the_config(tmp_path, capsys) -> None:
    run = ["--run-dir", str(tmp_path / "run")]
    with pytest.raises(ValueError, match="obs_horizon"):
        main(["train", "Pendulum-v1", "--obs-horizon", "0", *run])
    with pytest.raises(ValueError, match="act_exec_horizon': 0"):
        main(["train", "Pendulum-v1", "--act-exec-horizon", "0", *run])
    with pytest.raises(ValueError, match="intervention"):
        main(["train", "Pendulum-v1", "--act-exec-horizon", "2", "--intervene", "sim", *run])
    with pytest.raises(SystemExit):
        main(["train", "Pendulum-v1", "--env-kwargs", "[50]", *run])
    said = " ".join(capsys.readouterr().err.split())  # tyro's box wraps lines
    assert "--env-kwargs: must be a JSON object" in said
    assert not (tmp_path / "run").exists()  # refused before anything was written
