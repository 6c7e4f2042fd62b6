"""The learner process: takes in actors' transitions durably, trains, publishes, checkpoints.

Every batch an actor pushes is split into episode fragments and appended to the replay store
(RUN_DIR/replay, a crash-safe episode store) before it is acknowledged, so after a crash the
replay is rebuilt from disk with every acknowledged transition exactly once, and the per-actor
watermarks come from the store itself. Updates are paced to `updates_per_env_step` learner
steps per online env step; actors, in turn, wait when they run ahead of the learner (see
`serl.train.actor`), which keeps the update-to-data ratio where learning happens.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import signal
import threading
import time
from pathlib import Path
from typing import Any

import jax
import numpy as np

from serl.agents import VICEState
from serl.agents import api as agents
from serl.agents.checkpoint import leaf_hashes
from serl.data import (
    Episode,
    EpisodeBuilder,
    EpisodeStore,
    FrameReplayBuffer,
    MixedSampler,
    ReplayBuffer,
    Schema,
    stack_frames,
    step_runs,
)
from serl.data.replay import Buffer
from serl.data.schema import check_obs
from serl.distributed import LearnerServer, Transitions, schema_hash
from serl.train.checkpoints import latest_checkpoint, load_checkpoint, save_checkpoint
from serl.train.config import TrainConfig
from serl.train.demos import is_success, with_observation_norm
from serl.train.envs import chunk_env, chunk_episode, env_schema, frame_schema, make_env
from serl.train.feature_cache import FeatureCache
from serl.train.reports import (
    append_episode_row,
    append_eval_row,
    eval_row,
    plot_intervention_rate,
)

log = logging.getLogger(__name__)

SENT_FEATURES = "features"  # a pushed batch's {observations, next_observations} camera features
_TAG = "features/"  # marks them among a piece's observation keys (no transported key has "/")


def run_token(run_dir: Path) -> str:
    """The run's shared secret (RUN_DIR/token, owner-only), created on first use."""
    path = run_dir / "token"
    if not path.exists():
        run_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(16))
    return path.read_text().strip()


def transport_schema_hash(schema: Schema, features: FeatureCache | None = None) -> str:
    """What actor and learner must agree on: observation/action layout and protocol payload,
    and the layout of the camera features the actor sends (`FeatureCache.sent_by_actor`)."""
    payload: dict[str, Any] = {"schema": schema.to_json(), "payload": "transition/v1"}
    if features is not None and features.sent_by_actor:
        payload["features"] = features.schema(schema).to_json()
    return schema_hash(payload)


def make_buffer(schema: Schema, cfg: TrainConfig, view_keys: tuple[str, ...] = ()) -> Buffer:
    """Frame-once buffer (optionally JPEG) for camera frames or their cached feature maps, a
    ring buffer otherwise; `schema` is per frame, the buffer stacks `cfg.obs_horizon` of them.
    `view_keys` hold several cached views per frame, of which a sample takes one."""
    if any(len(s.shape) >= 3 for _, s in schema.observations):
        jpeg = schema.image_keys if cfg.jpeg_quality else ()
        return FrameReplayBuffer(
            schema, cfg.replay_capacity, cfg.obs_horizon, jpeg_keys=jpeg,
            jpeg_quality=cfg.jpeg_quality or 90, view_keys=view_keys,
        )
    return ReplayBuffer(schema, cfg.replay_capacity, cfg.obs_horizon)


def add_episode(buffer: Buffer, episode: Episode) -> None:
    """Insert an episode in the run's layout (frames are stacks when the buffer stacks)."""
    if buffer.obs_horizon == 1:
        buffer.insert_episode(episode)
    else:  # consecutive stacks share frames: the frame-once buffer stores each one once
        buffer.insert_many(**episode.transitions())


def store_goal_examples(
    path: str | Path, schema: Schema, keys: tuple[str, ...], obs_horizon: int, stride: int
) -> dict[str, np.ndarray]:
    """The positive frames of a per-frame episode store, stacked like the run's observations:
    where an episode has `labels` (record-transitions) its 1s, otherwise all of its frames."""
    specs = schema.obs_specs
    parts: dict[str, list[np.ndarray]] = {k: [] for k in keys}
    with EpisodeStore.open(path) as store:
        theirs = store.schema.obs_specs
        bad = [k for k in keys if theirs.get(k) != specs[k]]
        if bad:
            raise ValueError(
                f"{path}: goal examples need per-frame cameras {[(k, specs[k]) for k in bad]} "
                f"(the env's), found {[(k, theirs.get(k)) for k in bad]}"
            )
        for i, (episode, attrs) in enumerate(store.items()):
            labels = np.asarray(attrs.get("labels", np.ones(len(episode) + 1)), np.int64)
            if len(labels) != len(episode) + 1:
                raise ValueError(
                    f"{path}: episode {i} has {len(labels)} labels for {len(episode) + 1} frames"
                )
            for k in keys:
                stacks = stack_frames(episode.observations[k], obs_horizon, stride)
                parts[k].append(stacks[labels == 1])
    if not sum(len(v) for v in parts[keys[0]]):
        raise ValueError(f"{path}: no positive frames to use as goal examples")
    return {k: np.concatenate(v) for k, v in parts.items()}


def sample_goals(
    goals: dict[str, np.ndarray], n: int, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """`n` goal examples drawn uniformly with replacement (a fixed shape for the jitted step)."""
    idx = rng.integers(0, len(next(iter(goals.values()))), size=n)
    return {k: v[idx] for k, v in goals.items()}


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    """Replace a small JSON file so readers never see half of it."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2))
    os.replace(tmp, path)


class Learner:
    """One training run's learner: replay, agent, transport server, checkpoints and logs."""

    def __init__(self, cfg: TrainConfig, resume: bool = False) -> None:
        cfg = with_observation_norm(cfg)
        self.cfg = cfg
        self.run = cfg.path
        checkpoint = latest_checkpoint(self.run)
        if checkpoint is not None and not resume:
            raise FileExistsError(
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
            Schema.create({k: (s.shape, s.dtype) for k, s in self.features.schema(self.schema)
                           .observations if k in self.features.keys}, self.schema.action_shape)
            if self.features is not None and self.features.sent_by_actor else None)

        self.buffer = self._make_buffer()
        # Demos, then (HIL-SERL) every intervened step as it arrives: the demo half of a batch.
        self.demo_goals: list[dict[str, np.ndarray]] = []  # successful demos' final frames
        self.demo_buffer = self._load_demos()
        self.intervention_steps = 0
        self.sampler: Any = None
        self.replay = self._open_replay()
        self.env_steps, self.actor_steps, watermarks = self._reload_replay()
        self.sampler = self._sampler()

        self.rng = np.random.default_rng(cfg.seed)
        self.updates, self.wall_offset = 0, 0.0
        if checkpoint is not None:
            self.agent, meta = load_checkpoint(checkpoint)
            self.updates, self.wall_offset = meta["updates"], meta["wall_s"]
            self.rng.bit_generator.state = meta["rng"]
            log.info("resumed from %s (%d updates)", checkpoint, self.updates)
            # what was restored, leaf by leaf: a network silently re-initialised would show here
            write_json_atomic(self.run / "resumed_from.json", {
                "checkpoint": checkpoint.name, "leaf_hashes": leaf_hashes(self.agent)})
        else:
            self.agent = agents.create(cfg.agent_config, example_obs, action_dim, cfg.seed)
        self.goals = self._goal_examples() if isinstance(self.agent, VICEState) else None
        self.start_time = time.monotonic()
        self.stop = threading.Event()
        self.done_actors: dict[str, int] = {}  # actor id -> env steps it says it took
        self.last_eval: dict[str, float] = {}
        self._ingest_lock = threading.Lock()
        self._writer = None
        self.server = LearnerServer(
            run_token(self.run),
            self.schema_hash,
            self._ingest,
            host=cfg.host,
            port=cfg.port,
            watermarks=watermarks,
            delivered=self.actor_steps,
            max_workers=max(8, 2 * cfg.actors + 4),
        )
        self._publish(static=True)
        write_json_atomic(self.run / "learner.json", {"address": self.server.address,
                                                      "pid": os.getpid()})

    # -- data ---------------------------------------------------------------------------------
    def _open_replay(self) -> EpisodeStore:
        path = self.run / "replay"
        if path.exists():
            store = EpisodeStore.open(path, writable=True)
            if store.schema != self.schema:
                raise ValueError(f"{path}: replay schema differs from {self.cfg.env_id}'s")
            return store
        return EpisodeStore.create(path, self.schema)

    def _reload_replay(self) -> tuple[int, dict[str, int], dict[str, int]]:
        """Rebuild the buffers from the replay log: env steps, steps per actor, watermarks.

        A batch stored only in part (the learner died between its pieces) is left out and not
        acknowledged: its actor sends it again, and the pieces already stored are not rewritten.
        """
        self._stored_parts = _unfinished_batches(self.replay.all_attrs())
        steps, per_actor, marks = 0, {}, {}
        for fragment, attrs in self.replay.items():
            actor = attrs["actor"]
            if self._stored_parts.get(actor, (0,))[0] == attrs["seq"]:
                continue
            self._insert(fragment, attrs.get("intervened", ()))
            steps += len(fragment)
            per_actor[actor] = per_actor.get(actor, 0) + len(fragment)
            marks[actor] = max(marks.get(actor, 0), attrs["seq"])
        if steps:
            log.info("replay reloaded: %d transitions from %s", steps, self.run / "replay")
        for actor, (seq, part) in self._stored_parts.items():
            log.warning("replay: actor %s's batch %d has %d pieces stored of more; "
                        "waiting for the actor to send it again", actor, seq, part + 1)
        return steps, per_actor, marks

    def _load_demos(self) -> Buffer | None:
        demos = self.cfg.demos
        if not demos:
            return None
        cfg = self.cfg
        demo_buffer = self._make_buffer()
        with EpisodeStore.open(demos) as store:
            if store.schema != self.raw_schema:
                raise ValueError(f"{demos}: demo schema differs from {cfg.env_id}'s")
            for stored, attrs in store.items():
                episode = chunk_episode(stored, cfg.obs_horizon, cfg.act_exec_horizon)
                add_episode(demo_buffer, self._featurize(episode))
                if is_success(episode, attrs):
                    self.demo_goals.append({k: v[-1] for k, v in episode.observations.items()})
        return demo_buffer

    def _goal_examples(self) -> dict[str, np.ndarray]:
        """VICE's positives, all in memory: the goal store's, else the demos' final frames."""
        cfg, keys = self.cfg, self.agent.classifier.spec.keys
        if cfg.goal_examples:
            return store_goal_examples(cfg.goal_examples, self.raw_schema, keys,
                                       cfg.obs_horizon, cfg.act_exec_horizon)
        if not self.demo_goals:
            raise ValueError(
                f"agent 'vice': none of the demos in {cfg.demos} succeeded, so they give no "
                "goal examples; give --goal-examples PATH (an episode store of success frames)"
            )
        return {k: np.stack([g[k] for g in self.demo_goals]) for k in keys}

    def sample(self, size: int) -> dict[str, Any]:
        """A learner step's batch (VICE's with a goal minibatch of its classifier's size)."""
        batch = dict(self.sampler.sample(size, self.rng))
        if self.goals is not None:
            n = self.agent.config.classifier.batch_size
            batch["goal_observations"] = sample_goals(self.goals, n, self.rng)
        return batch

    def _sampler(self) -> Any:
        if self.demo_buffer is None:
            return self.buffer
        return MixedSampler(
            self.demo_buffer, self.buffer, self.cfg.demo_fraction, mark_demos=True
        )

    def _make_buffer(self) -> Buffer:
        views = self.features.view_keys if self.features is not None else ()
        return make_buffer(self.frame_schema, self.cfg, views)

    def _featurize(self, episode: Episode) -> Episode:
        """The episode as the buffers hold it: cameras as cached features, if the agent's are."""
        return episode if self.features is None else self.features.episode(episode)

    def _insert(self, fragment: Any, intervened: Any, buffered: Episode | None = None) -> None:
        """Online buffer always; the intervened steps also to the demo buffer (HIL-SERL).
        `buffered`: the fragment as the buffers hold it, when the actor sent its features."""
        fragment = self._featurize(fragment) if buffered is None else buffered
        add_episode(self.buffer, fragment)
        if len(intervened) == 0:
            return
        if self.demo_buffer is None:  # a run without demos: the first intervention starts one
            self.demo_buffer = self._make_buffer()
        for run in step_runs(fragment, intervened):
            add_episode(self.demo_buffer, run)
        self.intervention_steps += len(intervened)
        if self.sampler is self.buffer:
            self.sampler = self._sampler()

    def _check_sent_features(self, data: dict[str, Any]) -> None:
        """An actor's camera features: sent exactly when this run's actors send them, each
        [n, *spec] in the spec's dtype and finite (a bad batch is refused before storing)."""
        sent = data.get(SENT_FEATURES)
        if self._sent_schema is None:
            if sent is not None:
                raise ValueError(f"{SENT_FEATURES}: this run's actors send none")
            return
        if sent is None:
            raise ValueError(f"{SENT_FEATURES}: missing; this run's actors send their cameras' "
                             "features with each transition (an actor of another version?)")
        if not isinstance(sent, dict) or sent.keys() != {"observations", "next_observations"}:
            raise ValueError(f"{SENT_FEATURES}: expected observations and next_observations")
        n = len(data["rewards"])
        for part, maps in sent.items():
            name = f"{SENT_FEATURES}/{part}"
            check_obs(name, maps, self._sent_schema, (n,))  # keys, shapes, finite
            for key, spec in self._sent_schema.observations:  # as computed: no cast accepted
                if maps[key].dtype != spec.np_dtype:
                    raise ValueError(f"{name}[{key!r}]: dtype {maps[key].dtype.name}, "
                                     f"expected {spec.dtype}")

    def _ingest(self, batch: Transitions) -> None:
        """Store a pushed batch durably, then make it sampleable (runs on a gRPC thread)."""
        d = batch.data
        try:
            self._check_sent_features(d)
            fragments = _fragments(d)
        except (KeyError, TypeError) as e:
            raise ValueError(f"transition batch: {e}") from e
        with self._ingest_lock:
            done_seq, done_part = self._stored_parts.get(batch.actor_id, (0, -1))
            for part, (fragment, intervened, _) in enumerate(fragments):
                if (batch.seq, part) <= (done_seq, done_part):
                    continue  # stored by an attempt that failed later: never twice
                attrs = {"actor": batch.actor_id, "seq": batch.seq, "part": part,
                         "parts": len(fragments)}
                if intervened:  # step indices: the replay log alone rebuilds the demo buffer
                    attrs["intervened"] = intervened
                self.replay.append(fragment, attrs)
                self._stored_parts[batch.actor_id] = (batch.seq, part)
            for fragment, intervened, buffered in fragments:
                self._insert(fragment, intervened, buffered)
            n = len(batch)
            self.env_steps += n
            self.actor_steps[batch.actor_id] = self.actor_steps.get(batch.actor_id, 0) + n

    # -- training -------------------------------------------------------------------------------
    def allowed_updates(self) -> int:
        """Learner steps the data received so far pays for."""
        online = self.env_steps - self.cfg.training_starts
        return int(self.cfg.updates_per_env_step * online) if online >= 0 else 0

    def _publish(self, static: bool = False) -> None:
        frozen = agents.frozen_params(self.agent) if static else None
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
        meta = {"wall_s": self.wall_s(), "env_steps": self.env_steps,
                "rng": self.rng.bit_generator.state, "watermarks": self.server.watermarks()}
        return save_checkpoint(self.run, self.agent, self.updates, meta)

    def run_loop(self) -> None:
        """Train until every actor is done (or SIGTERM / SIGINT), then checkpoint."""
        from tensorboardX import SummaryWriter

        cfg = self.cfg
        self._writer = SummaryWriter(str(self.run / "tb"))
        sample_size = cfg.agent_config.sample_size
        last_log, last_progress, last_status = time.monotonic(), 0.0, time.monotonic()
        updates_at_log, steps_at_log = self.updates, self.env_steps
        metrics: dict[str, Any] = {}
        try:
            while not self.stop.is_set():
                self._handle_reports()
                if self.all_actors_done():
                    break
                if time.monotonic() - last_progress > 1.0:
                    self._write_progress()
                    last_progress = time.monotonic()
                if last_progress - last_status > 60.0:  # a line a minute: where a long run is
                    log.info("%d env steps, %d updates; actors done: %s", self.env_steps,
                             self.updates, sorted(self.done_actors) or "none")
                    last_status = last_progress
                if self.updates >= self.allowed_updates() or len(self.buffer) == 0:
                    self.stop.wait(0.005)
                    continue
                batch = self.sample(sample_size)
                self.agent, metrics = agents.update(self.agent, batch)
                self.updates += 1
                if self.updates % cfg.publish_every == 0:
                    self._publish()
                if self.updates % cfg.log_every == 0:
                    now = time.monotonic()
                    dt = max(now - last_log, 1e-9)
                    rates = {"perf/updates_per_s": (self.updates - updates_at_log) / dt,
                             "perf/env_steps_per_s": (self.env_steps - steps_at_log) / dt}
                    self._log_scalars({**jax.device_get(metrics), **rates})
                    last_log, updates_at_log, steps_at_log = now, self.updates, self.env_steps
                if self.updates % cfg.checkpoint_every == 0:
                    self.checkpoint()
        finally:
            self._handle_reports()
            self.checkpoint()
            self._write_progress()
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
        buffer_stats = {"replay/size": len(self.buffer), "replay/env_steps": self.env_steps,
                        "replay/intervention_steps": self.intervention_steps,
                        "replay/demo_size": len(self.demo_buffer) if self.demo_buffer else 0}
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
            else:
                lag = self.updates + 1 - report.values.get("param_version", self.updates + 1)
                for key, value in {**report.values, "param_version_lag": lag}.items():
                    self._writer.add_scalar(f"actor/{key}", value, report.env_step)
                if "episode_return" in report.values:
                    append_episode_row(self.run / "episodes.csv", {
                        **report.values, "env_step": run_step, "actor": report.actor_id})

    def all_actors_done(self) -> bool:
        """Every actor signed off and all the transitions it took have arrived."""
        return len(self.done_actors) >= self.cfg.actors and all(
            self.actor_steps.get(a, 0) >= steps for a, steps in self.done_actors.items()
        )

    def _write_progress(self) -> None:
        write_json_atomic(self.run / "progress.json", {
            "env_steps": self.env_steps, "updates": self.updates,
            "wall_s": round(self.wall_s(), 2), "actor_steps": self.actor_steps,
            "last_eval": self.last_eval, "done_actors": sorted(self.done_actors),
        })


def _unfinished_batches(all_attrs: list[dict[str, Any]]) -> dict[str, tuple[int, int]]:
    """Per actor whose newest batch the replay holds only some pieces of: (seq, last piece)."""
    newest: dict[str, tuple[int, int, int]] = {}  # actor -> (seq, pieces stored, pieces)
    for attrs in all_attrs:
        actor, seq = attrs["actor"], attrs["seq"]
        last_seq, stored, _ = newest.get(actor, (0, 0, 0))
        if seq != last_seq:
            stored = 0
        # a replay written before "parts" was recorded holds whole batches only
        newest[actor] = (seq, stored + 1, attrs.get("parts", 0))
    return {actor: (seq, stored - 1)
            for actor, (seq, stored, parts) in newest.items() if stored < parts}


def _fragments(data: dict[str, Any]) -> list[tuple[Episode, list[int], Episode | None]]:
    """Split a pushed batch into episode pieces (frames once), cut at dones and at gaps, each
    with the indices of its steps a person (or the simulated one) took over and, when the
    actor sent its cameras' features, the piece as the buffers hold it (features for frames)."""
    builder = EpisodeBuilder()
    pieces = []
    obs, nxt = data["observations"], data["next_observations"]
    sent = data.get(SENT_FEATURES)
    if sent is not None:  # carried as extra keys, so both are cut at the same steps
        obs = {**obs, **{_TAG + k: v for k, v in sent["observations"].items()}}
        nxt = {**nxt, **{_TAG + k: v for k, v in sent["next_observations"].items()}}
    n = len(data["rewards"])
    for t in range(n):
        pieces += builder.add(
            {k: v[t] for k, v in obs.items()}, data["actions"][t], data["rewards"][t],
            data["terminated"][t], data["truncated"][t], {k: v[t] for k, v in nxt.items()},
        )
    last = builder.flush()
    pieces += [last] if last is not None else []
    # an actor that predates the flag sends none: nothing was intervened
    flags = np.asarray(data.get("intervened", np.zeros(n, bool)), bool).reshape(n)
    starts = np.cumsum([0] + [len(p) for p in pieces])  # pieces cover the rows in order
    out = []
    for piece, a, b in zip(pieces, starts[:-1], starts[1:], strict=True):
        pixels, buffered = _split_features(piece)
        out.append((pixels, np.flatnonzero(flags[a:b]).tolist(), buffered))
    return out


def _split_features(piece: Episode) -> tuple[Episode, Episode | None]:
    """A piece with sent features as extra keys -> (its pixels, its buffered form)."""
    pixels = {k: v for k, v in piece.observations.items() if not k.startswith(_TAG)}
    sent = {k[len(_TAG):]: v for k, v in piece.observations.items() if k.startswith(_TAG)}
    rest = (piece.actions, piece.rewards, piece.terminated, piece.truncated)
    return Episode(pixels, *rest), Episode({**pixels, **sent}, *rest) if sent else None


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
