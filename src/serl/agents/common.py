"""Pieces every agent shares: the observation/action spec, encoder config, optimised-parameter
state, non-finite update skipping, frozen-parameter bookkeeping and batch checks."""

from __future__ import annotations

import dataclasses
import functools
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct, traverse_util

from serl.networks import (
    BACKBONE_NAME,
    FEATURE_DTYPE,
    POOLINGS,
    FlattenObservation,
    ObservationEncoder,
    ObsNorm,
    image_encoder_factory,
    load_params_npz,
    load_pretrained,
    make_backbone,
    resolve_pretrained,
)

Params = Any
Batch = Mapping[str, Any]
BATCH_KEYS = ("observations", "actions", "rewards", "masks", "next_observations")


@dataclasses.dataclass(frozen=True)
class EncoderConfig:
    """Image encoder per camera plus proprio encoder (the DrQ observation encoder).

    `image_keys=None` treats every observation key whose per-sample shape is [H,W,C] or
    [T,H,W,C] as a camera; all other keys are proprio. `pretrained_path` names the backbone's
    weights for `serl.networks.resolve_pretrained`: "imagenet" (mobilenet_v2), a local `.npz`
    in serl's format, or another tool's file (converted once into the weight cache); they are
    loaded into every camera's backbone. With `freeze_backbone` the backbone gets no gradient
    and no optimizer state: its parameters live in the agent state's `frozen` subtree.
    `feature_stride` cuts the backbone at an earlier output stride (None: its full depth).

    `cache_features` (a frozen backbone only): the backbone's output for a stored frame never
    changes, so the training layer computes it once per frame and the learner's batches carry
    feature maps (`batch_spec`) instead of pixels; one backbone, shared by the cameras, runs
    only where raw frames arrive (the actor's policy, the feature cache). `cached_views` K > 1
    also caches the features of K - 1 copies of each frame shifted by up to `view_shift_pad`
    pixels (fixed offsets), and each sample draws one of the K: DrQ's random shift, paid once
    per frame at insert instead of once per batch.
    """

    backbone: str = "resnet10"
    pooling: str = "spatial_learned_embeddings"
    num_spatial_features: int = 8
    bottleneck_dim: int = 256
    dropout_rate: float = 0.1
    proprio_dim: int = 64
    freeze_backbone: bool = False
    pretrained_path: str | None = None
    image_keys: tuple[str, ...] | None = None
    feature_stride: int | None = None
    cache_features: bool = False
    cached_views: int = 1
    view_shift_pad: int = 4

    def __post_init__(self) -> None:
        make_backbone(self.backbone, self.feature_stride)  # a known backbone and stride
        if self.pooling not in POOLINGS:
            raise ValueError(f"unknown pooling {self.pooling!r}; choose from {POOLINGS}")
        if self.cache_features and not self.freeze_backbone:
            raise ValueError(
                "cache_features needs freeze_backbone: a trained backbone's "
                "features change with every update"
            )
        if self.cached_views < 1 or (self.cached_views > 1 and not self.cache_features):
            raise ValueError("cached_views must be >= 1, and > 1 only with cache_features")

    def image_encoder(self) -> Callable[..., nn.Module]:
        """The per-camera ImageEncoder constructor this config describes."""
        return image_encoder_factory(
            backbone=self.backbone,
            pooling=self.pooling,
            num_spatial_features=self.num_spatial_features,
            bottleneck_dim=self.bottleneck_dim,
            dropout_rate=self.dropout_rate,
            freeze_backbone=self.freeze_backbone,
            feature_stride=self.feature_stride,
            cached_features=self.cache_features,
        )


@dataclasses.dataclass(frozen=True)
class AgentSpec:
    """What an agent was built for: per-sample observation shapes/dtypes (sorted keys) and |A|."""

    observation: tuple[tuple[str, tuple[int, ...], str], ...]
    action_dim: int

    @classmethod
    def from_example(cls, example_obs: Mapping[str, Any], action_dim: int) -> AgentSpec:
        """Spec from one *unbatched* observation dict."""
        if not isinstance(example_obs, Mapping) or not example_obs:
            raise TypeError("the example observation must be a non-empty dict of arrays")
        obs = []
        for key in sorted(example_obs):
            if not isinstance(key, str) or "/" in key or not key:
                raise ValueError(f"observation keys must be non-empty strings without '/': {key!r}")
            x = np.asarray(example_obs[key])
            obs.append((key, tuple(int(d) for d in x.shape), str(x.dtype)))
        if int(action_dim) < 1:
            raise ValueError(f"action_dim must be >= 1, got {action_dim}")
        return cls(tuple(obs), int(action_dim))

    @property
    def keys(self) -> tuple[str, ...]:
        """Observation keys in sorted order."""
        return tuple(k for k, _, _ in self.observation)

    def example(self, batch_size: int = 1) -> dict[str, np.ndarray]:
        """A zero observation batch matching the spec."""
        return {k: np.zeros((batch_size, *s), dtype=d) for k, s, d in self.observation}

    def image_keys(self, encoder: EncoderConfig | None) -> tuple[str, ...]:
        """Camera keys for an encoder config (none without an image encoder)."""
        if encoder is None:
            return ()
        if encoder.image_keys is not None:
            unknown = set(encoder.image_keys) - set(self.keys)
            if unknown:
                raise ValueError(
                    f"image_keys {sorted(unknown)} are not observation keys {self.keys}"
                )
            return tuple(sorted(encoder.image_keys))
        return tuple(k for k, s, _ in self.observation if len(s) in (3, 4))

    def batch_observation(self, obs: Mapping[str, Any]) -> tuple[dict[str, np.ndarray], bool]:
        """Validate an observation (single or batched) and return it batched plus `was_single`.

        Host arrays are cast to the spec's dtypes (one compiled policy per batch size, not per
        dtype a caller happens to pass)."""
        if not isinstance(obs, Mapping):
            raise TypeError(f"observations must be a dict with keys {self.keys}, got {type(obs)}")
        out: dict[str, np.ndarray] = {}
        single = None
        for key, shape, dtype in self.observation:
            if key not in obs:
                raise KeyError(f"observation lacks key {key!r}; expected keys {self.keys}")
            x = obs[key]
            if not isinstance(x, jax.Array):
                x = np.asarray(x)
                if not np.can_cast(x.dtype, dtype, "same_kind"):
                    raise ValueError(f"observation {key!r} has dtype {x.dtype}, expected {dtype}")
                x = x.astype(dtype, copy=False)
            if tuple(x.shape) == shape:
                is_single = True
                x = x[None]
            elif tuple(x.shape[1:]) == shape:
                is_single = False
            else:
                raise ValueError(f"observation {key!r} has shape {x.shape}, expected {shape}")
            if single is not None and single != is_single:
                raise ValueError("mixing batched and unbatched observation entries")
            single = is_single
            out[key] = x
        return out, bool(single)

    def check_batch(self, batch: Batch) -> None:
        """Trace-time check of a training batch's keys and shapes against the spec."""
        missing = [k for k in BATCH_KEYS if k not in batch]
        if missing:
            raise KeyError(f"batch lacks {missing}; a batch holds {BATCH_KEYS}")
        n = np.shape(batch["rewards"])[0]
        for name in ("observations", "next_observations"):
            for key, shape, _ in self.observation:
                if key not in batch[name]:
                    raise KeyError(f"batch[{name!r}] lacks key {key!r}")
                got = tuple(np.shape(batch[name][key]))
                if got[1:] != shape or got[0] != n:
                    raise ValueError(
                        f"batch[{name!r}][{key!r}] has shape {got}, want ({n}, *{shape})"
                    )
        if tuple(np.shape(batch["actions"])) != (n, self.action_dim):
            raise ValueError(
                f"batch actions shape {np.shape(batch['actions'])} != ({n}, {self.action_dim})"
            )
        for name in ("rewards", "masks"):
            if tuple(np.shape(batch[name])) != (n,):
                raise ValueError(f"batch[{name!r}] shape {np.shape(batch[name])} != ({n},)")


class ParamState(struct.PyTreeNode):
    """Parameters, their optimizer (Adam at a learning rate: static) and its state."""

    params: Params
    opt_state: Any
    tx: optax.GradientTransformation = struct.field(pytree_node=False)

    @classmethod
    def create(cls, params: Params, lr: float) -> ParamState:
        """Fresh Adam state for `params`."""
        tx = adam(lr)
        return cls(params=params, opt_state=tx.init(params), tx=tx)


@functools.cache
def adam(lr: float) -> optax.GradientTransformation:
    """One Adam object per learning rate: states built apart compare equal, so share jit caches."""
    return optax.adam(lr)


def all_finite(tree: Any) -> jax.Array:
    """True iff every element of every leaf is finite."""
    leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.array(True)


def apply_if_finite(ps: ParamState, grads: Params, loss: jax.Array) -> tuple[ParamState, jax.Array]:
    """One optimizer step, unless the loss or any gradient is non-finite (then `ps` unchanged)."""
    ok = jnp.isfinite(loss) & all_finite(grads)

    def step(ps: ParamState) -> ParamState:
        updates, opt_state = ps.tx.update(grads, ps.opt_state, ps.params)
        return ps.replace(params=optax.apply_updates(ps.params, updates), opt_state=opt_state)

    # A cond, not a select: the skipped branch costs nothing and the taken one is not re-read.
    return jax.lax.cond(ok, step, lambda ps: ps, ps), ok


def split_minibatches(batch: Batch, ratio: int) -> Batch:
    """Reshape every leaf [N, ...] to [ratio, N // ratio, ...] (the scan's minibatches)."""
    n = jax.tree.leaves(batch)[0].shape[0]
    if n % ratio:
        raise ValueError(f"batch of {n} does not split into critic_actor_ratio={ratio} minibatches")
    return jax.tree.map(lambda x: jnp.reshape(x, (ratio, n // ratio, *x.shape[1:])), batch)


def unrolled_scan(body: Any, carry: Any, xs: Any) -> tuple[Any, Any]:
    """`lax.scan(body, carry, xs)` as straight-line code: no XLA while loop.

    XLA:CPU runs convolutions inside a while loop on a slow path (a DrQ critic step took ~15x
    longer in the loop than alone), and even the MLP-only step gains ~3% unrolled. unroll must
    exceed 1: a length-1 scan with unroll=1 (or True) still emits the loop.
    """
    length = jax.tree.leaves(xs)[0].shape[0]
    return jax.lax.scan(body, carry, xs, unroll=max(length, 2))


def polyak(target: Params, online: Params, tau: float | jax.Array) -> Params:
    """target <- target + tau * (online - target); tau = 0 leaves the target exactly as it is."""
    return jax.tree.map(lambda t, o: t + tau * (o - t), target, online)


def split_frozen(params: Params, frozen_name: str | None) -> tuple[Params, Params]:
    """Split off every subtree under a module called `frozen_name` (None: nothing frozen)."""
    flat = traverse_util.flatten_dict(params) if params else {}
    if frozen_name is None:
        return params, {}
    trainable = {k: v for k, v in flat.items() if frozen_name not in k}
    frozen = {k: v for k, v in flat.items() if frozen_name in k}
    return traverse_util.unflatten_dict(trainable), traverse_util.unflatten_dict(frozen)


def merge_params(trainable: Params, frozen: Params) -> Params:
    """Inverse of `split_frozen`; frozen leaves enter under stop_gradient."""
    if not frozen:
        return trainable
    flat = traverse_util.flatten_dict(trainable) if trainable else {}
    flat.update(traverse_util.flatten_dict(jax.lax.stop_gradient(frozen)))
    return traverse_util.unflatten_dict(flat)


def make_encoder(
    encoder: EncoderConfig | None, spec: AgentSpec, obs_norm: ObsNorm | None = None
) -> nn.Module:
    """The observation encoder: flatten-all-keys for state agents, cameras + proprio otherwise;
    `obs_norm` standardises the listed (non-image) keys first."""
    norm = check_obs_norm(obs_norm or (), spec)
    if encoder is None:
        return FlattenObservation(spec.keys, obs_norm=norm)
    image_keys = spec.image_keys(encoder)
    if not image_keys:
        raise ValueError(
            f"an image encoder was configured but no observation key is an image: {spec}"
        )
    proprio_keys = tuple(k for k in spec.keys if k not in image_keys)
    return ObservationEncoder(
        image_keys=image_keys,
        proprio_keys=proprio_keys,
        image_encoder=encoder.image_encoder(),
        proprio_dim=encoder.proprio_dim,
        obs_norm=norm,
        feature_backbone=(
            (encoder.backbone, encoder.feature_stride) if encoder.cache_features else None
        ),
    )


def feature_map_shape(encoder: EncoderConfig, frame_shape: tuple[int, ...]) -> tuple[int, ...]:
    """The backbone's output shape [h, w, c] for one uint8 frame of `frame_shape` [H, W, C]."""
    module = make_backbone(encoder.backbone, encoder.feature_stride)
    x = jax.ShapeDtypeStruct((1, *frame_shape), jnp.float32)
    out = jax.eval_shape(lambda x: module.init_with_output(jax.random.PRNGKey(0), x)[0], x)
    if 0 in out.shape:
        raise ValueError(f"frames of {frame_shape} are too small for {encoder.backbone}")
    return tuple(out.shape[1:])


def map_in_chunks(fn: Any, tree: Any, size: int) -> Any:
    """`fn` over a pytree of host arrays (leading axis N >= 1), `size` rows per call, the last
    chunk padded with its last row (one compiled shape); the outputs joined and cut to N."""
    n = len(jax.tree.leaves(tree)[0])
    padded = jax.tree.map(lambda v: np.concatenate([v, np.repeat(v[-1:], -n % size, 0)]), tree)
    outs = [
        fn(jax.tree.map(lambda v, i=i: v[i : i + size], padded))
        for i in range(0, n + (-n % size), size)
    ]
    return jax.tree.map(lambda *o: np.asarray(jnp.concatenate(o))[:n], *outs)


@functools.lru_cache(maxsize=64)
def batch_spec(spec: AgentSpec, encoder: EncoderConfig | None) -> AgentSpec:
    """What the learner's batches hold: with cached features every camera frame ([H, W, C], or a
    stack [T, H, W, C]) becomes its feature map in FEATURE_DTYPE; otherwise `spec` itself."""
    if encoder is None or not encoder.cache_features:
        return spec
    cams = spec.image_keys(encoder)
    obs = []
    for key, shape, dtype in spec.observation:
        if key in cams:
            shape = (*shape[:-3], *feature_map_shape(encoder, shape[-3:]))
            dtype = np.dtype(FEATURE_DTYPE).name
        obs.append((key, shape, dtype))
    return AgentSpec(tuple(obs), spec.action_dim)


def check_obs_norm(norm: ObsNorm, spec: AgentSpec) -> ObsNorm:
    """Validate standardisation constants against the spec: known keys, sizes, positive stds."""
    sizes = {k: int(np.prod(shape)) for k, shape, _ in spec.observation}
    for key, mean, std in norm:
        if key not in sizes:
            raise ValueError(f"obs_norm: {key!r} is not an observation key {spec.keys}")
        if len(mean) != sizes[key] or len(std) != sizes[key]:
            raise ValueError(f"obs_norm[{key!r}]: mean/std need {sizes[key]} values each")
        if not all(np.isfinite(mean)) or not all(s > 0 and np.isfinite(s) for s in std):
            raise ValueError(f"obs_norm[{key!r}]: means must be finite and stds positive")
    return norm


def frozen_module_name(encoder: EncoderConfig | None) -> str | None:
    """Name of the frozen submodules (every camera's backbone), or None when nothing is frozen."""
    return BACKBONE_NAME if encoder is not None and encoder.freeze_backbone else None


def init_encoder(
    module: nn.Module, key: jax.Array, spec: AgentSpec, encoder: EncoderConfig | None
) -> tuple[Params, Params]:
    """Initialise the encoder (on raw observations, so a shared feature backbone is built too);
    returns (trainable, frozen) parameters."""
    k_params, k_drop = jax.random.split(key)
    variables = module.init({"params": k_params, "dropout": k_drop}, spec.example(), False)
    return split_frozen(dict(variables.get("params", {})), frozen_module_name(encoder))


def pretrained_backbone(encoder: EncoderConfig, params: Params) -> dict[str, Any]:
    """`params` (one backbone's) replaced by `encoder.pretrained_path`'s weights."""
    loaded = load_params_npz(resolve_pretrained(encoder.backbone, encoder.pretrained_path))
    # a backbone cut at an earlier output stride uses only the first layers of the file
    return load_pretrained(params, loaded, allow_unused=encoder.feature_stride is not None)


def load_pretrained_backbones(
    encoder: EncoderConfig | None, spec: AgentSpec, trainable: Params, frozen: Params
) -> tuple[Params, Params]:
    """Load `encoder.pretrained_path` into every backbone (host-side, at creation): each
    camera's, or the one shared feature backbone when features are cached."""
    if encoder is None or encoder.pretrained_path is None:
        if encoder is not None and encoder.freeze_backbone:
            warnings.warn(
                "the image backbone is frozen but has no pretrained weights (random features); "
                "set encoder.pretrained_path or freeze_backbone=False",
                stacklevel=3,
            )
        return trainable, frozen
    frozen_tree = encoder.freeze_backbone
    tree = jax.tree.map(np.asarray, frozen if frozen_tree else trainable)
    if encoder.cache_features:
        tree[BACKBONE_NAME] = pretrained_backbone(encoder, tree[BACKBONE_NAME])
    else:
        for key in spec.image_keys(encoder):
            cam = tree[f"image_{key}"]
            cam[BACKBONE_NAME] = pretrained_backbone(encoder, cam[BACKBONE_NAME])
    tree = jax.tree.map(jnp.asarray, tree)
    return (trainable, tree) if frozen_tree else (tree, frozen)


def encode(
    module: nn.Module,
    trainable: Params,
    frozen: Params,
    obs: Mapping[str, jax.Array],
    train: bool,
    key: jax.Array | None,
) -> jax.Array:
    """Run the observation encoder with trainable and frozen parameters merged."""
    params = merge_params(trainable, frozen)
    rngs = {"dropout": key} if key is not None else {}
    return module.apply({"params": params}, obs, train, rngs=rngs)


def as_float_batch(batch: Batch) -> dict[str, Any]:
    """Rewards, masks and actions as float32 (masks may arrive as bool)."""
    out = dict(batch)
    for name in ("actions", "rewards", "masks"):
        out[name] = jnp.asarray(batch[name], jnp.float32)
    return out
