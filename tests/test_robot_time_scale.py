"""The sim robot server faster than real time: everything counts the robot's clock.

Real servers on loopback over the MuJoCo backend at time scale 1 and 4; the same seed and the
same actions must reach the same poses, and the watchdog must trip after its period of robot
time, not of wall time.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import numpy as np
import pytest
from robot_helpers import ServerThread

from serl.envs import make_expert
from serl.robot.backends.sim import SimBackend
from serl.robot.client import RobotClient
from serl.robot.env import FrankaEnv
from serl.robot.server import ServerConfig, create_app
from serl.robot.tasks import make_franka_env, task_config
from serl.train.rollout import run_episode

SCALE = 4.0


def serve(time_scale: float, **config: object) -> ServerThread:
    backend = SimBackend(scene="peg", cameras=(), time_scale=time_scale)
    return ServerThread(create_app(backend, ServerConfig(**config))).start()  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def fast_server() -> Iterator[ServerThread]:
    srv = serve(SCALE)
    yield srv
    srv.stop()


def peg_env(url: str, hz: float = 10.0, **kw: object) -> FrankaEnv:
    return FrankaEnv(
        task_config(
            "sim_peg_insertion", server_url=url, cameras={}, http_timeout_s=2.0, hz=hz, **kw
        )
    )


def rest_poses(time_scale: float, actions: list[np.ndarray], seed: int) -> np.ndarray:
    """TCP positions after a seeded reset and after each action, stepping at 1 Hz with a 1 s rest
    at the reset pose: the arm comes to rest each step, so wall-clock jitter in when a command
    lands does not move the pose it ends at (at 10 Hz a few ms of jitter are a few mm)."""
    srv = serve(time_scale, watchdog_s=2.0)  # longer than a step: no hold between commands
    env = peg_env(srv.url, hz=1.0, reset_settle_s=1.0)
    try:
        # from the same joints at rest: the robot time a server ran before matters otherwise
        obs, _ = env.reset(seed=seed, options={"joint_reset": True})
        poses = [obs["tcp_pose"][:3]]
        for action in actions:
            poses.append(env.step(action)[0]["tcp_pose"][:3])
        return np.array(poses, np.float64)
    finally:
        env.close()
        srv.stop()


def test_time_scale_reaches_the_same_poses_as_real_time() -> None:
    rng = np.random.default_rng(0)
    actions = [rng.uniform(-1, 1, 6).astype(np.float32) for _ in range(6)]
    real = rest_poses(1.0, actions, seed=7)
    fast = rest_poses(SCALE, actions, seed=7)
    assert np.ptp(real, axis=0).max() > 0.02  # the actions moved the arm
    gap = np.linalg.norm(real - fast, axis=1)
    assert gap.max() < 1e-3, gap


def test_the_env_loop_runs_at_its_rate_in_robot_time(fast_server: ServerThread) -> None:
    env = peg_env(fast_server.url)
    assert env.time_scale == SCALE  # from the server's /health
    try:
        env.reset(seed=0)
        periods = [env.step(np.zeros(6, np.float32))[4]["timing"]["period_s"] for _ in range(20)]
    finally:
        env.close()
    # 10 Hz of robot time; a loop paced by the wall clock would read 0.4 robot s per step
    assert np.median(periods) == pytest.approx(0.1, abs=0.03), periods


@pytest.mark.parametrize("scale", [1.0, SCALE])
def test_watchdog_trips_after_its_period_of_robot_time(scale: float) -> None:
    watchdog_s = 0.5
    srv = serve(scale, watchdog_s=watchdog_s)
    try:
        with RobotClient(srv.url, timeout=2.0) as client:
            before = client.state()
            commanded = client.command(before.position, before.quaternion)
            assert not commanded.watchdog_tripped
            deadline = time.monotonic() + 10.0
            while not (s := client.state()).watchdog_tripped and time.monotonic() < deadline:
                time.sleep(0.002)
            assert s.watchdog_tripped
            # robot seconds from before the command to the trip: the server arms the watchdog
            # when the command is done, which lies between `before` and the reply's state
            idle = s.time - before.time
            # a wall-clock watchdog at scale 4 would trip after ~2 robot seconds
            assert watchdog_s <= idle < watchdog_s + 0.4, idle
    finally:
        srv.stop()


def test_scripted_insertion_expert_through_the_server(fast_server: ServerThread) -> None:
    env = peg_env(fast_server.url)
    expert = make_expert(env, noise=0.05, seed=0)
    try:
        runs = []
        for seed in range(20):
            expert.reset()
            runs.append(run_episode(env, expert, seed=seed, keep=False))
    finally:
        env.close()
    assert all(run.success for run in runs), [len(run) for run in runs]


def test_the_session_url_wins_over_the_config_file(fast_server, tmp_path, monkeypatch) -> None:
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"server_url": "http://127.0.0.1:9", "cameras": {}}))
    monkeypatch.setenv("SERL_ROBOT_CONFIG", str(config))
    monkeypatch.setenv("SERL_ROBOT_URL", fast_server.url)
    env = make_franka_env("sim_peg_insertion")
    try:
        assert env.config.server_url == fast_server.url and env.time_scale == SCALE
        assert env.cameras == {}  # the file's other settings still apply
    finally:
        env.close()
