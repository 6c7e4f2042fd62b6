"""The success classifier's network: cameras -> per-camera image encoders -> MLP -> one logit."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp

from serl.networks.encoders import ObservationEncoder
from serl.networks.mlp import default_init


def downsample(images: jax.Array, size: int | None) -> jax.Array:
    """Float32 images [..., H, W, C] resized to [..., size, size, C] (box filter when exact)."""
    x = images.astype(jnp.float32)
    if size is None:
        return x
    h, w, c = x.shape[-3:]
    if (h, w) == (size, size):
        return x
    if h % size == 0 and w % size == 0:  # exact box filter: each output pixel averages a block
        fh, fw = h // size, w // size
        x = jnp.reshape(x, (*x.shape[:-3], size, fh, size, fw, c))
        return jnp.mean(x, axis=(-4, -2))
    return jax.image.resize(x, (*x.shape[:-3], size, size, c), "linear", antialias=True)


class ClassifierNet(nn.Module):
    """Cameras -> per-camera encoders -> MLP -> one success logit per sample.

    With `cached_features` the cameras arrive as the frozen backbone's feature maps and only
    the head (pooling, bottleneck, MLP) runs here."""

    image_keys: tuple[str, ...]
    image_encoder: Callable[..., nn.Module]  # `image_encoder_factory`'s
    cached_features: bool  # the cameras arrive as a frozen backbone's feature maps
    image_size: int | None
    hidden_dims: tuple[int, ...]
    dropout_rate: float

    @nn.compact
    def __call__(self, obs: Mapping[str, jax.Array], train: bool = False) -> jax.Array:
        if self.cached_features:
            images = {k: obs[k] for k in self.image_keys}
        else:
            images = {k: downsample(obs[k], self.image_size) for k in self.image_keys}
        x = ObservationEncoder(
            image_keys=self.image_keys,
            proprio_keys=(),
            image_encoder=self.image_encoder,
            name="encoder",
        )(images, train)
        for i, h in enumerate(self.hidden_dims):
            x = nn.Dense(h, kernel_init=default_init(), name=f"head{i}")(x)
            x = nn.relu(nn.LayerNorm(name=f"head{i}_norm")(x))
            if self.dropout_rate > 0:
                x = nn.Dropout(self.dropout_rate)(x, deterministic=not train)
        return nn.Dense(1, kernel_init=default_init(), name="logit")(x)[..., 0]
