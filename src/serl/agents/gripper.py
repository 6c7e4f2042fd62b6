"""SAC for the arm plus a discrete gripper critic (HIL-SERL): close / stay / open by double DQN.

The action's last entry is the gripper, in {-1 open, 0 stay, +1 close} (stored actions are
rounded to the nearest); SAC learns the arm (the other entries) as usual, and a Q-network
over the three gripper commands learns from the same batches on the critic's encoder features
(without gradient into the encoder). Its target is double DQN: the online network picks the
next command, the Polyak-averaged target network values it. Acting takes the SAC arm action
and the greedy gripper command (epsilon-greedy when sampling).

The actor side needs nothing new: `GripperSACConfig.make_policy` builds a policy module whose
distribution yields the full action, so `sample_actions` / `eval_actions` and parameter
publishing work as for SAC.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import struct

from serl.agents import sac
from serl.agents.common import (
    AgentSpec,
    Batch,
    Params,
    ParamState,
    apply_if_finite,
    as_float_batch,
    batch_spec,
    encode,
    polyak,
    split_minibatches,
    unrolled_scan,
)
from serl.agents.policy import ActorState
from serl.agents.sac import SACConfig, SACState
from serl.networks import MLP, GaussianPolicy, default_init

GRIPPER_COMMANDS = (-1.0, 0.0, 1.0)  # open, stay, close: index = round(command) + 1


@dataclasses.dataclass(frozen=True)
class GripperSACConfig(SACConfig):
    """SAC hyperparameters for the arm, plus the gripper critic's."""

    agent: ClassVar[str] = "sac_gripper"

    gripper_hidden_dims: tuple[int, ...] = (256, 256)
    gripper_lr: float = 3e-4
    gripper_epsilon: float = 0.1  # random gripper command probability when sampling

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0.0 <= self.gripper_epsilon <= 1.0:
            raise ValueError("gripper_epsilon must lie in [0, 1]")

    def arm_config(self) -> SACConfig:
        """The plain SAC config the arm learns with."""
        return SACConfig(**{f.name: getattr(self, f.name) for f in dataclasses.fields(SACConfig)})

    def make_policy(self, action_dim: int) -> HybridPolicy:
        """Arm Gaussian (action_dim - 1) and gripper Q-values, as one policy module."""
        return HybridPolicy(
            arm=self.arm_config().make_policy(action_dim - 1),
            grasp=self.make_grasp_critic(),
            epsilon=self.gripper_epsilon,
        )

    def make_grasp_critic(self) -> GraspCritic:
        """Q-values of the three gripper commands."""
        return GraspCritic(self.gripper_hidden_dims, self.activation, self.critic_layer_norm)


class GraspCritic(nn.Module):
    """MLP -> Q(s, open), Q(s, stay), Q(s, close)."""

    hidden_dims: Sequence[int] = (256, 256)
    activation: str = "tanh"
    use_layer_norm: bool = True

    @nn.compact
    def __call__(self, features: jax.Array, train: bool = False) -> jax.Array:
        x = MLP(
            self.hidden_dims,
            activation=self.activation,
            activate_final=True,
            use_layer_norm=self.use_layer_norm,
        )(features, train)
        return nn.Dense(len(GRIPPER_COMMANDS), kernel_init=default_init())(x)


class HybridAction:
    """The arm's distribution with the gripper's Q-values: what `mode`/`sample` act with."""

    def __init__(self, arm: Any, grasp_q: jax.Array, epsilon: float) -> None:
        self.arm, self.grasp_q, self.epsilon = arm, grasp_q, epsilon

    def _command(self, index: jax.Array) -> jax.Array:
        return (jnp.asarray(GRIPPER_COMMANDS)[index])[..., None]

    def mode(self) -> jax.Array:
        """Arm mode and the greedy gripper command."""
        return jnp.concatenate([self.arm.mode(), self._command(self.grasp_q.argmax(-1))], -1)

    def sample(self, seed: jax.Array) -> jax.Array:
        """Arm sample and an epsilon-greedy gripper command."""
        k_arm, k_explore, k_random = jax.random.split(seed, 3)
        greedy = self.grasp_q.argmax(-1)
        shape = greedy.shape
        explore = jax.random.uniform(k_explore, shape) < self.epsilon
        index = jnp.where(explore, jax.random.randint(k_random, shape, 0, 3), greedy)
        return jnp.concatenate([self.arm.sample(seed=k_arm), self._command(index)], -1)


class HybridPolicy(nn.Module):
    """Arm policy (params under "arm") and gripper critic (under "grasp") on shared features."""

    arm: GaussianPolicy
    grasp: GraspCritic
    epsilon: float = 0.1

    @nn.compact
    def __call__(self, features: jax.Array, train: bool = False) -> HybridAction:
        dist = self.arm(features, train)  # submodule fields are scoped by their names
        q = self.grasp(features, train)
        return HybridAction(dist, q, self.epsilon)


class GripperSACState(struct.PyTreeNode):
    """The arm's SAC state, the gripper critic with its target, and the config and spec."""

    sac: SACState
    grasp: ParamState
    grasp_target: Params
    rng: jax.Array
    config: GripperSACConfig = struct.field(pytree_node=False)
    spec: AgentSpec = struct.field(pytree_node=False)

    @property
    def frozen(self) -> Params:
        """Frozen encoder parameters (shared with SAC)."""
        return self.sac.frozen

    def actor_state(self) -> ActorState:
        """The parameters an actor needs: encoder, arm policy and gripper critic."""
        return ActorState(
            params={
                "encoder": self.sac.critic.params["encoder"],
                "actor": {"arm": self.sac.actor.params, "grasp": self.grasp.params},
            },
            frozen=self.sac.frozen,
            config=self.config,
            spec=self.spec,
        )


