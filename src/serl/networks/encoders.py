"""Observation encoders: flatten (state), per-camera image encoders (small CNN or ResNet-10 with
GroupNorm), spatial pooling (learned embeddings, softmax, mean), and the proprio encoder."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from serl.networks.conv import patch_conv
from serl.networks.mlp import default_init

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

BACKBONES = ("small", "resnet10")
POOLINGS = ("spatial_learned_embeddings", "spatial_softmax", "mean")
# Submodule name of the image backbone inside an ImageEncoder; the agents use it to find (and
# freeze) backbone parameters, and the pretrained-weight files are laid out below it.
BACKBONE_NAME = "backbone"


def flatten_observation(obs: Mapping[str, jax.Array], keys: Sequence[str]) -> jax.Array:
    """Concatenate `obs[k]` for `k` in `keys`, each flattened past the leading batch axis."""
    parts = [jnp.reshape(obs[k], (obs[k].shape[0], -1)).astype(jnp.float32) for k in keys]
    return jnp.concatenate(parts, axis=-1)


def merge_time_into_channels(x: jax.Array) -> jax.Array:
    """[B, T, H, W, C] -> [B, H, W, T*C] (frames stacked along channels); [B, H, W, C] unchanged."""
    if x.ndim == 4:
        return x
    if x.ndim != 5:
        raise ValueError(f"images must be [B,H,W,C] or [B,T,H,W,C], got shape {x.shape}")
    b, t, h, w, c = x.shape
    return jnp.reshape(jnp.transpose(x, (0, 2, 3, 1, 4)), (b, h, w, t * c))


# Per-key standardisation constants: ((key, flat mean, flat std), ...), hashable for jit.
ObsNorm = tuple[tuple[str, tuple[float, ...], tuple[float, ...]], ...]


def standardize(obs: Mapping[str, jax.Array], norm: ObsNorm) -> dict[str, jax.Array]:
    """(x - mean) / std for the keys in `norm` (per flattened element); other keys unchanged."""
    out = dict(obs)
    for key, mean, std in norm:
        x = obs[key].astype(jnp.float32)
        flat = jnp.reshape(x, (x.shape[0], -1))
        out[key] = jnp.reshape((flat - jnp.asarray(mean)) / jnp.asarray(std), x.shape)
    return out


class FlattenObservation(nn.Module):
    """State encoder: all observation keys (standardised if given constants), flattened,
    concatenated in sorted key order."""

    keys: tuple[str, ...]
    obs_norm: ObsNorm = ()

    def __call__(self, obs: Mapping[str, jax.Array], train: bool = False) -> jax.Array:
        return flatten_observation(standardize(obs, self.obs_norm), self.keys)


class SmallCNN(nn.Module):
    """The original's small encoder: conv 32/64/128/256, kernel 3, stride 2, VALID, ReLU."""

    features: Sequence[int] = (32, 64, 128, 256)
    kernel_size: int = 3
    stride: int = 2

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        for i, f in enumerate(self.features):
            x = nn.Conv(
                f,
                (self.kernel_size, self.kernel_size),
                (self.stride, self.stride),
                padding="VALID",
                kernel_init=nn.initializers.kaiming_normal(),
                conv_general_dilated=patch_conv,
                name=f"conv{i}",
            )(x)
            x = nn.relu(x)
        return x


