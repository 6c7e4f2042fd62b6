"""`serl train` through the whole real-robot path: learner and actor processes, the actor's
FrankaEnv talking HTTP to a robot server whose sim backend runs the peg-insertion scene."""

from __future__ import annotations

import csv
from itertools import pairwise

import pytest
from robot_helpers import ServerThread
from train_helpers import SHORT_RUN, TINY_DRQ

from serl.robot.backends.sim import SimBackend
from serl.robot.server import ServerConfig, create_app
from serl.train.config import TrainConfig
from serl.train.launcher import train
from serl.train.reports import read_eval_csv


@pytest.mark.timeout(300)
def test_a_short_drq_run_on_the_simulated_peg_insertion_writes_eval_csv(tmp_path) -> None:
    backend = SimBackend(scene="peg", camera_size=(32, 32), camera_fps=20.0)
    server = ServerThread(create_app(backend, ServerConfig())).start()
    try:
        cfg = TrainConfig(
            env_id="serl/FrankaPegInsertSim-v0",
            agent="drq",
            run_dir=str(tmp_path / "run"),
            env_kwargs={
                "server_url": server.url,
                "image_size": [32, 32],
                "max_episode_steps": 15,
                "reset_duration_s": 0.3,
                # the in-process server shares a busy 2-core machine with the suite: a reply
                # can take longer than a real robot's 0.5 s, and a timeout restarts the actor
                "http_timeout_s": 5.0,
            },
            agent_overrides=TINY_DRQ,
            checkpoint_every=10,
            **{**SHORT_RUN, "eval_every": 20},
        )
        assert train(cfg, video=False) == 0
    finally:
        server.stop()
    rows = read_eval_csv(cfg.path / "eval.csv")
    with (cfg.path / "episodes.csv").open(newline="") as f:
        episodes = list(csv.DictReader(f))
    ends = [int(e["env_step"]) for e in episodes]
    # one arm: the evaluation due at step 20 waits for the end of the episode it falls in
    first = rows[0]["env_step"]
    assert first >= 20 and first in ends and first - 15 < 20, (first, ends)
    assert rows[-1]["env_step"] == 40
    assert all(0.0 <= r["success_rate"] <= 1.0 for r in rows)
    assert (cfg.path / "learning_curve.png").exists()
    # a robot's episodes record their overruns and the robot's clock
    clocks = [(float(e["robot_clock_start_s"]), float(e["robot_clock_end_s"])) for e in episodes]
    assert all(0.0 <= float(e["overrun_rate"]) <= 1.0 for e in episodes)
    assert all(a < b for a, b in clocks)
    assert all(b1 <= a2 for (_, b1), (a2, _) in pairwise(clocks))
