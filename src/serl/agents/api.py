"""The agents' public API for the training layer: create, update, act, publish, save, restore."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax

from serl.agents import bc, gripper, sac, vice
from serl.agents.actor import ActorState
from serl.agents.bc import BCConfig, BCState
from serl.agents.common import Batch, Params
from serl.agents.gripper import GripperSACConfig, GripperSACState
from serl.agents.presets import PRESETS
from serl.agents.sac import SACConfig, SACState
from serl.agents.vice import VICEConfig, VICEState

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
    """Build an agent (SAC, DrQ, SAC + gripper critic, VICE or BC by config type) for one
    unbatched example observation."""
    if isinstance(config, GripperSACConfig):  # before SACConfig: it is one
        return gripper.create(config, example_obs, action_dim, seed)
    if isinstance(config, VICEConfig):  # before SACConfig: it is one
        return vice.create(config, example_obs, action_dim, seed)
    if isinstance(config, SACConfig):
        return sac.create(config, example_obs, action_dim, seed)
    if isinstance(config, BCConfig):
        return bc.create(config, example_obs, action_dim, seed)
    raise TypeError(f"not an agent config: {type(config).__name__}")


def update(state: AgentState, batch: Batch) -> tuple[AgentState, dict[str, jax.Array]]:
    """One learner step on a batch of `state.config.sample_size` transitions (jitted; donates
    `state`, so always rebind). Metrics stay on device: fetch them only when logging."""
    if isinstance(state, GripperSACState):
        return gripper.update(state, batch)
    if isinstance(state, VICEState):  # its batch also carries "goal_observations"
        return vice.update(state, batch)
    if isinstance(state, SACState):
        return sac.update(state, batch)
    if isinstance(state, BCState):
        return bc.update(state, batch)
    raise TypeError(f"not an agent state: {type(state).__name__}")


def actor_params(state: AgentState) -> Params:
    """Host (numpy) copy of what an actor needs besides the frozen part: {"encoder", "actor"}."""
    return jax.device_get(state.actor_state().params)


def frozen_params(state: AgentState) -> Params:
    """Host copy of the never-changing parameters (frozen backbones): send them once."""
    return jax.device_get(state.frozen)


def actor_from_params(config: AgentConfig, spec: Any, params: Params, frozen: Params) -> ActorState:
    """An actor-side policy from received parameters (see `ActorState.from_params`)."""
    return ActorState.from_params(config, spec, params, frozen)
