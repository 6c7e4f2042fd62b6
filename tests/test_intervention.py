"""The intervention wrapper: the original's threshold-and-hold rule, events, a lost device."""

import numpy as np
import pytest

from serl.robot.teleop import (
    DISCONNECT,
    DeviceDisconnected,
    DeviceIntervener,
    Keyboard,
    ScriptedSource,
    hold_steps,
)
from serl.train.envs import make_env
from serl.wrappers import GripperPenalty, InterventionWrapper, control_period

POLICY = np.array([0.0, 0.0, -0.5, 0.0], np.float32)  # the "policy" always pushes down


def keyboard_env(script, hold_s=0.1, **kw):
    env = make_env("serl/PandaPickCube-v0")
    device = Keyboard(ScriptedSource(script, **kw))
    intervener = DeviceIntervener(device, 4, control_period(env), hold_s=hold_s, scale=0.5)
    return InterventionWrapper(env, intervener)


def run(env, steps):
    env.reset(seed=0)
    return [env.step(POLICY) for _ in range(steps)]


def test_hold_is_seconds_of_env_steps() -> None:
    env = make_env("serl/PandaPickCube-v0")
    assert control_period(env) == pytest.approx(0.02)
    assert hold_steps(0.5, 0.02) == 25
    assert hold_steps(0.0, 0.02) == 1  # the step with input is always the person's


def test_input_takes_over_for_the_hold_then_hands_back() -> None:
    # w held for 2 steps, then nothing: 2 + (5 - 1) steps intervened with hold 0.1 s = 5 steps
    env = keyboard_env([frozenset({"w"})] * 2 + [frozenset()] * 10, hold_s=0.1)
    infos = [r[-1] for r in run(env, 10)]
    assert [i["intervened"] for i in infos] == [True] * 6 + [False] * 4
    np.testing.assert_allclose(infos[0]["intervene_action"], [0.5, 0, 0, 0])
    np.testing.assert_allclose(infos[3]["intervene_action"], [0, 0, 0, 0])  # held still
    assert all("intervene_action" not in i for i in infos[6:])
    assert env.episode_interventions == 6 and env.episode_steps == 10


def test_the_executed_action_is_the_persons() -> None:
    env = keyboard_env([frozenset({"w"})] * 3 + [frozenset()] * 10, hold_s=0.0)
    env.reset(seed=0)
    base = env.unwrapped
    start = base.target_pos
    env.step(POLICY)
    np.testing.assert_allclose(base.target_pos - start, [0.05, 0, 0], atol=1e-9)  # 0.1 * 0.5
    env.step(POLICY), env.step(POLICY)
    before = base.target_pos
    _, _, _, _, info = env.step(POLICY)  # no input and no hold: the policy's push down
    assert not info["intervened"]
    np.testing.assert_allclose(base.target_pos - before, [0, 0, -0.05], atol=1e-9)


def test_small_input_is_ignored_but_gripper_buttons_count() -> None:
    env = make_env("serl/PandaPickCube-v0")

    class Tiny(Keyboard):
        def map_reading(self, raw):
            twist, gripper, held = super().map_reading(raw)
            return twist * 1e-4, gripper, held

    tiny = Tiny(ScriptedSource([frozenset({"w"}), frozenset({"c"})]))
    wrapped = InterventionWrapper(env, DeviceIntervener(tiny, 4, 0.02, hold_s=0.0))
    infos = [r[-1] for r in run(wrapped, 2)]
    assert not infos[0]["intervened"]
    assert infos[1]["intervened"] and infos[1]["intervene_action"][3] == 1.0


def test_take_over_keeps_control_until_release() -> None:
    script = [frozenset({"t"})] + [frozenset()] * 5 + [frozenset({"t"})] + [frozenset()] * 3
    env = keyboard_env(script, hold_s=0.0)
    infos = [r[-1] for r in run(env, 10)]
    assert [i["intervened"] for i in infos] == [True] * 6 + [False] * 4


def test_success_and_stop_events_end_the_episode() -> None:
    env = keyboard_env([frozenset(), frozenset({"enter"})])
    *_, (_, _, terminated, truncated, info) = run(env, 2)
    assert terminated and not truncated and info["success"] and info["label"] == "success"
    env = keyboard_env([frozenset({"esc"})])
    ((_, _, terminated, truncated, info),) = run(env, 1)
    assert truncated and not info["success"] and info["label"] == "stop" and env.stop_requested
    env = keyboard_env([frozenset({"backspace"})])
    ((_, _, _, truncated, info),) = run(env, 1)
    assert truncated and info["label"] == "failure" and not info["success"]


def test_a_lost_device_stops_the_episode_safely() -> None:
    env = keyboard_env([frozenset({"w"}), DISCONNECT])
    env.reset(seed=0)
    env.step(POLICY)
    target = env.unwrapped.target_pos
    _, _, _, truncated, info = env.step(POLICY)
    assert truncated and "unplugged" in info["teleop_error"]
    np.testing.assert_array_equal(env.unwrapped.target_pos, target)  # held still, not pushed
    np.testing.assert_array_equal(info["intervene_action"], np.zeros(4))
    with pytest.raises(DeviceDisconnected, match="episode stopped"):
        env.reset(seed=1)


def test_gripper_penalty_charges_each_toggle() -> None:
    env = GripperPenalty(make_env("serl/PandaPickCube-v0"), penalty=0.1)
    env.reset(seed=0)
    grips = [1.0, 1.0, 0.2, -1.0, -0.3, 0.9]
    penalties = [env.step(np.array([0, 0, 0, g], np.float32))[-1]["grasp_penalty"] for g in grips]
    assert penalties == [-0.1, 0.0, 0.0, -0.1, 0.0, -0.1]
    _, reward, *_ = env.step(np.array([0, 0, 0, -1.0], np.float32))
    assert reward == pytest.approx(-0.1)  # sparse reward 0 plus the penalty
