"""Learned-reward wrappers on the real sim: reward 1 and episode end once the success
probability passes the threshold (and, optionally, the gripper is closed), multi-stage
rewards paid once per stage in order, and the probability in info for logging."""

import dataclasses

import numpy as np
import pytest

from serl.agents import classifier as clf
from serl.train.envs import make_env
from serl.train.reward_model import make_reward_env
from serl.train.run_files import RewardConfig
from serl.wrappers import LearnedReward, MultiStageLearnedReward

DOWN = np.array([0.0, 0.0, -0.5, 0.0], np.float32)  # lower the TCP from its home at z 0.49


def height_prob(z0):
    """p(success) rising steeply as the TCP descends past height z0 (a stand-in success cue)."""
    return lambda obs: float(0.5 * (1.0 + np.tanh(100.0 * (z0 - obs["tcp_pos"][2]))))


@pytest.fixture
def env():
    # dense variant: the env itself never terminates, so every episode end is the wrapper's
    base = make_env("serl/PandaPickCube-v0", reward_type="dense", max_episode_steps=30)
    yield base
    base.close()


def run(env, action, steps=30):
    env.reset(seed=0)
    out = []
    for _ in range(steps):
        _, reward, terminated, truncated, info = env.step(action)
        out.append((reward, terminated, info))
        if terminated or truncated:
            break
    return out


def test_episode_ends_with_reward_one_exactly_when_the_threshold_is_passed(env):
    wrapped = LearnedReward(env, height_prob(0.4), threshold=0.7)
    steps = run(wrapped, DOWN)
    assert 3 < len(steps) < 30
    probs = [info["success_prob"] for _, _, info in steps]
    assert steps[-1][1] and steps[-1][0] == 1.0 and probs[-1] > 0.7
    assert all(
        r == 0.0 and not t and p <= 0.7 for (r, t, _), p in zip(steps[:-1], probs[:-1], strict=True)
    )
    assert steps[-1][2]["learned_success"] and not steps[-1][2]["success"]  # sim truth kept

    # the same rollout never passes a threshold above its highest probability
    still = LearnedReward(env, height_prob(-1.0), threshold=0.5)
    steps = run(still, DOWN)
    assert (
        len(steps) == 30 and not any(t for _, t, _ in steps) and steps[-1][2]["success_prob"] < 0.5
    )


def test_the_gripper_requirement_holds_success_back_until_the_gripper_closes(env):
    wrapped = LearnedReward(env, height_prob(0.4), threshold=0.7, gripper_key="gripper_pos")
    steps = run(wrapped, DOWN)  # gripper open all along
    assert not any(t for _, t, _ in steps) and max(i["success_prob"] for *_, i in steps) > 0.7
    closing = DOWN + np.array([0, 0, 0, 1.0], np.float32)
    steps = run(wrapped, closing)
    assert steps[-1][1] and steps[-1][0] == 1.0 and len(steps) > 3


def test_multi_stage_pays_each_stage_once_in_order(env):
    wrapped = MultiStageLearnedReward(env, [height_prob(0.45), height_prob(0.3)], thresholds=0.5)
    steps = run(wrapped, DOWN)
    rewards = [r for r, _, _ in steps]
    stages = [i["stage"] for *_, i in steps]
    assert sum(rewards) == 2.0 and steps[-1][1]  # both stages paid, then the episode ends
    assert stages == sorted(stages) and stages[-1] == 2
    first = stages.index(1)
    assert rewards[first] == 1.0 and first < len(steps) - 1  # stage 1 paid before stage 2
    # stage 2 is not even checked before stage 1 succeeds
    assert all(np.isnan(info["stage_probs"][1]) for *_, info in steps[:first])
    _, info = wrapped.reset(seed=0)
    assert info["stage"] == 0 and wrapped.stage == 0


def test_a_saved_classifier_drives_the_wrapper(tmp_path):
    env = make_env(
        "serl/PandaPickCubeVision-v0", reward_type="dense", image_size=32, max_episode_steps=5
    )
    cfg = clf.ClassifierConfig(
        image_size=None,
        hidden_dims=(8,),
        encoder=clf.EncoderConfig(
            backbone="small", pooling="mean", bottleneck_dim=8, proprio_dim=0, dropout_rate=0.0
        ),
    )
    obs, _ = env.reset(seed=0)
    state = clf.create(cfg, obs)
    p0 = clf.probability(state, {k: obs[k] for k in ("front", "wrist")})
    clf.save(state, tmp_path / "c", threshold=0.5)
    env.close()
    # a run's reward.json: the dense variant (the sim never ends the episode) + the classifier
    reward = RewardConfig.for_env("serl/PandaPickCubeVision-v0", tmp_path / "c")
    reward = dataclasses.replace(reward, threshold=max(p0 - 0.2, 0.0))
    reward.save(tmp_path / "run")
    assert RewardConfig.load(tmp_path / "run") == reward
    assert reward.env_kwargs == {"reward_type": "dense"}
    wrapped = make_reward_env(
        "serl/PandaPickCubeVision-v0", reward, image_size=32, max_episode_steps=5
    )
    assert isinstance(wrapped, LearnedReward)
    wrapped.reset(seed=0)
    obs, r, terminated, _, info = wrapped.step(np.zeros(4, np.float32))
    expected = clf.probability(state, {k: obs[k] for k in ("front", "wrist")})
    assert info["success_prob"] == pytest.approx(expected, abs=1e-6)
    assert (r == 1.0) == terminated == (expected > reward.threshold)
    wrapped.close()


def test_a_non_finite_probability_is_an_error(env):
    wrapped = LearnedReward(env, lambda obs: float("nan"))
    wrapped.reset(seed=0)
    with pytest.raises(ValueError, match="nan"):
        wrapped.step(DOWN)
