"""`serl train` through the whole real-robot path: learner and actor processes, the actor's
FrankaEnv talking HTTP to a robot server whose sim backend runs the peg-insertion scene."""

from __future__ import annotations

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
            },
            agent_overrides=TINY_DRQ,
            checkpoint_every=10,
            **SHORT_RUN,
        )
        assert train(cfg, video=False) == 0
    finally:
        server.stop()
    rows = read_eval_csv(cfg.path / "eval.csv")
    assert [r["env_step"] for r in rows] == [40]
    assert 0.0 <= rows[0]["success_rate"] <= 1.0
    assert (cfg.path / "learning_curve.png").exists()
