"""The one config decoder: JSON round trips of nested frozen configs, unknown keys refused."""

from __future__ import annotations

import dataclasses
import json

import pytest

from serl.agents import PRESETS, config_from_dict, config_to_dict
from serl.agents.registry import KINDS, kind_of
from serl.dataclass_json import decode, decode_fields, merge
from serl.robot.env import FrankaEnvConfig
from serl.train.config import TrainConfig


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_survives_json_equal_and_hashable(name) -> None:
    config = PRESETS[name]
    assert kind_of(config) is KINDS[config.agent]
    again = config_from_dict(json.loads(json.dumps(config_to_dict(config))))
    assert again == config and hash(again) == hash(config)


def test_nested_tuples_and_configs_come_back_from_json() -> None:
    norm = (("state", (0.0, 1.0), (1.0, 2.0)),)
    config = merge(
        PRESETS["vice_small"],
        {"obs_norm": [["state", [0, 1], [1, 2]]], "classifier": {"encoder": {"bottleneck_dim": 8}}},
    )
    assert config.obs_norm == norm and config.classifier.encoder.bottleneck_dim == 8
    assert config.classifier.label_smoothing == PRESETS["vice_small"].classifier.label_smoothing
    again = config_from_dict(json.loads(json.dumps(config_to_dict(config))))
    assert again == config and hash(again) == hash(config)


def test_unknown_keys_are_refused_at_any_depth() -> None:
    data = config_to_dict(PRESETS["vice_small"])
    data["config"]["classifier"]["encoder"]["bogus"] = 1
    with pytest.raises(ValueError, match=r"vice config\.classifier\.encoder: unknown fields"):
        config_from_dict(data)
    with pytest.raises(ValueError, match="agent_overrides: unknown fields"):
        merge(PRESETS["sac_state"], {"learning_rate": 1.0}, "agent_overrides")
    with pytest.raises(ValueError, match="expected a JSON object"):
        decode(TrainConfig, [1, 2])


def test_fields_typed_any_keep_their_json_form() -> None:
    cfg = TrainConfig("Pendulum-v1", env_kwargs={"g": [1, 2]}, agent_overrides={"x": [1]})
    again = decode(TrainConfig, json.loads(json.dumps(dataclasses.asdict(cfg))))
    assert again == cfg and again.env_kwargs == {"g": [1, 2]}


def test_partial_fields_decode_nested_dicts_of_configs() -> None:
    fields = decode_fields(
        FrankaEnvConfig,
        {
            "cameras": {"wrist": {"kind": "realsense", "device": "1", "crop": [0, 480, 80, 560]}},
            "reset_pose": [0.5, 0.0, 0.3, 3.14, 0.0, 0.0],
        },
    )
    assert fields["cameras"]["wrist"].crop == (0, 480, 80, 560)
    assert fields["reset_pose"] == (0.5, 0.0, 0.3, 3.14, 0.0, 0.0)
