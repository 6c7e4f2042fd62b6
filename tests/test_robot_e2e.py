"""The whole real-robot path end to end: FrankaEnv -> HTTP on loopback -> server -> sim backend.

A real uvicorn server runs in a thread over the real-time MuJoCo backend; nothing is mocked.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import replace

import httpx
import numpy as np
import pytest
from robot_helpers import ServerThread

from serl.robot import transforms as tf
from serl.robot.backends.sim import SimBackend
from serl.robot.client import RobotClient
from serl.robot.env import FrankaEnv
from serl.robot.errors import (
    RecoveryExhausted,
    RobotAuthError,
    RobotConnectionError,
    RobotFault,
    RobotRejected,
    RobotTimeout,
)
from serl.robot.server import ServerConfig, create_app
from serl.robot.tasks import SIM_PEG_TARGET, task_config

IMAGE = (64, 64)


def start_server(scene: str = "peg", **config: object) -> ServerThread:
    backend = SimBackend(scene=scene, camera_size=IMAGE, camera_fps=20.0)
    return ServerThread(create_app(backend, ServerConfig(**config))).start()  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def server() -> Iterator[ServerThread]:
    srv = start_server(watchdog_s=0.3, max_recoveries=100)
    yield srv
    srv.stop()


@pytest.fixture
def client(server: ServerThread) -> Iterator[RobotClient]:
    c = RobotClient(server.url, timeout=2.0)
    yield c
    if c.state().faults:
        c.recover()
    c.close()


@pytest.fixture(scope="module")
def env(server: ServerThread) -> Iterator[FrankaEnv]:
    cfg = task_config(
        "sim_peg_insertion",
        server_url=server.url,
        image_size=IMAGE,
        reset_duration_s=0.5,
        http_timeout_s=2.0,
    )
    e = FrankaEnv(cfg)
    yield e
    e.close()


def test_reset_and_step_give_valid_observations_with_images(env: FrankaEnv) -> None:
    obs, info = env.reset(seed=0)
    assert info["success"] is False and info["robot_time_s"] > 0  # the robot's clock
    assert env.observation_space.contains(obs), {k: v.dtype for k, v in obs.items()}
    assert obs["front"].shape == obs["wrist"].shape == (*IMAGE, 3)
    assert obs["front"].std() > 1.0  # a rendered scene, not a blank frame
    assert abs(np.linalg.norm(obs["tcp_pose"][3:]) - 1.0) < 1e-5
    # the reset pose is the configured one, randomised in xy within the configured range
    reset_xyz = np.asarray(env.config.reset_pose[:3])
    assert np.all(np.abs(obs["tcp_pose"][:2] - reset_xyz[:2]) <= env.config.random_xy_range + 0.005)
    assert abs(obs["tcp_pose"][2] - reset_xyz[2]) < 0.005
    for _ in range(3):
        obs, reward, _, _, info = env.step(env.action_space.sample())
        assert env.observation_space.contains(obs)
        assert isinstance(info["success"], bool) and reward in (0.0, 1.0)
        assert info["timing"]["period_s"] > 0


def test_each_step_is_one_state_round_trip(env: FrankaEnv) -> None:
    # The server numbers every state it produces; camera frames are separate streams.
    env.reset(seed=1)
    seq0 = env.client.state().seq
    for _ in range(4):
        env.step(np.zeros(6, dtype=np.float32))
    assert env.client.state().seq == seq0 + 5  # 4 steps + this read


def test_seeded_resets_are_reproducible(env: FrankaEnv) -> None:
    first = env.reset(seed=3)[0]["tcp_pose"]
    env.reset(seed=4)
    again = env.reset(seed=3)[0]["tcp_pose"]
    np.testing.assert_allclose(first[:3], again[:3], atol=0.004)


def test_scripted_insertion_succeeds_through_the_whole_stack(env: FrankaEnv) -> None:
    obs, _ = env.reset(seed=0)
    info = {"success": False}
    for _ in range(40):
        pose = obs["tcp_pose"].astype(np.float64)
        action = np.zeros(6)
        action[:3] = np.clip((SIM_PEG_TARGET[:3] - pose[:3]) / 0.02, -1, 1)
        action[:2] *= 2.0  # centre over the hole before pushing down
        action[5] = np.clip(-tf.wrap_angle(tf.to_euler(pose[3:])[2]) / 0.1, -1, 1)
        if np.linalg.norm(SIM_PEG_TARGET[:2] - pose[:2]) > 0.003:
            action[2] = max(action[2], 0.0)
        obs, reward, terminated, _, info = env.step(action)
        if terminated:
            break
    assert info["success"] and reward == 1.0 and terminated


def test_safety_box_holds_against_wild_actions(env: FrankaEnv) -> None:
    box = env.config.safety_box
    env.reset(seed=2)
    rng = np.random.default_rng(0)
    wild = [np.full(6, np.nan), np.full(6, np.inf), np.full(6, -1e30), np.array([1e9] * 6)]
    for i in range(25):
        action = wild[i % 4] if i % 2 else rng.uniform(-1, 1, 6) * 50
        obs, *_, info = env.step(action.astype(np.float32))
        pose = obs["tcp_pose"].astype(np.float64)
        # Measured pose: inside the box up to the controller's tracking slack.
        assert np.all(pose[:3] >= np.asarray(box.xyz_low) - 0.01)
        assert np.all(pose[:3] <= np.asarray(box.xyz_high) + 0.01)
        assert np.all(np.isfinite(pose))
        if i % 4 == 1:
            assert info["nonfinite_action"]


def test_watchdog_holds_position_when_commands_stop(client: RobotClient) -> None:
    start = client.state()
    down = tf.from_euler([np.pi, 0, 0])
    client.move(np.array([0.45, 0.0, 0.3]), down, 0.3)
    far = np.array([0.45, 0.0, 0.05])  # 25 cm away: ~1 s of travel at the error clip
    s = client.command(far, down)
    assert not s.watchdog_tripped
    time.sleep(0.3 + 0.5)  # watchdog period, then time for the arm to stop
    held = client.state()
    assert held.watchdog_tripped
    assert held.position[2] > far[2] + 0.1  # stopped well short of the last target
    time.sleep(0.3)
    later = client.state()
    assert np.linalg.norm(later.position - held.position) < 0.005  # and stays put
    # the next command re-arms it
    assert not client.command(later.position, later.quaternion).watchdog_tripped
    del start


def test_invalid_inputs_are_rejected_with_clear_422s(
    server: ServerThread, client: RobotClient
) -> None:
    down = tf.from_euler([np.pi, 0, 0])
    with pytest.raises(RobotRejected, match="outside the workspace"):
        client.command(np.array([5.0, 0.0, 0.3]), down)
    with pytest.raises(RobotRejected, match="unit length"):
        client.command(np.array([0.5, 0.0, 0.3]), np.array([0.0, 0.0, 0.0, 2.0]))
    with pytest.raises(RobotRejected, match="joint limits"):
        client.joint_reset(np.full(7, 4.0))
    with pytest.raises(RobotRejected, match="translational_stiffness"):
        client.set_params(translational_stiffness=1e7)
    # NaN cannot be sent as JSON by a careful client; a careless one gets a 422, not a crash.
    raw = httpx.post(
        f"{server.url}/command",
        timeout=2.0,
        content=b'{"pose": {"position": [NaN, 0, 0.3], "quaternion": [1, 0, 0, 0]}}',
        headers={"content-type": "application/json"},
    )
    assert raw.status_code == 422
    raw = httpx.post(f"{server.url}/command", timeout=2.0, json={"pose": {"position": [0.5]}})
    assert raw.status_code == 422
    # no coercion: a boolean or a string is not a stiffness (the fuzzer once got `true` through)
    for bad in (True, "1.0"):
        raw = httpx.put(f"{server.url}/params", timeout=2.0, json={"nullspace_stiffness": bad})
        assert raw.status_code == 422, bad


def test_params_round_trip(client: RobotClient) -> None:
    before = client.params()
    after = client.set_params(translational_stiffness=1500.0, rotational_clip=(0.1, 0.1, 0.1))
    assert after["translational_stiffness"] == 1500.0 and after["rotational_clip"] == [0.1] * 3
    assert after["translational_damping"] == before["translational_damping"]
    client.set_params(**before)


def test_gripper_commands_and_camera_frames(client: RobotClient) -> None:
    client.gripper("open")
    time.sleep(0.5)
    assert client.state().gripper.closure < 0.1
    client.gripper("move", 1.0)
    time.sleep(0.5)
    assert client.state().gripper.closure > 0.9
    assert sorted(client.cameras()) == ["front", "wrist"]
    image, seq = client.frame("wrist")
    assert image.shape == (*IMAGE, 3) and image.dtype == np.uint8
    _, newer = client.frame("wrist", after_seq=seq)
    assert newer > seq
    with pytest.raises(RobotRejected):
        client.frame("nope")


def test_faults_refuse_commands_until_an_explicit_recovery(
    env: FrankaEnv, client: RobotClient
) -> None:
    obs, _ = env.reset(seed=5)
    client.inject_fault("cartesian_reflex")
    with pytest.raises(RobotFault, match="cartesian_reflex"):
        client.command(obs["tcp_pose"][:3], obs["tcp_pose"][3:])
    # The env ends the episode on a fault instead of crashing the actor ...
    obs, _, terminated, truncated, info = env.step(np.zeros(6, dtype=np.float32))
    assert truncated and not terminated and "cartesian_reflex" in info["fault"]
    # ... and its reset recovers explicitly.
    env.reset(seed=6)
    assert client.state().faults == ()


def test_a_move_outlasting_the_watchdog_arrives_at_rest() -> None:
    # A move is a standing command until the arm has settled: a watchdog far shorter than
    # the move and its settling must not stop the arm on the way (it once held it mid-settle).
    srv = start_server(scene="empty", watchdog_s=0.005)
    try:
        c = RobotClient(srv.url, timeout=2.0)
        down = tf.from_euler([np.pi, 0, 0])
        for target in ([0.45, 0.1, 0.3], [0.55, -0.1, 0.2]):
            s = c.move(np.array(target), down, 0.2)
            assert not s.watchdog_tripped
            assert np.linalg.norm(s.position - target) < 0.003
            assert np.linalg.norm(s.velocity[:3]) < 0.01  # at rest, not passing through
        time.sleep(0.1)
        assert c.state().watchdog_tripped  # and it guards again once the move is over
        c.close()
    finally:
        srv.stop()


def test_recovery_is_bounded() -> None:
    srv = start_server(scene="empty", max_recoveries=2, recovery_window_s=60.0)
    try:
        c = RobotClient(srv.url, timeout=2.0)
        for _ in range(2):
            c.inject_fault("joint_limit")
            assert c.recover()[0]
        c.inject_fault("joint_limit")
        with pytest.raises(RecoveryExhausted, match="a person must check"):
            c.recover()
        assert c.state().faults == ("joint_limit",)  # still faulted, still refusing commands
        c.close()

        srv2 = start_server(scene="empty", max_recoveries=10)
        try:
            cfg = task_config(
                "sim_peg_insertion",
                server_url=srv2.url,
                cameras={},
                reset_duration_s=0.2,
                max_recovery_attempts=2,
            )
            cfg = replace(cfg, reset_pose=(0.5, 0.0, 0.3, np.pi, 0.0, 0.0), random_reset=False)
            env = FrankaEnv(cfg)
            env.client.inject_fault("persistent")  # a fault recovery cannot clear
            with pytest.raises(RobotFault, match="still faulted after 2 recoveries"):
                env.reset()
            env.close()
        finally:
            srv2.stop()
    finally:
        srv.stop()


def test_stalled_server_raises_a_typed_timeout_within_the_deadline() -> None:
    # A listener that accepts connections and never answers: a hung server process.
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        sock.settimeout(0.1)
        while not stop.is_set():
            try:
                accepted.append(sock.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        c = RobotClient(f"http://127.0.0.1:{sock.getsockname()[1]}", timeout=0.3)
        start = time.monotonic()
        with pytest.raises(RobotTimeout, match=r"within 0\.3 s"):
            c.state()
        assert time.monotonic() - start < 3.0  # bounded: the deadline, not forever
        c.close()
    finally:
        stop.set()
        thread.join()
        for conn in accepted:
            conn.close()
        sock.close()


def test_unreachable_server_raises_a_connection_error() -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens on this port now
    with (
        RobotClient(f"http://127.0.0.1:{port}", timeout=0.3) as c,
        pytest.raises(RobotConnectionError),
    ):
        c.state()


def test_a_command_without_its_server_says_so_in_one_line(tmp_path) -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    command = ["record-demos", "serl/FrankaPegInsertSim-v0", "--out", str(tmp_path / "demos")]
    out = subprocess.run(
        [sys.executable, "-m", "serl.cli", *command],
        env={**os.environ, "SERL_ROBOT_URL": f"http://127.0.0.1:{port}"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr
    assert f"cannot reach http://127.0.0.1:{port}" in out.stderr and "SERL_ROBOT_URL" in out.stderr
    assert not (tmp_path / "demos").exists()  # nothing written


def test_token_is_required_when_configured() -> None:
    srv = start_server(scene="empty", token="s3cret")
    try:
        with RobotClient(srv.url) as anonymous:
            assert anonymous.health()["auth"] is True  # health needs no token
            with pytest.raises(RobotAuthError):
                anonymous.state()
        with RobotClient(srv.url, token="wrong") as wrong, pytest.raises(RobotAuthError):
            wrong.state()
        with RobotClient(srv.url, token="s3cret") as ok:
            assert ok.state().faults == ()
    finally:
        srv.stop()


def test_registered_id_builds_a_trainable_env(server: ServerThread) -> None:
    # What `serl train serl/FrankaPegInsertSim-v0` builds: dict-of-Box obs, Box actions.
    from serl.train.envs import env_schema, make_env

    env = make_env(
        "serl/FrankaPegInsertSim-v0",
        server_url=server.url,
        image_size=IMAGE,
        reset_duration_s=0.3,
        http_timeout_s=2.0,
    )
    obs, info = env.reset(seed=0)
    assert env.observation_space.contains(obs) and info["success"] is False
    schema = env_schema(env)
    assert env.action_space.shape == (6,)
    obs, _, _, _, info = env.step(np.zeros(6, dtype=np.float32))
    assert isinstance(info["success"], bool) and env.observation_space.contains(obs)
    assert schema is not None
    env.close()
