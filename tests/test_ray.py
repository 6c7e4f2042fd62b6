"""`serl train --ray local`: the learner and actors as Ray actors on a local Ray instance; every
env step stored once, an actor and the learner killed mid-run restarted by Ray, the learner
resuming its checkpoint (same leaf hashes) and the run completing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading

import pytest
from test_readme_commands import SHORT, cwd, serl  # noqa: F401
from test_readme_commands import TINY_SAC as TINY
from test_train import (
    TINY_SAC,
    assert_stored_once,
    pendulum,
    processes_mentioning,
    progress,
    thread_nices,
    wait_for,
    wait_for_updates,
)

from serl.agents.persist import leaf_hashes
from serl.errors import ConfigError
from serl.train.launcher import prepare_run
from serl.train.ray_launcher import RayLauncher
from serl.train.reports import read_eval_csv
from serl.train.run_checkpoints import latest_checkpoint, load_checkpoint

ray = pytest.importorskip("ray")
RAY = "serl train Pendulum-v1 --ray local --actors 2"


@pytest.mark.timeout(300)
def test_two_actors_on_a_local_ray(cwd) -> None:  # noqa: F811
    robot = json.dumps({"robot": 1})  # placed where a node offers it (this one, here)
    serl(RAY, *SHORT, "--agent-overrides", json.dumps(TINY), "--actor-resources", robot)
    run = cwd / "runs/Pendulum-v1/sac-s0"
    assert [r["env_step"] for r in read_eval_csv(run / "eval.csv")]
    assert (run / "learning_curve.png").exists() and list((run / "tb").iterdir())
    assert_stored_once(run, 40)  # every env step of both actors, once
    assert {"actor-0.log", "actor-1.log", "learner.log"} <= {
        p.name for p in (run / "logs").iterdir()
    }
    assert not ray.is_initialized()  # the Ray it started is shut down


def pid(host) -> int:
    """The pid of the serl process a Ray actor hosts (once Ray has (re)started it)."""
    return ray.get(host.pid.remote(), timeout=120)


@pytest.mark.timeout(600)
def test_ray_restarts_a_killed_actor_and_a_killed_learner(tmp_path) -> None:
    cfg = prepare_run(
        pendulum(tmp_path / "run", actors=2, env_steps=1600, eval_every=100_000), False
    )
    launcher = RayLauncher(cfg, "local")
    codes: list[int] = []
    supervisor = threading.Thread(target=lambda: codes.append(launcher.supervise()))
    supervisor.start()
    run = cfg.path
    try:
        wait_for(lambda: progress(run).get("env_steps", 0) >= 300, 180, "300 env steps")
        os.kill(pid(launcher.actors[0]), signal.SIGKILL)
        wait_for(
            lambda: "going on from there" in (run / "logs/actor-0.log").read_text(),
            180,
            "Ray to restart actor 0",
        )
        updates = progress(run)["updates"]
        wait_for(lambda: progress(run).get("updates", 0) >= updates + 45, 180, "45 more updates")
        os.kill(pid(launcher.learner), signal.SIGKILL)  # e.g. the out-of-memory killer
        checkpoint = latest_checkpoint(run)
        saved = leaf_hashes(load_checkpoint(checkpoint)[0])  # before the resumed run prunes it
        supervisor.join(420)
        assert codes == [0]
    finally:
        launcher.stop()
        supervisor.join(60)
    assert "resumed from" in (run / "logs/learner.log").read_text()  # Ray's restart resumed it
    resumed = json.loads((run / "resumed_from.json").read_text())
    assert resumed["checkpoint"] == checkpoint.name and resumed["leaf_hashes"] == saved
    assert_stored_once(run, 1600)  # through both crashes: each transition once


def test_a_gpu_this_node_lacks_is_one_clear_error(tmp_path) -> None:
    cfg = prepare_run(pendulum(tmp_path / "run"), False)
    with pytest.raises(ConfigError, match=r"Ray sees \d+ GPUs here"):
        RayLauncher(cfg, "local", learner_gpus=1000)
    assert not ray.is_initialized()  # the Ray it started is shut down again


@pytest.mark.timeout(300)
def test_sigterm_stops_a_ray_run_and_leaves_no_process(tmp_path) -> None:
    run = tmp_path / "run"
    command = [sys.executable, "-m", "serl.cli", "train", "Pendulum-v1", "--ray", "local"]
    command += ["--no-video", "--run-dir", str(run), "--agent-overrides", json.dumps(TINY_SAC)]
    command += "--env-steps 100000 --random-steps 100 --training-starts 100".split()
    command += "--updates-per-env-step 0.25 --eval-every 100000 --checkpoint-every 100000".split()
    launcher = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    port = None
    try:
        wait_for_updates(run, 10, launcher)
        port = json.loads((run / "config.json").read_text())["port"]
        (actor,) = processes_mentioning(f"127.0.0.1:{port}")  # its config is in a temp dir
        (learner,) = [p for p, c in processes_mentioning(str(run)).items() if " learner " in c]
        assert set(thread_nices(actor)) == {10} and set(thread_nices(learner)) == {0}
        launcher.send_signal(signal.SIGTERM)  # kill PID, a job scheduler's stop
        assert launcher.wait(120) == 130
        assert processes_mentioning(str(run)) == {}  # no learner, actor or Ray worker left
        assert processes_mentioning(f"127.0.0.1:{port}") == {}
    finally:
        left = processes_mentioning(str(run)) | (processes_mentioning(f":{port}") if port else {})
        for pid in [launcher.pid, *left]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    checkpoint = latest_checkpoint(run)
    assert checkpoint is not None and int(checkpoint.name) >= 10  # the learner's final one


def test_a_ray_client_address_is_refused_with_what_to_run(tmp_path) -> None:
    cfg = prepare_run(pendulum(tmp_path / "run"), False)
    with pytest.raises(ConfigError, match=r"ray job submit .* --ray auto"):
        RayLauncher(cfg, "ray://10.0.0.1:10001")
    assert not ray.is_initialized()
