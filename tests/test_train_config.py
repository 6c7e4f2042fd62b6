"""Training configs: recipes, overrides, JSON round trips and default run directories."""

import pytest

from serl.train.config import TrainConfig, default_run_dir, recipe


def test_recipe_defaults_and_explicit_overrides() -> None:
    cfg = recipe("serl/PandaPickCube-v0", seed=2, env_steps=None, run_dir="r")
    assert cfg.num_demos == 20 and cfg.seed == 2 and cfg.run_dir == "r"
    assert recipe("Pendulum-v1", env_steps=500, run_dir="r").env_steps == 500
    assert recipe("MountainCarContinuous-v0", run_dir="r").agent == "sac"  # any Box env


def test_config_json_round_trip_and_unknown_keys() -> None:
    cfg = TrainConfig("Pendulum-v1", agent_overrides={"hidden_dims": [8, 8]})
    again = TrainConfig.from_json(cfg.to_json())
    assert again == cfg
    assert again.agent_config.hidden_dims == (8, 8)
    with pytest.raises(ValueError, match=r"training config: unknown fields \['lr'\]"):
        TrainConfig.from_json({**cfg.to_json(), "lr": 1})


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"env_steps": 0}, "env_steps"),
        ({"demo_fraction": 1.0}, "demo_fraction"),
        ({"agent": "bc"}, "demonstrations"),
    ],
)
def test_bad_configs_are_refused(kwargs, match) -> None:
    with pytest.raises(ValueError, match=match):
        TrainConfig("Pendulum-v1", **kwargs)


def test_unknown_agent_override_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="agent_overrides"):
        _ = TrainConfig("Pendulum-v1", agent_overrides={"learning_rate": 1.0}).agent_config


def test_default_run_dirs_never_reuse_a_run_unless_resuming(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    first = default_run_dir("serl/PandaPickCube-v0", "sac", 0)
    assert first == "runs/serl_PandaPickCube-v0/sac-s0"
    (tmp_path / first).mkdir(parents=True)
    second = default_run_dir("serl/PandaPickCube-v0", "sac", 0)
    assert second == first + "-2"
    (tmp_path / second).mkdir()
    assert default_run_dir("serl/PandaPickCube-v0", "sac", 0, resume=True) == second


def test_run_side_files_round_trip_and_refuse_malformed_json(tmp_path) -> None:
    from serl.train.run_files import InterventionConfig, RewardConfig

    assert InterventionConfig.load(tmp_path) == InterventionConfig()  # absent: the defaults
    hil = InterventionConfig(kind="sim", sim_rules={"noise": 0.1})
    assert hil.save(tmp_path).name == "intervention.json"
    assert InterventionConfig.load(tmp_path) == hil
    reward = RewardConfig(classifier="clf", threshold=0.8)
    assert reward.save(tmp_path).name == "reward.json"
    assert RewardConfig.load(tmp_path) == reward
    for text in ('{"bogus": 1}', "{not json"):
        (tmp_path / "reward.json").write_text(text)
        with pytest.raises(ValueError, match=r"reward\.json: not a valid RewardConfig"):
            RewardConfig.load(tmp_path)


def test_recipe_demos_are_recorded_with_the_runs_env_kwargs(tmp_path) -> None:
    from serl.data import EpisodeStore
    from serl.train.launcher import prepare_run

    kwargs = {"image_size": 32}
    cfg = TrainConfig(
        "serl/PandaPickCubeVision-v0", num_demos=1, env_kwargs=kwargs, run_dir=str(tmp_path / "run")
    )
    cfg = prepare_run(cfg, resume=False)
    with EpisodeStore.open(cfg.demos) as store:
        assert store.schema.obs_specs["front"].shape == (32, 32, 3)
