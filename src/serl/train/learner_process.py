"""The learner process: takes in actors' transitions durably, trains, publishes, checkpoints.

Every batch an actor pushes goes to the replay log (`serl.train.replay_log`) before it is
acknowledged, then to the buffers (`serl.train.buffers`) it samples from. Updates are paced to
`updates_per_env_step` learner steps per online env step; actors, in turn, wait when they run
ahead of the learner (see `serl.train.actor_process`), which keeps the update-to-data ratio where
learning happens.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from serl.agents import VICEState
from serl.agents import api as agents
from serl.agents.persist import leaf_hashes
from serl.data import Schema
from serl.data.schema import check_obs
from serl.distributed import LearnerServer, Transitions
from serl.errors import ConfigError, PathExists
from serl.train.buffers import RunBuffers, sample_goals, store_goal_examples
from serl.train.config import TrainConfig
from serl.train.demos import with_observation_norm
from serl.train.envs import chunk_env, env_schema, frame_schema, make_env
from serl.train.feature_cache import FeatureCache
from serl.train.replay_log import ReplayLog, split_batch
from serl.train.reports import (
    PhaseClock,
    append_episode_row,
    append_eval_row,
    eval_row,
    plot_intervention_rate,
)
from serl.train.run_checkpoints import latest_checkpoint, load_checkpoint, save_checkpoint
from serl.train.run_files import (
    LEARNER_FILE,
    SENT_FEATURES,
    run_token,
    transport_schema_hash,
    write_json_atomic,
)

log = logging.getLogger(__name__)


@jax.jit
def _device_copy(tree: Any) -> Any:
    """A copy of `tree` on the device (one dispatch): the next update donates the original."""
    return jax.tree.map(jnp.copy, tree)


class ParamPublisher:
    """Publishes the newest parameters from a thread: the learner hands over a device copy and
    goes on updating while this waits for it, fetches and serialises it; a copy not yet
    published when a newer one arrives is dropped (actors want the newest)."""

    def __init__(self, server: LearnerServer) -> None:
        self.server = server
        self._pending: tuple[Any, int] | None = None
        self._changed = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="param-publisher", daemon=True)
        self._thread.start()

    def submit(self, params: Any, version: int) -> None:
        """Publish `params` (device arrays, which the caller may donate next) as `version`."""
        copy = _device_copy(params)
        with self._changed:
            self._pending = (copy, version)
            self._changed.notify()

    def _run(self) -> None:
        while True:
            with self._changed:
                self._changed.wait_for(lambda: self._pending is not None or self._closed)
                if self._pending is None:
                    return
                (params, version), self._pending = self._pending, None
            try:
                self.server.publish({"policy": jax.device_get(params)}, version)
            except Exception:  # actors keep the previous policy; the next one may go through
                log.exception("publishing parameters version %d failed", version)

    def close(self) -> None:
        """Publish what is pending, then stop."""
        with self._changed:
            self._closed = True
            self._changed.notify()
        self._thread.join()


class Learner:
    """One training run's learner: replay, agent, transport server, checkpoints and logs."""

    def __init__(self, cfg: TrainConfig, resume: bool = False) -> None:
        cfg = with_observation_norm(cfg)
        self.cfg = cfg
        self.run = cfg.path
        checkpoint = latest_checkpoint(self.run)
        if checkpoint is not None and not resume:
            raise PathExists(
                f"{self.run} already holds a run (checkpoint {checkpoint.name}); "
                "continue it with --resume or choose another --run-dir"
            )
        cfg.save()
        raw = make_env(cfg.env_id, **cfg.env_kwargs)
        self.raw_schema = env_schema(raw)  # one env step's: demo and goal stores
        env = chunk_env(raw, cfg.obs_horizon, cfg.act_exec_horizon)
        # What actors send and the replay store keeps (stacks when chunked); the buffers
        # hold single frames and rebuild the stacks.
        self.schema = env_schema(env)
        # A frozen backbone's features are computed once per frame: by the actor, which runs
        # the backbone to act anyway and sends them along (here: for demos and a reloaded
        # replay). The buffers hold them, the replay store the pixels.
        self.features = FeatureCache.for_schema(cfg.agent_config.encoder, self.schema)
        self.frame_schema = frame_schema(self.schema, cfg.obs_horizon)
        if self.features is not None:
            self.frame_schema = self.features.schema(self.frame_schema)
        example_obs, _ = env.reset(seed=cfg.seed)
        action_dim = int(np.prod(env.action_space.shape))
        env.close()
        self.schema_hash = transport_schema_hash(self.schema, self.features)
        self._sent_schema = (  # per step: what an actor's features must look like
            Schema.create(
                {
                    k: (s.shape, s.dtype)
                    for k, s in self.features.schema(self.schema).observations
                    if k in self.features.keys
                },
                self.schema.action_shape,
            )
            if self.features is not None and self.features.sent_by_actor
            else None
        )

        self.buffers = RunBuffers(cfg, self.frame_schema, self.features)
        if cfg.demos:
            self.buffers.load_demos(cfg.demos, self.raw_schema)
        self.replay = ReplayLog(self.run / "replay", self.schema)
        held = self.replay.reload(self.buffers.insert)
        self.env_steps, self.actor_steps = held.env_steps, held.actor_steps

        self.rng = np.random.default_rng(cfg.seed)
        self.updates, self.wall_offset = 0, 0.0
        if checkpoint is not None:
            self.agent, meta = load_checkpoint(checkpoint)
            self.updates, self.wall_offset = meta["updates"], meta["wall_s"]
            self.rng.bit_generator.state = meta["rng"]
            log.info("resumed from %s (%d updates)", checkpoint, self.updates)
            # what was restored, leaf by leaf: a network silently re-initialised would show here
            write_json_atomic(
                self.run / "resumed_from.json",
                {"checkpoint": checkpoint.name, "leaf_hashes": leaf_hashes(self.agent)},
            )
        else:
            self.agent = agents.create(cfg.agent_config, example_obs, action_dim, cfg.seed)
        self.goals = self._goal_examples() if isinstance(self.agent, VICEState) else None
        self.start_time = time.monotonic()
        self.stop = threading.Event()
        self.done_actors: dict[str, int] = {}  # actor id -> env steps it says it took
        self.actor_loops: dict[str, dict[str, float]] = {}  # where each actor's time went
        self.clock = PhaseClock()  # where the loop's time goes (progress.json: loop_s)
        self.ingest_clock = PhaseClock()  # storing actors' batches, on the transport's threads
        self.last_eval: dict[str, float] = {}
        self._ingest_lock = threading.Lock()
        self._writer = None
        self.server = LearnerServer(
            run_token(self.run),
            self.schema_hash,
            self._ingest,
            host=cfg.host,
            port=cfg.port,
            watermarks=held.watermarks,
            delivered=self.actor_steps,
            max_workers=max(8, 2 * cfg.actors + 4),
        )
        self._publish_first()
        self.publisher = ParamPublisher(self.server)
        write_json_atomic(
            self.run / LEARNER_FILE, {"address": self.server.address, "pid": os.getpid()}
        )

    # -- data ---------------------------------------------------------------------------------
    def _goal_examples(self) -> dict[str, np.ndarray]:
        """VICE's positives, all in memory: the goal store's, else the demos' final frames."""
        cfg, keys = self.cfg, self.agent.classifier.spec.keys
        if cfg.goal_examples:
            return store_goal_examples(
                cfg.goal_examples, self.raw_schema, keys, cfg.obs_horizon, cfg.act_exec_horizon
            )
        goals = self.buffers.demo_goals
        if not goals:
            raise ConfigError(
                f"agent 'vice': none of the demos in {cfg.demos} succeeded, so they give no "
                "goal examples; give --goal-examples PATH (an episode store of success frames)"
            )
        return {k: np.stack([g[k] for g in goals]) for k in keys}

    def sample(self, size: int) -> dict[str, Any]:
        """A learner step's batch (VICE's with a goal minibatch of its classifier's size)."""
        batch = dict(self.buffers.sampler.sample(size, self.rng))
        if self.goals is not None:
            n = self.agent.config.classifier.batch_size
            batch["goal_observations"] = sample_goals(self.goals, n, self.rng)
        return batch

    def _check_sent_features(self, data: dict[str, Any]) -> None:
        """An actor's camera features: sent exactly when this run's actors send them, each
        [n, *spec] in the spec's dtype and finite (a bad batch is refused before storing)."""
        sent = data.get(SENT_FEATURES)
        if self._sent_schema is None:
            if sent is not None:
                raise ValueError(f"{SENT_FEATURES}: this run's actors send none")
            return
        if sent is None:
            raise ValueError(
                f"{SENT_FEATURES}: missing; this run's actors send their cameras' "
                "features with each transition (an actor of another version?)"
            )
        if not isinstance(sent, dict) or sent.keys() != {"observations", "next_observations"}:
            raise ValueError(f"{SENT_FEATURES}: expected observations and next_observations")
        n = len(data["rewards"])
        for part, maps in sent.items():
            name = f"{SENT_FEATURES}/{part}"
            check_obs(name, maps, self._sent_schema, (n,))  # keys, shapes, finite
            for key, spec in self._sent_schema.observations:  # as computed: no cast accepted
                if maps[key].dtype != spec.np_dtype:
                    raise ValueError(
                        f"{name}[{key!r}]: dtype {maps[key].dtype.name}, expected {spec.dtype}"
                    )

    def _ingest(self, batch: Transitions) -> None:
        """Store a pushed batch durably, then make it sampleable (runs on a gRPC thread)."""
        try:
            self._check_sent_features(batch.data)
            fragments = split_batch(batch.data)
        except (KeyError, TypeError) as e:
            raise ValueError(f"transition batch: {e}") from e
        with self._ingest_lock, self.ingest_clock.phase("ingest"):
            self.replay.append_batch(batch.actor_id, batch.seq, fragments)
            for fragment in fragments:
                self.buffers.insert(fragment.episode, fragment.intervened, fragment.buffered)
            n = len(batch)
            self.env_steps += n
            self.actor_steps[batch.actor_id] = self.actor_steps.get(batch.actor_id, 0) + n

    # -- training -------------------------------------------------------------------------------
    def _publish_first(self) -> None:
        """The policy training starts from and the never-changing frozen parameters."""
        frozen = agents.frozen_params(self.agent)
        self.server.publish(
            {"policy": agents.actor_params(self.agent)},
            self.updates + 1,  # version 1 is the initial policy; version - 1 = learner steps
            static={"frozen": frozen} if frozen else None,
        )

    def wall_s(self) -> float:
        """Training wall time, across resumes."""
        return self.wall_offset + time.monotonic() - self.start_time

    def checkpoint(self) -> Path:
        """Save agent, counters and sampler RNG atomically."""
        meta = {
            "wall_s": self.wall_s(),
            "env_steps": self.env_steps,
            "rng": self.rng.bit_generator.state,
            "watermarks": self.server.watermarks(),
        }
        return save_checkpoint(self.run, self.agent, self.updates, meta)

    def run_loop(self) -> None:
        """Train until every actor is done (or SIGTERM / SIGINT), then checkpoint."""
        from tensorboardX import SummaryWriter

        cfg = self.cfg
        # flushed every 10 s (not 120): TensorBoard and the --wandb mirror follow a run live
        self._writer = SummaryWriter(str(self.run / "tb"), flush_secs=10)
        sample_size = cfg.agent_config.sample_size
        last_log, last_progress, last_status = time.monotonic(), 0.0, time.monotonic()
        updates_at_log, steps_at_log = self.updates, self.env_steps
        metrics: dict[str, Any] = {}
        clock = self.clock
        try:
            while not self.stop.is_set():
                with clock.phase("reports"):
                    self._handle_reports()
                    if self.all_actors_done():
                        break
                    if time.monotonic() - last_progress > 1.0:
                        self._write_progress()
                        last_progress = time.monotonic()
                if last_progress - last_status > 60.0:  # a line a minute: where a long run is
                    log.info(
                        "%d env steps, %d updates; actors done: %s",
                        self.env_steps,
                        self.updates,
                        sorted(self.done_actors) or "none",
                    )
                    last_status = last_progress
                if (
                    self.updates >= self.cfg.updates_allowed(self.env_steps)
                    or len(self.buffers.online) == 0
                ):
                    # before the first update: the random steps; after it: ahead of the actors
                    with clock.phase("wait_for_env_steps" if self.updates else "before_training"):
                        self.stop.wait(0.005)
                    continue
                with clock.phase("sample"):
                    batch = self.sample(sample_size)
                with clock.phase("update"):  # dispatched: the host goes on while it runs
                    self.agent, metrics = agents.update(self.agent, batch)
                self.updates += 1
                if self.updates % cfg.publish_every == 0:
                    with clock.phase("publish"):  # handed over: the loop need not wait for it
                        self.publisher.submit(self.agent.actor_state().params, self.updates + 1)
                if self.updates % cfg.log_every == 0:
                    with clock.phase("log"):
                        now = time.monotonic()
                        dt = max(now - last_log, 1e-9)
                        rates = {
                            "perf/updates_per_s": (self.updates - updates_at_log) / dt,
                            "perf/env_steps_per_s": (self.env_steps - steps_at_log) / dt,
                        }
                        self._log_scalars({**jax.device_get(metrics), **rates})
                        last_log, updates_at_log, steps_at_log = now, self.updates, self.env_steps
                if self.updates % cfg.checkpoint_every == 0:
                    with clock.phase("checkpoint"):
                        self.checkpoint()
        finally:
            self._handle_reports()
            self.checkpoint()
            self._write_progress()
            self.publisher.close()
            self.server.close()
            self.replay.close()
            self._writer.close()
            self._plot_interventions()

    def _plot_interventions(self) -> None:
        """RUN_DIR/intervention_rate.png, when the run's episodes had an intervener."""
        try:
            plot_intervention_rate(self.run / "episodes.csv", self.run / "intervention_rate.png")
        except Exception:  # a plot must never fail a finished run
            log.exception("could not plot the intervention rate")

    def _log_scalars(self, values: dict[str, Any]) -> None:
        buffers = self.buffers
        buffer_stats = {
            "replay/size": len(buffers.online),
            "replay/env_steps": self.env_steps,
            "replay/intervention_steps": buffers.intervention_steps,
            "replay/demo_size": len(buffers.demos) if buffers.demos else 0,
        }
        server = {f"transport/{k}": v for k, v in self.server.stats().items()}
        for name, value in {**values, **buffer_stats, **server}.items():
            self._writer.add_scalar(name, float(np.asarray(value)), self.updates)

    def _handle_reports(self) -> None:
        for report in self.server.drain_reports():
            # the run's env step: this actor's step plus what the other actors took so far
            others = sum(n for a, n in self.actor_steps.items() if a != report.actor_id)
            run_step = report.env_step + others
            if report.kind == "eval":
                row = eval_row(report.values, run_step, self.wall_s())
                append_eval_row(self.run / "eval.csv", row)
                self.last_eval = row
                for key in ("success_rate", "mean_return"):
                    self._writer.add_scalar(f"eval/{key}", row[key], row["env_step"])
            elif report.kind == "done":
                self.done_actors[report.actor_id] = report.env_step
                self.actor_loops[report.actor_id] = report.values
            else:
                lag = self.updates + 1 - report.values.get("param_version", self.updates + 1)
                for key, value in {**report.values, "param_version_lag": lag}.items():
                    # "rollout/", not "actor/": the policy's losses are "actor/", at learner steps
                    self._writer.add_scalar(f"rollout/{key}", value, report.env_step)
                if "episode_return" in report.values:
                    append_episode_row(
                        self.run / "episodes.csv",
                        {**report.values, "env_step": run_step, "actor": report.actor_id},
                    )

    def all_actors_done(self) -> bool:
        """Every actor signed off and all the transitions it took have arrived."""
        return len(self.done_actors) >= self.cfg.actors and all(
            self.actor_steps.get(a, 0) >= steps for a, steps in self.done_actors.items()
        )

    def _write_progress(self) -> None:
        write_json_atomic(
            self.run / "progress.json",
            {
                "env_steps": self.env_steps,
                "updates": self.updates,
                "wall_s": round(self.wall_s(), 2),
                "actor_steps": self.actor_steps,
                "last_eval": self.last_eval,
                "done_actors": sorted(self.done_actors),
                # this process's seconds per loop phase (an update is dispatched and runs
                # beside what follows; the host waits for it where it next needs a result),
                # and each finished actor's
                "loop_s": {**self.clock.rounded(), **self.ingest_clock.rounded()},
                "actor_loop_s": self.actor_loops,
            },
        )


def run_learner(cfg: TrainConfig, resume: bool = False) -> int:
    """Entry point of the learner process; returns the exit code."""
    learner = Learner(cfg, resume)

    def request_stop(signum: int, frame: Any) -> None:
        log.info("signal %d: final checkpoint, then exit", signum)
        learner.stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    learner.run_loop()
    return 0
