"""Reset-free forward/backward training: two agents undo each other's work, nobody resets the scene.

One process steps one scene. Episodes alternate forward, backward, forward, ...: each starts
where the other ended (an env reset moves only the arm). Each direction has its own agent,
replay buffer (and optional demo buffer) and reward: its own learned-reward classifier, or
the env's reward (a simulator's truth) when none is given. Updates for a direction run
during its own episodes at `updates_per_env_step`.

Sim: `serl/PandaBinRelocation[Vision]-v0`, one env whose task is chosen per episode with
reset options. Real robot: `backward_env_id` names a second env over the same robot (e.g.
serl/FrankaBinRelocationForward-v0 and serl/FrankaBinRelocationBackward-v0).

RUN_DIR holds fb_config.json, episodes.csv (one row per episode) and per direction
{forward,backward}/replay (every finished episode, a crash-safe store), .../checkpoints (every
`checkpoint_every` of its updates) and, at the end, .../agent. `resume` rebuilds the buffers
from the replay and each agent from its newest checkpoint: an episode cut by the crash is
lost whole, its updates are made again; a sim scene is placed again. The buffers, observation
stacks and action chunks are those of `serl train` (`serl.train.buffers`, `serl.train.envs`).
"""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, ClassVar

import gymnasium as gym
import jax
import numpy as np
import tyro

from serl.agents import api as agents
from serl.agents import checkpoint as agent_checkpoint
from serl.agents.policy import sample_actions
from serl.dataclass_json import JsonFile
from serl.errors import PathExists
from serl.train.buffers import RunBuffers
from serl.train.config import TrainConfig
from serl.train.demos import with_observation_norm
from serl.train.envs import chunk_env, env_schema, frame_schema, make_env
from serl.train.replay_log import Fragment, ReplayLog
from serl.train.rollout import Step, run_episode
from serl.train.run_checkpoints import latest_checkpoint, load_checkpoint, save_checkpoint

log = logging.getLogger(__name__)
DIRECTIONS = ("forward", "backward")
EPISODE_COLUMNS = (
    "episode",
    "direction",
    "env_step",
    "steps",
    "return",
    "success",
    "learned_success",
    "updates",
    "wall_s",
)


def _default_train() -> TrainConfig:
    return TrainConfig(
        env_id="serl/PandaBinRelocationVision-v0",
        agent="drq",
        env_steps=20_000,  # both directions together
        random_steps=1_000,  # per direction
        training_starts=500,  # per direction: its online transitions before its first update
        run_dir="runs/forward_backward",
        replay_capacity=200_000,
    )


@dataclass(frozen=True)
class ForwardBackwardConfig(JsonFile):
    """Everything a forward/backward run needs; written to RUN_DIR/fb_config.json.

    `train` is a training config as `serl train` takes it (env, agent, steps, seed, buffers:
    JPEG, stacks, observation statistics from each direction's demos); its `demos` are unused:
    each direction has its own.
    """

    FILE: ClassVar[str] = "fb_config.json"
    MISSING: ClassVar[str] = "no forward/backward run to resume here"

    train: Annotated[TrainConfig, tyro.conf.arg(name="")] = field(default_factory=_default_train)
    backward_env_id: str | None = None  # a second env for the backward task (real robot)
    forward_classifier: str | None = None  # its reward classifier; None: the env's reward
    backward_classifier: str | None = None  # its reward classifier; None: the env's reward
    reward_threshold: float | None = None  # None: each classifier's own threshold
    forward_demos: str | None = None  # an episode store of forward demos
    backward_demos: str | None = None  # an episode store of backward demos

    def demos(self, direction: str) -> str | None:
        """The direction's demo store."""
        return self.forward_demos if direction == "forward" else self.backward_demos

    def agent_config(self, direction: str) -> agents.AgentConfig:
        """The direction's agent hyperparameters: the run's, standardised by its own demos."""
        own = dataclasses.replace(self.train, demos=self.demos(direction))
        return with_observation_norm(own).agent_config

    @property
    def path(self) -> Path:
        """The run directory."""
        return self.train.path

    def save(self, directory: Path | None = None) -> Path:
        """Write RUN_DIR/fb_config.json."""
        return super().save(directory or self.path)


Transition = dict[str, Any]