def arm_spec(spec: AgentSpec) -> AgentSpec:
    """The spec SAC learns the arm with: one action entry fewer."""
    if spec.action_dim < 2:
        raise ValueError("a gripper critic needs an action with arm entries and a gripper entry")
    return AgentSpec(spec.observation, spec.action_dim - 1)


def init_state(
    config: GripperSACConfig, spec: AgentSpec, seed: int, load_pretrained: bool = True
) -> GripperSACState:
    """Fresh state (see `serl.agents.sac.init_state` for `load_pretrained`)."""
    state = random_state(config, spec, seed)
    return state.replace(sac=sac.with_pretrained_backbones(state.sac)) if load_pretrained else state


@functools.partial(jax.jit, static_argnums=(0, 1))
def random_state(config: GripperSACConfig, spec: AgentSpec, seed: int) -> GripperSACState:
    """A fresh state with random backbones, as one compiled program (see `sac.random_state`)."""
    arm = config.arm_config()
    sac_state = sac.random_state(arm, arm_spec(spec), seed)
    nets = sac.build_networks(arm, arm_spec(spec))
    features = encode(
        nets.encoder,
        sac_state.critic.params["encoder"],
        sac_state.frozen,
        spec.example(),
        False,
        None,
    )
    rng, key = jax.random.split(jax.random.fold_in(jax.random.PRNGKey(seed), 1))
    params = config.make_grasp_critic().init(key, features, False)["params"]
    return GripperSACState(
        sac=sac_state,
        grasp=ParamState.create(params, config.gripper_lr),
        grasp_target=jax.tree.map(jnp.array, params),
        rng=rng,
        config=config,
        spec=spec,
    )


def command_index(actions: jax.Array) -> jax.Array:
    """Stored gripper entries -> command index 0 (open), 1 (stay), 2 (close)."""
    return jnp.clip(jnp.round(actions[:, -1]) + 1, 0, 2).astype(jnp.int32)


def _grasp_step(
    state: GripperSACState, batch: Batch
) -> tuple[GripperSACState, dict[str, jax.Array]]:
    config = state.config
    nets = sac.build_networks(config.arm_config(), arm_spec(state.spec))
    critic = config.make_grasp_critic()
    rng, k_obs, k_next = jax.random.split(state.rng, 3)
    enc_params, frozen = state.sac.critic.params["encoder"], state.sac.frozen
    features = jax.lax.stop_gradient(
        encode(nets.encoder, enc_params, frozen, batch["observations"], True, k_obs)
    )
    next_features = jax.lax.stop_gradient(
        encode(nets.encoder, enc_params, frozen, batch["next_observations"], True, k_next)
    )
    # Double DQN: the online network chooses the next command, the target network values it.
    best = critic.apply({"params": state.grasp.params}, next_features).argmax(-1)
    next_q = critic.apply({"params": state.grasp_target}, next_features)
    next_value = jnp.take_along_axis(next_q, best[:, None], axis=-1)[:, 0]
    target = jax.lax.stop_gradient(batch["rewards"] + config.discount * batch["masks"] * next_value)
    taken = command_index(batch["actions"])

    def loss_fn(params: Params) -> tuple[jax.Array, jax.Array]:
        q = critic.apply({"params": params}, features)
        q_taken = jnp.take_along_axis(q, taken[:, None], axis=-1)[:, 0]
        return jnp.mean((q_taken - target) ** 2), q_taken

    (loss, q_taken), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.grasp.params)
    grasp, ok = apply_if_finite(state.grasp, grads, loss)
    grasp_target = polyak(state.grasp_target, grasp.params, config.tau * ok.astype(jnp.float32))
    state = state.replace(grasp=grasp, grasp_target=grasp_target, rng=rng)
    metrics = {
        "grasp/loss": loss,
        "grasp/q": jnp.mean(q_taken),
        "grasp/target_q": jnp.mean(target),
        "grasp/skipped": 1 - ok.astype(jnp.int32),
    }
    return state, metrics


@functools.partial(jax.jit, donate_argnums=0)
def update(state: GripperSACState, batch: Batch) -> tuple[GripperSACState, dict[str, jax.Array]]:
    """One learner step: SAC on the arm entries, then one gripper-critic step per critic
    minibatch (the same update-to-data ratio). Donates `state`: always rebind."""
    batch = as_float_batch(batch)
    batch_spec(state.spec, state.config.encoder).check_batch(batch)
    arm_batch = {**batch, "actions": batch["actions"][:, :-1]}
    sac_state, metrics = sac.update(state.sac, arm_batch)
    state = state.replace(sac=sac_state)
    minibatches = split_minibatches(batch, state.config.critic_actor_ratio)
    state, grasp_metrics = unrolled_scan(_grasp_step, state, minibatches)
    metrics = {**metrics, **{k: jnp.mean(v) for k, v in grasp_metrics.items()}}
    metrics["grasp/skipped"] = jnp.sum(grasp_metrics["grasp/skipped"])
    return state, metrics
