"""Gaussian policy heads (tanh-squashed for SAC, plain for BC) built on distrax."""

from __future__ import annotations

from collections.abc import Sequence

import distrax
import flax.linen as nn
import jax
import jax.numpy as jnp

from serl.networks.mlp import MLP, default_init


class TanhMultivariateNormalDiag(distrax.Transformed):
    """Diagonal Gaussian squashed by tanh into (-1, 1); `mode()` is tanh of the Gaussian mean."""

    def __init__(self, loc: jax.Array, scale_diag: jax.Array):
        super().__init__(
            distrax.MultivariateNormalDiag(loc=loc, scale_diag=scale_diag),
            distrax.Block(distrax.Tanh(), ndims=1),
        )

    def mode(self) -> jax.Array:
        """The squashed mean (the deterministic action used for evaluation)."""
        return self.bijector.forward(self.distribution.mode())

    def stddev(self) -> jax.Array:
        """Scale of the Gaussian before squashing."""
        return self.distribution.stddev()


class GaussianPolicy(nn.Module):
    """MLP trunk -> mean and std (std = clip(exp(log_std), std_min, std_max)) -> distribution.

    `tanh_squash=True` gives the SAC policy (actions in (-1, 1), log-probs include the tanh
    Jacobian); `False` a plain diagonal Gaussian (BC), whose samples callers clip to the box.
    """

    action_dim: int
    hidden_dims: Sequence[int] = (256, 256)
    activation: str = "tanh"
    use_layer_norm: bool = True
    dropout_rate: float = 0.0
    std_min: float = 1e-5
    std_max: float = 5.0
    tanh_squash: bool = True

    @nn.compact
    def __call__(self, features: jax.Array, train: bool = False) -> distrax.Distribution:
        x = MLP(
            self.hidden_dims,
            activation=self.activation,
            activate_final=True,
            use_layer_norm=self.use_layer_norm,
            dropout_rate=self.dropout_rate,
        )(features, train)
        means = nn.Dense(self.action_dim, kernel_init=default_init(), name="mean")(x)
        log_stds = nn.Dense(self.action_dim, kernel_init=default_init(), name="log_std")(x)
        stds = jnp.clip(jnp.exp(log_stds), self.std_min, self.std_max)
        if self.tanh_squash:
            return TanhMultivariateNormalDiag(loc=means, scale_diag=stds)
        return distrax.MultivariateNormalDiag(loc=means, scale_diag=stds)
