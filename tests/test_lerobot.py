"""LeRobotDataset v3.0 in and out: a dataset LeRobot itself wrote loads with its frames and
values, serl's episodes survive export -> import (camera frames within the codec's error), a
run's replay keeps its interventions, `serl train --demos` takes a LeRobotDataset, and bad input
is one clear error with nothing written."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from test_readme_commands import LEROBOT, cwd  # noqa: F401
from test_readme_commands import serl as readme

from serl.cli import main
from serl.data import EpisodeStore
from serl.data.lerobot import LeRobotReader, state_keys
from serl.errors import ConfigError, PathNotFound
from serl.train.replay_log import ReplayLog, split_batch

FIXTURE = Path(__file__).parent / "fixtures" / "lerobot_v30"  # by bench/lerobot_side.py fixture
IMAGES = FIXTURE.with_name("lerobot_v30_images")  # ... fixture-images: PNG frames in the table
VISION = "serl/PandaPickCubeVision-v0"
SMALL = json.dumps({"image_size": 64})
# AV1 at CRF 30 on 64x64 sim renders: measured mean |error| 2.4-2.6 levels, PSNR 32.6-35 dB
MAX_MEAN_ERROR, MIN_PSNR = 4.0, 30.0


def serl(*argv: object) -> None:
    assert main([str(a) for a in argv]) == 0


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255**2 / max(mse, 1e-12)))


@pytest.fixture(scope="module")
def vision_demos(tmp_path_factory) -> Path:
    """Two scripted episodes of the camera pick-cube at 64x64."""
    out = tmp_path_factory.mktemp("vision") / "demos"
    serl("record-demos", VISION, "--episodes", 2, "--out", out, "--env-kwargs", SMALL)
    return out


def test_the_dataset_lerobot_wrote_loads_as_lerobot_reads_it() -> None:
    expected = np.load(FIXTURE.with_suffix(".npz"))  # every frame as LeRobotDataset returned it
    dataset = LeRobotReader(FIXTURE)
    assert dataset.fps == 10 and len(dataset) == 2 and not dataset.ours
    specs = {k: (s.shape, s.dtype) for k, s in dataset.schema.observations}
    assert specs == {
        "front": ((64, 64, 3), "uint8"),
        "wrist": ((64, 64, 3), "uint8"),
        "state": ((4,), "float32"),  # its entries are named x, y, z, grip: one key
    }
    assert dataset.dropped == ["complementary_info.discrete_penalty"]
    episodes = list(dataset.episodes())
    assert [len(e) for e, _ in episodes] == [5, 4]  # each LeRobot frame is a transition
    frames = {k: np.concatenate([e.observations[k][:-1] for e, _ in episodes]) for k in specs}
    np.testing.assert_array_equal(frames["state"], expected["observation.state"])
    for camera in ("front", "wrist"):  # PyAV here, LeRobot's own decoder there: the same pixels
        np.testing.assert_array_equal(frames[camera], expected[f"observation.images.{camera}"])
    actions = np.concatenate([e.actions for e, _ in episodes])
    np.testing.assert_array_equal(actions, expected["action"])
    rewards = np.concatenate([e.rewards for e, _ in episodes])
    np.testing.assert_array_equal(rewards, expected["next.reward"])
    terminated = np.concatenate([e.terminated for e, _ in episodes])
    np.testing.assert_array_equal(terminated, expected["next.done"])
    for episode, attrs in episodes:  # the last next observation repeats the last frame
        assert attrs["task"] == "pick the cube"
        np.testing.assert_array_equal(
            episode.observations["front"][-1], episode.observations["front"][-2]
        )
        assert not episode.truncated.any()


def test_the_dataset_lerobot_wrote_with_images_in_its_table_loads() -> None:
    expected = np.load(IMAGES.with_suffix(".npz"))
    dataset = LeRobotReader(IMAGES)
    assert dataset.info["features"]["observation.images.front"]["dtype"] == "image"
    assert dataset.schema == LeRobotReader(FIXTURE).schema
    episodes = list(dataset.episodes())
    assert [len(e) for e, _ in episodes] == [5, 4]
    for key in ("front", "wrist"):  # PNG is lossless: the very frames LeRobot returns
        frames = np.concatenate([e.observations[key][:-1] for e, _ in episodes])
        np.testing.assert_array_equal(frames, expected[f"observation.images.{key}"])
    states = np.concatenate([e.observations["state"][:-1] for e, _ in episodes])
    np.testing.assert_array_equal(states, expected["observation.state"])


def test_vision_demos_round_trip(vision_demos, tmp_path) -> None:
    serl("demos", "export", vision_demos, "--format", "lerobot", "--out", tmp_path / "lr")
    info = json.loads((tmp_path / "lr/meta/info.json").read_text())
    assert info["codebase_version"] == "v3.0" and info["fps"] == 10
    assert info["features"]["observation.state"]["names"][:2] == ["gripper_pos[0]", "tcp_pos[0]"]
    assert info["features"]["observation.images.front"]["info"]["video.codec"] == "av1"
    serl(
        "demos",
        "import",
        tmp_path / "lr",
        "--format",
        "lerobot",
        "--out",
        tmp_path / "back",
        "--env-id",
        VISION,
        "--env-kwargs",
        SMALL,
    )
    with EpisodeStore.open(vision_demos) as a, EpisodeStore.open(tmp_path / "back") as b:
        assert a.schema == b.schema and len(a) == len(b) == 2
        for (ea, attrs_a), (eb, attrs_b) in zip(a.items(), b.items(), strict=True):
            for key in ("gripper_pos", "tcp_pos", "tcp_vel"):
                np.testing.assert_array_equal(ea.observations[key], eb.observations[key])
            for name in ("actions", "rewards", "terminated", "truncated"):
                np.testing.assert_array_equal(getattr(ea, name), getattr(eb, name))
            for camera in ("front", "wrist"):
                x, y = ea.observations[camera], eb.observations[camera]
                assert x.shape == y.shape
                assert np.abs(x.astype(int) - y.astype(int)).mean() <= MAX_MEAN_ERROR
                assert psnr(x, y) >= MIN_PSNR
            assert {k: attrs_b[k] for k in ("env_id", "seed", "success", "expert")} == {
                k: attrs_a[k] for k in ("env_id", "seed", "success", "expert")
            }


def test_a_replays_interventions_survive(cwd) -> None:  # noqa: F811
    serl("record-demos", "serl/PandaPickCube-v0", "--episodes", 1, "--out", "demos")
    with EpisodeStore.open("demos") as store:
        episode, schema = store[0], store.schema
    n = len(episode)
    intervened = np.zeros(n, bool)
    intervened[[3, 4, 5, 20, 21]] = True  # a person took over twice
    data = {**episode.transitions(), "intervened": intervened}
    run = cwd / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"env_id": "serl/PandaPickCube-v0"}))
    log = ReplayLog(run / "replay", schema)  # as the learner stores what actors push
    for seq, rows in enumerate((slice(0, 10), slice(10, n)), start=1):
        batch = {
            k: ({j: v[rows] for j, v in x.items()} if isinstance(x, dict) else x[rows])
            for k, x in data.items()
        }
        log.append_batch("actor-0", seq, split_batch(batch))
    log.close()
    readme(LEROBOT[1], RUN_DIR="run")
    readme(LEROBOT[2], demos_lerobot="replay_lerobot")
    with EpisodeStore.open("demos_back") as back:
        ((joined, attrs),) = back.items()  # the two pieces are one episode again
    assert attrs["intervened"] == [3, 4, 5, 20, 21] and attrs["task"] == "serl/PandaPickCube-v0"
    assert attrs["actor"] == "actor-0" and "seq" not in attrs  # who took it, not the batches
    for key, value in episode.observations.items():
        np.testing.assert_array_equal(joined.observations[key], value)
    np.testing.assert_array_equal(joined.actions, episode.actions)
    np.testing.assert_array_equal(joined.rewards, episode.rewards)
    np.testing.assert_array_equal(joined.terminated, episode.terminated)


def test_train_takes_a_lerobot_dataset_as_demos(cwd) -> None:  # noqa: F811
    serl("record-demos", "serl/PandaPickCube-v0", "--episodes", 2, "--out", "demos")
    readme(LEROBOT[0])
    tiny = json.dumps({"hidden_dims": [16, 16], "num_qs": 2, "batch_size": 16})
    short = ["--env-steps", "20", "--random-steps", "10", "--training-starts", "10"]
    short += ["--eval-every", "20", "--eval-episodes", "1", "--checkpoint-every", "10"]
    readme(LEROBOT[3], *short, "--agent-overrides", tiny, "--no-video", "--run-dir", "run")
    config = json.loads((cwd / "run/config.json").read_text())
    assert Path(config["demos"]) == Path("run/demos")  # converted into the run once
    with EpisodeStore.open("demos") as a, EpisodeStore.open("run/demos") as b:
        assert len(a) == len(b) == 2
        for (ea, attrs), eb in zip(a.items(), b, strict=True):
            assert attrs["success"]
            np.testing.assert_array_equal(ea.actions, eb.actions)
            np.testing.assert_array_equal(ea.observations["tcp_pos"], eb.observations["tcp_pos"])


def test_bad_input_is_one_clear_error_and_writes_nothing(vision_demos, tmp_path) -> None:
    with pytest.raises(PathNotFound, match="not a LeRobotDataset"):
        main(["demos", "import", str(tmp_path), "--out", str(tmp_path / "x")])
    lr = tmp_path / "lr"
    serl("demos", "export", vision_demos, "--out", lr)
    with pytest.raises(ConfigError, match=r"'front' is \(64, 64, 3\), the env's \(128, 128, 3\)"):
        main(["demos", "import", str(lr), "--out", str(tmp_path / "x"), "--env-id", VISION])
    with pytest.raises(
        ConfigError, match=r"no observation 'front' \(the env's is \(64, 64, 3\)\)$"
    ):
        renamed = tmp_path / "renamed"
        shutil.copytree(lr, renamed)
        info = json.loads((renamed / "meta/info.json").read_text())
        features = info["features"]
        del features["observation.images.front"]  # a camera the env has is missing
        (renamed / "meta/info.json").write_text(json.dumps(info))
        main(
            [
                "demos",
                "import",
                str(renamed),
                "--out",
                str(tmp_path / "x"),
                "--env-id",
                VISION,
                "--env-kwargs",
                SMALL,
            ]
        )
    shutil.rmtree(lr / "videos/observation.images.wrist")
    with pytest.raises(PathNotFound, match=r"camera observation\.images\.wrist's video"):
        main(["demos", "import", str(lr), "--out", str(tmp_path / "x")])
    with pytest.raises(ConfigError, match=r"LeRobotDataset v2\.1; serl reads v3\.0"):
        info = json.loads((lr / "meta/info.json").read_text())
        (lr / "meta/info.json").write_text(json.dumps({**info, "codebase_version": "v2.1"}))
        main(["demos", "import", str(lr), "--out", str(tmp_path / "x")])
    assert not (tmp_path / "x").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lr", "renamed"]  # no leftovers
    with pytest.raises(FileExistsError, match="choose a new --out"):
        main(["demos", "export", str(vision_demos), "--out", str(lr)])


def test_state_names_split_back_into_keys() -> None:
    names = ["a[0]", "a[1]", "b[0]", "c[0]", "c[1]", "c[2]"]
    assert state_keys(names, 6) == [("a", 2), ("b", 1), ("c", 3)]
    assert state_keys(["x", "y"], 2) == [("state", 2)]  # another dataset's names: one key
    assert state_keys(["a[0]", "a[2]"], 2) == [("state", 2)]  # not contiguous
    assert state_keys(["a[0]", "b[0]", "a[1]"], 3) == [("state", 3)]  # a key split in two
    assert state_keys(None, 3) == [("state", 3)]
