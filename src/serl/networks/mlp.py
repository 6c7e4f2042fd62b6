"""Multi-layer perceptron with optional LayerNorm and dropout, plus the default initialiser."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "tanh": jnp.tanh,
    "relu": nn.relu,
    "swish": nn.swish,
    "gelu": nn.gelu,
    "elu": nn.elu,
}


def default_init(scale: float = 1.0) -> nn.initializers.Initializer:
    """Xavier-uniform (fan_avg) initialiser, the one the original and RLPD use for dense layers."""
    return nn.initializers.variance_scaling(scale, "fan_avg", "uniform")


def get_activation(name: str) -> Callable[[jax.Array], jax.Array]:
    """Look an activation up by name; names (not callables) keep configs hashable and JSON-able."""
    try:
        return ACTIVATIONS[name]
    except KeyError:
        raise ValueError(
            f"unknown activation {name!r}; choose from {sorted(ACTIVATIONS)}"
        ) from None


class MLP(nn.Module):
    """Dense layers; after each hidden one: dropout, LayerNorm, activation (as the original)."""

    hidden_dims: Sequence[int]
    activation: str = "tanh"
    activate_final: bool = False
    use_layer_norm: bool = False
    dropout_rate: float = 0.0

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        act = get_activation(self.activation)
        for i, size in enumerate(self.hidden_dims):
            x = nn.Dense(size, kernel_init=default_init())(x)
            if i + 1 < len(self.hidden_dims) or self.activate_final:
                if self.dropout_rate > 0:
                    x = nn.Dropout(rate=self.dropout_rate)(x, deterministic=not train)
                if self.use_layer_norm:
                    x = nn.LayerNorm()(x)
                x = act(x)
        return x
