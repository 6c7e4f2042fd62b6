"""A 2-D convolution whose gradients are matmuls over image patches.

XLA:CPU computes a strided convolution's gradients well below its forward throughput: they
dominated a DrQ learner step. Here the forward pass stays XLA's own convolution, and the
gradients are matmuls: dW = patches(x)^T @ dy, dX = the transpose of patches(.) applied to
dy @ W^T, the same sums in a different order (1.5-2.4x faster per layer of the small
encoder). Pass `patch_conv` as `nn.Conv(conv_general_dilated=...)`; layouts other than
NHWC/HWIO, dilations and feature groups go to `lax.conv_general_dilated` unchanged.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

NHWC = ("NHWC", "HWIO", "NHWC")
Pads = tuple[tuple[int, int], ...]


def _forward(x: jax.Array, w: jax.Array, strides: tuple[int, int], pads: Pads) -> jax.Array:
    return lax.conv_general_dilated(x, w, strides, pads, dimension_numbers=NHWC)


def image_patches(
    x: jax.Array, size: tuple[int, int], strides: tuple[int, int], out_hw: tuple[int, int]
) -> jax.Array:
    """[N, OH, OW, KH*KW*C]: the input window under each output pixel, in HWIO kernel order."""
    (kh, kw), (sh, sw), (oh, ow) = size, strides, out_hw
    windows = [
        x[:, i : i + sh * (oh - 1) + 1 : sh, j : j + sw * (ow - 1) + 1 : sw, :]
        for i in range(kh)
        for j in range(kw)
    ]
    return jnp.concatenate(windows, axis=-1)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _conv(x: jax.Array, w: jax.Array, strides: tuple[int, int], pads: Pads) -> jax.Array:
    return _forward(x, w, strides, pads)


def _conv_fwd(x, w, strides, pads):
    return _forward(x, w, strides, pads), (x, w)


def _conv_bwd(strides, pads, residuals, dy):
    x, w = residuals
    kh, kw, c, features = w.shape

    def patches_of(x: jax.Array) -> jax.Array:
        padded = jnp.pad(x, ((0, 0), *pads, (0, 0)))
        return image_patches(padded, (kh, kw), strides, dy.shape[1:3])

    patches, patches_vjp = jax.vjp(patches_of, x)
    w2d, dy2d = w.reshape(-1, features), dy.reshape(-1, features)
    dw = patches.reshape(-1, kh * kw * c).T @ dy2d
    (dx,) = patches_vjp((dy2d @ w2d.T).reshape(patches.shape))  # unused for pixels: pruned
    return dx, dw.reshape(w.shape)


_conv.defvjp(_conv_fwd, _conv_bwd)


def patch_conv(
    lhs: jax.Array,
    rhs: jax.Array,
    window_strides: Sequence[int],
    padding: str | Sequence[tuple[int, int]],
    lhs_dilation: Sequence[int] | None = None,
    rhs_dilation: Sequence[int] | None = None,
    dimension_numbers: Any = None,
    feature_group_count: int = 1,
    **kwargs: Any,
) -> jax.Array:
    """`lax.conv_general_dilated`'s signature; NHWC/HWIO 2-D convolutions take the fast path."""
    plain = (
        lhs.ndim == 4
        and feature_group_count == 1
        and all(d == 1 for d in (*(lhs_dilation or ()), *(rhs_dilation or ())))
        and dimension_numbers == lax.conv_dimension_numbers(lhs.shape, rhs.shape, NHWC)
        and kwargs.get("precision") is None
        and kwargs.get("preferred_element_type") is None
    )
    if not plain:
        return lax.conv_general_dilated(
            lhs,
            rhs,
            window_strides,
            padding,
            lhs_dilation,
            rhs_dilation,
            dimension_numbers,
            feature_group_count,
            **kwargs,
        )
    strides = tuple(int(s) for s in window_strides)
    if isinstance(padding, str):
        padding = lax.padtype_to_pads(lhs.shape[1:3], rhs.shape[:2], strides, padding)
    pads = tuple((int(lo), int(hi)) for lo, hi in padding)
    return _conv(lhs, rhs, strides, pads)


def depthwise_conv(
    lhs: jax.Array,
    rhs: jax.Array,
    window_strides: Sequence[int],
    padding: Sequence[tuple[int, int]],
    lhs_dilation: Sequence[int] | None = None,
    rhs_dilation: Sequence[int] | None = None,
    dimension_numbers: Any = None,
    feature_group_count: int = 1,
    **kwargs: Any,
) -> jax.Array:
    """`lax.conv_general_dilated`'s signature for a depthwise NHWC convolution (one filter per
    channel, HWIO kernel [kh, kw, 1, C]) as a sum of shifted, per-channel scaled copies of the
    input. XLA:CPU's grouped convolution ran MobileNetV2 ~10x below its dense-layer speed."""
    kh, kw, one, channels = rhs.shape
    depthwise = lhs.ndim == 4 and one == 1 and feature_group_count == channels == lhs.shape[-1]
    if not depthwise or isinstance(padding, str):
        return lax.conv_general_dilated(
            lhs,
            rhs,
            window_strides,
            padding,
            lhs_dilation,
            rhs_dilation,
            dimension_numbers,
            feature_group_count,
            **kwargs,
        )
    sh, sw = (int(s) for s in window_strides)
    x = jnp.pad(lhs, ((0, 0), *padding, (0, 0)))
    oh, ow = (x.shape[1] - kh) // sh + 1, (x.shape[2] - kw) // sw + 1
    out = None
    for i in range(kh):
        for j in range(kw):
            tap = x[:, i : i + sh * (oh - 1) + 1 : sh, j : j + sw * (ow - 1) + 1 : sw, :]
            term = tap * rhs[i, j, 0]
            out = term if out is None else out + term
    return out
