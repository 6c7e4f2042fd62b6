"""What an actor process needs to act: the policy's parameters (and the encoder's) only.

`ActorState` holds the policy head, the observation encoder's trainable parameters and, kept
apart because they never change, the frozen backbone parameters: a learner can send `frozen`
once and afterwards only `params` (see `actor_params` / `frozen_params` in `serl.agents`).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from serl.agents.common import AgentSpec, Params, batch_spec, encode


class ActorState(struct.PyTreeNode):
    """Policy parameters {"encoder": ..., "actor": ...}, frozen encoder parameters, config, spec."""

    params: Params
    frozen: Params
    config: Any = struct.field(pytree_node=False)
    spec: AgentSpec = struct.field(pytree_node=False)

    @classmethod
    def from_params(
        cls, config: Any, spec: AgentSpec, params: Params, frozen: Params
    ) -> ActorState:
        """Rebuild on an actor from received (host) arrays; moves them to the device once."""
        return cls(
            params=jax.device_put(params), frozen=jax.device_put(frozen), config=config, spec=spec
        )


@functools.partial(jax.jit, static_argnames="deterministic")
def _act(actor: ActorState, obs: Mapping[str, jax.Array], key: jax.Array, deterministic: bool):
    encoder = actor.config.make_encoder(actor.spec)
    policy = actor.config.make_policy(actor.spec.action_dim)
    features = encode(encoder, actor.params["encoder"], actor.frozen, obs, False, None)
    dist = policy.apply({"params": actor.params["actor"]}, features, False)
    actions = dist.mode() if deterministic else dist.sample(seed=key)
    return jnp.clip(actions, -1.0, 1.0)


def _as_actor(state: Any) -> ActorState:
    return state if isinstance(state, ActorState) else state.actor_state()


def _batched(actor: ActorState, obs: Mapping[str, Any]) -> tuple[dict[str, np.ndarray], bool]:
    """Validate and batch an observation whose cameras are frames or, for a cached-feature
    agent, the frozen backbone's feature maps (an actor computes those once and sends them)."""
    spec, encoder = actor.spec, getattr(actor.config, "encoder", None)
    if encoder is not None and encoder.cache_features and isinstance(obs, Mapping):
        cams = spec.image_keys(encoder)
        if cams and getattr(obs.get(cams[0]), "dtype", None) not in (None, np.uint8):
            spec = batch_spec(spec, encoder)
    return spec.batch_observation(obs)


def sample_actions(state: Any, obs: Mapping[str, Any], key: jax.Array) -> np.ndarray:
    """Stochastic actions in [-1, 1] for one observation or a batch (agent or actor state)."""
    actor = _as_actor(state)
    batched, single = _batched(actor, obs)
    actions = np.asarray(_act(actor, batched, key, False))
    return actions[0] if single else actions


_NO_KEY = np.zeros(2, np.uint32)  # a raw PRNG key; unused by the deterministic path


def eval_actions(state: Any, obs: Mapping[str, Any]) -> np.ndarray:
    """Deterministic actions (the policy's mode) in [-1, 1] for one observation or a batch."""
    actor = _as_actor(state)
    batched, single = _batched(actor, obs)
    actions = np.asarray(_act(actor, batched, _NO_KEY, True))
    return actions[0] if single else actions
