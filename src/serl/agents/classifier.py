"""Binary success classifier on camera images: the learned reward (and VICE's discriminator).

Per-camera image encoders (small CNN, ResNet-10 or MobileNetV2, optionally frozen with
pretrained weights: `EncoderConfig`) feed a small MLP head that outputs one logit,
p(success | images). Images may be [B,H,W,C] or frame stacks [B,T,H,W,C]; they are downsampled
to `image_size` inside the network, so a classifier trained on small frames reads full-size ones
unchanged.

With `encoder.cache_features` (a frozen backbone) the network is the head only and the frozen
backbone sits beside it (`state.frozen["backbone"]`): `backbone_features` turns uint8 frames
(downsampled first when `image_size` is set) into feature maps, so training computes each
frame's features once (`features`) and steps on them, while `logits`/`predict`/`probability`
take raw frames (backbone, then head) or stored features alike.

Training: `update(state, batch)` with batch {"observations": {camera: uint8 frames, or feature
maps with cached features}, "labels": [B]} takes one Adam step on binary cross-entropy, with
random-shift (pad, random crop; pixels only) augmentation and, optionally, label smoothing,
mixup and an input-gradient penalty (VICE).

A saved classifier is a directory: classifier.json {"format", "kind", "version", "config",
"spec", "threshold", "report"} and state/ (Orbax arrays); nothing is unpickled.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

from serl.agents.augment import random_shift
from serl.agents.common import (
    AgentSpec,
    EncoderConfig,
    Params,
    ParamState,
    apply_if_finite,
    batch_spec,
    frozen_module_name,
    map_in_chunks,
    merge_params,
    pretrained_backbone,
    split_frozen,
)
from serl.agents.persist import restore_into, save_tree, spec_from_dict, spec_to_dict
from serl.dataclass_json import decode
from serl.errors import ConfigError, PathNotFound
from serl.networks import (
    BACKBONE_NAME,
    ClassifierNet,
    downsample,
    frame_features,
    make_backbone,
)

FORMAT = 1
KIND = "serl.reward_classifier"
VERSION = 1  # bump when the network layout changes: old checkpoints are then refused


@dataclasses.dataclass(frozen=True)
class ClassifierConfig:
    """Hyperparameters of the success classifier (frozen, so static under jit).

    `image_keys=None` uses every camera of the example observation. `image_size` (square)
    downsamples frames inside the network (None: native size). `shift_pad` is the random-shift
    augmentation, in pixels of the downsampled frame. `label_smoothing` pulls targets toward
    0.5, `mixup_alpha > 0` mixes pairs of samples with Beta(alpha, alpha) weights and
    `grad_penalty` scales the mean squared input-gradient norm of the logit (VICE's recipe:
    0.2, 1.0, 10).

    With `encoder.cache_features` training steps on stored feature maps: `shift_pad` is
    ignored (a pixel shift cannot apply to features; shifting a stride-16 map by a cell would
    move the image 16 px) and `grad_penalty` is refused (it is a gradient with respect to
    pixels, which the head never sees).
    """

    encoder: EncoderConfig = EncoderConfig(  # noqa: RUF009 (frozen, hashable)
        backbone="small",
        pooling="spatial_learned_embeddings",
        num_spatial_features=4,
        bottleneck_dim=64,
        dropout_rate=0.0,
        proprio_dim=0,
        freeze_backbone=False,
    )
    image_keys: tuple[str, ...] | None = None
    image_size: int | None = 64
    hidden_dims: tuple[int, ...] = (64,)
    dropout_rate: float = 0.1
    lr: float = 3e-4
    batch_size: int = 64
    shift_pad: int = 2
    label_smoothing: float = 0.0
    mixup_alpha: float = 0.0
    grad_penalty: float = 0.0

    def __post_init__(self) -> None:
        if self.image_size is not None and self.image_size < 8:
            raise ValueError(f"image_size must be >= 8 or None, got {self.image_size}")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError("label_smoothing must lie in [0, 1)")
        if self.mixup_alpha < 0 or self.grad_penalty < 0 or self.shift_pad < 0:
            raise ValueError("mixup_alpha, grad_penalty and shift_pad must be >= 0")
        if self.encoder.cache_features and self.grad_penalty > 0:
            raise ValueError(
                "grad_penalty is on pixels; a classifier on cached features trains "
                "on feature maps: set grad_penalty=0 or cache_features=False"
            )


@functools.lru_cache(maxsize=32)
def build_net(config: ClassifierConfig, spec: AgentSpec) -> ClassifierNet:
    """The network for a config and spec (cached: both are hashable)."""
    return ClassifierNet(
        image_keys=spec.keys,
        image_encoder=config.encoder.image_encoder(),
        cached_features=config.encoder.cache_features,
        image_size=config.image_size,
        hidden_dims=config.hidden_dims,
        dropout_rate=config.dropout_rate,
    )


class ClassifierState(struct.PyTreeNode):
    """Trainable parameters with Adam state, frozen backbones, RNG and step; config and spec."""

    params: ParamState
    frozen: Params
    rng: jax.Array
    step: jax.Array
    config: ClassifierConfig = struct.field(pytree_node=False)
    spec: AgentSpec = struct.field(pytree_node=False)


def classifier_spec(
    example_obs: Mapping[str, Any], image_keys: tuple[str, ...] | None
) -> AgentSpec:
    """The spec of the classifier's inputs: the cameras of one unbatched observation.

    Cameras are keys whose per-sample shape is [H,W,C] or [T,H,W,C]; the spec's action_dim is
    a placeholder (1): a classifier has no actions.
    """
    keys = image_keys
    if keys is None:
        keys = tuple(k for k in sorted(example_obs) if np.ndim(example_obs[k]) in (3, 4))
    missing = [k for k in keys if k not in example_obs]
    if missing or not keys:
        raise ValueError(
            f"no camera keys {missing or ''} in observation keys {sorted(example_obs)}"
        )
    return AgentSpec.from_example({k: example_obs[k] for k in keys}, 1)


def _backbone(encoder: EncoderConfig) -> nn.Module:
    return make_backbone(encoder.backbone, encoder.feature_stride)


def feature_spec(config: ClassifierConfig, spec: AgentSpec) -> AgentSpec:
    """What the head reads with cached features: the agents' `batch_spec` of the cameras as the
    backbone sees them (downsampled to `image_size` when set)."""
    if config.image_size is not None:
        size = config.image_size
        frames = tuple((k, (*s[:-3], size, size, s[-1]), d) for k, s, d in spec.observation)
        spec = AgentSpec(frames, spec.action_dim)
    return batch_spec(spec, config.encoder)


def backbone_features(
    state: ClassifierState, images: Mapping[str, jax.Array]
) -> dict[str, jax.Array]:
    """With cached features: cameras given as uint8 frames -> the frozen backbone's feature maps
    (downsampled to `image_size` first when set); cameras given as features, or any input
    without cached features, pass unchanged. The one featurizer of training and inference."""
    cfg = state.config
    if not cfg.encoder.cache_features:
        return dict(images)
    module = _backbone(cfg.encoder)

    def apply(x: jax.Array) -> jax.Array:
        return module.apply({"params": state.frozen[BACKBONE_NAME]}, x)

    return {
        k: frame_features(apply, downsample(v, cfg.image_size), cfg.encoder.backbone)
        if v.dtype == jnp.uint8
        else v
        for k, v in images.items()
    }


def init_state(
    config: ClassifierConfig, spec: AgentSpec, seed: int, load_pretrained_weights: bool = True
) -> ClassifierState:
    """Freshly initialised classifier (pretrained backbones loaded unless told not to)."""
    state = random_state(config, spec, seed)
    enc = config.encoder
    if not load_pretrained_weights or enc.pretrained_path is None:
        return state
    params = jax.tree.map(np.asarray, merge_params(state.params.params, state.frozen))
    cams = [params] if enc.cache_features else [params["encoder"][f"image_{k}"] for k in spec.keys]
    for cam in cams:
        cam[BACKBONE_NAME] = pretrained_backbone(enc, cam[BACKBONE_NAME])
    trainable, frozen = split_frozen(jax.tree.map(jnp.asarray, params), frozen_module_name(enc))
    return state.replace(params=state.params.replace(params=trainable), frozen=frozen)


@functools.partial(jax.jit, static_argnums=(0, 1))
def random_state(config: ClassifierConfig, spec: AgentSpec, seed: int) -> ClassifierState:
    """A fresh classifier with random backbones, as one compiled program (as an agent's)."""
    net = build_net(config, spec)
    enc = config.encoder
    rng, k_params, k_drop = jax.random.split(jax.random.PRNGKey(seed), 3)
    # cached features: the net is the head (initialised on feature maps) and the one frozen
    # backbone, shared by the cameras, sits beside it
    example = feature_spec(config, spec).example() if enc.cache_features else spec.example()
    variables = net.init({"params": k_params, "dropout": k_drop}, example, False)
    params = dict(variables["params"])
    if enc.cache_features:
        frame = jnp.zeros((1, 32, 32, 3), jnp.float32)  # conv weights: any frame size will do
        params[BACKBONE_NAME] = _backbone(enc).init(k_params, frame)["params"]
    trainable, frozen = split_frozen(params, frozen_module_name(enc))
    return ClassifierState(
        params=ParamState.create(trainable, config.lr),
        frozen=frozen,
        rng=rng,
        step=jnp.zeros((), jnp.int32),
        config=config,
        spec=spec,
    )


def create(
    config: ClassifierConfig, example_obs: Mapping[str, Any], seed: int = 0
) -> ClassifierState:
    """A new classifier for observations like `example_obs` (one unbatched dict)."""
    return init_state(config, classifier_spec(example_obs, config.image_keys), seed)


def _apply(
    state: ClassifierState,
    trainable: Params,
    images: Mapping[str, jax.Array],
    train: bool,
    key: jax.Array | None,
) -> jax.Array:
    net = build_net(state.config, state.spec)
    rngs = {"dropout": key} if key is not None else {}
    if state.config.encoder.cache_features:  # the backbone runs outside the (head) net
        return net.apply({"params": trainable}, backbone_features(state, images), train, rngs=rngs)
    params = merge_params(trainable, state.frozen)
    return net.apply({"params": params}, images, train, rngs=rngs)


def _mixup(
    images: dict[str, jax.Array], targets: jax.Array, key: jax.Array, alpha: float
) -> tuple[dict[str, jax.Array], jax.Array]:
    """Convex combinations of each sample with a random partner (weights ~ Beta(alpha, alpha))."""
    k_lam, k_perm = jax.random.split(key)
    n = targets.shape[0]
    lam = jax.random.beta(k_lam, alpha, alpha, (n,))
    perm = jax.random.permutation(k_perm, n)

    def mix(x: jax.Array) -> jax.Array:
        w = jnp.reshape(lam, (n,) + (1,) * (x.ndim - 1))
        return w * x + (1.0 - w) * x[perm]

    return {k: mix(v) for k, v in images.items()}, mix(targets)


def classifier_loss(
    state: ClassifierState,
    trainable: Params,
    images: Mapping[str, jax.Array],
    labels: jax.Array,
    key: jax.Array,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """BCE (+ gradient penalty) on augmented float images [0, 255], or on feature maps with
    cached features (raw frames are featurized first; no shift); returns (loss, metrics)."""
    cfg = state.config
    k_shift, k_mix, k_drop, k_gp = jax.random.split(key, 4)
    cached = cfg.encoder.cache_features
    # cached: shift_pad is ignored, not refused (its default is on): features cannot be shifted
    images = dict(
        backbone_features(state, images)
        if cached
        else {k: downsample(v, cfg.image_size) for k, v in images.items()}
    )
    if cfg.shift_pad > 0 and not cached:
        keys = jax.random.split(k_shift, len(images))
        images = {
            k: random_shift(v, kk, cfg.shift_pad)
            for (k, v), kk in zip(sorted(images.items()), keys, strict=True)
        }
    targets = labels * (1.0 - cfg.label_smoothing) + 0.5 * cfg.label_smoothing
    if cfg.mixup_alpha > 0:
        images, targets = _mixup(images, targets, k_mix, cfg.mixup_alpha)
    logits = _apply(state, trainable, images, True, k_drop)
    bce = jnp.mean(optax.sigmoid_binary_cross_entropy(logits, targets))
    penalty = jnp.zeros(())
    if cfg.grad_penalty > 0:
        # Smoothness of the discriminator around the data (VICE): the logit's gradient with
        # respect to pixels in [0, 1], squared, averaged over samples.
        def total_logit(unit: dict[str, jax.Array]) -> jax.Array:
            scaled = {k: v * 255.0 for k, v in unit.items()}
            return jnp.sum(_apply(state, trainable, scaled, True, k_gp))

        unit = {k: v / 255.0 for k, v in images.items()}
        grads = jax.grad(total_logit)(unit)
        sq = sum(jnp.sum(jnp.reshape(g, (g.shape[0], -1)) ** 2, axis=-1) for g in grads.values())
        penalty = jnp.mean(sq)
    loss = bce + cfg.grad_penalty * penalty
    hard = labels > 0.5
    metrics = {
        "classifier/loss": loss,
        "classifier/bce": bce,
        "classifier/grad_penalty": penalty,
        "classifier/accuracy": jnp.mean((logits > 0) == hard),
        "classifier/p_positive": jnp.sum(jax.nn.sigmoid(logits) * hard)
        / jnp.maximum(jnp.sum(hard), 1),
        "classifier/p_negative": jnp.sum(jax.nn.sigmoid(logits) * ~hard)
        / jnp.maximum(jnp.sum(~hard), 1),
    }
    return loss, metrics


def update_step(
    state: ClassifierState, observations: Mapping[str, Any], labels: jax.Array
) -> tuple[ClassifierState, dict[str, jax.Array]]:
    """One Adam step (not jitted by itself: `update` and VICE jit it)."""
    rng, key = jax.random.split(state.rng)
    images = {k: jnp.asarray(observations[k]) for k in state.spec.keys}
    labels = jnp.asarray(labels, jnp.float32)

    def loss_fn(trainable: Params) -> tuple[jax.Array, dict[str, jax.Array]]:
        return classifier_loss(state, trainable, images, labels, key)

    (loss, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params.params)
    params, ok = apply_if_finite(state.params, grads, loss)
    metrics = {**metrics, "classifier/skipped": 1 - ok.astype(jnp.int32)}
    return state.replace(params=params, rng=rng, step=state.step + 1), metrics


@functools.partial(jax.jit, donate_argnums=0)
def update(state: ClassifierState, batch: Mapping[str, Any]) -> tuple[ClassifierState, dict]:
    """One training step on {"observations": {camera: [B, ...]}, "labels": [B] in {0, 1}}.

    Donates `state`: always rebind."""
    return update_step(state, batch["observations"], batch["labels"])


@jax.jit
def logits(state: ClassifierState, observations: Mapping[str, Any]) -> jax.Array:
    """Success logits [B] of a batch of observations (evaluation mode: no dropout, no shift);
    with cached features the cameras may be raw uint8 frames or their stored feature maps."""
    images = {k: jnp.asarray(observations[k]) for k in state.spec.keys}
    return _apply(state, state.params.params, images, False, None)


@jax.jit
def _features(state: ClassifierState, frames: Mapping[str, jax.Array]) -> dict[str, jax.Array]:
    return backbone_features(state, frames)


def features(
    state: ClassifierState, observations: Mapping[str, Any], batch_size: int = 256
) -> dict[str, np.ndarray]:
    """The cameras' frames {camera: uint8 [N, ...]} as the frozen backbone's feature maps
    {camera: [N, ...]} (FEATURE_DTYPE), `batch_size` frames per call (the last chunk padded:
    one compiled shape); computed once, they train and evaluate the head without the backbone.
    """
    if not state.config.encoder.cache_features:
        raise ValueError("features() needs a classifier whose encoder has cache_features")
    cams = {k: np.asarray(observations[k]) for k in state.spec.keys}
    if len(cams[state.spec.keys[0]]) == 0:
        spec = feature_spec(state.config, state.spec)
        return {k: np.zeros((0, *s), d) for k, s, d in spec.observation}
    return map_in_chunks(lambda x: _features(state, x), cams, batch_size)


def predict(
    state: ClassifierState, observations: Mapping[str, Any], batch_size: int = 256
) -> np.ndarray:
    """p(success) for a batch of observations (host numpy, any size, in chunks)."""
    first = observations[state.spec.keys[0]]
    n = len(first)
    out = []
    for start in range(0, n, batch_size):
        chunk = {k: observations[k][start : start + batch_size] for k in state.spec.keys}
        out.append(np.asarray(jax.nn.sigmoid(logits(state, chunk))))
    return np.concatenate(out) if out else np.zeros(0, np.float32)


def probability(state: ClassifierState, obs: Mapping[str, Any]) -> float:
    """p(success) of one unbatched observation (the learned-reward wrapper's callable)."""
    batched, single = state.spec.batch_observation(obs)
    if not single:
        raise ValueError("probability() takes one observation; use predict() for a batch")
    return float(jax.nn.sigmoid(logits(state, batched))[0])


# -- save / restore -------------------------------------------------------------------------


def save(
    state: ClassifierState,
    directory: str | os.PathLike,
    threshold: float = 0.5,
    report: Mapping[str, Any] | None = None,
) -> Path:
    """Write the classifier (config JSON, version, threshold, report; Orbax arrays)."""
    meta = {
        "format": FORMAT,
        "kind": KIND,
        "version": VERSION,
        "config": dataclasses.asdict(state.config),
        "spec": spec_to_dict(state.spec),
        "threshold": float(threshold),
        "report": dict(report or {}),
    }
    return save_tree(state, Path(directory), "classifier.json", meta)


def load_meta(directory: str | os.PathLike) -> dict[str, Any]:
    """classifier.json of a saved classifier, checked for kind, format and version."""
    path = Path(directory) / "classifier.json"
    if not path.exists():
        raise PathNotFound(f"{directory}: no classifier.json (not a saved classifier)")
    meta = json.loads(path.read_text())
    if meta.get("kind") != KIND or meta.get("format") != FORMAT:
        raise ConfigError(f"{directory}: not a {KIND} format {FORMAT} checkpoint")
    if meta.get("version") != VERSION:
        raise ConfigError(
            f"{directory}: classifier version {meta.get('version')} is not this serl's {VERSION}"
        )
    return meta


def restore(directory: str | os.PathLike) -> tuple[ClassifierState, dict[str, Any]]:
    """Rebuild a saved classifier exactly; returns (state, classifier.json contents)."""
    directory = Path(directory).absolute()
    meta = load_meta(directory)
    config = decode(ClassifierConfig, meta["config"], "classifier config")
    spec = spec_from_dict(meta["spec"])
    template = jax.eval_shape(lambda: init_state(config, spec, 0, load_pretrained_weights=False))
    return restore_into(template, directory), meta