class ForwardBackwardTrainer:
    """Two agents, two buffers, one scene: alternate episodes and train each on its own data."""

    def __init__(
        self,
        cfg: ForwardBackwardConfig,
        on_transition: Callable[[str, Transition], None] | None = None,
        resume: bool = False,
    ) -> None:
        self.cfg = cfg
        train = cfg.train
        self.on_transition = on_transition
        self.shared = cfg.backward_env_id is None
        base = make_env(train.env_id, **train.env_kwargs)
        other = base if self.shared else make_env(cfg.backward_env_id, **train.env_kwargs)
        self.raw_schema = env_schema(base)  # one env step's: the demo stores'
        # the reward (and its episode ends) act per env step: Chunking outermost
        self.envs = {
            d: chunk_env(
                self._with_reward(env, classifier), train.obs_horizon, train.act_exec_horizon
            )
            for d, env, classifier in (
                ("forward", base, cfg.forward_classifier),
                ("backward", other, cfg.backward_classifier),
            )
        }
        schema = frame_schema(env_schema(self.envs["forward"]), train.obs_horizon)
        self.action_dim = int(np.prod(self.envs["forward"].action_space.shape))
        self.agents: dict[str, Any] = {}
        self.buffers: dict[str, RunBuffers] = {}
        self.replay: dict[str, ReplayLog] = {}
        self.steps = dict.fromkeys(DIRECTIONS, 0)
        self.updates = dict.fromkeys(DIRECTIONS, 0)
        self.episodes: list[dict[str, Any]] = []  # this process's
        self.episode_count = 0  # the run's
        self._started = False
        self.start_time = time.monotonic()
        for i, d in enumerate(DIRECTIONS):
            self.buffers[d] = RunBuffers(train, schema, features=None)
            if cfg.demos(d):
                self.buffers[d].load_demos(cfg.demos(d), self.raw_schema)
            self.envs[d].action_space.seed(train.seed * 1000 + i)
            self.replay[d] = ReplayLog(cfg.path / d / "replay", env_schema(self.envs[d]))
            if resume:
                self._resume(d)
        # a resumed run draws new random numbers, not the first run's again
        self.rng = np.random.default_rng([train.seed, self.episode_count])
        self.key = jax.random.fold_in(jax.random.PRNGKey(train.seed), self.episode_count)

    def _resume(self, direction: str) -> None:
        """The direction's buffer from its replay, its agent from its newest checkpoint."""
        held = self.replay[direction].reload(self.buffers[direction].insert)
        self.steps[direction] = held.env_steps
        self.episode_count += len(self.replay[direction].store)
        checkpoint = latest_checkpoint(self.cfg.path / direction)
        if checkpoint is not None:
            self.agents[direction], meta = load_checkpoint(checkpoint)
            self.updates[direction] = meta["updates"]

    def _with_reward(self, env: gym.Env, classifier: str | None) -> gym.Env:
        if classifier is None:
            return env
        from serl.train.reward_model import learned_reward_env

        return learned_reward_env(env, classifier, threshold=self.cfg.reward_threshold)

    @property
    def scene_resets(self) -> int | None:
        """How often the sim placed the cube (1 in a reset-free run); None if not a sim."""
        return getattr(self.envs["forward"].unwrapped, "scene_resets", None)

    def agent(self, direction: str, example_obs: Any) -> Any:
        """The direction's agent (created on its first episode)."""
        if direction not in self.agents:
            seed = self.cfg.train.seed * 2 + DIRECTIONS.index(direction)
            self.agents[direction] = agents.create(
                self.cfg.agent_config(direction), example_obs, self.action_dim, seed
            )
        return self.agents[direction]

    def _act(self, direction: str, obs: Any) -> np.ndarray:
        if self.steps[direction] < self.cfg.train.random_steps:
            return np.asarray(self.envs[direction].action_space.sample(), np.float32)
        self.key, key = jax.random.split(self.key)
        return np.asarray(sample_actions(self.agents[direction], obs, key), np.float32)

    def _train(self, direction: str) -> None:
        allowed = self.cfg.train.updates_allowed(self.steps[direction])
        agent, buffers = self.agents[direction], self.buffers[direction]
        while self.updates[direction] < allowed and len(buffers.online) > 0:
            agent, _ = agents.update(
                agent, buffers.sampler.sample(agent.config.sample_size, self.rng)
            )
            self.updates[direction] += 1
        self.agents[direction] = agent

    def run_episode(self, direction: str) -> dict[str, Any]:
        """One episode of `direction` from wherever the scene is; returns its record."""
        env = self.envs[direction]
        learned = False
        updates_before = self.updates[direction]

        def act(obs: Any) -> np.ndarray:
            self.agent(direction, obs)
            return self._act(direction, obs)

        def on_step(step: Step) -> None:
            nonlocal learned
            t = {
                "observations": step.obs,
                "actions": step.action,
                "rewards": np.float32(step.reward),
                "terminated": step.terminated,
                "truncated": step.truncated,
                "next_observations": step.next_obs,
            }
            self.buffers[direction].online.insert(**t)  # its own buffer only
            if self.on_transition is not None:
                self.on_transition(direction, t)
            self.steps[direction] += 1
            learned = learned or bool(step.info.get("learned_success", False))
            self._train(direction)

        seed = (
            None if self._started else self.cfg.train.seed
        )  # seeded once: later resets keep state
        options = {"task": direction} if self.shared else None
        run = run_episode(env, act, seed, options, on_step=on_step)
        self._started = True
        self.replay[direction].append_batch(
            direction, self.episode_count + 1, [Fragment(run.episode(), [])]
        )
        every = self.cfg.train.checkpoint_every
        if self.updates[direction] // every > updates_before // every:
            self._checkpoint(direction)
        start_block, end_block = run.infos[0].get("block_pos"), run.infos[-1].get("block_pos")
        record = {
            "episode": self.episode_count,
            "direction": direction,
            "env_step": sum(self.steps.values()),
            "steps": len(run),
            "return": run.total_reward,
            "success": run.success,
            "learned_success": learned,
            "updates": self.updates[direction],
            "wall_s": round(time.monotonic() - self.start_time, 2),
            "start_block": None if start_block is None else np.asarray(start_block).tolist(),
            "end_block": None if end_block is None else np.asarray(end_block).tolist(),
        }
        self.episodes.append(record)
        self.episode_count += 1
        return record

    def _checkpoint(self, direction: str) -> None:
        """Checkpoint the direction's agent (a no-op at an update count already saved)."""
        meta = {"env_steps": self.steps[direction]}
        save_checkpoint(
            self.cfg.path / direction, self.agents[direction], self.updates[direction], meta
        )

    def run(self, episodes: int | None = None) -> list[dict[str, Any]]:
        """Alternate forward and backward episodes until `env_steps` (or `episodes`) are done."""
        i = 0
        while sum(self.steps.values()) < self.cfg.train.env_steps and (
            episodes is None or i < episodes
        ):
            record = self.run_episode(DIRECTIONS[self.episode_count % 2])
            append_row(self.cfg.path / "episodes.csv", record)
            log.info(
                "episode %d %s: %d steps, success %s",
                record["episode"],
                record["direction"],
                record["steps"],
                record["success"],
            )
            i += 1
        return self.episodes

    def save(self) -> dict[str, Path]:
        """Both agents as they end: RUN_DIR/{forward,backward}/agent, and a checkpoint each (a
        resumed run goes on from them)."""
        for d in self.agents:
            self._checkpoint(d)
        return {
            d: agent_checkpoint.save(s, self.cfg.path / d / "agent") for d, s in self.agents.items()
        }

    def close(self) -> None:
        """Close the env(s) and the replay stores."""
        for env in {id(e): e for e in self.envs.values()}.values():
            env.close()
        for replay in self.replay.values():
            replay.close()


def append_row(path: Path, record: dict[str, Any]) -> None:
    """Append one episode to RUN_DIR/episodes.csv (header on first write)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    new = not path.exists()
    with path.open("a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=EPISODE_COLUMNS, extrasaction="ignore")
        if new:
            writer.writeheader()
        writer.writerow(record)


def train_forward_backward(cfg: ForwardBackwardConfig, resume: bool = False) -> dict[str, Any]:
    """The whole run: alternate until `env_steps`, checkpoint both agents, summarise. `resume`
    continues the run in `cfg`'s run dir (its saved config, with `cfg`'s env steps)."""
    if resume:
        saved = ForwardBackwardConfig.load(cfg.path)
        train = dataclasses.replace(saved.train, env_steps=cfg.train.env_steps)
        cfg = dataclasses.replace(saved, train=train)
    elif any(
        latest_checkpoint(cfg.path / d) or (cfg.path / d / "replay").exists() for d in DIRECTIONS
    ):
        raise PathExists(
            f"{cfg.path} already holds a run; continue it with --resume or choose another --run-dir"
        )
    cfg.save()
    trainer = ForwardBackwardTrainer(cfg, resume=resume)
    try:
        trainer.run()
        trainer.save()
    finally:
        trainer.close()
    with (cfg.path / "episodes.csv").open(newline="") as f:
        episodes = list(csv.DictReader(f))  # the whole run's, a resumed one's too
    summary: dict[str, Any] = {
        "run_dir": str(cfg.path),
        "episodes": len(episodes),
        "scene_resets": trainer.scene_resets,
    }
    for d in DIRECTIONS:
        mine = [e for e in episodes if e["direction"] == d]
        last = mine[-10:]
        summary[d] = {
            "episodes": len(mine),
            "env_steps": trainer.steps[d],
            "updates": trainer.updates[d],
            "success_last_10": float(np.mean([e["success"] == "True" for e in last]))
            if last
            else 0.0,
        }
    (cfg.path / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary
