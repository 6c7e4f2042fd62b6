"""patch_conv: XLA's convolution forward, with both gradients computed as matmuls over patches."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from serl.networks.conv import NHWC, patch_conv


def conv_pair(x_shape, w_shape, strides, padding, **kw):
    """(reference, patch_conv) outputs and gradients of a scalar loss of each."""
    kx, kw_, kt = jax.random.split(jax.random.PRNGKey(0), 3)
    x = jax.random.normal(kx, x_shape)
    w = jax.random.normal(kw_, w_shape)
    dn = lax.conv_dimension_numbers(x_shape, w_shape, NHWC)

    def loss(conv):
        def f(x, w):
            y = conv(x, w, strides, padding, dimension_numbers=dn, **kw)
            return jnp.sum(jnp.sin(y) * jax.random.normal(kt, y.shape)), y

        (_, y), grads = jax.value_and_grad(f, (0, 1), has_aux=True)(x, w)
        return y, grads

    return loss(lax.conv_general_dilated), loss(patch_conv)


@pytest.mark.parametrize(
    "x_shape, w_shape, strides, padding",
    [
        ((3, 17, 17, 3), (3, 3, 3, 8), (2, 2), "VALID"),  # the small encoder's layer
        ((2, 16, 12, 4), (3, 3, 4, 5), (1, 1), "SAME"),
        ((2, 19, 19, 3), (7, 7, 3, 6), (2, 2), ((3, 3), (3, 3))),  # a ResNet stem
        ((2, 9, 9, 6), (1, 1, 6, 4), (2, 2), "VALID"),  # a 1x1 downsample
        ((2, 10, 11, 2), (3, 2, 2, 3), (2, 1), ((1, 0), (0, 2))),  # uneven everything
    ],
)
def test_outputs_and_both_gradients_match_lax(x_shape, w_shape, strides, padding) -> None:
    (y_ref, (dx_ref, dw_ref)), (y, (dx, dw)) = conv_pair(x_shape, w_shape, strides, padding)
    np.testing.assert_allclose(y, y_ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(dx, dx_ref, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(dw, dw_ref, rtol=1e-4, atol=1e-4)


def test_dilated_convolutions_fall_back_to_lax() -> None:
    (y_ref, g_ref), (y, g) = conv_pair(
        (2, 12, 12, 3), (3, 3, 3, 4), (1, 1), "VALID", rhs_dilation=(2, 2)
    )
    np.testing.assert_allclose(y, y_ref, rtol=1e-5, atol=1e-5)
    for a, b in zip(g, g_ref, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


def test_plugs_into_flax_conv_with_its_parameter_names() -> None:
    x = jnp.ones((1, 9, 9, 3))
    plain = nn.Conv(4, (3, 3), (2, 2), padding="VALID")
    fast = nn.Conv(4, (3, 3), (2, 2), padding="VALID", conv_general_dilated=patch_conv)
    params = plain.init(jax.random.PRNGKey(1), x)
    np.testing.assert_allclose(fast.apply(params, x), plain.apply(params, x), rtol=1e-6)
    assert jax.tree.structure(fast.init(jax.random.PRNGKey(1), x)) == jax.tree.structure(params)
