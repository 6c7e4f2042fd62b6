"""The discrete gripper critic beside SAC's arm (HIL-SERL): learning, double-DQN target, acting,
publishing and checkpoints."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from serl import agents
from serl.agents import gripper
from serl.agents.persist import leaf_hashes

TINY = {
    "hidden_dims": (16, 16),
    "num_qs": 2,
    "batch_size": 32,
    "critic_actor_ratio": 2,
    "gripper_hidden_dims": (16, 16),
}
OBS = {"state": np.zeros(3, np.float32)}


LEARN = {"discount": 0.0, "gripper_lr": 5e-3}  # Q = the immediate reward: quick to learn


def tiny(**kw):
    return dataclasses.replace(agents.get_preset("sac_gripper"), **{**TINY, **kw})


def batch(rng, n=64):
    """Rewards pay 1 for closing the gripper, whatever the arm does."""
    grip = rng.choice([-1.0, 0.0, 1.0], size=n)
    actions = np.concatenate([rng.uniform(-1, 1, (n, 3)), grip[:, None]], 1).astype(np.float32)
    obs = rng.normal(size=(n, 3)).astype(np.float32)
    return {
        "observations": {"state": obs},
        "next_observations": {"state": rng.normal(size=(n, 3)).astype(np.float32)},
        "actions": actions,
        "rewards": (grip == 1.0).astype(np.float32),
        "masks": np.ones(n, np.float32),
    }


def test_the_gripper_critic_learns_which_command_pays() -> None:
    state = agents.create(tiny(**LEARN), OBS, 4, seed=0)
    rng = np.random.default_rng(0)
    for _ in range(100):
        state, metrics = agents.update(state, batch(rng))
    assert np.isfinite(float(metrics["grasp/loss"])) and np.isfinite(float(metrics["critic/loss"]))
    actor = agents.actor_from_params(
        state.config, state.spec, agents.actor_params(state), agents.frozen_params(state)
    )
    obs = {"state": rng.normal(size=(20, 3)).astype(np.float32)}
    greedy = agents.eval_actions(actor, obs)
    assert greedy.shape == (20, 4) and np.all(greedy[:, 3] == 1.0)  # close
    assert np.all(np.abs(greedy[:, :3]) < 1.0)  # the arm: SAC's tanh mode


def test_sampling_explores_the_gripper_with_epsilon() -> None:
    state = agents.create(tiny(gripper_epsilon=1.0), OBS, 4, seed=0)
    obs = {"state": np.zeros((300, 3), np.float32)}
    sampled = agents.sample_actions(state, obs, jax.random.PRNGKey(1))
    values, counts = np.unique(sampled[:, 3], return_counts=True)
    assert values.tolist() == [-1.0, 0.0, 1.0] and counts.min() > 60
    state = agents.create(tiny(gripper_epsilon=0.0), OBS, 4, seed=0)
    greedy = agents.sample_actions(state, obs, jax.random.PRNGKey(1))[:, 3]
    assert len(np.unique(greedy)) == 1  # same obs, no exploration: one command


def constant_q(params, values):
    """Make the critic output `values` for every input (zero last-layer kernel)."""
    params = jax.tree.map(jnp.array, params)
    params["Dense_0"]["kernel"] = jnp.zeros_like(params["Dense_0"]["kernel"])
    params["Dense_0"]["bias"] = jnp.asarray(values, jnp.float32)
    return params


def test_the_target_is_double_dqn() -> None:
    state = agents.create(tiny(discount=0.5), OBS, 4, seed=0)
    online = constant_q(state.grasp.params, [0.0, 5.0, 1.0])  # picks "stay"
    target = constant_q(state.grasp_target, [9.0, 2.0, 7.0])  # values it 2, not max 9
    state = state.replace(grasp=state.grasp.replace(params=online), grasp_target=target)
    b = jax.tree.map(jnp.asarray, batch(np.random.default_rng(0), 32))
    b["rewards"] = jnp.zeros(32)
    _, metrics = jax.jit(gripper._grasp_step)(state, b)
    assert float(metrics["grasp/target_q"]) == pytest.approx(0.5 * 2.0)


def test_stored_commands_round_to_open_stay_close() -> None:
    actions = jnp.array([[0, -1.0], [0, -0.6], [0, 0.2], [0, 0.7], [0, 1.0]])
    assert gripper.command_index(actions).tolist() == [0, 0, 1, 2, 2]


def test_checkpoint_round_trip(tmp_path) -> None:
    state = agents.create(tiny(**LEARN), OBS, 4, seed=3)  # the learning test's jit cache
    state, _ = agents.update(state, batch(np.random.default_rng(0)))
    before = leaf_hashes(state)
    agents.save(state, tmp_path / "ckpt")
    restored = agents.restore(tmp_path / "ckpt")
    assert isinstance(restored, agents.GripperSACState)
    assert leaf_hashes(restored) == before
    assert restored.config == state.config


def test_needs_a_gripper_entry() -> None:
    with pytest.raises(ValueError, match="gripper entry"):
        agents.create(tiny(), OBS, 1)
