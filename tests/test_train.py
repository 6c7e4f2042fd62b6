"""The training service end to end: learner and actor processes, faults, resume, outputs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from train_helpers import free_port

from serl.agents.persist import leaf_hashes
from serl.data import EpisodeStore
from serl.train.config import TrainConfig
from serl.train.launcher import Launcher, prepare_run, train
from serl.train.run_checkpoints import latest_checkpoint, load_checkpoint

TINY_SAC = {"hidden_dims": [32, 32], "num_qs": 2, "batch_size": 32, "critic_actor_ratio": 2}


def pendulum(run_dir: Path, **kw) -> TrainConfig:
    values = {
        "env_id": "Pendulum-v1",
        "run_dir": str(run_dir),
        "agent_overrides": TINY_SAC,
        "env_steps": 600,
        "random_steps": 100,
        "training_starts": 100,
        "eval_every": 300,
        "eval_episodes": 2,
        "checkpoint_every": 20,
        "updates_per_env_step": 0.25,
        "pace_slack": 50,
        **kw,
    }
    return TrainConfig(**values)


def spawn(*args: str, run_dir: Path, name: str) -> subprocess.Popen:
    env = {**os.environ, "SERL_TOKEN": "test-token-0123456789"}
    log = (run_dir / f"{name}.log").open("a")
    return subprocess.Popen(
        [sys.executable, "-m", "serl.cli", *args], env=env, stdout=log, stderr=subprocess.STDOUT
    )


def start_learner(run_dir: Path, resume: bool = False) -> subprocess.Popen:
    (run_dir / "token").write_text("test-token-0123456789")
    args = ["learner", "--run-dir", str(run_dir)] + (["--resume"] if resume else [])
    return spawn(*args, run_dir=run_dir, name="learner")


def start_actor(run_dir: Path) -> subprocess.Popen:
    port = TrainConfig.load(run_dir).port
    return spawn(
        "actor",
        "--learner",
        f"127.0.0.1:{port}",
        "--config",
        str(run_dir / "config.json"),
        run_dir=run_dir,
        name="actor",
    )


def progress(run_dir: Path) -> dict:
    try:
        return json.loads((run_dir / "progress.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def wait_for(condition, timeout: float, what: str, procs=()) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        for proc in procs:
            assert proc.poll() is None, f"a process died while waiting for {what}"
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def wait_for_updates(run_dir: Path, n: int, *procs: subprocess.Popen) -> None:
    """Until the run's learner has made n updates (its progress.json says so)."""
    wait_for(lambda: progress(run_dir).get("updates", 0) >= n, 150, f"{n} updates", procs)


def exit_code(proc: subprocess.Popen, timeout: float, run_dir: Path) -> int:
    """The process's exit code; past `timeout`, fail showing what learner and actor last said."""
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        tails = "\n".join(
            f"--- {name}:\n" + "\n".join((run_dir / name).read_text().splitlines()[-25:])
            for name in ("learner.log", "actor.log", "progress.json")
            if (run_dir / name).exists()
        )
        pytest.fail(f"{proc.args[3]} still running after {timeout} s\n{tails}")


def replay_rows(run_dir: Path) -> np.ndarray:
    store = EpisodeStore.open(run_dir / "replay")
    rows = []
    for episode in store:
        state = episode.observations["state"]
        rows.append(np.concatenate([state[:-1], episode.actions, state[1:]], axis=1))
    return np.concatenate(rows)


def assert_stored_once(run_dir: Path, n: int) -> None:
    """The run's replay holds n transitions, each once: none lost, none duplicated."""
    rows = replay_rows(run_dir)
    assert len(rows) == n
    assert len(np.unique(rows, axis=0)) == n


@pytest.mark.timeout(120)
def test_a_learner_that_cannot_start_says_why(tmp_path) -> None:
    cfg = pendulum(tmp_path / "run")
    (cfg.path / "replay").parent.mkdir(parents=True)
    (cfg.path / "replay").write_text("not a store")  # what only the learner reads
    with pytest.raises(RuntimeError, match="no episode store here"):
        train(cfg, video=False)


