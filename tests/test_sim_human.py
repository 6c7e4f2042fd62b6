"""The simulated human takes over when the policy stalls or strays, and hands back on its rules."""

import numpy as np
import pytest

from serl.envs import SimHumanRules, SimulatedHuman, make_expert
from serl.train.envs import make_env
from serl.wrappers import InterventionWrapper

DEFAULT_RULES = SimHumanRules()


def episode(policy, rules=DEFAULT_RULES, seed=0, human_seed=0):
    """Run one episode of `policy(obs, base_env)`; returns intervened flags, executed actions
    and the human. A policy that needs the env first is given as ("factory", make(env))."""
    env = make_env("serl/PandaPickCube-v0")
    if isinstance(policy, tuple):
        policy = policy[1](env)
    human = SimulatedHuman(env, rules, seed=human_seed)
    wrapped = InterventionWrapper(env, human)
    obs, _ = wrapped.reset(seed=seed)
    flags, actions, done = [], [], False
    while not done:
        action = np.asarray(policy(obs, env.unwrapped), np.float32)
        obs, _, terminated, truncated, info = wrapped.step(action)
        flags.append(info["intervened"])
        actions.append(info.get("intervene_action", action))
        done = terminated or truncated
    return np.array(flags), np.array(actions), human


def idle(obs, base):
    return np.zeros(4)


def away(obs, base):
    """Drive the TCP horizontally away from the cube."""
    direction = (base.tcp_pos - base.block_pos)[:2]
    return np.append(0.3 * direction / np.linalg.norm(direction), [0.0, 0.0])


def test_a_stalled_policy_is_taken_over_then_handed_back() -> None:
    rules = SimHumanRules(warmup_steps=10, stall_steps=20, takeover_steps=25)
    flags, _, human = episode(idle, rules)
    first = int(np.argmax(flags))
    assert first == 20  # the progress window holds stall_steps + 1 readings at step 21
    assert flags[first : first + 25].all() and not flags[first + 25]
    assert human.reason == "stall" and human.takeovers >= 1


def test_by_default_the_human_sees_the_task_through() -> None:
    flags, _, human = episode(idle)
    first = int(np.argmax(flags))
    assert first == 20 and flags[first:].all()  # in control to the episode's end
    assert human.takeovers == 1 and human.env.block_pos[2] > human.env.block_start_height + 0.05


def test_a_straying_policy_is_taken_over_before_it_could_stall() -> None:
    rules = SimHumanRules(warmup_steps=0, stall_steps=50, stray_margin=0.05)
    flags, _, human = episode(away, rules)
    first = int(np.argmax(flags))
    assert flags.any() and first < 50
    assert human.reason == "stray"


def test_a_competent_policy_is_left_alone() -> None:
    for seed in range(3):

        def scripted(env, seed=seed):
            expert = make_expert(env, seed=seed)
            return lambda obs, base: expert(obs)

        flags, _, human = episode(("factory", scripted), seed=seed)
        assert not flags.any() and human.takeovers == 0


def test_reaction_delay_and_takeover_budget() -> None:
    slow = SimHumanRules(
        warmup_steps=10, stall_steps=20, reaction_steps=3, takeover_steps=25, max_takeovers=1
    )
    flags, _, human = episode(idle, slow)
    assert int(np.argmax(flags)) == 23
    assert human.takeovers == 1 and flags.sum() == slow.takeover_steps


def test_runs_are_reproducible_and_the_seed_matters() -> None:
    noisy = SimHumanRules(noise=0.2)
    flags_a, actions_a, _ = episode(idle, noisy, human_seed=7)
    flags_b, actions_b, _ = episode(idle, noisy, human_seed=7)
    np.testing.assert_array_equal(flags_a, flags_b)
    np.testing.assert_array_equal(actions_a, actions_b)
    _, actions_c, _ = episode(idle, noisy, human_seed=8)
    assert not np.array_equal(actions_a, actions_c)


def test_rules_are_validated_and_other_envs_refused() -> None:
    with pytest.raises(ValueError, match="stall_steps"):
        SimHumanRules(stall_steps=0)
    with pytest.raises(TypeError, match="no simulated human"):
        SimulatedHuman(make_env("Pendulum-v1"))
