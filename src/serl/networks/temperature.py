"""The SAC temperature: a positive scalar Lagrange multiplier for the entropy constraint."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp


class Temperature(nn.Module):
    """alpha = softplus(raw) > 0, initialised to `init_value`.

    Called with an entropy, it returns the Lagrangian `alpha * (entropy - target)`: minimising it
    raises alpha while the policy's entropy is below the target and lowers it while above
    (the constraint entropy >= target). Called without, it returns alpha.
    """

    init_value: float = 0.01

    @nn.compact
    def __call__(self, entropy: jax.Array | None = None, target: float | None = None) -> jax.Array:
        if self.init_value <= 0:
            raise ValueError(f"temperature must start positive, got {self.init_value}")
        raw_init = jnp.log(jnp.expm1(jnp.asarray(self.init_value, jnp.float32)))
        raw = self.param("raw", lambda _key: raw_init)
        alpha = nn.softplus(raw)
        if entropy is None:
            return alpha
        return alpha * (entropy - target)