@pytest.mark.timeout(120)
def test_env_and_store_mistakes_stop_a_run_before_any_process_starts(tmp_path) -> None:
    cases = [
        (
            pendulum(tmp_path / "a", env_kwargs={"max_episode_step": 50}),  # a typo
            ValueError,
            "unexpected keyword argument 'max_episode_step'",
        ),
        (pendulum(tmp_path / "b", env_id="Pendulum-v9"), ValueError, "cannot make env"),
        (
            pendulum(tmp_path / "c", demos=str(tmp_path / "nowhere")),
            FileNotFoundError,
            "--demos .*nowhere: no such episode store",
        ),
    ]
    for cfg, error, message in cases:
        with pytest.raises(error, match=message):
            train(cfg, video=False)
        assert not (cfg.path / "logs").exists()  # no learner, no actor was started


@contextmanager
def learner_and_actor(run: Path, **kw) -> Iterator[dict[str, subprocess.Popen]]:
    """A Pendulum run's learner and actor as `serl` processes; any left running are killed."""
    pendulum(run, port=free_port(), **kw).save()
    procs = {"learner": start_learner(run), "actor": start_actor(run)}
    try:
        yield procs
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()


@pytest.mark.timeout(120)
def test_the_cli_states_a_users_mistake_in_one_line(tmp_path) -> None:
    command = [sys.executable, "-m", "serl.cli", "eval", str(tmp_path / "no-run")]
    out = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert out.returncode == 1
    assert "no training config" in out.stderr and "Traceback" not in out.stderr
    debug = subprocess.run(
        command, capture_output=True, text=True, timeout=60, env={**os.environ, "SERL_DEBUG": "1"}
    )
    assert debug.returncode == 1 and "Traceback" in debug.stderr


def test_a_users_mistakes_are_user_errors_and_a_librarys_failure_is_not() -> None:
    from serl.errors import UserError
    from serl.train.envs import make_env

    with pytest.raises(ValueError) as ours:
        make_env("Pendulum-v9")
    with pytest.raises(ValueError) as theirs:  # a library's error (think XLA): keeps its trace
        json.loads("{")
    assert isinstance(ours.value, UserError) and not isinstance(theirs.value, UserError)


@pytest.mark.timeout(300)
def test_learner_sigkill_then_resume_loses_and_duplicates_nothing(tmp_path) -> None:
    run = tmp_path / "run"
    with learner_and_actor(run, env_steps=1200, eval_every=100_000) as procs:
        wait_for_updates(run, 45, procs["learner"])
        procs["learner"].send_signal(signal.SIGKILL)
        procs["learner"].wait(10)
        checkpoint = latest_checkpoint(run)
        assert checkpoint is not None
        saved = leaf_hashes(load_checkpoint(checkpoint)[0])  # before the resumed run prunes it
        procs["learner"] = start_learner(run, resume=True)
        assert exit_code(procs["learner"], 240, run) == 0
        assert exit_code(procs["actor"], 60, run) == 0  # the actor lived through it
        assert "resumed from" in (run / "learner.log").read_text()
    resumed = json.loads((run / "resumed_from.json").read_text())
    assert resumed["checkpoint"] == checkpoint.name
    assert resumed["leaf_hashes"] == saved
    assert_stored_once(run, 1200)  # every acknowledged transition, exactly once


@pytest.mark.timeout(300)
def test_a_restarted_actor_goes_on_where_the_learner_is(tmp_path) -> None:
    run = tmp_path / "run"
    with learner_and_actor(run, env_steps=1200, eval_every=100_000) as procs:
        wait_for(
            lambda: progress(run).get("env_steps", 0) >= 300,
            150,
            "300 env steps",
            [procs["learner"]],
        )
        procs["actor"].send_signal(signal.SIGKILL)
        procs["actor"].wait(10)
        procs["actor"] = start_actor(run)  # no --start-step: the learner says
        assert exit_code(procs["actor"], 240, run) == 0
        assert exit_code(procs["learner"], 60, run) == 0
    assert "going on from there" in (run / "actor.log").read_text()
    assert_stored_once(run, 1200)  # the run's env steps, not the restarted actor's share again


