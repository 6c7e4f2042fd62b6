"""The agents' public API for the training layer: create, update, act, publish, save, restore."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax

from serl.agents.bc import BCConfig, BCState
from serl.agents.common import AgentSpec, Batch, Params
from serl.agents.gripper import GripperSACState
from serl.agents.policy import ActorState
from serl.agents.presets import PRESETS
from serl.agents.registry import kind_of
from serl.agents.sac import SACConfig, SACState
from serl.agents.vice import VICEState

AgentState = SACState | BCState | GripperSACState | VICEState
AgentConfig = SACConfig | BCConfig  # GripperSACConfig is a SACConfig


def get_preset(name: str) -> AgentConfig:
    """A named config from `PRESETS`."""
    try:
        return PRESETS[name]
    except KeyError:
        raise KeyError(f"unknown agent preset {name!r}; choose from {sorted(PRESETS)}") from None


def create(
    config: AgentConfig, example_obs: Mapping[str, Any], action_dim: int, seed: int = 0
) -> AgentState:
    """Build an agent (SAC, DrQ, SAC + gripper critic, VICE or BC: its config's registered
    kind) for one unbatched example observation and |A| actions."""
    return kind_of(config).init(config, AgentSpec.from_example(example_obs, action_dim), seed)


def update(state: AgentState, batch: Batch) -> tuple[AgentState, dict[str, jax.Array]]:
    """One learner step on a batch of `state.config.sample_size` transitions (jitted; donates
    `state`, so always rebind). Metrics stay on device: fetch them only when logging.
    VICE's batch also carries "goal_observations"."""
    return kind_of(state.config).update(state, batch)


def actor_params(state: AgentState) -> Params:
    """Host (numpy) copy of what an actor needs besides the frozen part: {"encoder", "actor"}."""
    return jax.device_get(state.actor_state().params)


def frozen_params(state: AgentState) -> Params:
    """Host copy of the never-changing parameters (frozen backbones): send them once."""
    return jax.device_get(state.frozen)


def actor_from_params(config: AgentConfig, spec: Any, params: Params, frozen: Params) -> ActorState:
    """An actor-side policy from received parameters (see `ActorState.from_params`)."""
    return ActorState.from_params(config, spec, params, frozen)
