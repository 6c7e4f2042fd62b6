"""Actor-side evaluation on a worker thread: it runs beside the caller on an env made on its own
thread, reports in order, stops early when asked, and re-raises its errors."""

import os
import threading
import time

import gymnasium as gym
import numpy as np
import pytest
from agents_helpers import tiny_sac

from serl.agents import create
from serl.agents.policy import eval_actions
from serl.train.actor_process import BackgroundEvaluation
from serl.train.rollout import evaluate


class ThreadRecorder(gym.Wrapper):
    """Pendulum that notes the thread of each step and can hold a step until released."""

    def __init__(self, release: threading.Event) -> None:
        super().__init__(gym.make("Pendulum-v1"))
        self.made_on = threading.get_ident()
        self.stepped_on: set[int] = set()
        self.nices: set[int] = set()  # of the threads that stepped it
        self.steps = 0
        self.release = release
        self.closed = False

    def step(self, action):
        self.stepped_on.add(threading.get_ident())
        self.nices.add(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))
        self.steps += 1
        assert self.release.wait(60), "the test never released the evaluation"
        return self.env.step(action)

    def close(self) -> None:
        self.closed = True
        super().close()


@pytest.fixture(scope="module")
def policy():
    return create(tiny_sac(), {"state": np.zeros(3, np.float32)}, 1, seed=0)


def flat(env: gym.Env) -> gym.Env:
    return gym.wrappers.TransformObservation(
        env,
        lambda o: {"state": o.astype(np.float32)},
        gym.spaces.Dict({"state": env.observation_space}),
    )


@pytest.mark.timeout(120)
def test_evaluation_runs_beside_the_caller_and_reports_what_a_blocking_one_would(policy):
    release, made, reports = threading.Event(), [], []

    def make():
        made.append(ThreadRecorder(release))
        return flat(made[-1])

    nice = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    evaluation = BackgroundEvaluation(make, 2, seed=7, report=lambda r, s: reports.append((s, r)))
    evaluation.start(policy, env_step=100)
    # start returned while the evaluation's first step is held: it runs on another thread
    assert reports == []
    time.sleep(0.2)
    release.set()
    evaluation.start(policy, env_step=200)  # waits for the first, then queues the second
    evaluation.close()
    assert [s for s, _ in reports] == [100, 200]
    (env,) = made  # one env, made and stepped on the worker thread, closed at the end
    assert env.made_on != threading.get_ident() and env.stepped_on == {env.made_on}
    assert env.closed
    # the worker yields the CPU to every other thread; the caller keeps its priority
    assert env.nices == {19} and os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == nice
    blocking = evaluate(flat(gym.make("Pendulum-v1")), lambda o: eval_actions(policy, o), 2, 7)
    # each report says how long ago its policy was taken: the first was held >= 0.2 s
    ages = [r.pop("policy_age_s") for _, r in reports]
    assert ages[0] >= 0.2 and ages[1] >= 0.0
    assert reports[0][1] == pytest.approx(blocking)


@pytest.mark.timeout(120)
def test_a_stopped_evaluation_ends_early_and_reports_nothing(policy):
    release, made, reports = threading.Event(), [], []
    release.set()

    def make():
        made.append(ThreadRecorder(release))
        return flat(made[-1])

    evaluation = BackgroundEvaluation(make, 10_000, seed=0, report=lambda r, s: reports.append(r))
    evaluation.start(policy, env_step=100)  # 10,000 episodes of 200 steps if run to the end
    while not made or made[0].steps < 10:
        time.sleep(0.01)
    evaluation.close(finish=False)
    assert made[0].steps < 10_000 * 200 // 100 and made[0].closed
    assert reports == []


@pytest.mark.timeout(60)
def test_an_evaluation_error_reaches_the_caller(policy):
    def broken():
        raise RuntimeError("no renderer")

    evaluation = BackgroundEvaluation(broken, 1, seed=0, report=lambda r, s: None)
    evaluation.start(policy, env_step=1)
    with pytest.raises(RuntimeError, match="no renderer"):
        evaluation.wait()
    evaluation.close()
