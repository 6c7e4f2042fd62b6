"""The actor process: steps the env with the latest policy, streams transitions, evaluates.

It never waits for the network: transitions are enqueued to a background sender that
retries until the learner acknowledges them. It does wait for the *learner* when it runs
more than `pace_slack` env steps ahead of the update-to-data ratio the config asks for, so a
slow learner cannot be outrun (the original's actor made ~76 env steps per learner step).
Evaluation runs on a worker thread beside the stepping, so it does not stall training; an env
that drives one robot (metadata "one_robot") is instead evaluated between training episodes,
and waits for the learner only between episodes (a robot must not stop mid-motion).
"""

from __future__ import annotations

import logging
import math
import os
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import jax
import numpy as np

from serl.agents import api as agents
from serl.agents.common import AgentSpec
from serl.agents.policy import eval_actions, sample_actions
from serl.distributed import ActorClient
from serl.train.config import TrainConfig
from serl.train.envs import (
    check_intervention_chunks,
    chunk_env,
    env_schema,
    wrap_intervention,
)
from serl.train.feature_cache import FeatureCache
from serl.train.reports import PhaseClock
from serl.train.reward_model import make_reward_env
from serl.train.rollout import Rollout, Step, evaluate, run_episode
from serl.train.run_files import (
    SENT_FEATURES,
    InterventionConfig,
    RewardConfig,
    learner_address,
    transport_schema_hash,
)

log = logging.getLogger(__name__)


@dataclass
class Policy:
    """The newest parameters received, as an actor-side policy."""

    version: int = 0
    state: Any = None


class BackgroundEvaluation:
    """Evaluation of policy snapshots on a worker thread with its own env, so the actor keeps
    stepping (and the learner keeps training) meanwhile. The env is made on that thread: a GL
    context belongs to the thread that made it current. `owns_env=False`: the env is the actor's
    own (one robot, evaluated between episodes), which the actor closes."""

    def __init__(
        self,
        make_env: Callable[[], gym.Env],
        episodes: int,
        seed: int,
        report: Callable[[dict[str, float], int], None],
        owns_env: bool = True,
    ) -> None:
        self._make_env, self._episodes, self._seed, self._report = make_env, episodes, seed, report
        self._owns_env = owns_env
        self._env: gym.Env | None = None
        self._worker = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="evaluation", initializer=_lowest_cpu_priority
        )
        self._pending: Future | None = None
        self._stop = threading.Event()

    def start(self, policy_state: Any, env_step: int) -> None:
        """Evaluate `policy_state` as of `env_step`, after the evaluation under way (if any)."""
        self.wait()
        self._pending = self._worker.submit(self._run, policy_state, env_step, time.monotonic())

    def run_here(self, policy_state: Any, env_step: int) -> None:
        """Evaluate now on the calling thread, at its priority (one robot: its actor waits for
        the evaluation, whose episodes must hold the control period as training's do)."""
        self.wait()
        self._run(policy_state, env_step, time.monotonic())

    def wait(self) -> None:
        """Block until the evaluation under way (if any) has reported; re-raise its error."""
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def _run(self, policy_state: Any, env_step: int, taken: float) -> None:
        if self._env is None:
            self._env = self._make_env()

        def act(obs: dict[str, np.ndarray]) -> np.ndarray:
            if self._stop.is_set():
                raise _EvaluationStopped
            return eval_actions(policy_state, obs)

        try:
            result = evaluate(self._env, act, self._episodes, self._seed)
        except _EvaluationStopped:
            return
        # how long ago the policy was taken: its episodes (and a queue) came in between
        result["policy_age_s"] = time.monotonic() - taken
        self._report(result, env_step)
        log.info("eval at %d env steps: %s", env_step, result)

    def close(self, finish: bool = True) -> None:
        """Let the evaluation under way finish (or stop it after its current env step), then close
        the env on its own thread."""
        if not finish:
            self._stop.set()
        try:
            self.wait()
        finally:
            if self._env is not None and self._owns_env:
                self._worker.submit(self._env.close).result()
            self._worker.shutdown()


def robot_episode_stats(run: Rollout) -> dict[str, float]:
    """A robot env's episode (FrankaEnv's infos): the share of steps that overran the control
    period, and the robot's clock at its start and end; empty for other envs."""
    stats = {}
    timings = [info["timing"] for info in run.infos[1:] if "timing" in info]
    if timings:
        stats["overrun_rate"] = float(np.mean([t["overrun"] for t in timings]))
    start, end = run.infos[0].get("robot_time_s"), run.infos[-1].get("robot_time_s")
    if start is not None and end is not None:
        stats["robot_clock_start_s"], stats["robot_clock_end_s"] = float(start), float(end)
    return stats


def _lowest_cpu_priority() -> None:
    """The calling thread yields the CPU to every other (Linux: nice is per thread): an
    evaluation only reports, while the learner's update next to it is the run's critical path."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
    except OSError:  # not Linux: a thread id is no process id there; keep the process's
        pass


class _EvaluationStopped(Exception):
    """Raised inside an evaluation episode when the actor is asked to stop."""


class Actor:
    """One actor of a run: env, transport client, the latest policy, pacing and evaluation."""

    def __init__(
        self,
        cfg: TrainConfig,
        address: str,
        token: str,
        index: int,
        start_step: int = 0,
        intervention: InterventionConfig | None = None,
    ) -> None:
        self.cfg = cfg
        self.index = index
        self.actor_id = f"actor-{index}"
        # who may take over training episodes (never evaluation ones): RUN_DIR's setting
        self.intervention = intervention or InterventionConfig.load(cfg.path)
        # the run's learned reward (RUN_DIR/reward.json), if any: rewards and ends episodes
        self.reward = RewardConfig.load(cfg.path)
        check_intervention_chunks(self.intervention.kind, cfg.act_exec_horizon)
        seed = cfg.seed * 1000 + index + start_step
        task = make_reward_env(cfg.env_id, self.reward, **cfg.env_kwargs)
        self.env = self._wrap(task, self.intervention, seed)
        # one arm: evaluate it between episodes (no intervener) and wait for the learner only
        # between episodes; otherwise evaluate beside training on an env of its own
        self.one_robot = bool(task.metadata.get("one_robot", False))
        self._evaluation_due = False
        self.evaluation = None  # actor 0 evaluates
        if index == 0:
            no_intervener = InterventionConfig()

            def evaluation_env() -> gym.Env:
                if self.one_robot:  # the same arm and cameras
                    return self._wrap(task, no_intervener, seed)
                return self._make_env(no_intervener, seed)

            self.evaluation = BackgroundEvaluation(
                evaluation_env,
                cfg.eval_episodes,
                10_000_000 + cfg.seed * 1000,
                lambda result, step: self.client.report(result, step, kind="eval"),
                owns_env=not self.one_robot,
            )
        schema = env_schema(self.env)
        # A cached-feature agent's actor computes each frame's features once, acts on them and
        # sends them along, so the learner need not run the backbone again.
        cache = FeatureCache.for_schema(getattr(cfg.agent_config, "encoder", None), schema)
        self.features = cache if cache is not None and cache.sent_by_actor else None
        example, _ = self.env.reset(seed=cfg.seed)
        self.spec = AgentSpec.from_example(example, int(np.prod(self.env.action_space.shape)))
        self.address = learner_address(address)  # set up first: a local learner starts meanwhile
        self._last_warning = -math.inf
        # a batch every 2 s: each is stored durably before the learner acks it, ~18 ms of its
        # CPU per episode piece, which fewer, longer batches halve. At most half the pace slack
        # per batch: while this actor waits for the learner, the learner must hold the steps
        # it needs to go on, not this queue
        self.client = ActorClient(
            self.address,
            token,
            self.actor_id,
            transport_schema_hash(schema, cache),
            batch_size=min(256, max(1, cfg.pace_slack // 2)),
            max_delay=2.0,
        )
        self.policy = Policy()
        self.steps = start_step
        self.share = math.ceil(cfg.env_steps / cfg.actors)
        self.key = jax.random.PRNGKey(cfg.seed * 1000 + index)
        self.env.action_space.seed(cfg.seed * 1000 + index)
        self.stopped = False
        self._last_seen: tuple[Any, Any] = (None, None)
        self.clock = PhaseClock()  # where the env loop's time goes (in the "done" report)

    def _make_env(self, intervention: InterventionConfig, seed: int) -> gym.Env:
        """The run's env with its reward and intervener."""
        task = make_reward_env(self.cfg.env_id, self.reward, **self.cfg.env_kwargs)
        return self._wrap(task, intervention, seed)

    def _wrap(self, task: gym.Env, intervention: InterventionConfig, seed: int) -> gym.Env:
        """`task` (the env with its reward) with the intervener, Chunking outermost (the reward,
        its episode ends and a person all act per env step)."""
        cfg = self.cfg
        return chunk_env(
            wrap_intervention(task, intervention, seed), cfg.obs_horizon, cfg.act_exec_horizon
        )

    def refresh_policy(self) -> None:
        """Adopt the newest parameters the client has received, if any are newer."""
        latest = self.client.latest_params()
        if latest is None or latest[0] == self.policy.version:
            return
        version, tree = latest
        # the transport drops empty subtrees (a state agent has no encoder parameters)
        params = {"encoder": {}, "actor": {}, **tree["policy"]}
        state = agents.actor_from_params(
            self.cfg.agent_config, self.spec, params, tree.get("frozen", {})
        )
        self.policy = Policy(version, state)

    def allowed_steps(self) -> float:
        """This actor's share of the env steps the learner's progress allows."""
        learner_steps = max(self.policy.version - 1, 0)
        total = self.cfg.training_starts + learner_steps / self.cfg.updates_per_env_step
        return total / self.cfg.actors + self.cfg.pace_slack

    def observe(self, obs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """What the policy reads: `obs` with its cameras as features, if the agent caches them."""
        return obs if self.features is None else self.features.observation(obs)

    def act(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        """Random actions first, then the stochastic policy."""
        if self.steps < self.cfg.random_steps or self.policy.state is None:
            return self.env.action_space.sample()
        self.key, key = jax.random.split(self.key)
        return sample_actions(self.policy.state, obs, key)

    def run(self) -> None:
        """Step until this actor's share of env steps is done, then evaluate and sign off."""
        held = self.client.wait_connected(timeout=120.0)
        if held is None:
            log.warning(
                "%s: no answer from the learner at %s within 120 s; starting anyway "
                "(what it cannot take yet is queued)",
                self.actor_id,
                self.address,
            )
        elif held > self.steps:  # a restart: go on where the learner is
            log.info(
                "%s: the learner holds %d of its steps; going on from there", self.actor_id, held
            )
            self.steps = held
        self.client.wait_params(timeout=120.0)
        self.refresh_policy()
        seed: int | None = self.cfg.seed * 1000 + self.index + self.steps
        with self.clock.phase("total"):
            while self.steps < self.share and not self.stopped:
                if self.one_robot:
                    self._evaluate_if_due()
                    if not self._wait_for_learner():
                        break
                run = run_episode(
                    self.env, self._paced_act, seed, on_step=self._on_step, keep=False
                )
                seed = None  # later resets go on from the env's own random state
                if not run.stopped:
                    self._report_episode(run)
        if self.stopped:
            return  # asked to stop: no final evaluation, the learner is stopping too
        if self.steps % self.cfg.eval_every != 0:
            self.evaluate()  # the final policy, unless just evaluated
        self._evaluate_if_due()
        if self.evaluation is not None:
            self.evaluation.wait()  # its report goes before "done"
        # the env's share of the loop is what the phases leave of its total
        loop = {f"{name}_s": t for name, t in self.clock.rounded().items()}
        self.client.report({"steps": float(self.steps), **loop}, self.steps, kind="done")

    def _paced_act(self, obs: dict[str, np.ndarray]) -> np.ndarray | None:
        """The next action once the learner's progress allows another step; None if stopped."""
        self.refresh_policy()
        if not self.one_robot and not self._wait_for_learner():
            return None
        with self.clock.phase("policy"):
            return self.act(self._seen(obs))

    def _wait_for_learner(self) -> bool:
        """Wait until the learner's progress allows another step; False if stopped meanwhile."""
        with self.clock.phase("pace_wait"):
            while self.steps >= self.allowed_steps():
                if self.stopped:
                    return False
                self._say_if_learner_silent()
                # the learner is behind: sleep until it publishes its next step (polling
                # would wake this process hundreds of times a second beside the update)
                self.client.wait_params(after=self.policy.version, timeout=0.1)
                self.refresh_policy()
        return True

    def _on_step(self, step: Step) -> bool:
        """Send the transition; evaluate on schedule; True once this actor should stop."""
        # what was executed is what is stored: a person's action replaces the policy's
        intervened = bool(step.info.get("intervened", False))
        transition = {
            "observations": step.obs,
            "actions": np.asarray(step.info.get("intervene_action", step.action), np.float32),
            "rewards": np.float32(step.reward),
            "terminated": np.bool_(step.terminated),
            "truncated": np.bool_(step.truncated),
            "next_observations": step.next_obs,
            "intervened": np.bool_(intervened),
        }
        if self.features is not None:
            with self.clock.phase("policy"):  # the next observation's features, acted on next
                seen, seen_next = self._seen(step.obs), self._seen(step.next_obs)
            transition[SENT_FEATURES] = {
                "observations": {k: seen[k] for k in self.features.keys},
                "next_observations": {k: seen_next[k] for k in self.features.keys},
            }
        with self.clock.phase("send"):
            self.client.send(transition, param_version=self.policy.version)
        self.steps += 1
        if self.steps % self.cfg.eval_every == 0:
            self.evaluate()
        return self.stopped or self.steps >= self.share

    def _seen(self, obs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """`observe(obs)`, computed once per observation (it is acted on, then sent twice)."""
        if self._last_seen[0] is not obs:
            self._last_seen = (obs, self.observe(obs))
        return self._last_seen[1]

    def _say_if_learner_silent(self) -> None:
        """While waiting for a learner that does not answer, say so once a minute."""
        silent = self.client.silent_for()
        if silent > 30.0 and time.monotonic() - self._last_warning > 60.0:
            self._last_warning = time.monotonic()
            log.warning(
                "%s: no answer from the learner at %s for %.0f s; waiting for it "
                "(a restarted learner is found at once)",
                self.actor_id,
                self.address,
                silent,
            )

    def evaluate(self) -> None:
        """Start evaluating the newest policy in the background (actor 0 only); with one robot,
        once the episode under way has ended."""
        if self.evaluation is None:
            return
        if self.one_robot:
            self._evaluation_due = True
            return
        self.refresh_policy()
        if self.policy.state is not None:
            self.evaluation.start(self.policy.state, self.steps)

    def _evaluate_if_due(self) -> None:
        """One robot: run the evaluation asked for during the last episode, to its end."""
        if not self._evaluation_due or self.evaluation is None:
            return
        self._evaluation_due = False
        self.refresh_policy()
        if self.policy.state is not None:
            self.evaluation.run_here(self.policy.state, self.steps)

    def _report_episode(self, run: Rollout) -> None:
        stats = self.client.stats()
        values = {
            "episode_return": run.total_reward,
            "episode_length": float(len(run)),
            "success": float(run.success),
            "param_version": float(self.policy.version),
            "queued": stats["queued"],
            "dropped": stats.get("dropped", 0.0),
        }
        if self.intervention.kind != "none":
            taken = sum(bool(info.get("intervened", False)) for info in run.infos[1:])
            values["intervention_rate"] = taken / max(len(run), 1)
        values.update(robot_episode_stats(run))
        self.client.report(values, self.steps)

    def close(self, flush_timeout: float = 60.0) -> bool:
        """Finish (or, when stopped, abandon) the evaluation under way, wait for the learner to
        acknowledge everything sent, then disconnect."""
        try:
            if self.evaluation is not None:
                self.evaluation.close(finish=not self.stopped)
        finally:
            flushed = self.client.flush(timeout=flush_timeout)
            self.client.close()
            self.env.close()
        return flushed


def run_actor(
    cfg: TrainConfig,
    address: str,
    token: str,
    index: int,
    start_step: int = 0,
    intervention: InterventionConfig | None = None,
) -> int:
    """Entry point of an actor process; returns the exit code."""
    actor = Actor(cfg, address, token, index, start_step, intervention)

    def request_stop(signum: int, frame: Any) -> None:
        actor.stopped = True

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    try:
        actor.run()
    finally:
        flushed = actor.close()
    if not flushed:
        log.error("actor %s: not everything was acknowledged before exit", actor.actor_id)
        return 1
    return 0
