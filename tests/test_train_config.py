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


def test_an_actor_waits_for_the_address_its_local_learner_writes(tmp_path) -> None:
    import threading

    from serl.errors import ProcessFailed
    from serl.train.run_files import learner_address, write_json_atomic

    assert learner_address("10.0.0.2:5555") == "10.0.0.2:5555"  # given: used as it is
    path = tmp_path / "learner.json"
    with pytest.raises(ProcessFailed, match="no learner wrote its address"):
        learner_address(str(path), timeout=0.2)
    path.write_text('{"addr')  # half a file: not an address, keep waiting
    late = threading.Timer(0.3, write_json_atomic, (path, {"address": "127.0.0.1:4321"}))
    late.start()
    assert learner_address(str(path), timeout=60) == "127.0.0.1:4321"
    late.join()


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
    # the demos' statistics are in config.json before the actors, which start beside the
    # learner, read it: they act with the learner's normalisation
    norm = TrainConfig.load(cfg.path).agent_overrides["obs_norm"]
    assert {key for key, _, _ in norm} == {"gripper_pos", "tcp_pos", "tcp_vel"}  # no camera
    assert all(len(mean) == len(std) > 0 for _, mean, std in norm)


def test_every_training_config_field_is_a_flag_of_serl_train(capsys) -> None:
    import dataclasses

    from serl.cli import main

    with pytest.raises(SystemExit):
        main(["train", "Pendulum-v1", "--help"])
    said = capsys.readouterr().out
    for f in dataclasses.fields(TrainConfig):
        if f.name != "env_id":  # the positional ENV_ID
            assert f"--{f.name.replace('_', '-')}" in said, f.name


def test_serl_train_flags_override_the_recipe_of_the_env_they_name(tmp_path, monkeypatch) -> None:
    from serl.cli.train import parse_train_args, train_config

    monkeypatch.chdir(tmp_path)
    vision = "serl/PandaPickCubeVision-v0"

    def parsed(*argv: str) -> TrainConfig:
        return train_config(parse_train_args(list(argv)))

    assert parsed(vision) == recipe(vision)
    assert parsed() == recipe("serl/PandaPickCube-v0")  # make train's job
    assert parsed("--seed", "3", vision) == recipe(vision, seed=3)  # the id after a flag
    # fields the old flags never reached
    cfg = parsed("Pendulum-v1", "--random-steps", "5", "--checkpoint-every", "7")
    assert (cfg.random_steps, cfg.checkpoint_every, cfg.env_steps) == (5, 7, 15_000)
    # another agent leaves the recipe's preset (its own agent's), unless one is given
    assert parsed("serl/PandaPickCube-v0", "--agent", "drq").preset is None
    assert parsed("serl/PandaPickCube-v0", "--agent", "drq", "--preset", "drq").preset == "drq"
    assert parsed(vision, "--agent", "vice").preset is None  # not drq_cached, which VICE refuses
    # the run directory follows the agent and seed; --resume takes the newest one
    assert parsed(vision, "--agent", "sac", "--seed", "2").run_dir == default_run_dir(
        vision, "sac", 2
    )
    (tmp_path / recipe("Pendulum-v1").run_dir).mkdir(parents=True)
    assert parsed("Pendulum-v1").run_dir.endswith("sac-s0-2")
    assert parsed("Pendulum-v1", "--resume").run_dir.endswith("sac-s0")
    # --encoder and --pretrained join the overrides given as JSON
    cfg = parsed(
        vision,
        "--encoder",
        "resnet10",
        "--pretrained",
        "w.pkl",
        "--agent-overrides",
        '{"encoder": {"dropout_rate": 0.2}, "discount": 0.9}',
    )
    encoder = cfg.agent_config.encoder
    assert (encoder.backbone, encoder.dropout_rate, cfg.agent_config.discount) == (
        "resnet10",
        0.2,
        0.9,
    )
    assert encoder.pretrained_path == str(tmp_path / "w.pkl")
