"""The one agent registry: an agent's name (its config's `agent`) -> config class, initialiser and
learner step. Creating, updating and restoring agents all dispatch through it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from serl.agents import bc, gripper, sac, vice
from serl.agents.bc import BCConfig
from serl.agents.drq import DrQConfig
from serl.agents.gripper import GripperSACConfig
from serl.agents.sac import SACConfig
from serl.agents.vice import VICEConfig


@dataclass(frozen=True)
class AgentKind:
    """What the training layer needs of one kind of agent."""

    config: type
    init: Callable[..., Any]  # (config, spec, seed, load_pretrained=True) -> state
    update: Callable[[Any, Any], tuple[Any, dict[str, Any]]]  # (state, batch), jitted


KINDS: dict[str, AgentKind] = {
    "sac": AgentKind(SACConfig, sac.init_state, sac.update),
    "drq": AgentKind(DrQConfig, sac.init_state, sac.update),  # SAC's step on an image encoder
    "sac_gripper": AgentKind(GripperSACConfig, gripper.init_state, gripper.update),
    "vice": AgentKind(VICEConfig, vice.init_state, vice.update),
    "bc": AgentKind(BCConfig, bc.init_state, bc.update),
}


def kind(name: str) -> AgentKind:
    """The registered agent called `name`."""
    try:
        return KINDS[name]
    except KeyError:
        raise ValueError(f"unknown agent {name!r}; one of {sorted(KINDS)}") from None


def kind_of(config: Any) -> AgentKind:
    """The registered agent a config belongs to (a state's: `state.config`)."""
    registered = KINDS.get(getattr(config, "agent", None))
    if registered is None or type(config) is not registered.config:
        raise TypeError(f"not an agent config: {type(config).__name__}")
    return registered