@pytest.mark.timeout(300)
def test_serl_train_resumes_a_learner_that_dies_mid_run(tmp_path) -> None:
    cfg = prepare_run(pendulum(tmp_path / "run", env_steps=1200, eval_every=100_000), False)
    launcher = Launcher(cfg, resume=False)
    codes: list[int] = []
    supervisor = threading.Thread(target=lambda: codes.append(launcher.supervise()))
    supervisor.start()
    try:
        wait_for_updates(cfg.path, 45)
        killed = launcher.learner
        killed.send_signal(signal.SIGKILL)  # e.g. the out-of-memory killer
        supervisor.join(240)
        assert codes == [0]
    finally:
        launcher.stop()
        supervisor.join(60)
    assert launcher.learner is not killed and launcher.learner_restarts == 1
    assert (cfg.path / "resumed_from.json").exists()
    assert_stored_once(cfg.path, 1200)


@pytest.mark.timeout(240)
def test_sigterm_writes_a_final_checkpoint_and_exits_zero(tmp_path) -> None:
    run = tmp_path / "run"
    with learner_and_actor(run, env_steps=100_000, checkpoint_every=100_000) as procs:
        wait_for_updates(run, 10, procs["learner"])
        procs["learner"].send_signal(signal.SIGTERM)
        assert exit_code(procs["learner"], 60, run) == 0
    checkpoint = latest_checkpoint(run)
    assert checkpoint is not None and int(checkpoint.name) >= 10
    assert json.loads((checkpoint / "meta.json").read_text())["updates"] == int(checkpoint.name)


def stat_fields(path: Path) -> list[str]:
    """A /proc stat file's fields after the command name: state first, nice at [16]."""
    return path.read_text().rsplit(")", 1)[1].split()


def processes_mentioning(text: str) -> dict[int, str]:
    """Live processes whose command line contains `text`: pid -> command line."""
    found = {}
    for entry in Path("/proc").iterdir():
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            state = stat_fields(entry / "stat")[0]
        except (OSError, IndexError):
            continue  # not a process, or gone meanwhile
        if text in cmdline and state != "Z":
            found[int(entry.name)] = cmdline
    return found


def thread_nices(pid: int) -> list[int]:
    """The nice value of each of a process's threads."""
    nices = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            nices.append(int(stat_fields(task / "stat")[16]))
        except (OSError, IndexError):
            continue  # a thread that ended meanwhile
    return nices


@pytest.mark.timeout(240)
def test_serl_train_lowers_its_actors_priority_and_stops_them_on_sigterm(tmp_path) -> None:
    run = tmp_path / "run"
    command = [sys.executable, "-m", "serl.cli", "train", "Pendulum-v1", "--no-video"]
    command += ["--run-dir", str(run), "--agent-overrides", json.dumps(TINY_SAC)]
    command += "--env-steps 100000 --random-steps 100 --training-starts 100".split()
    command += "--updates-per-env-step 0.25 --eval-every 100000 --checkpoint-every 100000".split()
    launcher = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_updates(run, 10, launcher)
        # every thread of the actor yields the CPU to the learner's
        processes = processes_mentioning(str(run))
        (actor,) = [pid for pid, command in processes.items() if " actor " in command]
        (learner,) = [pid for pid, command in processes.items() if " learner " in command]
        assert set(thread_nices(actor)) == {10} and set(thread_nices(learner)) == {0}
        launcher.send_signal(signal.SIGTERM)  # kill PID, a job scheduler's stop
        assert launcher.wait(120) == 130
        assert processes_mentioning(str(run)) == {}  # no learner or actor left behind
    finally:
        for pid in [launcher.pid, *processes_mentioning(str(run))]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    checkpoint = latest_checkpoint(run)
    assert checkpoint is not None and int(checkpoint.name) >= 10
