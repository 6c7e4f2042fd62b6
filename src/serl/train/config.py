"""The training run's configuration, its per-env recipes, and its JSON form in the run dir."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import tyro
from tyro.conf import Positional

from serl.agents import PRESETS, GripperSACConfig, VICEConfig, get_preset
from serl.agents.api import AgentConfig
from serl.dataclass_json import JsonFile, JsonObject, decode, merge
from serl.errors import ConfigError

AgentName = Literal["sac", "drq", "bc", "vice"]
DEFAULT_PRESET = {"sac": "sac_state", "drq": "drq_small", "bc": "bc", "vice": "vice_small"}


@dataclass(frozen=True)
class TrainConfig(JsonFile):
    """Everything a learner and its actors need; written to RUN_DIR/config.json."""

    FILE: ClassVar[str] = "config.json"
    MISSING: ClassVar[str] = "no training config (is this a serl run?)"

    # a serl env id, or any gymnasium env with Box (or dict of Box) spaces
    env_id: Annotated[Positional[str], tyro.conf.arg(metavar="ENV_ID")]
    agent: AgentName = "sac"  # sac (state), drq (cameras), bc, or vice (drq learning its reward)
    preset: str | None = None  # an agent preset of serl.agents.PRESETS; None: the agent's default
    agent_overrides: JsonObject = field(default_factory=dict)  # preset fields to change (nested)
    demos: str | None = None  # an episode store of demonstrations (from record-demos)
    num_demos: int = 0  # scripted demos recorded into RUN_DIR/demos when --demos is not given
    demo_fraction: float = 0.5  # share of each batch drawn from the demos (RLPD)
    goal_examples: str | None = None  # VICE's positives (a store); default: the demos' last frames
    obs_horizon: int = 1  # the agent sees stacks of its last T observations
    act_exec_horizon: int = 1  # each agent step runs a chunk of K env actions open-loop
    env_steps: int = 20_000  # env steps in all, over all actors (agent steps with chunks)
    seed: int = 0  # seeds the envs, the agent and the replay sampler
    run_dir: str = "runs/default"  # the run's directory
    actors: int = 1  # actor processes
    random_steps: int = 1_000  # uniform random actions first (per actor)
    training_starts: int = 1_000  # online transitions before the first update
    updates_per_env_step: float = 0.5  # learner steps per env step: actors wait past it
    pace_slack: int = 200  # env steps an actor may run ahead of the learner
    # the nice value of the actors `serl train` starts: paced by the learner, they run on what its
    # update leaves; 0 for an actor that must hold a robot's control period on a busy machine
    actor_nice: int = 10
    publish_every: int = 1  # learner steps between parameter broadcasts
    checkpoint_every: int = 2_000  # learner steps between checkpoints
    log_every: int = 100  # learner steps between TensorBoard scalars
    eval_every: int = 2_000  # env steps (of actor 0) between evaluations
    eval_episodes: int = 10  # episodes per evaluation
    replay_capacity: int = 1_000_000  # transitions the online buffer holds
    jpeg_quality: int | None = None  # JPEG-compress camera frames in the replay buffer
    normalize_observations: bool = True  # standardise non-image keys with the demos' statistics
    env_kwargs: JsonObject = field(default_factory=dict)  # gym.make arguments (demos' too)
    host: str = "127.0.0.1"  # the learner's address (0.0.0.0 for actors on other machines)
    port: int = 0  # the learner's port; 0: any free port

    def __post_init__(self) -> None:
        checks = {
            "env_steps": self.env_steps >= 1,
            "actors": self.actors >= 1,
            "demo_fraction": 0.0 <= self.demo_fraction < 1.0,
            "updates_per_env_step": self.updates_per_env_step > 0,
            "publish_every": self.publish_every >= 1,
            "actor_nice": 0 <= self.actor_nice <= 19,
            "checkpoint_every": self.checkpoint_every >= 1,
            "eval_every": self.eval_every >= 1,
            "eval_episodes": self.eval_episodes >= 1,
            "training_starts": self.training_starts >= 0,
            "num_demos": self.num_demos >= 0,
            "obs_horizon": self.obs_horizon >= 1,
            "act_exec_horizon": self.act_exec_horizon >= 1,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            values = {name: getattr(self, name) for name in bad}
            raise ConfigError(f"invalid training config values: {values}")
        if self.agent == "bc" and not (self.demos or self.num_demos):
            raise ConfigError("agent 'bc' learns from demonstrations: give --demos or --num-demos")
        self._check_vice()
        if self.act_exec_horizon > 1 and isinstance(self._preset(), GripperSACConfig):
            raise ConfigError(
                "the gripper critic reads one action's last entry: it cannot "
                "train on action chunks (act_exec_horizon > 1)"
            )

    def _preset(self) -> AgentConfig | None:
        return PRESETS.get(self.preset or DEFAULT_PRESET.get(self.agent, ""))

    def _check_vice(self) -> None:
        preset = self._preset()
        if self.agent == "vice" and preset is not None and not isinstance(preset, VICEConfig):
            raise ConfigError(
                f"agent 'vice' needs a VICE preset (e.g. vice_small), got {self.preset!r}"
            )
        if not self.uses_vice:
            if self.goal_examples:
                raise ConfigError("goal_examples are read only by agent 'vice' (--agent vice)")
            return
        if not (self.goal_examples or self.demos or self.num_demos):
            raise ConfigError(
                "agent 'vice' trains its reward classifier on goal examples: give "
                "--goal-examples PATH (an episode store of success frames), or --demos PATH / "
                "--num-demos N (the final frames of their successful episodes)"
            )
        encoder = getattr(self.agent_config, "encoder", None)
        if encoder is not None and encoder.cache_features:
            raise ConfigError(
                "agent 'vice' reads camera frames in its classifier: it cannot run on cached "
                "features (encoder.cache_features) yet; use its preset vice_small"
            )

    @property
    def uses_vice(self) -> bool:
        """Whether the agent is VICE (its learner steps need goal examples)."""
        return self.agent == "vice" or isinstance(self._preset(), VICEConfig)

    def updates_allowed(self, env_steps: int) -> int:
        """Learner steps that `env_steps` online env steps pay for (the pace of every trainer)."""
        online = env_steps - self.training_starts
        return int(self.updates_per_env_step * online) if online >= 0 else 0

    @property
    def chunked(self) -> bool:
        """Whether the run's envs are wrapped in Chunking (stacks and/or action chunks)."""
        return self.obs_horizon > 1 or self.act_exec_horizon > 1

    @property
    def agent_config(self) -> AgentConfig:
        """The agent's hyperparameters: the preset with `agent_overrides` applied."""
        preset = get_preset(self.preset or DEFAULT_PRESET[self.agent])
        try:
            return merge(preset, self.agent_overrides, "agent_overrides")
        except TypeError as e:  # a nested override for a field that is not a config
            raise ConfigError(f"agent_overrides: {e}") from e

    @property
    def path(self) -> Path:
        """The run directory."""
        return Path(self.run_dir)

    def to_json(self) -> dict[str, Any]:
        """Plain JSON-able dict."""
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TrainConfig:
        """Rebuild from `to_json`, refusing unknown keys."""
        return decode(cls, data, "training config")

    def save(self, directory: Path | None = None) -> Path:
        """Write RUN_DIR/config.json."""
        return super().save(directory or self.path)


