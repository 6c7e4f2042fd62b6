"""HIL-SERL data routing end to end (actor -> gRPC -> learner): intervened transitions, with the
person's action, land in the online buffer and the demo buffer; the rest only online. The replay
log alone rebuilds both on resume, and the intervention rate is logged, written and plotted."""

import csv
import threading

import numpy as np
import pytest

from serl.data import Episode, EpisodeStore, step_runs
from serl.train.actor_process import Actor
from serl.train.config import TrainConfig
from serl.train.learner_process import Learner
from serl.train.run_files import InterventionConfig, run_token

TINY_SAC = {"hidden_dims": [16, 16], "num_qs": 2, "batch_size": 8, "critic_actor_ratio": 2}


def sample_all(buffer, n=64, seed=0):
    return buffer.sample(n, np.random.default_rng(seed))


@pytest.mark.timeout(180)
def test_interventions_reach_both_buffers_and_survive_a_restart(tmp_path) -> None:
    cfg = TrainConfig(
        env_id="serl/PandaPickCube-v0",
        run_dir=str(tmp_path / "run"),
        agent_overrides=TINY_SAC,
        env_steps=200,
        random_steps=0,
        training_starts=200,
        eval_every=10_000,
        eval_episodes=1,
        checkpoint_every=10_000,
    )
    # short takeovers: the expert's gripper commands stay +-1 (its slow close is not reached)
    rules = {"warmup_steps": 5, "stall_steps": 10, "takeover_steps": 25}
    hil = InterventionConfig(kind="sim", sim_rules=rules)
    hil.save(cfg.path)
    learner = Learner(cfg)
    assert learner.buffers.sampler is learner.buffers.online  # no demos yet: online data only
    loop = threading.Thread(target=learner.run_loop)
    loop.start()
    actor = Actor(cfg, learner.server.address, run_token(cfg.path), index=0)
    assert actor.intervention == hil  # read from RUN_DIR/intervention.json
    try:
        actor.run()
    finally:
        assert actor.close(flush_timeout=60)
        loop.join(60)
    assert not loop.is_alive()

    # the replay log marks the intervened steps; the human's gripper commands are exactly +-1,
    # the (random-init) policy's never are: what was stored is what the person executed
    store = EpisodeStore.open(cfg.path / "replay")
    online, human = [], []
    for i in range(len(store)):
        episode, steps = store[i], store.attrs(i).get("intervened", [])
        online.append(episode)
        human += step_runs(episode, steps)
        policy_steps = np.setdiff1d(np.arange(len(episode)), steps)
        assert np.all(np.abs(episode.actions[policy_steps, 3]) < 1.0)
        assert np.all(np.abs(episode.actions[steps, 3]) == 1.0)
    n_human = sum(len(e) for e in human)
    assert 0 < n_human < 200
    assert len(learner.buffers.online) == 200 and len(learner.buffers.demos) == n_human
    assert learner.buffers.intervention_steps == n_human
    demo_actions = np.concatenate([e.actions for e in human])
    np.testing.assert_array_equal(
        np.sort(learner.buffers.demos._actions[:n_human], axis=0), np.sort(demo_actions, axis=0)
    )
    # interventions feed the demo half
    assert type(learner.buffers.sampler).__name__ == "MixedSampler"

    # intervention rate per episode: episodes.csv and a PNG
    with (cfg.path / "episodes.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert rows and all(0.0 <= float(r["intervention_rate"]) <= 1.0 for r in rows)
    assert any(float(r["intervention_rate"]) > 0 for r in rows)
    assert (cfg.path / "intervention_rate.png").read_bytes()[:4] == b"\x89PNG"

    # a restarted learner rebuilds both buffers, in the same order, from the replay log alone
    again = Learner(cfg, resume=True)
    try:
        assert len(again.buffers.online) == 200 and len(again.buffers.demos) == n_human
        pairs = [
            (learner.buffers.online, again.buffers.online),
            (learner.buffers.demos, again.buffers.demos),
        ]
        for a, b in pairs:
            x, y = sample_all(a), sample_all(b)
            np.testing.assert_array_equal(x["actions"], y["actions"])
            np.testing.assert_array_equal(
                x["observations"]["block_pos"], y["observations"]["block_pos"]
            )
    finally:
        again.server.close()
        again.replay.close()


def test_step_runs_cut_episodes_at_gaps() -> None:
    n = 6
    episode = Episode(
        observations={"s": np.arange(n + 1, dtype=np.float32)[:, None]},
        actions=np.arange(n, dtype=np.float32)[:, None],
        rewards=np.zeros(n, np.float32),
        terminated=np.array([0, 0, 0, 0, 0, 1], bool),
        truncated=np.zeros(n, bool),
    )
    runs = step_runs(episode, [0, 1, 3, 5])
    assert [r.actions[:, 0].tolist() for r in runs] == [[0, 1], [3], [5]]
    assert [r.observations["s"][:, 0].tolist() for r in runs] == [[0, 1, 2], [3, 4], [5, 6]]
    assert [r.terminated.tolist() for r in runs] == [[False, False], [False], [True]]
    assert step_runs(episode, []) == []
