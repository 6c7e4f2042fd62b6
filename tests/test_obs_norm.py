"""Observation standardisation: constants from the demos, checked, applied inside the agent."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from serl.agents import create, eval_actions, get_preset
from serl.agents.checkpoint import restore, save
from serl.cli import main
from serl.data import EpisodeStore
from serl.networks import FlattenObservation, standardize
from serl.train.config import TrainConfig
from serl.train.demos import observation_norm, with_observation_norm

OBS = {"pos": np.array([0.3, -0.1, 0.02], np.float32), "grip": np.array([0.5], np.float32)}
NORM = (("grip", (0.5,), (0.25,)), ("pos", (0.3, 0.0, 0.0), (0.1, 0.1, 0.01)))


def test_standardize_scales_listed_keys_and_leaves_the_rest():
    obs = {"pos": OBS["pos"][None], "grip": OBS["grip"][None], "cam": np.ones((1, 2, 2, 3))}
    out = standardize(obs, NORM)
    np.testing.assert_allclose(np.asarray(out["pos"]), [[0.0, -1.0, 2.0]], atol=1e-5)
    np.testing.assert_allclose(np.asarray(out["grip"]), [[0.0]])
    assert out["cam"] is obs["cam"]
    flat = FlattenObservation(("grip", "pos"), obs_norm=NORM).apply({}, obs)
    np.testing.assert_allclose(np.asarray(flat), [[0.0, 0.0, -1.0, 2.0]], atol=1e-5)


def test_the_agent_acts_on_standardised_observations_and_keeps_them_through_a_checkpoint(
    tmp_path,
):
    cfg = dataclasses.replace(get_preset("sac_demo"), hidden_dims=(32, 32), obs_norm=NORM)
    state = create(cfg, OBS, 4, seed=0)
    shifted = dataclasses.replace(cfg, obs_norm=(("pos", (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)),))
    other = create(shifted, OBS, 4, seed=0)  # same parameters, other constants
    assert not np.allclose(eval_actions(state, OBS), eval_actions(other, OBS))
    save(state, str(tmp_path / "agent"))
    restored = restore(str(tmp_path / "agent"))
    assert restored.config.obs_norm == NORM
    np.testing.assert_array_equal(eval_actions(restored, OBS), eval_actions(state, OBS))


@pytest.mark.parametrize(
    "bad, message",
    [
        ((("nope", (0.0,), (1.0,)),), "not an observation key"),
        ((("pos", (0.0,), (1.0,)),), "3 values"),
        ((("grip", (0.0,), (0.0,)),), "stds positive"),
        ((("grip", (float("nan"),), (1.0,)),), "finite"),
    ],
)
def test_bad_constants_are_clear_errors(bad, message):
    cfg = dataclasses.replace(get_preset("sac_state"), obs_norm=bad)
    with pytest.raises(ValueError, match=message):
        create(cfg, OBS, 4, seed=0)


def test_statistics_come_from_the_demos_and_land_in_the_run_config(tmp_path):
    demos = tmp_path / "demos"
    main(["record-demos", "serl/PandaPickCube-v0", "--out", str(demos), "--episodes", "2"])
    norm = dict((k, (m, s)) for k, m, s in observation_norm(demos))
    with EpisodeStore.open(demos) as store:
        block = np.concatenate([e.observations["block_pos"] for e in store])
    assert sorted(norm) == ["block_pos", "gripper_pos", "tcp_pos", "tcp_vel"]
    np.testing.assert_allclose(norm["block_pos"][0], block.mean(0), rtol=1e-5)
    np.testing.assert_allclose(norm["block_pos"][1], np.maximum(block.std(0), 1e-2), rtol=1e-5)

    cfg = TrainConfig("serl/PandaPickCube-v0", demos=str(demos), run_dir=str(tmp_path / "run"))
    resolved = with_observation_norm(cfg)
    assert resolved.agent_config.obs_norm == observation_norm(demos)
    # through JSON (lists) and back: hashable again, and never recomputed on resume
    again = TrainConfig.from_json(json.loads(json.dumps(resolved.to_json())))
    assert again.agent_config.obs_norm == resolved.agent_config.obs_norm
    assert with_observation_norm(again) is again
    for off in (
        dataclasses.replace(cfg, normalize_observations=False),
        dataclasses.replace(cfg, demos=None),
    ):
        assert with_observation_norm(off).agent_config.obs_norm is None