# The recommended recipe per env id: what `serl train ENV_ID` runs with no other flags.
RECIPES: dict[str, dict[str, Any]] = {
    "serl/PandaPickCube-v0": {
        "agent": "sac",
        "preset": "sac_demo",
        "num_demos": 20,
        "env_steps": 20_000,
        "random_steps": 0,  # the demos already show what to do
        "training_starts": 500,
        "updates_per_env_step": 1.0,
        "eval_every": 1_000,
        "eval_episodes": 20,
    },
    "serl/PandaPickCubeVision-v0": {
        "agent": "drq",
        "preset": "drq_cached",
        "num_demos": 20,
        "env_steps": 30_000,
        "random_steps": 0,
        "training_starts": 500,
        "updates_per_env_step": 1.0,
        "publish_every": 10,  # the original DrQ's schedule was 30
        "eval_every": 2_000,  # 20 camera episodes cost ~a minute on 2 cores
        "eval_episodes": 20,
        "replay_capacity": 200_000,
    },
    # through `serl robot-server --backend sim --scene peg` (faster with --time-scale N)
    "serl/FrankaPegInsertSim-v0": {
        "agent": "drq",
        "preset": "drq_cached",
        "num_demos": 20,  # the scripted expert's, through the server
        "env_steps": 10_000,  # ~17 minutes of control at 10 Hz
        "random_steps": 0,
        "training_starts": 500,
        "updates_per_env_step": 1.0,
        "publish_every": 10,
        "eval_every": 1_000,
        "eval_episodes": 10,
        "actor_nice": 0,  # the actor holds the robot's control period beside the learner
        "replay_capacity": 200_000,
    },
    "Pendulum-v1": {"agent": "sac", "env_steps": 15_000, "eval_every": 1_000},
}


def recipe(env_id: str, resume: bool = False, **overrides: Any) -> TrainConfig:
    """The recommended config for an env id, with explicit overrides (None means unset)."""
    base = dict(RECIPES.get(env_id, {}))
    given = {k: v for k, v in overrides.items() if v is not None}
    if given.get("agent", base.get("agent")) != base.get("agent") and "preset" not in given:
        base.pop("preset", None)  # the recipe's preset is its own agent's: use the agent's default
    values = {**base, **given}
    if "run_dir" not in values:
        values["run_dir"] = default_run_dir(
            env_id, values.get("agent", "sac"), values.get("seed", 0), resume
        )
    return TrainConfig(env_id=env_id, **values)


def default_run_dir(env_id: str, agent: str, seed: int, resume: bool = False) -> str:
    """runs/<env>/<agent>-s<seed>[-N]: the next free one, or with `resume` the newest one."""
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", env_id)
    base = Path("runs") / safe / f"{agent}-s{seed}"

    def numbered(n: int) -> Path:
        return base if n == 1 else base.with_name(f"{base.name}-{n}")

    taken = 0  # runs are created in order: -2 exists only if the plain one does
    while numbered(taken + 1).exists():
        taken += 1
    return str(numbered(taken if resume and taken else taken + 1))
