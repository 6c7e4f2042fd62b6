"""Every command README.md shows runs here and exits 0, shortened (few env steps, small episodes
and images, tiny networks: flags appended to README's line, which is taken verbatim from
README.md). A command added to README without a run here fails the first test. The runs also
check what each command promises to leave behind."""

import json
import re
import shlex
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import jax
import numpy as np
import pytest
from train_helpers import TINY_DRQ, TINY_VICE, free_port
from weights_helpers import write_resnet10_pickle, write_resnet10_safetensors

from serl.agents import vice
from serl.cli import main
from serl.data import EpisodeStore
from serl.train.evaluation import evaluate_run
from serl.train.reports import EVAL_COLUMNS, read_eval_csv
from serl.train.run_checkpoints import latest_checkpoint, load_checkpoint

ROOT = Path(__file__).parents[1]
README = ROOT / "README.md"
VISION = "serl/PandaPickCubeVision-v0"

# flags that make a README training command a short one (its own flags stay)
SHORT = (
    "--env-steps 40 --random-steps 10 --training-starts 10 --eval-every 40 --eval-episodes 1 "
    "--pace-slack 20 --checkpoint-every 10 --log-every 5"
).split()
TINY_SAC = {"hidden_dims": [16, 16], "num_qs": 2, "batch_size": 16, "critic_actor_ratio": 1}


def readme_commands() -> list[str]:
    """The command lines of README.md's bash blocks, as typed (no .venv/bin/, no comment, no &)."""
    blocks = re.findall(r"```bash\n(.*?)```", README.read_text(), re.S)
    commands = []
    for line in "\n".join(blocks).replace("\\\n", " ").splitlines():
        line = re.sub(r"\s+#.*$", "", line).strip().removesuffix("&").strip()
        if line:
            commands.append(" ".join(line.removeprefix(".venv/bin/").split()))
    return commands


def readme_python() -> list[str]:
    """README.md's Python blocks."""
    return re.findall(r"```python\n(.*?)```", README.read_text(), re.S)


def serl(command: str, *extra: str, **placeholders: str) -> None:
    """Run README's `command` (verbatim) in-process with `extra` flags appended; it returns 0."""
    assert command in readme_commands(), f"not in README.md: {command}"
    for name, value in placeholders.items():
        command = command.replace(name, value)
    argv = shlex.split(command)
    assert argv[0] == "serl"
    assert main([*argv[1:], *extra]) == 0


def setup(*argv: str) -> None:
    """A `serl` command a test needs that README's sequence leaves to the user."""
    assert main(list(argv)) == 0


def python(*argv: object, timeout: float = 180) -> str:
    """Run python with `argv`; its stdout (it must exit 0)."""
    out = subprocess.run(
        [sys.executable, *map(str, argv)], capture_output=True, text=True, timeout=timeout
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


def flags(**values: object) -> list[str]:
    """--name JSON-or-text pairs."""
    out = []
    for name, value in values.items():
        text = json.dumps(value) if isinstance(value, dict) else str(value)
        out += [f"--{name.replace('_', '-')}", text]
    return out


# What each test below runs; together, every command README.md shows.
PENDULUM = [
    "serl train Pendulum-v1 --env-steps 15000",
    "serl train Pendulum-v1 --obs-horizon 2 --act-exec-horizon 4",
    "serl train Pendulum-v1 --wandb serl-pendulum",  # test_wandb_mirror.py
    "serl train Pendulum-v1 --ray local --actors 2",  # test_ray.py
]
PICK_CUBE = [
    "serl train serl/PandaPickCube-v0",
    "serl train ENV_ID --run-dir runs/x --resume",
    "serl eval runs/x --episodes 20 --video eval.mp4",
    "serl train serl/PandaPickCube-v0 --intervene sim --preset sac_hil",
]
VISION_RUNS = [
    f"serl train {VISION} --env-kwargs '{{\"image_size\": 64}}'",
    f"serl train {VISION} --help",
    "serl weights",
    "serl weights clear",
    f"serl train {VISION} --encoder resnet10 --pretrained resnet10_params.pkl",
]
DATA = [
    "serl record-demos serl/PandaPickCube-v0 --expert scripted --episodes 20 --out demos",
    "serl demos info demos",
    "serl demos video demos --out demos.mp4",
    f"serl record-transitions {VISION} --out labelled",
    "serl train-classifier labelled --eval-store heldout --out clf",
    f"serl train {VISION} --reward-classifier clf",
    f"serl train {VISION} --agent vice",
]
LEROBOT = [  # test_lerobot.py
    "serl demos export demos --format lerobot --out demos_lerobot",
    "serl demos export RUN_DIR/replay --format lerobot --out replay_lerobot",
    "serl demos import demos_lerobot --format lerobot --out demos_back "
    "--env-id serl/PandaPickCube-v0",
    "serl train serl/PandaPickCube-v0 --demos demos_lerobot",
]
FORWARD_BACKWARD = ["serl train-fb serl/PandaBinRelocationVision-v0"]
SIM = [f"serl render {VISION} --out cams.png", "python bench/env_speed.py"]
ROBOT = [
    "serl robot-server --backend sim --scene peg",
    "serl robot-server --backend sim --scene peg --time-scale 2",
]
# `make test` is this suite; `make train` runs README's first training command (checked below);
# the franka backend needs an arm: without its driver it says so in one line (checked below).
ELSEWHERE = [
    "make test",
    "make train",
    "serl robot-server --backend franka --robot-ip 172.16.0.2 --gripper franka --host 0.0.0.0 "
    '--token "$SERL_ROBOT_TOKEN"',
]


def test_every_readme_command_runs_in_this_file() -> None:
    ran = PENDULUM + PICK_CUBE + VISION_RUNS + DATA + LEROBOT + FORWARD_BACKWARD + SIM + ROBOT
    ran += ELSEWHERE
    assert sorted(readme_commands()) == sorted(ran)
    makefile = (ROOT / "Makefile").read_text()
    assert "\t$(BIN)/serl train serl/PandaPickCube-v0\n" in makefile  # make train = PICK_CUBE[0]
    assert len(readme_python()) == 2  # both run below (test_sim and test_robot_server)


@pytest.fixture
def cwd(tmp_path, monkeypatch) -> Path:
    """A user's working directory (README's relative paths), with its own weight cache."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SERL_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path


@pytest.mark.timeout(600)
def test_pendulum(cwd) -> None:
    tiny = ["--agent-overrides", json.dumps(TINY_SAC)]
    serl(PENDULUM[0], *SHORT, *tiny)
    run = cwd / "runs/Pendulum-v1/sac-s0"
    assert (run / "eval.csv").read_text().splitlines()[0] == ",".join(EVAL_COLUMNS)
    (row,) = read_eval_csv(run / "eval.csv")
    assert row["env_step"] == 40 and row["episodes"] == 1 and np.isfinite(row["mean_return"])
    assert (run / "learning_curve.png").read_bytes()[:4] == b"\x89PNG"
    assert list((run / "tb").glob("events.out.tfevents.*"))
    with EpisodeStore.open(run / "replay") as store:
        assert sum(len(e) for e in store) == 40  # every env step stored once
    with pytest.raises(FileExistsError, match="--resume"):  # never silently overwritten
        serl(PENDULUM[0], *SHORT, *tiny, "--run-dir", str(run))
    serl(PENDULUM[1], *SHORT, *tiny, "--run-dir", "runs/chunks")
    with EpisodeStore.open(cwd / "runs/chunks/replay") as store:
        assert store.schema.obs_specs["state"].shape == (2, 3)
        assert store.schema.action_shape == (4,)  # four Pendulum torques per agent step
        episodes = list(store)
    assert sum(len(e) for e in episodes) == 40
    for e in episodes:
        stacks = e.observations["state"]
        np.testing.assert_array_equal(stacks[1:, 0], stacks[:-1, 1])  # shifted by one step
    assert [r["env_step"] for r in read_eval_csv(cwd / "runs/chunks/eval.csv")] == [40]
    result = evaluate_run(cwd / "runs/chunks", episodes=1)  # `serl eval` rebuilds chunks too
    assert np.isfinite(result["mean_return"])


@pytest.mark.timeout(600)
def test_pick_cube(cwd, capsys) -> None:
    short = [*SHORT, "--num-demos", "2", "--agent-overrides", json.dumps(TINY_SAC)]
    serl(PICK_CUBE[0], *short, "--run-dir", "runs/x")
    run = cwd / "runs/x"
    assert (run / "eval.mp4").stat().st_size > 0 and len(list((run / "demos").iterdir()))
    # where the learner's and the actor's time went (bench/loop_efficiency.py reads it)
    progress = json.loads((run / "progress.json").read_text())
    assert progress["loop_s"]["update"] > 0 and progress["loop_s"]["ingest"] > 0
    actor = progress["actor_loop_s"]["actor-0"]
    assert actor["steps"] == 40 and actor["total_s"] >= actor["policy_s"] + actor["send_s"] > 0
    serl(PICK_CUBE[1], *short, "--env-steps", "80", "--no-video", ENV_ID="serl/PandaPickCube-v0")
    assert [r["env_step"] for r in read_eval_csv(run / "eval.csv")] == [40, 80]
    with EpisodeStore.open(run / "replay") as store:  # each env step once, over the resume
        assert sum(len(e) for e in store) == 80
    capsys.readouterr()
    serl(PICK_CUBE[2], "--episodes", "1")
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert {"success_rate", "mean_return"} <= set(result)
    assert (cwd / "eval.mp4").stat().st_size > 0
    serl(PICK_CUBE[3], *short, "--run-dir", "runs/hil", "--no-video")
    assert json.loads((cwd / "runs/hil/intervention.json").read_text())["kind"] == "sim"
    assert read_eval_csv(cwd / "runs/hil/eval.csv")
    # its experience as a LeRobotDataset and back: the same steps (its 40 had no intervention;
    # test_lerobot.py carries intervened steps through)
    serl(LEROBOT[1], RUN_DIR="runs/hil")
    serl(LEROBOT[2], demos_lerobot="replay_lerobot")
    with EpisodeStore.open(cwd / "runs/hil/replay") as log, EpisodeStore.open("demos_back") as back:
        logged = [(len(e), len(a.get("intervened", []))) for e, a in log.items()]
        returned = [(len(e), len(a.get("intervened", []))) for e, a in back.items()]
    assert sum(n for n, _ in returned) == sum(n for n, _ in logged) == 40
    assert sum(k for _, k in returned) == sum(k for _, k in logged)


def vision_run(demos: str, env_kwargs: dict, agent_overrides: dict) -> list[str]:
    """A README camera run made short: recorded demos (its episodes may then be too short for
    the scripted expert), 20-step episodes, a small head, no video (test_pick_cube's has one)."""
    episodes = {**env_kwargs, "max_episode_steps": 20}
    return [
        *SHORT,
        *flags(demos=demos, env_kwargs=episodes, agent_overrides=agent_overrides),
        "--no-video",
    ]


TINY_HEAD = {**TINY_SAC, "encoder": {"bottleneck_dim": 8}}  # drq_cached's head, small


@pytest.mark.timeout(600)
def test_vision_runs_and_backbone_weights(cwd, capsys) -> None:
    image = {"image_size": 64}  # README's first camera run; 2x2x512 ResNet-10 features
    setup("record-demos", VISION, "--episodes", "2", "--out", "vdemos", *flags(env_kwargs=image))
    serl(VISION_RUNS[0], *vision_run("vdemos", image, TINY_HEAD), "--run-dir", "runs/v64")
    assert read_eval_csv(cwd / "runs/v64/eval.csv")
    assert json.loads((cwd / "runs/v64/config.json").read_text())["env_kwargs"]["image_size"] == 64
    with pytest.raises(SystemExit) as shown:
        serl(VISION_RUNS[1])
    said = capsys.readouterr().out
    assert shown.value.code == 0 and "--replay-capacity" in said and "drq_cached" in said
    serl(VISION_RUNS[2])
    (listed,) = json.loads(capsys.readouterr().out)["files"]  # the run converted MobileNetV2
    assert listed["backbone"] == "mobilenet_v2"
    serl(VISION_RUNS[3])
    assert "removed 1" in capsys.readouterr().out and not (cwd / "cache" / "weights").exists()
    write_resnet10_pickle(cwd / "resnet10_params.pkl")
    serl(VISION_RUNS[4], *vision_run("vdemos", image, TINY_HEAD), "--run-dir", "runs/pkl")
    encoder = json.loads((cwd / "runs/pkl/config.json").read_text())["agent_overrides"]["encoder"]
    assert encoder["backbone"] == "resnet10" and Path(encoder["pretrained_path"]).is_absolute()
    assert read_eval_csv(cwd / "runs/pkl/eval.csv")
    # README's other file, LeRobot's model.safetensors: converted into the weight cache, where
    # a run reads either file's weights the same way (test_pretrained_backbones: same layout)
    write_resnet10_safetensors(cwd / "model.safetensors")
    capsys.readouterr()
    setup("weights", "convert", "--path", "model.safetensors", "--backbone", "resnet10")
    converted = Path(capsys.readouterr().out.strip())
    assert converted.parent == cwd / "cache" / "weights" and converted.suffix == ".npz"


@pytest.mark.timeout(600)
def test_demos_labels_and_learned_rewards(cwd, capsys) -> None:
    serl(DATA[0], "--episodes", "2")
    assert "wrote 2 episodes" in capsys.readouterr().out
    serl(DATA[1])
    assert json.loads(capsys.readouterr().out)["episodes"] == 2
    serl(DATA[2])
    assert (cwd / "demos.mp4").stat().st_size > 0
    labels = {"image_size": 32, "reward_type": "dense"}
    serl(DATA[3], "--episodes", "4", "--env-kwargs", json.dumps(labels))
    # the held-out store README's next line reads: other seeds
    setup(
        "record-transitions",
        VISION,
        "--out",
        "heldout",
        "--seed",
        "100",
        "--episodes",
        "2",
        "--env-kwargs",
        json.dumps(labels),
    )
    serl(DATA[4], "--steps", "5", "--batch-size", "8")
    report = json.loads((cwd / "clf" / "report.json").read_text())
    assert 0.0 <= report["held_out"]["accuracy"] <= 1.0
    assert (cwd / "clf" / "calibration.png").exists()
    small = {"image_size": 32}
    setup("record-demos", VISION, "--episodes", "2", "--out", "vdemos", *flags(env_kwargs=small))
    serl(DATA[5], *vision_run("vdemos", small, TINY_HEAD), "--run-dir", "runs/clf")
    reward = json.loads((cwd / "runs/clf/reward.json").read_text())
    assert reward["classifier"] == str(cwd / "clf")
    assert read_eval_csv(cwd / "runs/clf/eval.csv")
    # VICE learns its classifier online from the demos' last frames (stacked)
    vice_run = vision_run("vdemos", small, TINY_VICE)
    serl(
        DATA[6],
        *vice_run,
        "--obs-horizon",
        "2",
        "--checkpoint-every",
        "5",
        "--run-dir",
        "runs/vice",
    )
    run = cwd / "runs/vice"
    assert [r["env_step"] for r in read_eval_csv(run / "eval.csv")] == [40]
    state, meta = load_checkpoint(latest_checkpoint(run))
    assert isinstance(state, vice.VICEState)
    # the actor may not run more than pace_slack steps ahead: >= 5 updates for 40 env steps
    assert meta["updates"] >= 5 and int(state.classifier.step) == meta["updates"]
    fresh = vice.init_state(state.config, state.spec, 0)
    assert state.classifier.spec.example()["front"].shape == (1, 2, 32, 32, 3)  # stacks
    before = jax.tree.leaves(fresh.classifier.params.params)
    after = jax.tree.leaves(state.classifier.params.params)
    assert any(not np.array_equal(a, b) for a, b in zip(before, after, strict=True))
    events = b"".join(f.read_bytes() for f in (run / "tb").glob("events.out.tfevents.*"))
    for tag in (b"classifier/accuracy", b"classifier/loss", b"vice/reward_mean"):
        assert tag in events


@pytest.mark.timeout(300)
def test_forward_backward(cwd, capsys) -> None:
    episodes = {"image_size": 32, "max_episode_steps": 5}
    serl(
        FORWARD_BACKWARD[0],
        *flags(
            env_steps=20,
            random_steps=10,
            training_starts=10,
            env_kwargs=episodes,
            agent_overrides=TINY_DRQ,
        ),
    )
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["scene_resets"] == 1 and summary["episodes"] >= 4
    assert (cwd / "runs/forward_backward/forward/agent").exists()


@pytest.mark.timeout(300)
def test_sim(cwd, monkeypatch) -> None:
    serl(SIM[0])
    assert (cwd / "cams.png").read_bytes()[:4] == b"\x89PNG"
    monkeypatch.setenv("SERL_BENCH_RESULTS", str(cwd / "results"))
    command = SIM[1].split()
    assert " ".join(command) in readme_commands()
    python(ROOT / command[1], "--quick", timeout=240)
    assert (cwd / "results" / "env_speed.json").exists()
    by_hand, _ = readme_python()
    out = subprocess.run(
        [sys.executable, "-c", by_hand], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.strip().splitlines()[-1] in ("True", "False")


@pytest.mark.timeout(300)
@pytest.mark.parametrize("line", ROBOT, ids=["real_time", "time_scale"])
def test_robot_server(cwd, line: str) -> None:
    port = free_port()
    command = [*shlex.split(line), "--port", str(port)]
    assert line in readme_commands()
    server = subprocess.Popen([sys.executable, "-m", "serl.cli", *command[1:]])
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(f"{url}/health", timeout=2).read()
                break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline
                time.sleep(0.5)
        _, client = readme_python()
        script = (
            client.replace("http://127.0.0.1:5000", url) + "\nenv.close()\nprint(sorted(obs))\n"
        )
        out = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=180
        )
        assert "front" in out.stdout and "tcp_pose" in out.stdout
    finally:
        server.send_signal(signal.SIGINT)  # what ^C or `kill %1` does to the README's `&`
        code = server.wait(timeout=60)
    assert code == 0


def test_the_franka_backend_without_its_driver_says_so_in_one_line(cwd) -> None:
    command = shlex.split(ELSEWHERE[2].replace('"$SERL_ROBOT_TOKEN"', "secret"))
    out = subprocess.run(
        [sys.executable, "-m", "serl.cli", *command[1:]],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert "serl[robot]" in out.stderr
