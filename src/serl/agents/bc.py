"""Behaviour cloning: a Gaussian policy (optionally on an image encoder) fit by negative
log-likelihood of the demonstrated actions; the MSE of the policy's mode is logged."""

from __future__ import annotations

import dataclasses
import functools
from typing import ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from flax import struct

from serl.agents.augment import shift_observations
from serl.agents.common import (
    AgentSpec,
    Batch,
    EncoderConfig,
    Params,
    ParamState,
    apply_if_finite,
    encode,
    init_encoder,
    load_pretrained_backbones,
    make_encoder,
)
from serl.agents.policy import ActorState
from serl.networks import GaussianPolicy, ObsNorm


@dataclasses.dataclass(frozen=True)
class BCConfig:
    """BC hyperparameters (the original's: MLP 256x256, untransformed Gaussian, Adam 3e-4)."""

    agent: ClassVar[str] = "bc"

    hidden_dims: tuple[int, ...] = (256, 256)
    activation: str = "swish"
    layer_norm: bool = False
    dropout_rate: float = 0.0
    lr: float = 3e-4
    std_min: float = 1e-5
    std_max: float = 5.0
    batch_size: int = 256
    encoder: EncoderConfig | None = None
    obs_norm: ObsNorm | None = None  # per-key standardisation, e.g. from the demos' statistics
    shift_pad: int = 0

    @property
    def sample_size(self) -> int:
        """Transitions per update."""
        return self.batch_size

    def make_encoder(self, spec: AgentSpec) -> nn.Module:
        """The observation encoder (trained through the BC loss)."""
        return make_encoder(self.encoder, spec, self.obs_norm)

    def make_policy(self, action_dim: int) -> GaussianPolicy:
        """A plain (unsquashed) Gaussian policy head; actions are clipped to [-1, 1] when used."""
        return GaussianPolicy(
            action_dim=action_dim,
            hidden_dims=self.hidden_dims,
            activation=self.activation,
            use_layer_norm=self.layer_norm,
            dropout_rate=self.dropout_rate,
            std_min=self.std_min,
            std_max=self.std_max,
            tanh_squash=False,
        )


class BCState(struct.PyTreeNode):
    """policy.params = {"encoder": ..., "actor": ...}; `frozen` as in SAC."""

    policy: ParamState
    frozen: Params
    rng: jax.Array
    step: jax.Array
    skipped: jax.Array
    config: BCConfig = struct.field(pytree_node=False)
    spec: AgentSpec = struct.field(pytree_node=False)

    def actor_state(self) -> ActorState:
        """The parameters an actor needs (device arrays, no copy)."""
        return ActorState(self.policy.params, self.frozen, self.config, self.spec)


def init_state(
    config: BCConfig, spec: AgentSpec, seed: int, load_pretrained: bool = True
) -> BCState:
    """Freshly initialised state (pure with `load_pretrained=False`)."""
    state = random_state(config, spec, seed)
    if not load_pretrained:
        return state
    params, frozen = state.policy.params, state.frozen
    encoder, frozen = load_pretrained_backbones(config.encoder, spec, params["encoder"], frozen)
    policy = state.policy.replace(params={**params, "encoder": encoder})
    return state.replace(policy=policy, frozen=frozen)


@functools.partial(jax.jit, static_argnums=(0, 1))
def random_state(config: BCConfig, spec: AgentSpec, seed: int) -> BCState:
    """A fresh state with random backbones, as one compiled program (see `sac.random_state`)."""
    encoder, policy = config.make_encoder(spec), config.make_policy(spec.action_dim)
    rng, k_enc, k_actor = jax.random.split(jax.random.PRNGKey(seed), 3)
    enc_params, frozen = init_encoder(encoder, k_enc, spec, config.encoder)
    features = encode(encoder, enc_params, frozen, spec.example(), False, None)
    params = {"encoder": enc_params, "actor": policy.init(k_actor, features, False)["params"]}
    return BCState(
        policy=ParamState.create(params, config.lr),
        frozen=frozen,
        rng=rng,
        step=jnp.zeros((), jnp.int32),
        skipped=jnp.zeros((), jnp.int32),
        config=config,
        spec=spec,
    )


@functools.partial(jax.jit, donate_argnums=0)
def update(state: BCState, batch: Batch) -> tuple[BCState, dict[str, jax.Array]]:
    """One NLL step on `batch` (needs observations and actions). Donates `state`."""
    config, spec = state.config, state.spec
    encoder, policy = config.make_encoder(spec), config.make_policy(spec.action_dim)
    rng, k_aug, k_drop, k_pol = jax.random.split(state.rng, 4)
    actions = jnp.asarray(batch["actions"], jnp.float32)
    if actions.shape[1:] != (spec.action_dim,):
        raise ValueError(f"batch actions shape {actions.shape} != (N, {spec.action_dim})")
    obs = {"observations": batch["observations"]}
    obs = shift_observations(obs, k_aug, spec.image_keys(config.encoder), config.shift_pad)

    def loss_fn(params: Params) -> tuple[jax.Array, jax.Array]:
        features = encode(
            encoder, params["encoder"], state.frozen, obs["observations"], True, k_drop
        )
        dist = policy.apply({"params": params["actor"]}, features, True, rngs={"dropout": k_pol})
        nll = -jnp.mean(dist.log_prob(actions))
        mse = jnp.mean(jnp.sum((dist.mode() - actions) ** 2, axis=-1))
        return nll, mse

    (loss, mse), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.policy.params)
    new_policy, ok = apply_if_finite(state.policy, grads, loss)
    skip = jnp.logical_not(ok).astype(jnp.int32)
    state = state.replace(
        policy=new_policy, rng=rng, step=state.step + 1, skipped=state.skipped + skip
    )
    return state, {
        "bc/nll": loss,
        "bc/mse": mse,
        "bc/grad_norm": optax.tree.norm(grads),
        "bc/skipped": skip,
        "nonfinite/skipped_total": state.skipped,
    }
