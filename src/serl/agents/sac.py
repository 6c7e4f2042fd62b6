"""SAC with REDQ critic ensembles and high update-to-data ratio (the state agent; DrQ extends it).

One `update(state, batch)` call is one learner step: the batch (leading size
`critic_actor_ratio * minibatch`) is split into `critic_actor_ratio` minibatches, the critic
takes one step on each inside a `lax.scan` (with a Polyak target update after each), then the
actor and temperature take one step on the last minibatch (or on the whole batch with
`actor_full_batch`, as the original's state learner did). All in one jit, no host syncs.

Batches are dicts: observations / next_observations (dicts of arrays), actions [N, |A|] in
[-1, 1], rewards [N], masks [N] (1 - terminated: bootstrap through time-limit truncation,
stop at termination). A non-finite loss or gradient skips that sub-update, leaving its
parameters, optimizer state (and, for the critic, target) unchanged, and bumps `skipped`.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, ClassVar, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from flax import struct

from serl.agents.common import (
    AgentSpec,
    Batch,
    EncoderConfig,
    Params,
    ParamState,
    apply_if_finite,
    as_float_batch,
    batch_spec,
    encode,
    init_encoder,
    load_pretrained_backbones,
    make_encoder,
    polyak,
    split_minibatches,
    unrolled_scan,
)
from serl.agents.policy import ActorState
from serl.networks import (
    GaussianPolicy,
    ObsNorm,
    Temperature,
    critic_ensemble,
    subsample_ensemble,
)


@dataclasses.dataclass(frozen=True)
class SACConfig:
    """SAC hyperparameters (defaults: the original's state recipe). Frozen, so static under jit.

    `batch_size` is the critic minibatch; a learner step consumes `batch_size *
    critic_actor_ratio` transitions (see `sample_size`). `num_min_qs=None` takes the min over
    all `num_qs` critics; otherwise over a random subset of that size drawn without replacement.
    `target_entropy=None` means -|A|/2.
    """

    agent: ClassVar[str] = "sac"

    hidden_dims: tuple[int, ...] = (256, 256)
    activation: str = "tanh"
    critic_layer_norm: bool = True
    actor_layer_norm: bool = True
    critic_dropout_rate: float = 0.0
    num_qs: int = 10
    num_min_qs: int | None = 2
    discount: float = 0.99
    tau: float = 0.005
    actor_lr: float = 3e-4
    critic_lr: float = 3e-4
    temp_lr: float = 3e-4
    init_temperature: float = 0.01
    target_entropy: float | None = None
    backup_entropy: bool = False
    std_min: float = 1e-5
    std_max: float = 5.0
    batch_size: int = 256
    critic_actor_ratio: int = 8
    actor_full_batch: bool = False
    bc_weight: float = 0.0
    bc_q_filter: bool = False  # clone a demo row only where the critic rates its action higher
    # DrQ-v2's encoder use: the critic target reads the online encoder's next-observation
    # features (the target encoder is not run) and the actor step reuses the last critic step's
    # observation features, so a learner step encodes each observation once.
    encode_once: bool = False
    encoder: EncoderConfig | None = None
    obs_norm: ObsNorm | None = None  # per-key standardisation, e.g. from the demos' statistics

    def __post_init__(self) -> None:
        if self.num_min_qs is not None and not 1 <= self.num_min_qs <= self.num_qs:
            raise ValueError(f"num_min_qs={self.num_min_qs} must lie in [1, num_qs={self.num_qs}]")
        if self.critic_actor_ratio < 1:
            raise ValueError("critic_actor_ratio must be >= 1")
        if not 0.0 < self.tau <= 1.0:
            raise ValueError("tau must lie in (0, 1]")
        if self.bc_weight < 0.0:
            raise ValueError("bc_weight must be >= 0")

    @property
    def sample_size(self) -> int:
        """Transitions per learner step: batch_size * critic_actor_ratio."""
        return self.batch_size * self.critic_actor_ratio

    def resolved_target_entropy(self, action_dim: int) -> float:
        """The target entropy, -|A|/2 unless set."""
        return -action_dim / 2 if self.target_entropy is None else self.target_entropy

    def make_encoder(self, spec: AgentSpec) -> nn.Module:
        """The shared observation encoder."""
        return make_encoder(self.encoder, spec, self.obs_norm)

    def make_policy(self, action_dim: int) -> GaussianPolicy:
        """The tanh-squashed Gaussian policy head."""
        return GaussianPolicy(
            action_dim=action_dim,
            hidden_dims=self.hidden_dims,
            activation=self.activation,
            use_layer_norm=self.actor_layer_norm,
            std_min=self.std_min,
            std_max=self.std_max,
            tanh_squash=True,
        )

    def make_critic(self, num: int) -> nn.Module:
        """An ensemble of `num` critics."""
        return critic_ensemble(
            num,
            hidden_dims=self.hidden_dims,
            activation=self.activation,
            use_layer_norm=self.critic_layer_norm,
            dropout_rate=self.critic_dropout_rate,
        )

    def augment(self, batch: dict[str, Any], key: jax.Array, spec: AgentSpec) -> dict[str, Any]:
        """Data augmentation of a minibatch (none for state SAC; DrQ shifts images)."""
        del key, spec
        return batch


class Networks(NamedTuple):
    """Module definitions built from a config and spec."""

    encoder: nn.Module
    actor: GaussianPolicy
    critic: nn.Module
    target_critic: nn.Module  # num_min_qs members: the REDQ subset the target is computed on
    temperature: Temperature


@functools.lru_cache(maxsize=64)
def build_networks(config: SACConfig, spec: AgentSpec) -> Networks:
    """Module definitions for an agent (cached: configs and specs are hashable)."""
    return Networks(
        encoder=config.make_encoder(spec),
        actor=config.make_policy(spec.action_dim),
        critic=config.make_critic(config.num_qs),
        target_critic=config.make_critic(config.num_min_qs or config.num_qs),
        temperature=Temperature(config.init_temperature),
    )


class SACState(struct.PyTreeNode):
    """Everything that changes during training, plus the (static) config and spec.

    critic.params = {"encoder": trainable encoder params, "q": ensemble params}; the encoder is
    shared with the actor, which sees it through stop_gradient. `frozen` holds parameters that
    are never optimised (a frozen backbone) and is shared by online and target networks.
    """

    actor: ParamState
    critic: ParamState
    target_critic: Params
    temp: ParamState
    frozen: Params
    rng: jax.Array
    step: jax.Array
    skipped: jax.Array
    config: SACConfig = struct.field(pytree_node=False)
    spec: AgentSpec = struct.field(pytree_node=False)

    def actor_state(self) -> ActorState:
        """The parameters an actor needs (device arrays, no copy)."""
        return ActorState(
            params={"encoder": self.critic.params["encoder"], "actor": self.actor.params},
            frozen=self.frozen,
            config=self.config,
            spec=self.spec,
        )


def init_state(
    config: SACConfig, spec: AgentSpec, seed: int, load_pretrained: bool = True
) -> SACState:
    """Freshly initialised state; `load_pretrained=False` skips the backbone file (then the
    function is pure, e.g. for `jax.eval_shape` when restoring a checkpoint)."""
    state = random_state(config, spec, seed)
    return with_pretrained_backbones(state) if load_pretrained else state


@functools.partial(jax.jit, static_argnums=(0, 1))
def random_state(config: SACConfig, spec: AgentSpec, seed: int) -> SACState:
    """A fresh state with random backbones, as one compiled program (op by op, a MobileNetV2
    compiles ~100 small programs; one program compiles faster and the disk cache keeps it)."""
    nets = build_networks(config, spec)
    rng, k_enc, k_actor, k_critic, k_temp = jax.random.split(jax.random.PRNGKey(seed), 5)
    enc_params, frozen = init_encoder(nets.encoder, k_enc, spec, config.encoder)
    features = encode(nets.encoder, enc_params, frozen, spec.example(), False, None)
    actions = jnp.zeros((1, spec.action_dim), jnp.float32)
    actor_params = nets.actor.init(k_actor, features, False)["params"]
    q_params = nets.critic.init(k_critic, features, actions, False)["params"]
    temp_params = nets.temperature.init(k_temp)["params"]
    critic_params = {"encoder": enc_params, "q": q_params}
    return SACState(
        actor=ParamState.create(actor_params, config.actor_lr),
        critic=ParamState.create(critic_params, config.critic_lr),
        target_critic=jax.tree.map(jnp.array, critic_params),
        temp=ParamState.create(temp_params, config.temp_lr),
        frozen=frozen,
        rng=rng,
        step=jnp.zeros((), jnp.int32),
        skipped=jnp.zeros((), jnp.int32),
        config=config,
        spec=spec,
    )


def with_pretrained_backbones(state: SACState) -> SACState:
    """`state` with `encoder.pretrained_path`'s weights in its backbones (host-side); a
    trainable backbone's target starts equal to it."""
    encoder, frozen = load_pretrained_backbones(
        state.config.encoder, state.spec, state.critic.params["encoder"], state.frozen
    )
    if encoder is state.critic.params["encoder"]:  # no file, or only frozen backbones
        return state.replace(frozen=frozen)
    critic = state.critic.replace(params={**state.critic.params, "encoder": encoder})
    target = {**state.target_critic, "encoder": jax.tree.map(jnp.array, encoder)}
    return state.replace(critic=critic, target_critic=target, frozen=frozen)


def _temperature(nets: Networks, state: SACState) -> jax.Array:
    return nets.temperature.apply({"params": state.temp.params})


def _critic_step(state: SACState, batch: Batch) -> tuple[SACState, dict[str, jax.Array], jax.Array]:
    """One critic step; also returns the observation features it trained on (no gradient)."""
    config, spec = state.config, state.spec
    nets = build_networks(config, spec)
    rng, k_aug, k_next, k_sub, k_e1, k_e2, k_e3, k_q1, k_q2 = jax.random.split(state.rng, 9)
    batch = config.augment(batch, k_aug, spec)
    enc_params, frozen = state.critic.params["encoder"], state.frozen

    # Next actions from the current policy; the actor reads the encoder without gradient.
    next_features = encode(nets.encoder, enc_params, frozen, batch["next_observations"], True, k_e1)
    dist = nets.actor.apply({"params": state.actor.params}, next_features, True)
    next_actions, next_log_probs = dist.sample_and_log_prob(seed=k_next)

    # Clipped double-Q over a random subset of the target ensemble (REDQ): only the chosen
    # members are evaluated.
    if config.encode_once:
        target_features = jax.lax.stop_gradient(next_features)
    else:
        target_features = encode(
            nets.encoder,
            state.target_critic["encoder"],
            frozen,
            batch["next_observations"],
            True,
            k_e2,
        )
    target_q_params = state.target_critic["q"]
    if config.num_min_qs is not None and config.num_min_qs < config.num_qs:
        idx = jax.random.permutation(k_sub, config.num_qs)[: config.num_min_qs]
        target_q_params = subsample_ensemble(target_q_params, idx)
    next_qs = nets.target_critic.apply(
        {"params": target_q_params}, target_features, next_actions, True, rngs={"dropout": k_q1}
    )
    next_q = next_qs.min(axis=0)
    if config.backup_entropy:  # the soft value of s': discounted and masked with it
        next_q = next_q - _temperature(nets, state) * next_log_probs
    target_q = jax.lax.stop_gradient(batch["rewards"] + config.discount * batch["masks"] * next_q)

    def loss_fn(params: Params) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
        features = encode(
            nets.encoder, params["encoder"], frozen, batch["observations"], True, k_e3
        )
        qs = nets.critic.apply(
            {"params": params["q"]}, features, batch["actions"], True, rngs={"dropout": k_q2}
        )
        return jnp.mean((qs - target_q[None]) ** 2), (qs, features)

    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
    (loss, (qs, features)), grads = grad_fn(state.critic.params)
    critic, ok = apply_if_finite(state.critic, grads, loss)
    # A skipped step moves the target by tau * 0, i.e. not at all.
    target = polyak(state.target_critic, critic.params, config.tau * ok.astype(jnp.float32))
    skip = jnp.logical_not(ok).astype(jnp.int32)
    state = state.replace(
        critic=critic, target_critic=target, rng=rng, skipped=state.skipped + skip
    )
    metrics = {
        "critic/loss": loss,
        "critic/q": jnp.mean(qs),
        "critic/target_q": jnp.mean(target_q),
        "critic/grad_norm": optax.tree.norm(grads),
        "critic/skipped": skip,
    }
    return state, metrics, jax.lax.stop_gradient(features)


def _actor_temperature_step(
    state: SACState, batch: Batch, features: jax.Array | None = None
) -> tuple[SACState, dict[str, jax.Array]]:
    """One actor and temperature step; `features`: the batch's observations already encoded."""
    config, spec = state.config, state.spec
    nets = build_networks(config, spec)
    rng, k_aug, k_enc, k_pi, k_q = jax.random.split(state.rng, 5)
    if features is None:
        batch = config.augment(batch, k_aug, spec)
        features = jax.lax.stop_gradient(
            encode(
                nets.encoder,
                state.critic.params["encoder"],
                state.frozen,
                batch["observations"],
                True,
                k_enc,
            )
        )
    alpha = _temperature(nets, state)

    def q_value(actions: jax.Array) -> jax.Array:
        qs = nets.critic.apply(
            {"params": state.critic.params["q"]}, features, actions, True, rngs={"dropout": k_q}
        )
        return qs.mean(axis=0)

    def actor_loss_fn(params: Params) -> tuple[jax.Array, tuple[jax.Array, ...]]:
        dist = nets.actor.apply({"params": params}, features, True)
        actions, log_probs = dist.sample_and_log_prob(seed=k_pi)
        q = q_value(actions)
        loss = jnp.mean(alpha * log_probs - q)
        bc, cloned = jnp.zeros(()), jnp.zeros(())
        if config.bc_weight > 0.0:
            # Behaviour cloning of the policy's mode toward the batch's demonstration rows (a
            # "demo" mask from the data layer), Q-filtered if configured: only rows whose action
            # the critic rates above the policy's own. Without a mask, all rows, Q-filtered.
            # The filter drops the labels a demonstrator with sharp switches (open / close)
            # gives on either side of one, which a unimodal policy would average into neither.
            demo = batch.get("demo")
            keep = jnp.ones_like(q) if demo is None else demo.astype(jnp.float32)
            if config.bc_q_filter or demo is None:
                better = q_value(batch["actions"]) > jax.lax.stop_gradient(q)
                keep = keep * better.astype(jnp.float32)
            err = jnp.sum((dist.mode() - batch["actions"]) ** 2, axis=-1)
            bc = jnp.sum(keep * err) / jnp.maximum(jnp.sum(keep), 1.0)
            loss, cloned = loss + config.bc_weight * bc, jnp.mean(keep)
        return loss, (-jnp.mean(log_probs), bc, cloned)

    grad_fn = jax.value_and_grad(actor_loss_fn, has_aux=True)
    (actor_loss, (entropy, bc_loss, bc_cloned)), grads = grad_fn(state.actor.params)
    actor, actor_ok = apply_if_finite(state.actor, grads, actor_loss)

    target_entropy = config.resolved_target_entropy(spec.action_dim)
    entropy = jax.lax.stop_gradient(entropy)

    def temp_loss_fn(params: Params) -> jax.Array:
        return nets.temperature.apply({"params": params}, entropy, target_entropy)

    temp_loss, temp_grads = jax.value_and_grad(temp_loss_fn)(state.temp.params)
    temp, temp_ok = apply_if_finite(state.temp, temp_grads, temp_loss)

    skip = jnp.logical_not(actor_ok).astype(jnp.int32) + jnp.logical_not(temp_ok).astype(jnp.int32)
    state = state.replace(
        actor=actor, temp=temp, rng=rng, step=state.step + 1, skipped=state.skipped + skip
    )
    metrics = {
        "actor/loss": actor_loss,
        "actor/entropy": entropy,
        "actor/bc_loss": bc_loss,
        "actor/bc_cloned": bc_cloned,  # fraction of the batch's rows cloned
        "actor/grad_norm": optax.tree.norm(grads),
        "actor/skipped": 1 - actor_ok.astype(jnp.int32),
        "temperature/value": alpha,
        "temperature/loss": temp_loss,
        "temperature/skipped": 1 - temp_ok.astype(jnp.int32),
    }
    return state, metrics


@functools.partial(jax.jit, donate_argnums=0)
def update(state: SACState, batch: Batch) -> tuple[SACState, dict[str, jax.Array]]:
    """One learner step: `critic_actor_ratio` critic minibatch steps (lax.scan), then one actor
    and temperature step. Returns (new state, flat metrics).

    The state's buffers are donated: always rebind (`state, m = update(state, batch)`) and never
    touch the old state afterwards; take `actor_params(state)` (a host copy) before if needed.
    """
    config = state.config
    batch_spec(state.spec, config.encoder).check_batch(batch)  # trace-time only
    batch = as_float_batch(batch)
    minibatches = split_minibatches(batch, config.critic_actor_ratio)

    # Carry only what the critic steps change; the rest (actor, temperature, frozen) enters the
    # loop as constants, so XLA does not copy it on every iteration.
    def critic_body(carry, minibatch):
        critic, target, rng, skipped = carry
        s = state.replace(critic=critic, target_critic=target, rng=rng, skipped=skipped)
        s, m, features = _critic_step(s, minibatch)
        kept = features if config.encode_once else None  # else not carried out of the loop
        return (s.critic, s.target_critic, s.rng, s.skipped), (m, kept)

    carry = (state.critic, state.target_critic, state.rng, state.skipped)
    (critic, target, rng, skipped), (critic_metrics, features) = unrolled_scan(
        critic_body, carry, minibatches
    )
    state = state.replace(critic=critic, target_critic=target, rng=rng, skipped=skipped)
    if config.actor_full_batch:
        state, actor_metrics = _actor_temperature_step(state, batch)
    else:  # the last minibatch, as the last critic step saw it (encode_once) or encoded anew
        reuse = features[-1] if config.encode_once else None
        last = jax.tree.map(lambda x: x[-1], minibatches)
        state, actor_metrics = _actor_temperature_step(state, last, reuse)
    metrics = {k: jnp.mean(v) for k, v in critic_metrics.items()}
    metrics["critic/skipped"] = jnp.sum(critic_metrics["critic/skipped"])
    metrics.update(actor_metrics)
    metrics["nonfinite/skipped_total"] = state.skipped
    return state, metrics


@jax.jit
def update_critic(state: SACState, batch: Batch) -> tuple[SACState, dict[str, jax.Array]]:
    """One critic step (and Polyak target update) on one minibatch."""
    state, metrics, _ = _critic_step(state, as_float_batch(batch))
    return state, metrics


@jax.jit
def update_actor_temperature(
    state: SACState, batch: Batch
) -> tuple[SACState, dict[str, jax.Array]]:
    """One actor step and one temperature step on a batch."""
    return _actor_temperature_step(state, as_float_batch(batch))
