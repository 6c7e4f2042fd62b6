"""JAX agents: frozen config + pytree state + pure jitted update.

Typical use by the training layer:

    config = PRESETS["sac_state"]
    state = create(config, example_obs, action_dim, seed)    # example_obs: one unbatched dict
    state, metrics = update(state, batch)                     # batch of config.sample_size
    action = sample_actions(state, obs, key)                  # or eval_actions(state, obs)
    params, frozen = actor_params(state), frozen_params(state)   # publish; frozen only once
    actor = actor_from_params(config, state.spec, params, frozen)  # on the actor side
    save(state, run_dir / "ckpt"); state = restore(run_dir / "ckpt")
"""

from serl.agents.api import (
    AgentConfig,
    AgentState,
    actor_from_params,
    actor_params,
    create,
    frozen_params,
    get_preset,
    update,
)
from serl.agents.bc import BCConfig, BCState
from serl.agents.checkpoint import config_from_dict, config_to_dict, load_meta, restore, save
from serl.agents.common import AgentSpec, EncoderConfig
from serl.agents.drq import DrQConfig
from serl.agents.gripper import GripperSACConfig, GripperSACState
from serl.agents.persist import spec_from_dict, spec_to_dict
from serl.agents.policy import ActorState, eval_actions, sample_actions
from serl.agents.presets import PRESETS
from serl.agents.sac import SACConfig, SACState
from serl.agents.vice import VICEConfig, VICEState

__all__ = [
    "PRESETS",
    "ActorState",
    "AgentConfig",
    "AgentSpec",
    "AgentState",
    "BCConfig",
    "BCState",
    "DrQConfig",
    "EncoderConfig",
    "GripperSACConfig",
    "GripperSACState",
    "SACConfig",
    "SACState",
    "VICEConfig",
    "VICEState",
    "actor_from_params",
    "actor_params",
    "config_from_dict",
    "config_to_dict",
    "create",
    "eval_actions",
    "frozen_params",
    "get_preset",
    "load_meta",
    "restore",
    "sample_actions",
    "save",
    "spec_from_dict",
    "spec_to_dict",
    "update",
]
