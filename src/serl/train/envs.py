"""Build any registered gymnasium env the way serl's agents and buffers expect it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.wrappers import RescaleAction

import serl.envs  # noqa: F401  (registers the serl/ ids)
from serl.data import Episode, Schema, stack_frames
from serl.envs import SimHumanRules, SimulatedHuman
from serl.errors import ConfigError
from serl.wrappers import Chunking, InterventionWrapper, control_period
from serl.wrappers.observations import DictObservation

if TYPE_CHECKING:
    from serl.train.run_files import InterventionConfig


# Sim tasks whose default (sparse) variant ends an episode at its first success frame: labelled
# recording and learned rewards use the dense variant, which goes on past success (positives are
# not rare, and the classifier, not the simulator, ends episodes).
LABEL_ENV_KWARGS: dict[str, dict[str, Any]] = {
    "serl/PandaPickCube-v0": {"reward_type": "dense"},
    "serl/PandaPickCubeVision-v0": {"reward_type": "dense"},
}


def make_env(env_id: str, **kwargs: Any) -> gym.Env:
    """`gym.make` plus actions rescaled to [-1, 1] and dict-of-Box observations."""
    try:
        env = gym.make(env_id, **kwargs)
    except (gym.error.Error, TypeError) as e:  # an unknown id; arguments the env does not take
        raise ConfigError(f"cannot make env {env_id!r}: {e}") from e
    if not isinstance(env.action_space, spaces.Box):
        raise ConfigError(
            f"{env_id}: serl trains on Box action spaces, got {type(env.action_space).__name__}"
        )
    low, high = env.action_space.low, env.action_space.high
    if not (np.all(np.isfinite(low)) and np.all(np.isfinite(high))):
        raise ConfigError(f"{env_id}: the action space must be bounded, got [{low}, {high}]")
    if not (np.allclose(low, -1.0) and np.allclose(high, 1.0)):
        # the policy's tanh squashing lives in [-1, 1]
        env = RescaleAction(env, -1.0, 1.0)
    return DictObservation(env)


def env_schema(env: gym.Env) -> Schema:
    """The replay schema of an env made by `make_env` (float observations stored as float32)."""
    obs_space = env.observation_space
    observations = {
        key: (space.shape, np.float32 if np.dtype(space.dtype).kind == "f" else space.dtype)
        for key, space in obs_space.spaces.items()
    }
    return Schema.create(observations, env.action_space.shape)


def chunk_env(env: gym.Env, obs_horizon: int = 1, act_exec_horizon: int = 1) -> gym.Env:
    """`env` under Chunking when either horizon is > 1; otherwise `env` itself."""
    if obs_horizon == 1 and act_exec_horizon == 1:
        return env
    return Chunking(env, obs_horizon, act_exec_horizon)


def frame_schema(schema: Schema, obs_horizon: int) -> Schema:
    """The per-frame schema of a chunked env's schema: each key's leading time axis dropped."""
    if obs_horizon == 1:
        return schema
    observations = {k: (s.shape[1:], s.dtype) for k, s in schema.observations}
    return Schema.create(observations, schema.action_shape)


def chunk_episode(episode: Episode, obs_horizon: int, act_exec_horizon: int) -> Episode:
    """A per-env-step episode as Chunking would have delivered it, executing the same actions.

    Agent step j runs env steps jK .. jK+K-1 (fewer at the episode's end); its action is their
    actions flattened, a cut-short last chunk padded by repeating its last action (the env
    never executes the padding); rewards are summed; observations are stacks of the frames at
    agent-step boundaries, padded with the reset frame.
    """
    k = act_exec_horizon
    if obs_horizon == 1 and k == 1:
        return episode
    n = len(episode)
    starts = np.arange(0, n, k)
    ends = np.minimum(starts + k, n)
    steps = np.minimum(starts[:, None] + np.arange(k)[None, :], ends[:, None] - 1)
    frames = np.append(starts, n)
    return Episode(
        observations={
            key: stack_frames(v[frames], obs_horizon) for key, v in episode.observations.items()
        },
        actions=episode.actions[steps].reshape(len(starts), -1),
        rewards=np.add.reduceat(episode.rewards.astype(np.float64), starts).astype(np.float32),
        terminated=episode.terminated[ends - 1],
        truncated=episode.truncated[ends - 1],
    )


def check_intervention_chunks(kind: str, act_exec_horizon: int) -> None:
    """Refuse interventions under action chunks: a person replaces single env actions."""
    if kind != "none" and act_exec_horizon > 1:
        raise ConfigError(
            f"intervention ({kind}) replaces single env actions: it cannot run with action "
            f"chunks (act_exec_horizon {act_exec_horizon}); use act_exec_horizon 1"
        )


def wrap_intervention(env: gym.Env, cfg: InterventionConfig, seed: int) -> gym.Env:
    """`env` under an InterventionWrapper driven by the configured intervener (or as it is)."""
    if cfg.kind == "none":
        return env
    if cfg.kind == "sim":
        intervener: Any = SimulatedHuman(env, SimHumanRules(**cfg.sim_rules), seed=seed)
    else:
        from serl.robot.teleop import DeviceIntervener, make_device  # the robot stack: lazily

        intervener = DeviceIntervener(
            make_device(cfg.kind),
            int(np.prod(env.action_space.shape)),
            control_period(env),
            hold_s=cfg.hold_s,
            scale=cfg.action_scale,
        )
    return InterventionWrapper(env, intervener)
