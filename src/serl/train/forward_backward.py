"""Reset-free forward/backward training: two agents undo each other's work, nobody resets the scene.

One process steps one scene. Episodes alternate forward, backward, forward, ...: each starts
where the other ended (an env reset moves only the arm). Each direction has its own agent,
replay buffer (and optional demo buffer) and reward: its own learned-reward classifier, or
the env's reward (a simulator's truth) when none is given. Updates for a direction run
during its own episodes at `updates_per_env_step`.

Sim: `serl/PandaBinRelocation[Vision]-v0`, one env whose task is chosen per episode with
reset options. Real robot: `backward_env_id` names a second env over the same robot (e.g.
serl/FrankaBinRelocationForward-v0 and serl/FrankaBinRelocationBackward-v0).

RUN_DIR holds fb_config.json, episodes.csv (one row per episode) and, at the end,
{forward,backward}/agent (agent checkpoints with their config JSON).
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
from typing import Any

import gymnasium as gym
import jax
import numpy as np

from serl.agents import api as agents
from serl.agents import checkpoint as agent_checkpoint
from serl.agents.policy import sample_actions
from serl.data import EpisodeStore, FrameReplayBuffer, MixedSampler, ReplayBuffer, load_episodes
from serl.data.replay import Buffer
from serl.dataclass_json import merge
from serl.train.config import DEFAULT_PRESET
from serl.train.envs import env_schema, make_env
from serl.train.rollout import Step, run_episode

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


@dataclass(frozen=True)
class ForwardBackwardConfig:
    """Everything a forward/backward run needs; written to RUN_DIR/fb_config.json."""

    env_id: str = "serl/PandaBinRelocationVision-v0"
    backward_env_id: str | None = None  # a second env for the backward task (real robot)
    agent: str = "drq"
    preset: str | None = None  # agent preset; None: the agent's default
    agent_overrides: dict[str, Any] = field(default_factory=dict)
    forward_classifier: str | None = None  # saved reward classifiers; None: the env's reward
    backward_classifier: str | None = None
    reward_threshold: float | None = None  # None: each classifier's own threshold
    forward_demos: str | None = None  # episode stores of demos per direction
    backward_demos: str | None = None
    demo_fraction: float = 0.5
    env_steps: int = 20_000  # both directions together
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    run_dir: str = "runs/forward_backward"
    random_steps: int = 1_000  # per direction
    training_starts: int = 500  # per direction: its online transitions before its first update
    updates_per_env_step: float = 0.5
    replay_capacity: int = 200_000

    def __post_init__(self) -> None:
        if self.env_steps < 1 or self.updates_per_env_step <= 0 or self.training_starts < 0:
            raise ValueError("env_steps >= 1, updates_per_env_step > 0, training_starts >= 0")
        if self.agent not in DEFAULT_PRESET:
            raise ValueError(f"agent must be one of {sorted(DEFAULT_PRESET)}, got {self.agent!r}")

    @property
    def agent_config(self) -> agents.AgentConfig:
        """The agent hyperparameters (same for both directions)."""
        preset = agents.get_preset(self.preset or DEFAULT_PRESET[self.agent])
        return merge(preset, self.agent_overrides, "agent_overrides")

    @property
    def path(self) -> Path:
        """The run directory."""
        return Path(self.run_dir)

    def save(self) -> Path:
        """Write RUN_DIR/fb_config.json."""
        self.path.mkdir(parents=True, exist_ok=True)
        out = self.path / "fb_config.json"
        out.write_text(json.dumps(dataclasses.asdict(self), indent=2) + "\n")
        return out


Transition = dict[str, Any]


class ForwardBackwardTrainer:
    """Two agents, two buffers, one scene: alternate episodes and train each on its own data."""

    def __init__(
        self,
        cfg: ForwardBackwardConfig,
        on_transition: Callable[[str, Transition], None] | None = None,
    ) -> None:
        self.cfg = cfg
        self.on_transition = on_transition
        self.shared = cfg.backward_env_id is None
        base = make_env(cfg.env_id, **cfg.env_kwargs)
        other = base if self.shared else make_env(cfg.backward_env_id, **cfg.env_kwargs)
        self.envs = {
            "forward": self._with_reward(base, cfg.forward_classifier),
            "backward": self._with_reward(other, cfg.backward_classifier),
        }
        self.schema = env_schema(base)
        self.action_dim = int(np.prod(base.action_space.shape))
        self.agents: dict[str, Any] = {}
        self.buffers: dict[str, Buffer] = {}
        self.samplers: dict[str, Any] = {}
        self.steps = dict.fromkeys(DIRECTIONS, 0)
        self.updates = dict.fromkeys(DIRECTIONS, 0)
        self.episodes: list[dict[str, Any]] = []
        self.rng = np.random.default_rng(cfg.seed)
        self.key = jax.random.PRNGKey(cfg.seed)
        self._started = False
        self.start_time = time.monotonic()
        for i, d in enumerate(DIRECTIONS):
            self.buffers[d] = self._buffer()
            demos = cfg.forward_demos if d == "forward" else cfg.backward_demos
            self.samplers[d] = self._sampler(self.buffers[d], demos)
            self.envs[d].action_space.seed(cfg.seed * 1000 + i)

    def _with_reward(self, env: gym.Env, classifier: str | None) -> gym.Env:
        if classifier is None:
            return env
        from serl.train.reward_model import learned_reward_env

        return learned_reward_env(env, classifier, threshold=self.cfg.reward_threshold)

    def _buffer(self) -> Buffer:
        if self.schema.image_keys:
            return FrameReplayBuffer(self.schema, self.cfg.replay_capacity)
        return ReplayBuffer(self.schema, self.cfg.replay_capacity)

    def _sampler(self, online: Buffer, demos: str | None) -> Any:
        if demos is None:
            return online
        demo = self._buffer()
        with EpisodeStore.open(demos) as store:
            if store.schema != self.schema:
                raise ValueError(f"{demos}: demo schema differs from {self.cfg.env_id}'s")
            load_episodes(demo, store)
        return MixedSampler(demo, online, self.cfg.demo_fraction)

    @property
    def scene_resets(self) -> int | None:
        """How often the sim placed the cube (1 in a reset-free run); None if not a sim."""
        return getattr(self.envs["forward"].unwrapped, "scene_resets", None)

    def agent(self, direction: str, example_obs: Any) -> Any:
        """The direction's agent (created on its first episode)."""
        if direction not in self.agents:
            seed = self.cfg.seed * 2 + DIRECTIONS.index(direction)
            self.agents[direction] = agents.create(
                self.cfg.agent_config, example_obs, self.action_dim, seed
            )
        return self.agents[direction]

    def _act(self, direction: str, obs: Any) -> np.ndarray:
        if self.steps[direction] < self.cfg.random_steps:
            return np.asarray(self.envs[direction].action_space.sample(), np.float32)
        self.key, key = jax.random.split(self.key)
        return np.asarray(sample_actions(self.agents[direction], obs, key), np.float32)

    def _train(self, direction: str) -> None:
        online = self.steps[direction] - self.cfg.training_starts
        allowed = int(self.cfg.updates_per_env_step * online) if online >= 0 else 0
        sample_size = self.cfg.agent_config.sample_size
        while self.updates[direction] < allowed and len(self.buffers[direction]) > 0:
            batch = self.samplers[direction].sample(sample_size, self.rng)
            self.agents[direction], _ = agents.update(self.agents[direction], batch)
            self.updates[direction] += 1

    def run_episode(self, direction: str) -> dict[str, Any]:
        """One episode of `direction` from wherever the scene is; returns its record."""
        env = self.envs[direction]
        learned = False

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
            self.buffers[direction].insert(**t)  # this direction's data: its own buffer only
            if self.on_transition is not None:
                self.on_transition(direction, t)
            self.steps[direction] += 1
            learned = learned or bool(step.info.get("learned_success", False))
            self._train(direction)

        seed = None if self._started else self.cfg.seed  # seeded once: later resets keep state
        options = {"task": direction} if self.shared else None
        run = run_episode(env, act, seed, options, on_step=on_step, keep=False)
        self._started = True
        start_block, end_block = run.infos[0].get("block_pos"), run.infos[-1].get("block_pos")
        record = {
            "episode": len(self.episodes),
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
        return record

    def run(self, episodes: int | None = None) -> list[dict[str, Any]]:
        """Alternate forward and backward episodes until `env_steps` (or `episodes`) are done."""
        i = 0
        while sum(self.steps.values()) < self.cfg.env_steps and (episodes is None or i < episodes):
            record = self.run_episode(DIRECTIONS[len(self.episodes) % 2])
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
        """Checkpoint both agents under RUN_DIR/{forward,backward}/agent."""
        return {
            d: agent_checkpoint.save(s, self.cfg.path / d / "agent") for d, s in self.agents.items()
        }

    def close(self) -> None:
        """Close the env(s)."""
        for env in {id(e): e for e in self.envs.values()}.values():
            env.close()


def append_row(path: Path, record: dict[str, Any]) -> None:
    """Append one episode to RUN_DIR/episodes.csv (header on first write)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    new = not path.exists()
    with path.open("a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=EPISODE_COLUMNS, extrasaction="ignore")
        if new:
            writer.writeheader()
        writer.writerow(record)


def train_forward_backward(cfg: ForwardBackwardConfig) -> dict[str, Any]:
    """The whole run: alternate until `env_steps`, checkpoint both agents, summarise."""
    cfg.save()
    trainer = ForwardBackwardTrainer(cfg)
    try:
        episodes = trainer.run()
        trainer.save()
    finally:
        trainer.close()
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
            "success_last_10": float(np.mean([e["success"] for e in last])) if last else 0.0,
        }
    (cfg.path / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary
