"""Recording scripted demonstrations into an episode store, and making envs for training."""

import json
import sys

import gymnasium as gym
import numpy as np
import pytest

from serl.cli import main
from serl.data import EpisodeStore
from serl.errors import ConfigError
from serl.robot.teleop import DISCONNECT, DeviceDisconnected, DeviceError, Keyboard, ScriptedSource
from serl.train.envs import env_schema, make_env
from serl.train.recording import record_demos


def test_record_demos_writes_successful_episodes(tmp_path) -> None:
    out = tmp_path / "demos"
    main(["record-demos", "serl/PandaPickCube-v0", "--out", str(out), "--episodes", "3"])
    store = EpisodeStore.open(out)
    assert len(store) == 3
    for episode in store:
        assert episode.terminated[-1]  # sparse reward: success terminates
        assert episode.rewards[-1] == 1.0
        assert episode.observations["block_pos"].shape == (len(episode) + 1, 3)
        assert np.all(np.abs(episode.actions) <= 1.0)


def test_recorded_demos_replay_identically(tmp_path) -> None:
    out = tmp_path / "demos"
    main(["record-demos", "serl/PandaPickCube-v0", "--out", str(out), "--episodes", "1"])
    episode = EpisodeStore.open(out)[0]
    env = make_env("serl/PandaPickCube-v0")
    obs, _ = env.reset(seed=0)  # the first attempt uses the recording seed
    for t, action in enumerate(episode.actions):
        np.testing.assert_array_equal(obs["block_pos"], episode.observations["block_pos"][t])
        obs, *_ = env.step(action)


def test_record_demos_makes_the_env_with_the_given_kwargs(tmp_path) -> None:
    out = tmp_path / "demos"
    main(
        [
            "record-demos",
            "serl/PandaPickCubeVision-v0",
            "--out",
            str(out),
            "--episodes",
            "1",
            "--keep-failures",
            "--env-kwargs",
            '{"image_size": 32, "max_episode_steps": 4}',
        ]
    )
    with EpisodeStore.open(out) as store:
        episode = store[0]
    assert episode.observations["front"].shape == (5, 32, 32, 3)
    assert len(episode) == 4


@pytest.mark.parametrize("text", ["{image_size: 32}", "[32]"])
def test_record_demos_refuses_bad_env_kwargs_before_recording(tmp_path, text, capsys) -> None:
    with pytest.raises(SystemExit):
        main(
            [
                "record-demos",
                "serl/PandaPickCube-v0",
                "--out",
                str(tmp_path / "d"),
                "--env-kwargs",
                text,
            ]
        )
    assert "Error parsing --env-kwargs" in capsys.readouterr().err
    assert not (tmp_path / "d").exists()


def test_a_teleop_device_without_its_library_fails_clearly(tmp_path, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "pyspacemouse", None)  # as on a machine without it
    with pytest.raises(DeviceError, match=r"serl\[teleop\]"):
        main(
            [
                "record-demos",
                "serl/PandaPickCube-v0",
                "--out",
                str(tmp_path / "d"),
                "--expert",
                "spacemouse",
            ]
        )


def test_make_env_rescales_actions_and_wraps_observations() -> None:
    env = make_env("Pendulum-v1")
    assert np.allclose(env.action_space.low, -1) and np.allclose(env.action_space.high, 1)
    obs, _ = env.reset(seed=0)
    assert set(obs) == {"state"}
    schema = env_schema(env)
    assert schema.obs_specs["state"].shape == (3,)
    assert schema.action_shape == (1,)


def test_make_env_refuses_discrete_actions_and_unknown_ids() -> None:
    with pytest.raises(ConfigError, match="Box action"):
        make_env("CartPole-v1")
    with pytest.raises(ValueError, match="cannot make env"):
        make_env("NoSuchEnv-v9")
    assert "serl/PandaPickCube-v0" in gym.registry


def keys(*names):
    return frozenset(names)


def test_keyboard_demos_follow_the_persons_events(tmp_path) -> None:
    script = (
        [keys("w", "c")] * 5
        + [keys("enter")]  # episode 0: success after 5 steps
        + [keys("a")] * 3
        + [keys("n")]  # episode 1: re-recorded from the same seed...
        + [keys("d")] * 4
        + [keys("backspace")]  # ...then a failure: not kept
        + [keys("up")] * 2
        + [keys("enter")]  # episode 2: success
    )
    source = ScriptedSource(script, hold_last=False)
    out = record_demos(
        "serl/PandaPickCube-v0",
        2,
        tmp_path / "demos",
        expert="keyboard",
        device=Keyboard(source),
        realtime=False,
    )
    store = EpisodeStore.open(out)
    assert len(store) == 2 and source.reads == len(script)
    assert [store.attrs(i)["seed"] for i in range(2)] == [0, 2]
    assert all(
        store.attrs(i)["expert"] == "keyboard" and store.attrs(i)["success"] for i in range(2)
    )
    first, second = store[0], store[1]
    np.testing.assert_allclose(first.actions, [[0.3, 0.0, 0.0, 1.0]] * 5, atol=1e-7)
    assert first.terminated.tolist() == [False] * 4 + [True]  # the person said: success
    np.testing.assert_allclose(second.actions, [[0.0, 0.0, 0.3, 0.0]] * 2, atol=1e-7)


def test_teleop_demos_reload_and_replay_identically(tmp_path) -> None:
    script = [keys("w")] * 3 + [keys("a", "down")] * 4 + [keys("c")] * 3 + [keys("enter")]
    out = record_demos(
        "serl/PandaPickCube-v0",
        1,
        tmp_path / "demos",
        expert="keyboard",
        device=Keyboard(ScriptedSource(script)),
        realtime=False,
        seed=5,
    )
    episode = EpisodeStore.open(out)[0]
    env = make_env("serl/PandaPickCube-v0")
    obs, _ = env.reset(seed=5)
    for t, action in enumerate(episode.actions):
        for key, frames in episode.observations.items():
            np.testing.assert_array_equal(obs[key], frames[t])
        obs, *_ = env.step(action)
    summary = json.loads(_stdout(["demos", "info", str(out)]))
    assert summary["episodes"] == 1 and summary["steps"] == 10
    assert summary["experts"] == {"keyboard": 1} and summary["success_rate"] == 1.0
    video = json.loads(_stdout(["demos", "video", str(out), "--out", str(tmp_path / "d.mp4")]))
    assert video["max_obs_deviation"] == 0.0 and video["frames"] == 11
    assert (tmp_path / "d.mp4").stat().st_size > 0


def test_an_unplugged_device_ends_recording_and_keeps_finished_episodes(tmp_path) -> None:
    script = [keys("w")] * 2 + [keys("enter")] + [keys("w")] * 3 + [DISCONNECT]
    with pytest.raises(DeviceDisconnected, match="discarded, 1 kept"):
        record_demos(
            "serl/PandaPickCube-v0",
            3,
            tmp_path / "demos",
            expert="keyboard",
            device=Keyboard(ScriptedSource(script)),
            realtime=False,
        )
    store = EpisodeStore.open(tmp_path / "demos")
    assert len(store) == 1 and len(store[0]) == 2


def test_stop_ends_recording_early(tmp_path) -> None:
    script = [keys("w")] * 2 + [keys("enter"), keys("esc")]
    record_demos(
        "serl/PandaPickCube-v0",
        5,
        tmp_path / "demos",
        expert="keyboard",
        device=Keyboard(ScriptedSource(script)),
        realtime=False,
    )
    assert len(EpisodeStore.open(tmp_path / "demos")) == 1


def _stdout(argv: list[str]) -> str:
    import contextlib
    import io

    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        main(argv)
    return buffer.getvalue()
