"""Q-functions: one state-action critic and the ensemble of them the agents train."""

from __future__ import annotations

import functools
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from serl.networks.ensemble import Ensemble
from serl.networks.mlp import MLP, default_init


class StateActionValue(nn.Module):
    """Q(s, a): an MLP on [features, action] followed by a scalar head."""

    hidden_dims: Sequence[int] = (256, 256)
    activation: str = "tanh"
    use_layer_norm: bool = True
    dropout_rate: float = 0.0

    @nn.compact
    def __call__(self, features: jax.Array, actions: jax.Array, train: bool = False) -> jax.Array:
        x = jnp.concatenate([features, actions], axis=-1)
        x = MLP(
            self.hidden_dims,
            activation=self.activation,
            activate_final=True,
            use_layer_norm=self.use_layer_norm,
            dropout_rate=self.dropout_rate,
        )(x, train)
        return nn.Dense(1, kernel_init=default_init())(x)[..., 0]


def critic_ensemble(
    num: int,
    hidden_dims: Sequence[int] = (256, 256),
    activation: str = "tanh",
    use_layer_norm: bool = True,
    dropout_rate: float = 0.0,
) -> Ensemble:
    """An ensemble of `num` critics; call it as `(features, actions, train)` -> [num, batch]."""
    member = functools.partial(
        StateActionValue,
        hidden_dims=tuple(hidden_dims),
        activation=activation,
        use_layer_norm=use_layer_norm,
        dropout_rate=dropout_rate,
    )
    return Ensemble(member, num=num)