def _conv(features: int, kernel: int, stride: int, name: str) -> nn.Conv:
    return nn.Conv(
        features,
        (kernel, kernel),
        (stride, stride),
        padding=[(kernel // 2, kernel // 2)] * 2,
        use_bias=False,
        kernel_init=nn.initializers.variance_scaling(2.0, "fan_out", "normal"),
        name=name,
    )


def _group_norm(name: str) -> nn.GroupNorm:
    return nn.GroupNorm(num_groups=4, epsilon=1e-5, name=name)


class ResNetBlock(nn.Module):
    """Basic residual block: two 3x3 convs with GroupNorm; a 1x1 projection when shapes change."""

    filters: int
    stride: int = 1

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        y = nn.relu(_group_norm("norm1")(_conv(self.filters, 3, self.stride, "conv1")(x)))
        y = _group_norm("norm2")(_conv(self.filters, 3, 1, "conv2")(y))
        if x.shape != y.shape:
            x = _group_norm("proj_norm")(_conv(self.filters, 1, self.stride, "proj_conv")(x))
        return nn.relu(x + y)


class ResNet10(nn.Module):
    """ResNet-10 (one basic block per stage, 64/128/256/512 filters) with GroupNorm(4 groups).

    Returns the final feature map ([B, H/32, W/32, 512]). Parameter names are the pretrained-file
    format (see `serl.networks.pretrained`): stem_conv, stem_norm, stage{i}_block{j}/{conv1,
    norm1, conv2, norm2, proj_conv, proj_norm}.
    """

    stage_sizes: Sequence[int] = (1, 1, 1, 1)
    num_filters: int = 64

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = nn.relu(_group_norm("stem_norm")(_conv(self.num_filters, 7, 2, "stem_conv")(x)))
        x = nn.max_pool(x, (3, 3), strides=(2, 2), padding="SAME")
        for i, blocks in enumerate(self.stage_sizes):
            for j in range(blocks):
                stride = 2 if i > 0 and j == 0 else 1
                x = ResNetBlock(self.num_filters * 2**i, stride, name=f"stage{i}_block{j}")(x)
        return x


class SpatialLearnedEmbeddings(nn.Module):
    """Pool [B,H,W,C] to [B, C*num_features] with learned per-location weights (the original's)."""

    num_features: int = 8

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        h, w, c = x.shape[-3:]
        kernel = self.param("kernel", nn.initializers.lecun_normal(), (h, w, c, self.num_features))
        out = jnp.einsum("bhwc,hwcf->bcf", x, kernel)
        return jnp.reshape(out, (x.shape[0], -1))


class SpatialSoftmax(nn.Module):
    """Keypoints: softmax over locations per channel, expected (x, y) in [-1, 1] -> [B, 2C]."""

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        b, h, w, c = x.shape
        log_temp = self.param("log_temperature", nn.initializers.zeros, ())
        logits = jnp.reshape(jnp.transpose(x, (0, 3, 1, 2)), (b, c, h * w)) / jnp.exp(log_temp)
        attention = jax.nn.softmax(logits, axis=-1)
        pos_y, pos_x = jnp.meshgrid(jnp.linspace(-1, 1, h), jnp.linspace(-1, 1, w), indexing="ij")
        ex = attention @ jnp.reshape(pos_x, (-1,))
        ey = attention @ jnp.reshape(pos_y, (-1,))
        return jnp.concatenate([ex, ey], axis=-1)


class ImageEncoder(nn.Module):
    """One camera: uint8 [B,H,W,C] -> normalise -> backbone -> pool -> dropout -> Dense+LN+tanh.

    C may hold several stacked frames (T*3). With `freeze_backbone` the backbone output is
    stop-gradiented (the agents also keep its parameters out of the optimizer).
    """

    backbone: str = "resnet10"
    pooling: str = "spatial_learned_embeddings"
    num_spatial_features: int = 8
    bottleneck_dim: int = 256
    dropout_rate: float = 0.1
    freeze_backbone: bool = False

    @nn.compact
    def __call__(self, images: jax.Array, train: bool = False) -> jax.Array:
        x = images.astype(jnp.float32) / 255.0
        if self.backbone == "resnet10":
            c = x.shape[-1]
            if c % 3 == 0:  # ImageNet statistics, tiled over stacked frames
                mean = jnp.tile(jnp.asarray(IMAGENET_MEAN), c // 3)
                std = jnp.tile(jnp.asarray(IMAGENET_STD), c // 3)
                x = (x - mean) / std
            x = ResNet10(name=BACKBONE_NAME)(x)
        elif self.backbone == "small":
            x = SmallCNN(name=BACKBONE_NAME)(x)
        else:
            raise ValueError(f"unknown backbone {self.backbone!r}; choose from {BACKBONES}")
        if 0 in x.shape[-3:-1]:
            raise ValueError(f"images of {images.shape[-3:-1]} are too small for {self.backbone}")
        if self.freeze_backbone:
            x = jax.lax.stop_gradient(x)

        if self.pooling == "spatial_learned_embeddings":
            x = SpatialLearnedEmbeddings(self.num_spatial_features)(x)
        elif self.pooling == "spatial_softmax":
            x = SpatialSoftmax()(x)
        elif self.pooling == "mean":
            x = jnp.mean(x, axis=(-3, -2))
        else:
            raise ValueError(f"unknown pooling {self.pooling!r}; choose from {POOLINGS}")
        if self.dropout_rate > 0:
            x = nn.Dropout(self.dropout_rate)(x, deterministic=not train)
        if self.bottleneck_dim > 0:
            x = nn.Dense(self.bottleneck_dim, kernel_init=default_init())(x)
            x = nn.LayerNorm()(x)
            x = jnp.tanh(x)
        return x


class ObservationEncoder(nn.Module):
    """Every camera through its own ImageEncoder, the other keys through a proprio encoder.

    Images may be [B,H,W,C] or [B,T,H,W,C] (frames merged into channels). Proprio keys are
    flattened and concatenated in the given (sorted) order, then Dense(proprio_dim)+LN+tanh
    (proprio_dim 0 passes them through raw). Output: the concatenation of all features.
    """

    image_keys: tuple[str, ...]
    proprio_keys: tuple[str, ...]
    image_encoder: Callable[..., nn.Module] = ImageEncoder
    proprio_dim: int = 64
    obs_norm: ObsNorm = ()  # standardisation of proprio keys

    @nn.compact
    def __call__(self, obs: Mapping[str, jax.Array], train: bool = False) -> jax.Array:
        obs = standardize(obs, self.obs_norm)
        features = []
        for key in self.image_keys:
            images = merge_time_into_channels(obs[key])
            features.append(self.image_encoder(name=f"image_{key}")(images, train))
        if self.proprio_keys:
            p = flatten_observation(obs, self.proprio_keys)
            if self.proprio_dim > 0:
                p = nn.Dense(self.proprio_dim, kernel_init=default_init(), name="proprio")(p)
                p = jnp.tanh(nn.LayerNorm(name="proprio_norm")(p))
            features.append(p)
        return jnp.concatenate(features, axis=-1)


def image_encoder_factory(
    backbone: str = "resnet10",
    pooling: str = "spatial_learned_embeddings",
    num_spatial_features: int = 8,
    bottleneck_dim: int = 256,
    dropout_rate: float = 0.1,
    freeze_backbone: bool = False,
) -> Callable[..., nn.Module]:
    """A validated ImageEncoder constructor for `ObservationEncoder.image_encoder`."""
    if backbone not in BACKBONES:
        raise ValueError(f"unknown backbone {backbone!r}; choose from {BACKBONES}")
    if pooling not in POOLINGS:
        raise ValueError(f"unknown pooling {pooling!r}; choose from {POOLINGS}")
    return functools.partial(
        ImageEncoder,
        backbone=backbone,
        pooling=pooling,
        num_spatial_features=num_spatial_features,
        bottleneck_dim=bottleneck_dim,
        dropout_rate=dropout_rate,
        freeze_backbone=freeze_backbone,
    )
