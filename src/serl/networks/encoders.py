"""Observation encoders: flatten (state), per-camera image encoders (small CNN or ResNet-10 with
GroupNorm), spatial pooling (learned embeddings, softmax, mean), and the proprio encoder."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from serl.networks.conv import patch_conv
from serl.networks.mlp import default_init
from serl.networks.mobilenet import OUTPUT_STRIDES as MOBILENET_STRIDES
from serl.networks.mobilenet import MobileNetV2

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

BACKBONES = ("small", "resnet10", "mobilenet_v2")
RESNET_STRIDES = (16, 32)
# Output strides each backbone can stop at (None: its full depth); the small CNN has one.
FEATURE_STRIDES = {
    "small": (None,),
    "resnet10": (None, *RESNET_STRIDES),
    "mobilenet_v2": (None, *MOBILENET_STRIDES),
}
POOLINGS = ("spatial_learned_embeddings", "spatial_softmax", "mean", "spatial_projection")
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


def _conv(features: int, kernel: int, stride: int, name: str, padding: Any = "SAME") -> nn.Conv:
    return nn.Conv(
        features,
        (kernel, kernel),
        (stride, stride),
        padding=padding,
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

    The original SERL's network, padding included (the 7x7 stem pads 3 on each side, the
    other convs and the max-pool "SAME"), so its pretrained weights load unchanged. Returns the
    feature map at `output_stride` ([B, H/32, W/32, 512] at 32, [B, H/16, W/16, 256] at 16).
    Parameter names are the pretrained-file format (see `serl.networks.pretrained`):
    stem_conv, stem_norm, stage{i}_block{j}/{conv1, norm1, conv2, norm2, proj_conv, proj_norm}.
    """

    stage_sizes: Sequence[int] = (1, 1, 1, 1)
    num_filters: int = 64
    output_stride: int = 32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        if self.output_stride not in RESNET_STRIDES:
            raise ValueError(f"ResNet10 output_stride must be one of {RESNET_STRIDES}")
        stem = _conv(self.num_filters, 7, 2, "stem_conv", padding=((3, 3), (3, 3)))
        x = nn.relu(_group_norm("stem_norm")(stem(x)))
        x = nn.max_pool(x, (3, 3), strides=(2, 2), padding="SAME")
        for i, blocks in enumerate(self.stage_sizes):
            if 4 * 2**i > self.output_stride:  # stage i runs at stride 4 * 2**i
                break
            for j in range(blocks):
                stride = 2 if i > 0 and j == 0 else 1
                x = ResNetBlock(self.num_filters * 2**i, stride, name=f"stage{i}_block{j}")(x)
        return x


class SpatialLearnedEmbeddings(nn.Module):
    """Pool [B,H,W,C] to [B, C*num_features] with learned per-location weights (the original's)."""

    num_features: int = 8

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        b, h, w, c = x.shape
        kernel = self.param("kernel", nn.initializers.lecun_normal(), (h, w, c, self.num_features))
        # one small matmul per channel, as an explicit channel-batched dot: XLA:CPU ran the
        # einsum's own lowering ~1.4x slower
        xt = jnp.transpose(jnp.reshape(x, (b, h * w, c)), (2, 0, 1))  # [c, b, hw]
        kt = jnp.transpose(jnp.reshape(kernel, (h * w, c, -1)), (1, 0, 2))  # [c, hw, f]
        out = jax.lax.dot_general(xt, kt, (((2,), (1,)), ((0,), (0,))))  # [c, b, f]
        return jnp.reshape(jnp.transpose(out, (1, 0, 2)), (b, -1))


class SpatialProjection(nn.Module):
    """Pool [B,H,W,C] to [B, H*W*num_features]: a learned 1x1 projection of the channels at every
    location, flattened (every location keeps its own features, as in spatial learned
    embeddings, but as one channel-last matmul instead of one per channel)."""

    num_features: int = 8

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = nn.Dense(self.num_features, use_bias=False, kernel_init=default_init())(x)
        return jnp.reshape(x, (x.shape[0], -1))


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


def make_backbone(backbone: str, output_stride: int | None = None, **kwargs: Any) -> nn.Module:
    """The backbone module for a name (`BACKBONES`), cut at `output_stride` (None: full depth)."""
    if backbone not in BACKBONES:
        raise ValueError(f"unknown backbone {backbone!r}; choose from {BACKBONES}")
    if output_stride not in FEATURE_STRIDES[backbone]:
        raise ValueError(
            f"backbone {backbone} stops at output strides {FEATURE_STRIDES[backbone]}, "
            f"not {output_stride}"
        )
    if backbone == "small":
        return SmallCNN(**kwargs)
    module = ResNet10 if backbone == "resnet10" else MobileNetV2
    return module(output_stride=output_stride or 32, **kwargs)


def backbone_input(images: jax.Array, backbone: str) -> jax.Array:
    """uint8 images [..., C] -> the backbone's input: [0, 1] floats, ImageNet-standardised for
    the pretrained backbones (the statistics tiled over stacked frames)."""
    x = images.astype(jnp.float32) / 255.0
    c = x.shape[-1]
    if backbone != "small" and c % 3 == 0:
        mean = jnp.tile(jnp.asarray(IMAGENET_MEAN), c // 3)
        std = jnp.tile(jnp.asarray(IMAGENET_STD), c // 3)
        x = (x - mean) / std
    return x


class ImageEncoder(nn.Module):
    """One camera: uint8 [B,H,W,C] -> normalise -> backbone -> pool -> dropout -> Dense+LN+tanh.

    C may hold several stacked frames (T*3). With `freeze_backbone` the backbone output is
    stop-gradiented (the agents also keep its parameters out of the optimizer). With
    `cached_features` the input is already the frozen backbone's feature map ([B,h,w,c], stacked
    frames along c), computed once per frame outside the network: only the head runs here.
    """

    backbone: str = "resnet10"
    pooling: str = "spatial_learned_embeddings"
    num_spatial_features: int = 8
    bottleneck_dim: int = 256
    dropout_rate: float = 0.1
    freeze_backbone: bool = False
    feature_stride: int | None = None
    cached_features: bool = False

    @nn.compact
    def __call__(self, images: jax.Array, train: bool = False) -> jax.Array:
        if self.cached_features:
            x = images.astype(jnp.float32)
        else:
            x = backbone_input(images, self.backbone)
            x = make_backbone(self.backbone, self.feature_stride, name=BACKBONE_NAME)(x)
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
        elif self.pooling == "spatial_projection":
            x = SpatialProjection(self.num_spatial_features)(x)
        else:
            raise ValueError(f"unknown pooling {self.pooling!r}; choose from {POOLINGS}")
        if self.dropout_rate > 0:
            x = nn.Dropout(self.dropout_rate)(x, deterministic=not train)
        if self.bottleneck_dim > 0:
            x = nn.Dense(self.bottleneck_dim, kernel_init=default_init())(x)
            x = nn.LayerNorm()(x)
            x = jnp.tanh(x)
        return x


# How cached feature maps are stored; the actor's policy quantises its own to it too, so both
# sides feed the head the same numbers.
FEATURE_DTYPE = jnp.bfloat16


def frame_features(
    backbone: Callable[[jax.Array], jax.Array], frames: jax.Array, name: str
) -> jax.Array:
    """uint8 frames [..., H, W, 3] (any leading axes: batch, stack) -> the frozen `backbone`'s
    feature maps [..., h, w, c] in `FEATURE_DTYPE`, each frame on its own."""
    lead = frames.shape[:-3]
    x = backbone_input(jnp.reshape(frames, (-1, *frames.shape[-3:])), name)
    y = jax.lax.stop_gradient(backbone(x)).astype(FEATURE_DTYPE)
    return jnp.reshape(y, (*lead, *y.shape[1:]))


class ObservationEncoder(nn.Module):
    """Every camera through its own ImageEncoder, the other keys through a proprio encoder.

    Images may be [B,H,W,C] or [B,T,H,W,C] (frames merged into channels). Proprio keys are
    flattened and concatenated in the given (sorted) order, then Dense(proprio_dim)+LN+tanh
    (proprio_dim 0 passes them through raw). Output: the concatenation of all features.

    With `feature_backbone` (cached features) the cameras' image encoders read feature maps:
    a camera given as float features (the learner's stored batches) goes straight to its
    head; one given as uint8 frames (the actor's observations) first runs through the shared,
    frozen `backbone` submodule, frame by frame, and is quantised as the cache stores it.
    """

    image_keys: tuple[str, ...]
    proprio_keys: tuple[str, ...]
    image_encoder: Callable[..., nn.Module] = ImageEncoder
    proprio_dim: int = 64
    obs_norm: ObsNorm = ()  # standardisation of proprio keys
    feature_backbone: tuple[str, int | None] | None = None  # (backbone, output stride)

    @nn.compact
    def __call__(self, obs: Mapping[str, jax.Array], train: bool = False) -> jax.Array:
        obs = standardize(obs, self.obs_norm)
        if self.feature_backbone is not None:
            obs = self._raw_frames_to_features(obs)
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

    def _raw_frames_to_features(self, obs: Mapping[str, jax.Array]) -> dict[str, jax.Array]:
        """Cameras given as uint8 frames through the shared backbone (one call for all cameras
        of one shape); cameras given as features unchanged."""
        backbone = make_backbone(*self.feature_backbone, name=BACKBONE_NAME)
        out = dict(obs)
        raw = [k for k in self.image_keys if obs[k].dtype == jnp.uint8]
        for shape in dict.fromkeys(obs[k].shape for k in raw):
            keys = [k for k in raw if obs[k].shape == shape]
            y = frame_features(
                backbone, jnp.stack([obs[k] for k in keys]), self.feature_backbone[0]
            )
            out.update(zip(keys, y, strict=True))
        return out


def image_encoder_factory(
    backbone: str = "resnet10",
    pooling: str = "spatial_learned_embeddings",
    num_spatial_features: int = 8,
    bottleneck_dim: int = 256,
    dropout_rate: float = 0.1,
    freeze_backbone: bool = False,
    feature_stride: int | None = None,
    cached_features: bool = False,
) -> Callable[..., nn.Module]:
    """A validated ImageEncoder constructor for `ObservationEncoder.image_encoder`."""
    make_backbone(backbone, feature_stride)  # validates the name and the stride
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
        feature_stride=feature_stride,
        cached_features=cached_features,
    )
