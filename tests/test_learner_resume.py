"""A learner killed while storing a batch: the batch is neither lost nor stored twice."""

import numpy as np
import pytest

from serl.distributed import Transitions
from serl.train.config import TrainConfig
from serl.train.learner_process import Learner

TINY_SAC = {"hidden_dims": [16, 16], "num_qs": 2, "batch_size": 8, "critic_actor_ratio": 2}


def pendulum_batch(seq: int, lengths: list[int], start: float) -> Transitions:
    """Consecutive episode pieces of the given lengths, each ended by a truncation."""
    obs, nxt, truncated = [], [], []
    value = start
    for length in lengths:
        states = value + np.arange(length + 1, dtype=np.float32)
        obs += [[s, 0, 0] for s in states[:-1]]
        nxt += [[s, 0, 0] for s in states[1:]]
        truncated += [False] * (length - 1) + [True]
        value += 100
    n = len(obs)
    data = {
        "observations": {"state": np.array(obs, np.float32)},
        "next_observations": {"state": np.array(nxt, np.float32)},
        "actions": np.zeros((n, 1), np.float32),
        "rewards": np.zeros(n, np.float32),
        "terminated": np.zeros(n, bool),
        "truncated": np.array(truncated),
        "intervened": np.zeros(n, bool),
    }
    return Transitions("actor-0", seq, data, np.ones(n, np.int64))


def stored_states(learner: Learner) -> list[float]:
    return sorted(s for e in learner.replay.store for s in e.observations["state"][:-1, 0].tolist())


def close(learner: Learner) -> None:
    learner.server.close()
    learner.replay.close()


@pytest.mark.timeout(120)
def test_a_batch_stored_in_part_is_taken_again_and_stored_once(tmp_path) -> None:
    cfg = TrainConfig(
        env_id="Pendulum-v1",
        run_dir=str(tmp_path / "run"),
        agent_overrides=TINY_SAC,
        checkpoint_every=10_000,
    )
    first, split = pendulum_batch(1, [3], start=0), pendulum_batch(2, [2, 4], start=1000)
    learner = Learner(cfg)
    learner._ingest(first)
    append, calls = learner.replay.store.append, []

    def dies_after_one_piece(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise OSError("killed between the pieces")
        return append(*args, **kwargs)

    learner.replay.store.append = dies_after_one_piece
    with pytest.raises(OSError):
        learner._ingest(split)
    close(learner)

    again = Learner(cfg, resume=True)
    try:
        # the half-stored batch is not acknowledged, so the actor sends it again
        assert again.server.watermarks() == {"actor-0": 1}
        assert again.env_steps == 3 and len(again.buffers.online) == 3
        again._ingest(split)
        assert again.env_steps == 9 and len(again.buffers.online) == 9
        assert stored_states(again) == [0, 1, 2, 1000, 1001, 1100, 1101, 1102, 1103]
    finally:
        close(again)

    reloaded = Learner(cfg, resume=True)
    try:
        assert reloaded.server.watermarks() == {"actor-0": 2}
        assert reloaded.env_steps == 9 and len(reloaded.buffers.online) == 9
    finally:
        close(reloaded)
